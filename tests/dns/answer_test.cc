// dns/answer.h: what an answer means for mail routing, without a network. Each
// classification here is a delivery decision: a wrong "permanent" bounces mail that a
// retry would have delivered, a wrong "temporary" keeps mail queued for days.
#include "dns/answer.h"

#include <ares.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "dns/message.h"
#include "tests/support/dns_packet.h"

namespace ringmail::dns {
namespace {

using testing::Bytes;
using testing::Packet;
using K = RRset::Kind;

std::span<const uint8_t> span(const Bytes& b) {
  return {b.data(), b.size()};
}

Bytes soa() {
  return testing::soa_rdata("ns.example.test", "hostmaster.example.test", 60);
}

RRset mx_set(std::vector<std::pair<uint16_t, std::string>> recs, uint32_t ttl = 300) {
  RRset r;
  r.kind = K::answer;
  r.ttl = ttl;
  for (auto& [p, h] : recs) r.mx.push_back({p, h});
  return r;
}

RRset addr_set(int family, std::vector<const char*> texts, uint32_t ttl = 300) {
  RRset r;
  r.kind = K::answer;
  r.ttl = ttl;
  for (const char* t : texts) {
    Address a;
    a.family = family;
    a.ttl = ttl;
    Bytes b = family == AF_INET ? testing::a_rdata(t) : testing::aaaa_rdata(t);
    std::copy(b.begin(), b.end(), a.bytes.begin());
    r.addresses.push_back(a);
  }
  return r;
}

RRset kind(K k, std::optional<uint32_t> ttl = std::nullopt) {
  RRset r;
  r.kind = k;
  r.ttl = ttl;
  if (k == K::temporary) r.error = "timed out";
  return r;
}

std::vector<std::string> names(const MxAnswer& a) {
  std::vector<std::string> out;
  for (const MxHost& h : a.hosts) out.push_back(h.name);
  return out;
}

// --- from a response ---------------------------------------------------------------

TEST(RRsetFromResponse, MxRecordsWithTheSmallestTtl) {
  Bytes b = Packet()
                .question("example.test", kTypeMx)
                .answer("example.test", kTypeMx, 300, testing::mx_rdata(10, "mx1.example.test"))
                .answer("example.test", kTypeMx, 120, testing::mx_rdata(20, "mx2.example.test"))
                .build();
  RRset r = rrset_from_response(ARES_SUCCESS, span(b), "example.test", kTypeMx);
  ASSERT_EQ(r.kind, K::answer) << r.error;
  ASSERT_EQ(r.mx.size(), 2u);
  EXPECT_EQ(r.mx[0].preference, 10);
  EXPECT_EQ(r.mx[0].host, "mx1.example.test");
  EXPECT_EQ(r.ttl, 120u);
}

TEST(RRsetFromResponse, QuestionNameIsCaseInsensitiveAndMayEndInADot) {
  Bytes b = Packet()
                .question("Example.TEST", kTypeMx)
                .answer("EXAMPLE.test", kTypeMx, 300, testing::mx_rdata(10, "MX1.example.test"))
                .build();
  RRset r = rrset_from_response(ARES_SUCCESS, span(b), "example.Test.", kTypeMx);
  ASSERT_EQ(r.kind, K::answer) << r.error;
  EXPECT_EQ(r.mx[0].host, "mx1.example.test");
}

TEST(RRsetFromResponse, FollowsTheCnameChain) {
  Bytes b = Packet()
                .question("alias.test", kTypeA)
                .answer("alias.test", kTypeCname, 50, testing::wire_name("mid.test"))
                .answer("mid.test", kTypeCname, 500, testing::wire_name("host.test"))
                .answer("host.test", kTypeA, 300, testing::a_rdata("192.0.2.1"))
                .answer("other.test", kTypeA, 300, testing::a_rdata("192.0.2.99"))
                .build();
  RRset r = rrset_from_response(ARES_SUCCESS, span(b), "alias.test", kTypeA);
  ASSERT_EQ(r.kind, K::answer) << r.error;
  ASSERT_EQ(r.addresses.size(), 1u);  // records off the chain are ignored
  EXPECT_EQ(r.addresses[0].text(), "192.0.2.1");
  EXPECT_EQ(r.ttl, 50u);  // the chain is only as fresh as its shortest link
}

TEST(RRsetFromResponse, CnameWithoutTheTypeIsNoData) {
  Bytes b = Packet()
                .question("alias.test", kTypeMx)
                .answer("alias.test", kTypeCname, 50, testing::wire_name("host.test"))
                .authority("test", kTypeSoa, 600, soa())
                .build();
  RRset r = rrset_from_response(ARES_SUCCESS, span(b), "alias.test", kTypeMx);
  EXPECT_EQ(r.kind, K::nodata);
  EXPECT_EQ(r.ttl, 50u);
}

TEST(RRsetFromResponse, CnameLoopIsTemporary) {
  Bytes b = Packet()
                .question("a.test", kTypeA)
                .answer("a.test", kTypeCname, 50, testing::wire_name("b.test"))
                .answer("b.test", kTypeCname, 50, testing::wire_name("a.test"))
                .build();
  RRset r = rrset_from_response(ARES_SUCCESS, span(b), "a.test", kTypeA);
  EXPECT_EQ(r.kind, K::temporary);
  EXPECT_NE(r.error.find("CNAME"), std::string::npos);
}

TEST(RRsetFromResponse, NegativeAnswersTakeTheSoaTtl) {
  // RFC 2308 5: min(SOA TTL, SOA MINIMUM).
  Bytes nx = Packet(kRcodeNxDomain)
                 .question("nope.example.test", kTypeMx)
                 .authority("example.test", kTypeSoa, 600, soa())
                 .build();
  RRset r = rrset_from_response(ARES_ENOTFOUND, span(nx), "nope.example.test", kTypeMx);
  EXPECT_EQ(r.kind, K::nxdomain);
  EXPECT_EQ(r.ttl, 60u);
  Bytes nx2 = Packet(kRcodeNxDomain)
                  .question("nope.example.test", kTypeMx)
                  .authority("example.test", kTypeSoa, 30, soa())
                  .build();
  EXPECT_EQ(rrset_from_response(ARES_ENOTFOUND, span(nx2), "nope.example.test", kTypeMx).ttl, 30u);

  Bytes nodata = Packet()
                     .question("host.example.test", kTypeMx)
                     .authority("example.test", kTypeSoa, 600, soa())
                     .build();
  RRset n = rrset_from_response(ARES_ENODATA, span(nodata), "host.example.test", kTypeMx);
  EXPECT_EQ(n.kind, K::nodata);
  EXPECT_EQ(n.ttl, 60u);

  Bytes bare = Packet(kRcodeNxDomain).question("nope.example.test", kTypeMx).build();
  RRset b = rrset_from_response(ARES_ENOTFOUND, span(bare), "nope.example.test", kTypeMx);
  EXPECT_EQ(b.kind, K::nxdomain);
  EXPECT_FALSE(b.ttl.has_value());
}

TEST(RRsetFromResponse, NegativeStatusWithoutAResponse) {
  EXPECT_EQ(rrset_from_response(ARES_ENOTFOUND, {}, "x.test", kTypeMx).kind, K::nxdomain);
  EXPECT_EQ(rrset_from_response(ARES_ENODATA, {}, "x.test", kTypeMx).kind, K::nodata);
  EXPECT_EQ(rrset_from_response(ARES_SUCCESS, {}, "x.test", kTypeMx).kind, K::temporary);
}

TEST(RRsetFromResponse, FailuresAreTemporary) {
  for (int st : {ARES_ESERVFAIL, ARES_EREFUSED, ARES_ETIMEOUT, ARES_ECONNREFUSED, ARES_EFORMERR,
                 ARES_ENOTIMP, ARES_EBADRESP, ARES_ENOMEM, ARES_ECANCELLED, ARES_EDESTRUCTION}) {
    RRset r = rrset_from_response(st, {}, "example.test", kTypeMx);
    EXPECT_EQ(r.kind, K::temporary) << st;
    EXPECT_FALSE(r.error.empty());
  }
  // SERVFAIL in the packet itself (c-ares normally catches it first).
  Bytes sf = Packet(kRcodeServFail).question("example.test", kTypeMx).build();
  EXPECT_EQ(rrset_from_response(ARES_SUCCESS, span(sf), "example.test", kTypeMx).kind,
            K::temporary);
}

TEST(RRsetFromResponse, BrokenOrForeignResponsesAreTemporary) {
  Bytes other = Packet()
                    .question("other.test", kTypeMx)
                    .answer("other.test", kTypeMx, 300, testing::mx_rdata(10, "mx.other.test"))
                    .build();
  EXPECT_EQ(rrset_from_response(ARES_SUCCESS, span(other), "example.test", kTypeMx).kind,
            K::temporary);
  EXPECT_EQ(rrset_from_response(ARES_SUCCESS, span(other), "other.test", kTypeA).kind,
            K::temporary);
  Bytes query = Packet().question("example.test", kTypeMx).not_a_response().build();
  EXPECT_EQ(rrset_from_response(ARES_SUCCESS, span(query), "example.test", kTypeMx).kind,
            K::temporary);
  Bytes garbage = {1, 2, 3};
  EXPECT_EQ(rrset_from_response(ARES_SUCCESS, span(garbage), "example.test", kTypeMx).kind,
            K::temporary);
  // A well-formed message whose MX RDATA is not.
  Bytes bad = Packet()
                  .question("example.test", kTypeMx)
                  .answer("example.test", kTypeMx, 300, Bytes{0, 10})
                  .build();
  EXPECT_EQ(rrset_from_response(ARES_SUCCESS, span(bad), "example.test", kTypeMx).kind,
            K::temporary);
}

TEST(RRsetFromResponse, AAndAaaa) {
  Bytes a = Packet()
                .question("h.test", kTypeA)
                .answer("h.test", kTypeA, 70, testing::a_rdata("192.0.2.1"))
                .answer("h.test", kTypeA, 80, testing::a_rdata("192.0.2.2"))
                .build();
  RRset r = rrset_from_response(ARES_SUCCESS, span(a), "h.test", kTypeA);
  ASSERT_EQ(r.kind, K::answer);
  ASSERT_EQ(r.addresses.size(), 2u);
  EXPECT_EQ(r.addresses[0].family, AF_INET);
  EXPECT_EQ(r.addresses[0].ttl, 70u);
  EXPECT_EQ(r.addresses[1].text(), "192.0.2.2");
  EXPECT_EQ(r.ttl, 70u);
  Bytes six = Packet()
                  .question("h.test", kTypeAaaa)
                  .answer("h.test", kTypeAaaa, 90, testing::aaaa_rdata("2001:db8::1"))
                  .build();
  RRset r6 = rrset_from_response(ARES_SUCCESS, span(six), "h.test", kTypeAaaa);
  ASSERT_EQ(r6.kind, K::answer);
  EXPECT_EQ(r6.addresses[0].family, AF_INET6);
  EXPECT_EQ(r6.addresses[0].text(), "2001:db8::1");
  EXPECT_EQ(r6.addresses[0].ttl, 90u);
}

TEST(RRsetFromResponse, BadNameIsPermanent) {
  EXPECT_EQ(rrset_from_response(ARES_EBADNAME, {}, "x..test", kTypeMx).kind, K::nxdomain);
}

// --- MX classification -------------------------------------------------------------

TEST(ClassifyMx, PreferenceOrder) {
  std::mt19937_64 rng(1);
  MxStep s = classify_mx("example.test",
                         mx_set({{30, "c.test"}, {10, "a.test"}, {20, "b.test"}}, 300), rng);
  ASSERT_FALSE(s.need_addresses);
  ASSERT_TRUE(s.done && s.done->ok());
  const MxAnswer& a = s.done->value();
  EXPECT_EQ(names(a), (std::vector<std::string>{"a.test", "b.test", "c.test"}));
  EXPECT_EQ(a.hosts[0].preference, 10);
  EXPECT_FALSE(a.implicit);
  EXPECT_EQ(a.ttl, 300u);
}

TEST(ClassifyMx, EqualPreferencesAreShuffledPreferenceGroupsAreNot) {
  RRset set = mx_set({{20, "b1.test"},
                      {10, "a1.test"},
                      {20, "b2.test"},
                      {10, "a2.test"},
                      {20, "b3.test"},
                      {30, "c.test"}});
  std::map<std::string, int> first_of_10, first_of_20;
  std::set<std::vector<std::string>> orders;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    MxStep s = classify_mx("example.test", set, rng);
    ASSERT_TRUE(s.done && s.done->ok());
    std::vector<std::string> n = names(s.done->value());
    ASSERT_EQ(n.size(), 6u);
    // Groups stay in preference order whatever the shuffle.
    std::set<std::string> g10(n.begin(), n.begin() + 2), g20(n.begin() + 2, n.begin() + 5);
    EXPECT_EQ(g10, (std::set<std::string>{"a1.test", "a2.test"}));
    EXPECT_EQ(g20, (std::set<std::string>{"b1.test", "b2.test", "b3.test"}));
    EXPECT_EQ(n[5], "c.test");
    ++first_of_10[n[0]];
    ++first_of_20[n[2]];
    orders.insert(n);
  }
  // Every member of a group leads it sometimes (2! x 3! = 12 orders in all).
  EXPECT_EQ(first_of_10.size(), 2u);
  EXPECT_EQ(first_of_20.size(), 3u);
  EXPECT_EQ(orders.size(), 12u);
  for (auto& [h, n] : first_of_20) EXPECT_GT(n, 30) << h;  // roughly 1/3 of 200 each
}

TEST(ClassifyMx, SameSeedSameOrder) {
  RRset set = mx_set({{10, "a.test"}, {10, "b.test"}, {10, "c.test"}, {10, "d.test"}});
  std::mt19937_64 r1(42), r2(42);
  EXPECT_EQ(names(classify_mx("x.test", set, r1).done->value()),
            names(classify_mx("x.test", set, r2).done->value()));
}

TEST(ClassifyMx, NullMx) {
  std::mt19937_64 rng(1);
  MxStep s = classify_mx("nullmx.test", mx_set({{0, ""}}), rng);
  ASSERT_TRUE(s.done);
  ASSERT_FALSE(s.done->ok());
  EXPECT_EQ(s.done->error().code, kNullMx);
  EXPECT_STREQ(enhanced_status(s.done->error().code), "5.1.10");
  EXPECT_TRUE(is_permanent(kNullMx));
  EXPECT_NE(s.done->error().message.find("RFC 7505"), std::string::npos);
}

TEST(ClassifyMx, RootTargetAmongRealHostsIsDropped) {
  std::mt19937_64 rng(1);
  MxStep s = classify_mx("mixed.test", mx_set({{0, ""}, {10, "mx.mixed.test"}}), rng);
  ASSERT_TRUE(s.done && s.done->ok());
  EXPECT_EQ(names(s.done->value()), (std::vector<std::string>{"mx.mixed.test"}));
}

TEST(ClassifyMx, DuplicatesAndUnusableHosts) {
  std::mt19937_64 rng(1);
  MxStep s = classify_mx(
      "example.test",
      mx_set({{20, "mx.test"}, {10, "mx.test"}, {5, "bad\\046name.test"}, {15, "b.test"}}), rng);
  ASSERT_TRUE(s.done && s.done->ok());
  const MxAnswer& a = s.done->value();
  EXPECT_EQ(names(a), (std::vector<std::string>{"mx.test", "b.test"}));
  EXPECT_EQ(a.hosts[0].preference, 10);

  MxStep none = classify_mx("example.test", mx_set({{10, "bad\\032host"}}), rng);
  ASSERT_TRUE(none.done && !none.done->ok());
  EXPECT_EQ(none.done->error().code, kNoData);  // RFC 5321 5.1: MX present, none usable
}

TEST(ClassifyMx, NxDomainIsPermanentFailuresAreTemporary) {
  std::mt19937_64 rng(1);
  MxStep nx = classify_mx("nope.test", kind(K::nxdomain, 60), rng);
  ASSERT_TRUE(nx.done && !nx.done->ok());
  EXPECT_EQ(nx.done->error().code, kNxDomain);
  EXPECT_STREQ(enhanced_status(kNxDomain), "5.1.2");
  EXPECT_TRUE(is_permanent(kNxDomain));

  MxStep tmp = classify_mx("slow.test", kind(K::temporary), rng);
  ASSERT_TRUE(tmp.done && !tmp.done->ok());
  EXPECT_EQ(tmp.done->error().code, kTemporary);
  EXPECT_STREQ(enhanced_status(kTemporary), "4.4.3");
  EXPECT_FALSE(is_permanent(kTemporary));
  EXPECT_NE(tmp.done->error().message.find("timed out"), std::string::npos);
}

TEST(ClassifyMx, NoMxRecordsAsksForAddresses) {
  std::mt19937_64 rng(1);
  MxStep s = classify_mx("implicit.test", kind(K::nodata, 60), rng);
  EXPECT_TRUE(s.need_addresses);
  EXPECT_FALSE(s.done);
}

// --- implicit MX -------------------------------------------------------------------

TEST(ImplicitMx, TheDomainItselfAtPreferenceZero) {
  Result<MxAnswer> r =
      implicit_mx("Implicit.TEST.", kind(K::nodata, 60), addr_set(AF_INET, {"192.0.2.4"}, 300),
                  addr_set(AF_INET6, {"2001:db8::4"}, 30));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->implicit);
  ASSERT_EQ(r->hosts.size(), 1u);
  EXPECT_EQ(r->hosts[0].name, "implicit.test");
  EXPECT_EQ(r->hosts[0].preference, 0);
  EXPECT_EQ(r->ttl, 30u);
  // One family is enough.
  EXPECT_TRUE(
      implicit_mx("x.test", kind(K::nodata), addr_set(AF_INET, {"192.0.2.4"}), kind(K::nodata))
          .ok());
}

