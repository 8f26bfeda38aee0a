// mta/dns/loop_resolver.h against a real DNS server: NSD (Debian package `nsd`) serving
// a test zone on 127.0.0.1:<free port>, the resolver on a real io_uring loop. These are
// the answers delivery depends on (DESIGN "Testing": a real DNS server from Debian
// packages). Without the nsd binary the tests skip; tools/setup-deps.sh installs it.
//
// Every test runs its coroutine with a watchdog and ends with co_await close(), so a hang
// is a failure and ASan sees the shutdown path every time.
#include "mta/dns/loop_resolver.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "mta/runtime/loop.h"
#include "mta/runtime/ops.h"
#include "mta/runtime/task.h"
#include "tests/support/nsd_server.h"
#include "tests/support/watchdog.h"

namespace ringmail::dns {
namespace {

using namespace std::chrono_literals;
using rt::Loop;
using rt::Task;

const char* kZone = R"($ORIGIN example.test.
$TTL 300
@         IN SOA   ns.example.test. hostmaster.example.test. 1 3600 600 86400 30
@         IN NS    ns
ns        IN A     127.0.0.1
@         IN MX    10 mx1
@         IN MX    20 mx2a
@         IN MX    20 mx2b
@         IN MX    20 mx2c
@         IN MX    30 mx3
mx1       IN A     127.0.0.11
mx1       IN AAAA  fd00::11
mx2a      IN A     127.0.0.21
mx2b      IN A     127.0.0.22
mx2c      IN A     127.0.0.23
mx3       IN A     127.0.0.31
implicit  120 IN A     127.0.0.40
implicit  60  IN AAAA  fd00::40
nullmx    IN MX    0 .
nullmx    IN A     127.0.0.50
txtonly   IN TXT   "no mail here"
alias     IN CNAME mx1
mxalias   IN CNAME example.test.
dual      200 IN A     127.0.0.60
dual      200 IN A     127.0.0.61
dual      100 IN AAAA  fd00::60
)";

// 40 MX records: too big for a 512-octet UDP answer, so NSD truncates and c-ares asks
// again over TCP (a socket c-ares wants writable while it connects).
std::string big_zone() {
  std::string z = kZone;
  for (int i = 0; i < 40; ++i)
    z += "big IN MX " + std::to_string(i) + " a-long-mail-exchanger-name-" + std::to_string(i) +
         ".example.test.\n";
  return z;
}

using ringmail::testing::Watchdog;

Task<void> finish(Loop& loop, Watchdog& wd, LoopResolver& r, Task<void> body) {
  co_await body;
  co_await r.close();
  EXPECT_EQ(r.ops_in_flight(), 0u);
  wd.disarm();
  loop.stop();
}

// A UDP socket that takes queries and never answers: a dead DNS server.
struct SilentServer {
  int fd = -1;
  std::string address;
  SilentServer() {
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    address = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  }
  ~SilentServer() { ::close(fd); }
};

std::vector<std::string> names(const MxAnswer& a) {
  std::vector<std::string> out;
  for (const MxHost& h : a.hosts) out.push_back(h.name);
  return out;
}

class LoopResolverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::NsdServer::binary().empty()) return;
    server_ = new testing::NsdServer;
    if (!server_->start({{"example.test", big_zone()}}, &start_error_)) {
      delete server_;
      server_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (testing::NsdServer::binary().empty())
      GTEST_SKIP() << "nsd not installed (apt-get install nsd, or tools/setup-deps.sh)";
    ASSERT_NE(server_, nullptr) << start_error_;
  }

  Resolver::Options options() {
    Resolver::Options o;
    o.servers = {server_->address()};
    o.timeout = 1000ms;
    o.tries = 2;
    o.seed = 1;
    return o;
  }

  // Runs `body(resolver)` on a fresh loop with a resolver made from `o`.
  template <class Body>
  void run(const Resolver::Options& o, Body body) {
    Loop loop;
    auto r = LoopResolver::create(loop, o);
    ASSERT_TRUE(r.ok()) << r.error().message;
    LoopResolver& res = *r.value();
    Watchdog wd(loop, 30s);
    loop.spawn(finish(loop, wd, res, body(loop, res)));
    loop.run();
    EXPECT_FALSE(wd.fired());
    EXPECT_EQ(loop.live_tasks(), 0u);
    EXPECT_EQ(res.watched_sockets(), 0u);
  }

  static testing::NsdServer* server_;
  static std::string start_error_;
};

testing::NsdServer* LoopResolverTest::server_ = nullptr;
std::string LoopResolverTest::start_error_;

// --- MX --------------------------------------------------------------------------------

