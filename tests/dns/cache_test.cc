// dns/cache.h: TTLs, negative caching (RFC 2308) and the size bound, on a clock the test
// steps by hand.
#include "dns/cache.h"

#include <gtest/gtest.h>

#include <memory>

#include "dns/message.h"

namespace ringmail::dns {
namespace {

using namespace std::chrono_literals;
using K = RRset::Kind;

std::shared_ptr<const RRset> make(K k, std::optional<uint32_t> ttl) {
  auto r = std::make_shared<RRset>();
  r->kind = k;
  r->ttl = ttl;
  return r;
}

const Cache::TimePoint t0 = Cache::TimePoint() + 1000h;

TEST(DnsCache, PositiveAnswersLiveForTheirTtl) {
  Cache c({});
  c.put("example.test", kTypeMx, make(K::answer, 300), t0);
  EXPECT_NE(c.get("example.test", kTypeMx, t0), nullptr);
  EXPECT_NE(c.get("example.test", kTypeMx, t0 + 299s), nullptr);
  EXPECT_EQ(c.get("example.test", kTypeA, t0), nullptr);  // another type
  EXPECT_EQ(c.get("other.test", kTypeMx, t0), nullptr);
  EXPECT_EQ(c.get("example.test", kTypeMx, t0 + 300s), nullptr);
  EXPECT_EQ(c.size(), 0u);  // the expired entry went when it was looked up
}

TEST(DnsCache, TtlsAreCapped) {
  Cache::Limits l;
  l.max_ttl = 100s;
  l.max_negative_ttl = 50s;
  l.negative_ttl_without_soa = 20s;
  Cache c(l);
  c.put("a.test", kTypeA, make(K::answer, 86400 * 7), t0);
  EXPECT_NE(c.get("a.test", kTypeA, t0 + 99s), nullptr);
  EXPECT_EQ(c.get("a.test", kTypeA, t0 + 100s), nullptr);
  c.put("n.test", kTypeA, make(K::nxdomain, 3600), t0);
  EXPECT_NE(c.get("n.test", kTypeA, t0 + 49s), nullptr);
  EXPECT_EQ(c.get("n.test", kTypeA, t0 + 50s), nullptr);
  c.put("s.test", kTypeA, make(K::nodata, std::nullopt), t0);
  EXPECT_NE(c.get("s.test", kTypeA, t0 + 19s), nullptr);
  EXPECT_EQ(c.get("s.test", kTypeA, t0 + 20s), nullptr);
}

TEST(DnsCache, NegativeAnswersUseTheSoaTtl) {
  Cache c({});
  c.put("gone.test", kTypeMx, make(K::nxdomain, 60), t0);
  auto hit = c.get("gone.test", kTypeMx, t0 + 59s);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->kind, K::nxdomain);
  EXPECT_EQ(c.get("gone.test", kTypeMx, t0 + 60s), nullptr);
  // Without an SOA: the default bound (5 minutes).
  c.put("nosoa.test", kTypeMx, make(K::nodata, std::nullopt), t0);
  EXPECT_NE(c.get("nosoa.test", kTypeMx, t0 + 299s), nullptr);
  EXPECT_EQ(c.get("nosoa.test", kTypeMx, t0 + 300s), nullptr);
}

TEST(DnsCache, TemporaryFailuresAndZeroTtlsAreNotStored) {
  Cache c({});
  c.put("t.test", kTypeMx, make(K::temporary, 300), t0);
  c.put("z.test", kTypeMx, make(K::answer, 0), t0);
  c.put("nz.test", kTypeMx, make(K::nxdomain, 0), t0);
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(c.get("t.test", kTypeMx, t0), nullptr);
}

TEST(DnsCache, LeastRecentlyUsedIsEvicted) {
  Cache::Limits l;
  l.max_entries = 2;
  Cache c(l);
  c.put("a.test", kTypeA, make(K::answer, 300), t0);
  c.put("b.test", kTypeA, make(K::answer, 300), t0);
  EXPECT_NE(c.get("a.test", kTypeA, t0), nullptr);  // a is now the most recent
  c.put("c.test", kTypeA, make(K::answer, 300), t0);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_NE(c.get("a.test", kTypeA, t0), nullptr);
  EXPECT_EQ(c.get("b.test", kTypeA, t0), nullptr);
  EXPECT_NE(c.get("c.test", kTypeA, t0), nullptr);
}

TEST(DnsCache, ReplacingAnEntryRenewsIt) {
  Cache c({});
  c.put("a.test", kTypeA, make(K::answer, 10), t0);
  c.put("a.test", kTypeA, make(K::nxdomain, 100), t0 + 5s);
  EXPECT_EQ(c.size(), 1u);
  auto hit = c.get("a.test", kTypeA, t0 + 50s);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->kind, K::nxdomain);
  c.clear();
  EXPECT_EQ(c.size(), 0u);
}

TEST(DnsCache, ZeroEntriesDisablesIt) {
  Cache::Limits l;
  l.max_entries = 0;
  Cache c(l);
  c.put("a.test", kTypeA, make(K::answer, 300), t0);
  EXPECT_EQ(c.get("a.test", kTypeA, t0), nullptr);
}

}  // namespace
}  // namespace ringmail::dns
