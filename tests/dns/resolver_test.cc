// dns/resolver.h without io_uring: the Resolver driven by poll(2) against a scripted DNS
// server in this process, so answers real servers rarely give on demand (SERVFAIL,
// malformed records, silence) and the cache's clock are under the test's control. The
// real-server tests are in tests/mta/dns/.
#include "dns/resolver.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dns/message.h"
#include "tests/support/dns_packet.h"

namespace ringmail::dns {
namespace {

using namespace std::chrono_literals;
using testing::Bytes;
using testing::Packet;

// A UDP DNS server on 127.0.0.1 whose answers a test function writes. It answers with
// the query's id and question; returning an empty Bytes means "say nothing".
class ScriptedDns {
 public:
  using Handler = std::function<Bytes(uint16_t id, const std::string& name, uint16_t type)>;
  explicit ScriptedDns(Handler h) : handler_(std::move(h)) {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
  }
  ~ScriptedDns() { ::close(fd_); }
  int fd() const { return fd_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int queries() const { return queries_; }
  std::vector<std::string> log() const { return log_; }

  void serve() {
    for (;;) {
      uint8_t buf[1500];
      sockaddr_in from{};
      socklen_t len = sizeof from;
      ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n <= 0) return;
      auto q = parse_message({buf, static_cast<size_t>(n)});
      if (!q) continue;
      ++queries_;
      log_.push_back(std::to_string(q->question_type) + " " + q->question_name);
      Bytes reply = handler_(q->header.id, q->question_name, q->question_type);
      if (reply.empty()) continue;
      sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }

 private:
  Handler handler_;
  int fd_ = -1;
  uint16_t port_ = 0;
  int queries_ = 0;
  std::vector<std::string> log_;
};

const Resolver::TimePoint t0 = Resolver::TimePoint() + 1000h;

// Owns a Resolver pointed at `dns` and drives it with poll(2).
class Driver {
 public:
  explicit Driver(ScriptedDns& dns, Resolver::Options o = {}) : dns_(dns) {
    o.servers = {dns.address()};
    if (o.timeout == Resolver::Options{}.timeout) o.timeout = 300ms;
    o.tries = 1;
    o.seed = 7;
    o.now = [this] { return now; };
    auto r = Resolver::create(o, [this](int fd, bool rd, bool wr) {
      if (!rd && !wr) {
        socks_.erase(fd);
      } else {
        socks_[fd] = {rd, wr};
      }
    });
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    if (r.ok()) resolver = std::move(r.value());
  }

  ~Driver() { resolver.reset(); }  // its socket callbacks still reach socks_

  // Runs until done() or 5 s.
  void run(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      std::vector<pollfd> p;
      p.push_back({dns_.fd(), POLLIN, 0});
      for (auto& [fd, rw] : socks_)
        p.push_back(
            {fd, static_cast<short>((rw.first ? POLLIN : 0) | (rw.second ? POLLOUT : 0)), 0});
      int wait = 20;
      if (auto t = resolver->next_timeout())
        wait = std::min<int>(wait, static_cast<int>(t->count() / 1000000) + 1);
      ::poll(p.data(), p.size(), wait);
      if (p[0].revents) dns_.serve();
      for (size_t i = 1; i < p.size(); ++i) {
        if (!p[i].revents) continue;
        bool r = p[i].revents & (POLLIN | POLLERR | POLLHUP);
        bool w = p[i].revents & (POLLOUT | POLLERR | POLLHUP);
        resolver->process(r ? p[i].fd : -1, w ? p[i].fd : -1);
      }
      resolver->process_timeouts();
    }
  }

  size_t open_sockets() const { return socks_.size(); }

  Resolver::TimePoint now = t0;
  std::unique_ptr<Resolver> resolver;