Task<void> mx_order(Loop&, LoopResolver& r) {
  Result<MxAnswer> mx = co_await r.mx("example.test");
  EXPECT_TRUE(mx.ok()) << mx.error().message;
  if (!mx.ok()) co_return;
  std::vector<std::string> n = names(mx.value());
  EXPECT_EQ(n.size(), 5u);
  if (n.size() != 5) co_return;
  EXPECT_EQ(n[0], "mx1.example.test");
  EXPECT_EQ(mx->hosts[0].preference, 10);
  EXPECT_EQ(std::set<std::string>(n.begin() + 1, n.begin() + 4),
            (std::set<std::string>{"mx2a.example.test", "mx2b.example.test", "mx2c.example.test"}));
  EXPECT_EQ(n[4], "mx3.example.test");
  EXPECT_FALSE(mx->implicit);
  EXPECT_EQ(mx->ttl, 300u);
}

TEST_F(LoopResolverTest, MxPreferenceOrder) {
  run(options(), mx_order);
}

Task<void> mx_shuffle(Loop&, LoopResolver& r) {
  std::set<std::vector<std::string>> orders;
  std::map<std::string, int> leads;
  for (int i = 0; i < 60; ++i) {
    Result<MxAnswer> mx = co_await r.mx("example.test");
    EXPECT_TRUE(mx.ok());
    if (!mx.ok()) co_return;
    std::vector<std::string> n = names(mx.value());
    EXPECT_EQ(n.front(), "mx1.example.test");
    EXPECT_EQ(n.back(), "mx3.example.test");
    orders.insert(n);
    ++leads[n[1]];
  }
  // Each of the three preference-20 hosts comes first among them sometimes; one query
  // served all 60 lookups (the rest came from the cache and were shuffled anew).
  EXPECT_EQ(leads.size(), 3u);
  EXPECT_GT(orders.size(), 3u);
  EXPECT_EQ(r.resolver().stats().queries_sent, 1u);
  EXPECT_EQ(r.resolver().stats().cache_hits, 59u);
}

TEST_F(LoopResolverTest, EqualPreferencesAreShuffled) {
  run(options(), mx_shuffle);
}

Task<void> implicit(Loop&, LoopResolver& r) {
  Result<MxAnswer> mx = co_await r.mx("implicit.example.test");
  EXPECT_TRUE(mx.ok()) << mx.error().message;
  if (!mx.ok()) co_return;
  EXPECT_TRUE(mx->implicit);
  EXPECT_EQ(names(mx.value()), (std::vector<std::string>{"implicit.example.test"}));
  EXPECT_EQ(mx->hosts[0].preference, 0);
  EXPECT_EQ(mx->ttl, 30u);  // the MX NODATA lives for the SOA minimum, 30 s
  // The addresses were fetched with it: asking for them sends nothing.
  uint64_t sent = r.resolver().stats().queries_sent;
  Result<std::vector<Address>> addrs = co_await r.addresses("implicit.example.test");
  EXPECT_TRUE(addrs.ok());
  EXPECT_EQ(addrs->size(), 2u);
  EXPECT_EQ(r.resolver().stats().queries_sent, sent);
}

TEST_F(LoopResolverTest, ImplicitMx) {
  run(options(), implicit);
}

Task<void> failures(Loop&, LoopResolver& r) {
  Result<MxAnswer> null_mx = co_await r.mx("nullmx.example.test");
  EXPECT_FALSE(null_mx.ok());
  if (!null_mx.ok()) {
    EXPECT_EQ(null_mx.error().code, kNullMx);
    EXPECT_STREQ(enhanced_status(null_mx.error().code), "5.1.10");
  }
  Result<MxAnswer> nx = co_await r.mx("nope.example.test");
  EXPECT_FALSE(nx.ok());
  if (!nx.ok()) {
    EXPECT_EQ(nx.error().code, kNxDomain);
    EXPECT_STREQ(enhanced_status(nx.error().code), "5.1.2");
  }
  Result<MxAnswer> nodata = co_await r.mx("txtonly.example.test");
  EXPECT_FALSE(nodata.ok());
  if (!nodata.ok()) {
    EXPECT_EQ(nodata.error().code, kNoData);
  }
  // NSD serves only example.test and refuses the rest: a temporary failure, never a bounce.
  Result<MxAnswer> refused = co_await r.mx("elsewhere.invalid");
  EXPECT_FALSE(refused.ok());
  if (!refused.ok()) {
    EXPECT_EQ(refused.error().code, kTemporary);
    EXPECT_STREQ(enhanced_status(refused.error().code), "4.4.3");
    EXPECT_NE(refused.error().message.find("REFUSED"), std::string::npos)
        << refused.error().message;
  }
}

