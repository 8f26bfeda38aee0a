// auth/relay_policy.h: local vs relay vs denied, for plain recipients and for every
// relay trick an open-relay test tries.
#include "auth/relay_policy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/un.h>

#include <cstring>

namespace ringmail::auth {
namespace {

conf::Cidr cidr(const char* text) {
  auto c = conf::parse_cidr(text);
  EXPECT_TRUE(c.ok()) << text;
  return c.ok() ? c.value() : conf::Cidr{};
}

// A peer address of either family.
struct Peer {
  sockaddr_storage ss{};
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&ss); }
};

Peer peer(const char* ip) {
  Peer p;
  if (std::strchr(ip, ':')) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&p.ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(40000);
    EXPECT_EQ(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1) << ip;
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&p.ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(40000);
    EXPECT_EQ(inet_pton(AF_INET, ip, &s4->sin_addr), 1) << ip;
  }
  return p;
}

Path path(std::string_view text) {
  size_t used = 0;
  auto p = parse_path(text, /*allow_null=*/true, /*allow_utf8=*/true, &used);
  EXPECT_TRUE(p.ok()) << text << ": " << (p.ok() ? "" : p.error().message);
  return p.ok() ? std::move(p).value() : Path{};
}

class RelayPolicyTest : public ::testing::Test {
 protected:
  RelayPolicy policy_{{"example.test", "localhost"},
                      {cidr("10.0.0.0/8"), cidr("192.0.2.7"), cidr("2001:db8::/32")}};
  Peer outsider_ = peer("203.0.113.9");
  Peer trusted_ = peer("10.20.30.40");

  RcptDecision from_outsider(std::string_view rcpt) {
    return policy_.check(path(rcpt), outsider_.get(), /*authenticated=*/false);
  }
  RcptDecision from_trusted(std::string_view rcpt) {
    return policy_.check(path(rcpt), trusted_.get(), false);
  }
  RcptDecision authenticated(std::string_view rcpt) {
    return policy_.check(path(rcpt), outsider_.get(), true);
  }
};

TEST_F(RelayPolicyTest, LocalRecipientIsLocalForEveryone) {
  for (const char* r : {"<user@example.test>", "<first.last@example.test>",
                        "<postmaster@localhost>", "<user+tag@example.test>"}) {
    EXPECT_EQ(from_outsider(r), RcptDecision::local) << r;
    EXPECT_EQ(from_trusted(r), RcptDecision::local) << r;
    EXPECT_EQ(authenticated(r), RcptDecision::local) << r;
    EXPECT_EQ(policy_.check(path(r), nullptr, false), RcptDecision::local) << r;
  }
}

TEST_F(RelayPolicyTest, NothingWithoutADomainIsLocalOrRelayed) {
  // The parser makes only "<Postmaster>" without a domain, and the session gives it the
  // first local domain before asking; anything else domain-less is refused, even from
  // trusted or authenticated clients.
  Path pm;
  pm.mailbox.local = "Postmaster";
  EXPECT_EQ(policy_.check(pm, outsider_.get(), false), RcptDecision::denied);
  EXPECT_EQ(policy_.check(pm, trusted_.get(), false), RcptDecision::denied);
  Path other;
  other.mailbox.local = "user";
  EXPECT_EQ(policy_.check(other, outsider_.get(), false), RcptDecision::denied);
  EXPECT_EQ(policy_.check(other, trusted_.get(), false), RcptDecision::denied);
  EXPECT_EQ(policy_.check(other, outsider_.get(), true), RcptDecision::denied);
}

TEST_F(RelayPolicyTest, UpperCaseDomainIsLocalThroughTheParser) {
  EXPECT_EQ(from_outsider("<User@EXAMPLE.TEST>"), RcptDecision::local);
  EXPECT_EQ(from_outsider("<user@Example.Test>"), RcptDecision::local);
  EXPECT_EQ(from_outsider("<user@LOCALHOST>"), RcptDecision::local);
  // The policy itself compares lower-cased names only.
  EXPECT_TRUE(policy_.is_local_domain("example.test"));
  EXPECT_FALSE(policy_.is_local_domain("EXAMPLE.TEST"));
}

TEST_F(RelayPolicyTest, RemoteRecipient) {
  EXPECT_EQ(from_outsider("<user@remote.example>"), RcptDecision::denied);
  EXPECT_EQ(from_trusted("<user@remote.example>"), RcptDecision::relay);
  EXPECT_EQ(authenticated("<user@remote.example>"), RcptDecision::relay);
  EXPECT_EQ(policy_.check(path("<user@remote.example>"), nullptr, false), RcptDecision::denied);
  EXPECT_EQ(policy_.check(path("<user@remote.example>"), nullptr, true), RcptDecision::relay);
}

TEST_F(RelayPolicyTest, LookalikeDomainsAreNotLocal) {
  for (const char* r :
       {"<user@sub.example.test>", "<user@example.test.evil.example>", "<user@xexample.test>",
        "<user@example.tes>", "<user@example>", "<user@localhost.localdomain>"})
    EXPECT_EQ(from_outsider(r), RcptDecision::denied) << r;
}