 private:
  ScriptedDns& dns_;
  std::map<int, std::pair<bool, bool>> socks_;
};

// example.test: MX 10 mx1, MX 20 mx2 (TTL 60); implicit.test: A only; gone.test:
// NXDOMAIN; every negative answer carries an SOA with MINIMUM 30.
Bytes zone(uint16_t id, const std::string& name, uint16_t type) {
  Bytes soa = testing::soa_rdata("ns.test", "hostmaster.test", 30);
  if (name == "example.test" && type == kTypeMx)
    return Packet(0, id)
        .question(name, type)
        .answer(name, kTypeMx, 60, testing::mx_rdata(10, "mx1.example.test"))
        .answer(name, kTypeMx, 60, testing::mx_rdata(20, "mx2.example.test"))
        .build();
  if (name == "implicit.test" && type == kTypeA)
    return Packet(0, id)
        .question(name, type)
        .answer(name, kTypeA, 120, testing::a_rdata("192.0.2.4"))
        .build();
  if (name == "gone.test")
    return Packet(kRcodeNxDomain, id)
        .question(name, type)
        .authority("test", kTypeSoa, 300, soa)
        .build();
  return Packet(0, id).question(name, type).authority("test", kTypeSoa, 300, soa).build();
}

struct MxOutcome {
  bool called = false;
  std::optional<Result<MxAnswer>> result;
  Resolver::MxCallback cb() {
    return [this](Result<MxAnswer> r) {
      called = true;
      result.emplace(std::move(r));
    };
  }
};

TEST(Resolver, MxAnswerThenCacheHitThenExpiry) {
  ScriptedDns dns(zone);
  Driver d(dns);
  MxOutcome first;
  d.resolver->lookup_mx("example.test", first.cb());
  EXPECT_FALSE(first.called);  // needs the network
  d.run([&] { return first.called; });
  ASSERT_TRUE(first.result && first.result->ok()) << first.result->error().message;
  EXPECT_EQ(first.result->value().hosts.size(), 2u);
  EXPECT_EQ(first.result->value().hosts[0].name, "mx1.example.test");
  EXPECT_EQ(first.result->value().ttl, 60u);
  EXPECT_EQ(dns.queries(), 1);
  EXPECT_EQ(d.open_sockets(), 0u);  // c-ares closes its sockets when idle

  d.now = t0 + 59s;
  MxOutcome cached;
  d.resolver->lookup_mx("EXAMPLE.test.", cached.cb());
  EXPECT_TRUE(cached.called);  // answered before lookup_mx returned
  ASSERT_TRUE(cached.result->ok());
  EXPECT_EQ(dns.queries(), 1);
  EXPECT_EQ(d.resolver->stats().cache_hits, 1u);

  d.now = t0 + 61s;
  MxOutcome again;
  d.resolver->lookup_mx("example.test", again.cb());
  d.run([&] { return again.called; });
  ASSERT_TRUE(again.result->ok());
  EXPECT_EQ(dns.queries(), 2);
  EXPECT_EQ(d.resolver->stats().queries_sent, 2u);
}

TEST(Resolver, NxDomainIsCachedForTheSoaMinimum) {
  ScriptedDns dns(zone);
  Driver d(dns);
  MxOutcome a;
  d.resolver->lookup_mx("gone.test", a.cb());
  d.run([&] { return a.called; });
  ASSERT_FALSE(a.result->ok());
  EXPECT_EQ(a.result->error().code, kNxDomain);
  d.now = t0 + 29s;
  MxOutcome b;
  d.resolver->lookup_mx("gone.test", b.cb());
  ASSERT_TRUE(b.called);
  EXPECT_EQ(b.result->error().code, kNxDomain);
  EXPECT_EQ(dns.queries(), 1);
  d.now = t0 + 31s;
  MxOutcome c;
  d.resolver->lookup_mx("gone.test", c.cb());
  d.run([&] { return c.called; });
  EXPECT_EQ(dns.queries(), 2);
}

TEST(Resolver, ImplicitMxAsksForBothFamiliesAndCachesThem) {
  ScriptedDns dns(zone);
  Driver d(dns);
  MxOutcome m;
  d.resolver->lookup_mx("implicit.test", m.cb());
  d.run([&] { return m.called; });
  ASSERT_TRUE(m.result->ok()) << m.result->error().message;
  EXPECT_TRUE(m.result->value().implicit);
  EXPECT_EQ(m.result->value().hosts[0].name, "implicit.test");
  EXPECT_EQ(dns.queries(), 3);  // MX, A, AAAA
  bool called = false;
  d.resolver->lookup_addresses("implicit.test", [&](Result<std::vector<Address>> r) {
    called = true;
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ((*r)[0].text(), "192.0.2.4");
    EXPECT_EQ((*r)[0].ttl, 120u);
  });
  EXPECT_TRUE(called);
  EXPECT_EQ(dns.queries(), 3);
}

TEST(Resolver, NoMxAndNoAddressIsNoData) {
  ScriptedDns dns(zone);
  Driver d(dns);
  MxOutcome m;
  d.resolver->lookup_mx("txt-only.test", m.cb());
  d.run([&] { return m.called; });
  ASSERT_FALSE(m.result->ok());
  EXPECT_EQ(m.result->error().code, kNoData);
}

TEST(Resolver, ServfailIsTemporaryAndNotCached) {
  ScriptedDns dns([](uint16_t id, const std::string& n, uint16_t t) {
    return Packet(kRcodeServFail, id).question(n, t).build();
  });
  Driver d(dns);
  for (int i = 0; i < 2; ++i) {
    MxOutcome m;
    d.resolver->lookup_mx("example.test", m.cb());
    d.run([&] { return m.called; });
    ASSERT_FALSE(m.result->ok());
    EXPECT_EQ(m.result->error().code, kTemporary);
    EXPECT_NE(m.result->error().message.find("SERVFAIL"), std::string::npos)
        << m.result->error().message;
  }
  EXPECT_EQ(dns.queries(), 2);
}

TEST(Resolver, MalformedRecordIsTemporary) {
  ScriptedDns dns([](uint16_t id, const std::string& n, uint16_t t) {
    return Packet(0, id).question(n, t).answer(n, kTypeMx, 60, Bytes{0, 10, 0xC0}).build();
  });
  Driver d(dns);
  MxOutcome m;
  d.resolver->lookup_mx("example.test", m.cb());
  d.run([&] { return m.called; });
  ASSERT_FALSE(m.result->ok());
  EXPECT_EQ(m.result->error().code, kTemporary);
}

TEST(Resolver, SilenceTimesOut) {
  ScriptedDns dns([](uint16_t, const std::string&, uint16_t) { return Bytes{}; });
  Resolver::Options o;
  o.timeout = 100ms;
  Driver d(dns, o);
  MxOutcome m;
  d.resolver->lookup_mx("example.test", m.cb());
  ASSERT_TRUE(d.resolver->next_timeout().has_value());
  d.run([&] { return m.called; });
  ASSERT_TRUE(m.called);
  EXPECT_EQ(m.result->error().code, kTemporary);
  EXPECT_NE(m.result->error().message.find("timed out"), std::string::npos);
  EXPECT_FALSE(d.resolver->next_timeout().has_value());
}

TEST(Resolver, IdenticalLookupsShareOneQuery) {
  ScriptedDns dns(zone);
  Driver d(dns);
  std::vector<MxOutcome> outs(5);
  for (auto& o : outs) d.resolver->lookup_mx("example.test", o.cb());
  d.run([&] {
    for (auto& o : outs)
      if (!o.called) return false;
    return true;
  });
  for (auto& o : outs) ASSERT_TRUE(o.result->ok());
  EXPECT_EQ(dns.queries(), 1);
  EXPECT_EQ(d.resolver->stats().coalesced, 4u);
}

TEST(Resolver, InvalidNamesFailAtOnceWithoutAQuery) {
  ScriptedDns dns(zone);
  Driver d(dns);
  for (const char* bad : {"", "a..b", "-x.test", "exa mple.test", "[192.0.2.1]"}) {
    MxOutcome m;
    d.resolver->lookup_mx(bad, m.cb());
    ASSERT_TRUE(m.called) << bad;
    EXPECT_EQ(m.result->error().code, kNxDomain);
    bool called = false;
    d.resolver->lookup_addresses(bad, [&](Result<std::vector<Address>> r) {
      called = true;
      EXPECT_FALSE(r.ok());
    });
    EXPECT_TRUE(called);
  }
  EXPECT_EQ(d.resolver->stats().queries_sent, 0u);
}

TEST(Resolver, CallbacksMayStartLookups) {
  ScriptedDns dns(zone);
  Driver d(dns);
  bool done = false;
  d.resolver->lookup_mx("example.test", [&](Result<MxAnswer> r) {
    ASSERT_TRUE(r.ok());
    d.resolver->lookup_mx("example.test", [&](Result<MxAnswer> again) {
      EXPECT_TRUE(again.ok());  // a cache hit from inside a callback
      done = true;
    });
  });
  d.run([&] { return done; });
  EXPECT_TRUE(done);
}

TEST(Resolver, CancelAllAnswersEveryoneAndRefusesLaterLookups) {
  ScriptedDns dns([](uint16_t, const std::string&, uint16_t) { return Bytes{}; });
  Driver d(dns);
  MxOutcome m;
  d.resolver->lookup_mx("example.test", m.cb());
  EXPECT_GT(d.open_sockets(), 0u);
  d.resolver->cancel_all();
  ASSERT_TRUE(m.called);
  EXPECT_EQ(m.result->error().code, kTemporary);
  EXPECT_NE(m.result->error().message.find("shut down"), std::string::npos);
  EXPECT_EQ(d.open_sockets(), 0u);
  MxOutcome later;
  d.resolver->lookup_mx("example.test", later.cb());
  ASSERT_TRUE(later.called);
  EXPECT_EQ(later.result->error().code, kTemporary);
}

TEST(Resolver, DestroyedWithLookupsPendingDropsThem) {
  ScriptedDns dns([](uint16_t, const std::string&, uint16_t) { return Bytes{}; });
  auto d = std::make_unique<Driver>(dns);
  MxOutcome m;
  d->resolver->lookup_mx("example.test", m.cb());
  d->resolver->lookup_addresses("h.example.test", [](Result<std::vector<Address>>) {
    ADD_FAILURE() << "called during destruction";
  });
  d.reset();  // ASan checks that nothing leaks
  EXPECT_FALSE(m.called);
}

TEST(Resolver, BadServerListFailsCreate) {
  Resolver::Options o;
  o.servers = {"dns.example.test"};
  auto r = Resolver::create(o, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("dns.example.test"), std::string::npos);
}

}  // namespace
}  // namespace ringmail::dns