TEST_F(LoopResolverTest, NullMxNxDomainNoDataRefused) {
  run(options(), failures);
}

Task<void> cname(Loop&, LoopResolver& r) {
  Result<MxAnswer> mx = co_await r.mx("mxalias.example.test");
  EXPECT_TRUE(mx.ok()) << mx.error().message;
  if (mx.ok()) {
    EXPECT_EQ(mx->hosts.size(), 5u);
  }
  Result<std::vector<Address>> a = co_await r.addresses("alias.example.test");
  EXPECT_TRUE(a.ok()) << a.error().message;
  if (!a.ok()) co_return;
  EXPECT_EQ(a->size(), 2u);
  if (a->size() == 2) {
    EXPECT_EQ((*a)[0].text(), "127.0.0.11");
    EXPECT_EQ((*a)[1].text(), "fd00::11");
  }
}

TEST_F(LoopResolverTest, CnameChains) {
  run(options(), cname);
}

Task<void> tcp_fallback(Loop&, LoopResolver& r) {
  Result<MxAnswer> mx = co_await r.mx("big.example.test");
  EXPECT_TRUE(mx.ok()) << mx.error().message;
  if (!mx.ok()) co_return;
  EXPECT_EQ(mx->hosts.size(), 40u);
  EXPECT_EQ(mx->hosts.front().name, "a-long-mail-exchanger-name-0.example.test");
  EXPECT_EQ(mx->hosts.back().name, "a-long-mail-exchanger-name-39.example.test");
}

TEST_F(LoopResolverTest, TruncatedAnswerRetriedOverTcp) {
  run(options(), tcp_fallback);
}

// --- addresses -------------------------------------------------------------------------

Task<void> dual(Loop&, LoopResolver& r, bool v6_first) {
  Result<std::vector<Address>> a = co_await r.addresses("dual.example.test");
  EXPECT_TRUE(a.ok()) << a.error().message;
  if (!a.ok() || a->size() != 3) {
    ADD_FAILURE() << "expected 3 addresses";
    co_return;
  }
  std::vector<std::string> t;
  for (const Address& x : a.value()) t.push_back(x.text());
  if (v6_first) {
    EXPECT_EQ(t[0], "fd00::60");
    EXPECT_EQ(std::set<std::string>(t.begin() + 1, t.end()),
              (std::set<std::string>{"127.0.0.60", "127.0.0.61"}));
    EXPECT_EQ((*a)[0].ttl, 100u);
    EXPECT_EQ((*a)[1].ttl, 200u);
  } else {
    EXPECT_EQ(std::set<std::string>(t.begin(), t.begin() + 2),
              (std::set<std::string>{"127.0.0.60", "127.0.0.61"}));
    EXPECT_EQ(t[2], "fd00::60");
    EXPECT_EQ((*a)[0].family, AF_INET);
    EXPECT_EQ((*a)[2].ttl, 100u);
  }
  Result<std::vector<Address>> none = co_await r.addresses("txtonly.example.test");
  EXPECT_FALSE(none.ok());
  if (!none.ok()) {
    EXPECT_EQ(none.error().code, kNoData);
  }
  Result<std::vector<Address>> nx = co_await r.addresses("nope.example.test");
  EXPECT_FALSE(nx.ok());
  if (!nx.ok()) {
    EXPECT_EQ(nx.error().code, kNxDomain);
  }
}

TEST_F(LoopResolverTest, AAndAaaaIpv4First) {
  run(options(), [](Loop& l, LoopResolver& r) { return dual(l, r, false); });
}

TEST_F(LoopResolverTest, AAndAaaaIpv6FirstWhenAsked) {
  Resolver::Options o = options();
  o.ipv6_first = true;
  run(o, [](Loop& l, LoopResolver& r) { return dual(l, r, true); });
}

// --- cache -----------------------------------------------------------------------------

struct FakeClock {
  Resolver::TimePoint now = Resolver::TimePoint() + 1000h;
};

Task<void> cache_hits(Loop&, LoopResolver& r, FakeClock& clock) {
  const Resolver::Stats& s = r.resolver().stats();
  Result<MxAnswer> a = co_await r.mx("example.test");
  EXPECT_TRUE(a.ok());
  EXPECT_EQ(s.queries_sent, 1u);
  clock.now += 299s;
  Result<MxAnswer> b = co_await r.mx("example.test");
  EXPECT_TRUE(b.ok());
  EXPECT_EQ(s.queries_sent, 1u);  // the second lookup did not query
  EXPECT_EQ(s.cache_hits, 1u);
  clock.now += 2s;  // past the 300 s TTL
  Result<MxAnswer> c = co_await r.mx("example.test");
  EXPECT_TRUE(c.ok());
  EXPECT_EQ(s.queries_sent, 2u);
  // Negative answers too, for the SOA minimum (30 s).
  Result<MxAnswer> nx1 = co_await r.mx("nope.example.test");
  EXPECT_FALSE(nx1.ok());
  EXPECT_EQ(s.queries_sent, 3u);
  clock.now += 29s;
  Result<MxAnswer> nx2 = co_await r.mx("nope.example.test");
  EXPECT_FALSE(nx2.ok());
  EXPECT_EQ(s.queries_sent, 3u);
  clock.now += 2s;
  Result<MxAnswer> nx3 = co_await r.mx("nope.example.test");
  EXPECT_FALSE(nx3.ok());
  EXPECT_EQ(s.queries_sent, 4u);
}