TEST_F(RelayPolicyTest, PercentHack) {
  const char* r = "<user%remote.example@example.test>";
  EXPECT_FALSE(policy_.is_local_recipient(path(r)));
  EXPECT_EQ(from_outsider(r), RcptDecision::denied);
  EXPECT_EQ(from_outsider("<user%remote.example%example.test@example.test>"), RcptDecision::denied);
  EXPECT_EQ(from_outsider("<%@example.test>"), RcptDecision::denied);
  // A client allowed to relay may send it; it is still not a local mailbox.
  EXPECT_EQ(from_trusted(r), RcptDecision::relay);
  EXPECT_EQ(authenticated(r), RcptDecision::relay);
}

TEST_F(RelayPolicyTest, BangPath) {
  for (const char* r :
       {"<remote.example!user@example.test>", "<a!b!user@example.test>", "<user!@example.test>"}) {
    EXPECT_FALSE(policy_.is_local_recipient(path(r))) << r;
    EXPECT_EQ(from_outsider(r), RcptDecision::denied) << r;
    EXPECT_EQ(authenticated(r), RcptDecision::relay) << r;
  }
}

TEST_F(RelayPolicyTest, QuotedLocalPartHidingAnAt) {
  for (const char* r :
       {"<\"user@remote.example\"@example.test>", "<\"user%remote.example\"@example.test>",
        "<\"remote.example!user\"@example.test>", "<\"user\\@remote.example\"@example.test>",
        "<\"@remote.example:user@remote.example\"@example.test>"}) {
    Path p = path(r);
    EXPECT_TRUE(p.mailbox.quoted_local) << r;
    EXPECT_EQ(p.mailbox.domain, "example.test") << r;
    EXPECT_FALSE(policy_.is_local_recipient(p)) << r;
    EXPECT_EQ(from_outsider(r), RcptDecision::denied) << r;
    EXPECT_EQ(from_trusted(r), RcptDecision::relay) << r;
  }
}

TEST_F(RelayPolicyTest, SourceRoute) {
  // Through us to a remote host, and through a remote host to us: neither is local.
  for (const char* r :
       {"<@example.test:user@remote.example>", "<@remote.example:user@example.test>",
        "<@example.test,@localhost:user@example.test>"}) {
    Path p = path(r);
    EXPECT_TRUE(p.source_route) << r;
    EXPECT_FALSE(policy_.is_local_recipient(p)) << r;
    EXPECT_EQ(from_outsider(r), RcptDecision::denied) << r;
    EXPECT_EQ(authenticated(r), RcptDecision::relay) << r;
  }
}

TEST_F(RelayPolicyTest, AddressLiteral) {
  for (const char* r : {"<user@[192.0.2.1]>", "<postmaster@[127.0.0.1]>", "<user@[IPv6:::1]>",
                        "<user@[10.0.0.1]>"}) {
    EXPECT_FALSE(policy_.is_local_recipient(path(r))) << r;
    EXPECT_EQ(from_outsider(r), RcptDecision::denied) << r;
    EXPECT_EQ(from_trusted(r), RcptDecision::relay) << r;
  }
}

TEST_F(RelayPolicyTest, TrailingDotDomain) {
  // The parser refuses a trailing dot outright...
  size_t used = 0;
  auto parsed = parse_path("<user@example.test.>", false, false, &used);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().code, 501);
  // ...and the policy, handed one anyway, reads it as the same (local) domain.
  Path p;
  p.mailbox.local = "user";
  p.mailbox.domain = "example.test.";
  EXPECT_TRUE(policy_.is_local_domain("example.test."));
  EXPECT_EQ(policy_.check(p, outsider_.get(), false), RcptDecision::local);
  p.mailbox.domain = "example.test..";
  EXPECT_FALSE(policy_.is_local_domain("example.test.."));
  EXPECT_EQ(policy_.check(p, outsider_.get(), false), RcptDecision::denied);
  EXPECT_FALSE(policy_.is_local_domain("."));
  EXPECT_FALSE(policy_.is_local_domain(""));
}

TEST_F(RelayPolicyTest, HandBuiltPathsWithTricks) {
  Path base;
  base.mailbox.local = "user";
  base.mailbox.domain = "example.test";
  EXPECT_EQ(policy_.check(base, outsider_.get(), false), RcptDecision::local);
  Path at = base;
  at.mailbox.local = "user@remote.example";  // an unquoted '@' that got through
  EXPECT_EQ(policy_.check(at, outsider_.get(), false), RcptDecision::denied);
  Path routed = base;
  routed.source_route = true;
  EXPECT_EQ(policy_.check(routed, outsider_.get(), false), RcptDecision::denied);
  Path literal = base;
  literal.mailbox.address_literal = true;
  EXPECT_EQ(policy_.check(literal, outsider_.get(), false), RcptDecision::denied);
  Path quoted = base;
  quoted.mailbox.quoted_local = true;
  EXPECT_EQ(policy_.check(quoted, outsider_.get(), false), RcptDecision::denied);
}