TEST(ImplicitMx, NoAddressesEither) {
  Result<MxAnswer> r =
      implicit_mx("txtonly.test", kind(K::nodata), kind(K::nodata), kind(K::nodata));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kNoData);
  EXPECT_STREQ(enhanced_status(kNoData), "5.4.4");
  Result<MxAnswer> t = implicit_mx("x.test", kind(K::nodata), kind(K::nodata), kind(K::temporary));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, kTemporary);  // the missing family might have had addresses
  Result<MxAnswer> n = implicit_mx("x.test", kind(K::nodata), kind(K::nxdomain), kind(K::nxdomain));
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().code, kNxDomain);
}

// --- addresses ---------------------------------------------------------------------

TEST(MergeAddresses, FamilyOrder) {
  RRset a = addr_set(AF_INET, {"192.0.2.1", "192.0.2.2"});
  RRset aaaa = addr_set(AF_INET6, {"2001:db8::1"});
  auto v4 = merge_addresses("h.test", a, aaaa, false);
  ASSERT_TRUE(v4.ok());
  ASSERT_EQ(v4->size(), 3u);
  EXPECT_EQ((*v4)[0].text(), "192.0.2.1");
  EXPECT_EQ((*v4)[2].text(), "2001:db8::1");
  auto v6 = merge_addresses("h.test", a, aaaa, true);
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ((*v6)[0].text(), "2001:db8::1");
  EXPECT_EQ((*v6)[1].text(), "192.0.2.1");
}

TEST(MergeAddresses, AnyAddressWins) {
  auto r =
      merge_addresses("h.test", kind(K::temporary), addr_set(AF_INET6, {"2001:db8::1"}), false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 1u);
  auto n = merge_addresses("h.test", kind(K::nodata), kind(K::nodata), false);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().code, kNoData);
  auto t = merge_addresses("h.test", kind(K::nxdomain), kind(K::temporary), false);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, kTemporary);
  auto x = merge_addresses("h.test", kind(K::nxdomain), kind(K::nxdomain), false);
  ASSERT_FALSE(x.ok());
  EXPECT_EQ(x.error().code, kNxDomain);
}

}  // namespace
}  // namespace ringmail::dns
