// dns/servers.h: `dns.servers` entries, the way tests point the resolver at a loopback
// DNS server.
#include "dns/servers.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

namespace ringmail::dns {
namespace {

TEST(DnsServers, Ipv4WithAndWithoutPort) {
  auto s = parse_server("127.0.0.1:5353");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->family, AF_INET);
  EXPECT_EQ(s->port, 5353);
  EXPECT_EQ(s->addr[0], 127);
  EXPECT_EQ(s->addr[3], 1);
  auto d = parse_server("192.0.2.53");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->port, 53);
}

TEST(DnsServers, Ipv6InBrackets) {
  auto s = parse_server("[::1]:5353");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->family, AF_INET6);
  EXPECT_EQ(s->port, 5353);
  EXPECT_EQ(s->addr[15], 1);
  auto d = parse_server("[2001:db8::53]");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->port, 53);
}

TEST(DnsServers, Rejects) {
  for (const char* bad :
       {"", "localhost", "localhost:53", "ns.example.test", "::1", "::1:53", "[::1", "[::1]53",
        "[127.0.0.1]:53", "[::1]:", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:+53",
        "127.0.0.1:53x", "127.0.0.1:-1", "256.0.0.1", "1.2.3", " 127.0.0.1"}) {
    auto s = parse_server(bad);
    EXPECT_FALSE(s.ok()) << '"' << bad << '"';
    if (!s.ok()) {
      EXPECT_NE(s.error().message.find("dns server"), std::string::npos);
    }
  }
  EXPECT_FALSE(parse_server(std::string_view("127.0.0.1\0", 10)).ok());
}

TEST(DnsServers, ListFailsOnTheFirstBadEntry) {
  auto ok = parse_servers({"127.0.0.1:5353", "[::1]:53"});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->size(), 2u);
  auto bad = parse_servers({"127.0.0.1:5353", "nameserver"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("\"nameserver\""), std::string::npos);
  auto none = parse_servers({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace ringmail::dns