TEST_F(RelayPolicyTest, NullRecipientIsAlwaysDenied) {
  Path null = path("<>");
  ASSERT_TRUE(null.null);
  EXPECT_FALSE(policy_.is_local_recipient(null));
  EXPECT_EQ(policy_.check(null, outsider_.get(), false), RcptDecision::denied);
  EXPECT_EQ(policy_.check(null, trusted_.get(), false), RcptDecision::denied);
  EXPECT_EQ(policy_.check(null, outsider_.get(), true), RcptDecision::denied);
}

TEST_F(RelayPolicyTest, TrustedNetworksV4) {
  Path remote = path("<user@remote.example>");
  for (const char* ip : {"10.0.0.0", "10.0.0.1", "10.255.255.255", "192.0.2.7"}) {
    Peer p = peer(ip);
    EXPECT_TRUE(policy_.is_trusted(p.get())) << ip;
    EXPECT_EQ(policy_.check(remote, p.get(), false), RcptDecision::relay) << ip;
  }
  for (const char* ip :
       {"11.0.0.1", "9.255.255.255", "192.0.2.6", "192.0.2.8", "127.0.0.1", "0.0.0.0"}) {
    Peer p = peer(ip);
    EXPECT_FALSE(policy_.is_trusted(p.get())) << ip;
    EXPECT_EQ(policy_.check(remote, p.get(), false), RcptDecision::denied) << ip;
  }
}

TEST_F(RelayPolicyTest, TrustedNetworksV6) {
  Path remote = path("<user@remote.example>");
  for (const char* ip : {"2001:db8::1", "2001:db8:ffff:ffff::1", "2001:db8::"}) {
    Peer p = peer(ip);
    EXPECT_TRUE(policy_.is_trusted(p.get())) << ip;
    EXPECT_EQ(policy_.check(remote, p.get(), false), RcptDecision::relay) << ip;
  }
  for (const char* ip : {"2001:db9::1", "2001:db7:ffff::1", "::1", "fe80::1", "::"}) {
    Peer p = peer(ip);
    EXPECT_FALSE(policy_.is_trusted(p.get())) << ip;
    EXPECT_EQ(policy_.check(remote, p.get(), false), RcptDecision::denied) << ip;
  }
}

TEST_F(RelayPolicyTest, V4MappedV6PeersMatchV4Networks) {
  Path remote = path("<user@remote.example>");
  for (const char* ip : {"::ffff:10.1.2.3", "::ffff:192.0.2.7"}) {
    Peer p = peer(ip);
    EXPECT_TRUE(policy_.is_trusted(p.get())) << ip;
    EXPECT_EQ(policy_.check(remote, p.get(), false), RcptDecision::relay) << ip;
  }
  for (const char* ip : {"::ffff:11.1.2.3", "::ffff:192.0.2.8", "::10.1.2.3"}) {
    Peer p = peer(ip);
    EXPECT_FALSE(policy_.is_trusted(p.get())) << ip;
    EXPECT_EQ(policy_.check(remote, p.get(), false), RcptDecision::denied) << ip;
  }
}

TEST_F(RelayPolicyTest, NoPeerOrUnixPeerIsNotTrusted) {
  EXPECT_FALSE(policy_.is_trusted(nullptr));
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_FALSE(policy_.is_trusted(reinterpret_cast<const sockaddr*>(&un)));
}

TEST(RelayPolicy, EmptyPolicyDeniesAllButAuthenticated) {
  RelayPolicy none({}, {});
  Path p = path("<user@example.test>");
  Peer any = peer("10.0.0.1");
  EXPECT_EQ(none.check(p, any.get(), false), RcptDecision::denied);
  EXPECT_EQ(none.check(p, any.get(), true), RcptDecision::relay);
}

TEST(RelayPolicy, OpenNetworkTrustsEveryone) {
  // 0.0.0.0/0 is an open relay by configuration; the policy does what it is told.
  RelayPolicy open({"example.test"}, {cidr("0.0.0.0/0")});
  Peer p = peer("203.0.113.1");
  EXPECT_EQ(open.check(path("<a@remote.example>"), p.get(), false), RcptDecision::relay);
  Peer v6 = peer("2001:db8::1");
  EXPECT_EQ(open.check(path("<a@remote.example>"), v6.get(), false), RcptDecision::denied);
}

TEST(RelayPolicy, FromConfig) {
  auto c = conf::load_string(
      "[relay]\nlocal_domains = [\"Mail.Example.TEST\"]\ntrusted_networks = "
      "[\"198.51.100.0/24\"]\n",
      "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  RelayPolicy policy(c.value());
  Peer in = peer("198.51.100.77");
  Peer out = peer("198.51.101.1");
  EXPECT_EQ(policy.check(path("<u@mail.example.test>"), out.get(), false), RcptDecision::local);
  EXPECT_EQ(policy.check(path("<u@MAIL.example.test>"), out.get(), false), RcptDecision::local);
  EXPECT_EQ(policy.check(path("<u@remote.example>"), in.get(), false), RcptDecision::relay);
  EXPECT_EQ(policy.check(path("<u@remote.example>"), out.get(), false), RcptDecision::denied);
}

}  // namespace
}  // namespace ringmail::auth