TEST_F(LoopResolverTest, TtlCacheHitsDoNotQuery) {
  FakeClock clock;
  Resolver::Options o = options();
  o.now = [&clock] { return clock.now; };
  run(o, [&clock](Loop& l, LoopResolver& r) { return cache_hits(l, r, clock); });
}

Task<void> one_lookup(LoopResolver& r, int& ok) {
  Result<MxAnswer> mx = co_await r.mx("example.test");
  if (mx.ok()) ++ok;
}

Task<void> concurrent(Loop& loop, LoopResolver& r) {
  int ok = 0;
  for (int i = 0; i < 20; ++i) loop.spawn(one_lookup(r, ok));
  // Let them all finish: each either joined the one query or hit the cache after it.
  while (ok < 20) {
    rt::Sleep s(loop, 5ms);
    co_await s;
  }
  EXPECT_EQ(r.resolver().stats().queries_sent, 1u);
  EXPECT_EQ(r.resolver().stats().coalesced, 19u);
}

TEST_F(LoopResolverTest, ConcurrentLookupsShareOneQuery) {
  run(options(), concurrent);
}

// --- servers that fail -----------------------------------------------------------------

Task<void> timeout(Loop&, LoopResolver& r) {
  auto start = std::chrono::steady_clock::now();
  Result<MxAnswer> mx = co_await r.mx("example.test");
  EXPECT_FALSE(mx.ok());
  if (!mx.ok()) {
    EXPECT_EQ(mx.error().code, kTemporary);
    EXPECT_NE(mx.error().message.find("timed out"), std::string::npos) << mx.error().message;
  }
  // Only the ring's timeout op drives c-ares here: no answer ever wakes a poll.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST_F(LoopResolverTest, SilentServerTimesOut) {
  SilentServer dead;
  Resolver::Options o = options();
  o.servers = {dead.address};
  o.timeout = 200ms;
  o.tries = 1;
  run(o, timeout);
}

Task<void> failover(Loop&, LoopResolver& r) {
  Result<MxAnswer> mx = co_await r.mx("example.test");
  EXPECT_TRUE(mx.ok()) << mx.error().message;
}

TEST_F(LoopResolverTest, DeadFirstServerFallsBackToTheNext) {
  SilentServer dead;
  Resolver::Options o = options();
  o.servers = {dead.address, server_->address()};
  o.timeout = 200ms;
  o.tries = 1;
  run(o, failover);
}

Task<void> pending_lookup(LoopResolver& r, int& code) {
  Result<MxAnswer> mx = co_await r.mx("example.test");
  code = mx.ok() ? 0 : mx.error().code;
}

Task<void> close_while_pending(Loop& loop, LoopResolver& r) {
  int code = -1;
  loop.spawn(pending_lookup(r, code));
  rt::Sleep s(loop, 50ms);
  co_await s;
  EXPECT_EQ(code, -1);  // still waiting for the dead server
  EXPECT_GT(r.ops_in_flight(), 0u);
  co_await r.close();
  EXPECT_EQ(code, kTemporary);
  EXPECT_EQ(r.ops_in_flight(), 0u);
}

TEST_F(LoopResolverTest, CloseAnswersPendingLookupsAndCancelsEverything) {
  SilentServer dead;
  Resolver::Options o = options();
  o.servers = {dead.address};
  o.timeout = 5000ms;
  run(o, close_while_pending);
}

TEST(LoopResolver, BadServerEntryFailsCreate) {
  Loop loop;
  Resolver::Options o;
  o.servers = {"127.0.0.1:99999"};
  auto r = LoopResolver::create(loop, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("port"), std::string::npos);
}

TEST(LoopResolver, IdleResolverNeedsNoClose) {
  Loop loop;
  Resolver::Options o;
  o.servers = {"127.0.0.1:53"};
  auto r = LoopResolver::create(loop, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()->ops_in_flight(), 0u);
}

}  // namespace
}  // namespace ringmail::dns
