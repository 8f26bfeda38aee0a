#include "conf/config.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/un.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace ringmail::conf {
namespace {

using std::chrono::hours;
using std::chrono::minutes;

// Loads text that must be valid; a failure prints the loader's messages.
Config must_load(std::string_view text) {
  Result<Config> r = load_string(text, "t.toml");
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? std::move(r).value() : Config{};
}

// The loader's error text for text that must be invalid.
std::string errors(std::string_view text) {
  Result<Config> r = load_string(text, "t.toml");
  if (r.ok()) return "(loaded without error)";
  return r.error().message;
}

sockaddr_in v4(const char* ip, uint16_t port = 0) {
  sockaddr_in s{};
  s.sin_family = AF_INET;
  s.sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, ip, &s.sin_addr), 1) << ip;
  return s;
}

sockaddr_in6 v6(const char* ip, uint16_t port = 0) {
  sockaddr_in6 s{};
  s.sin6_family = AF_INET6;
  s.sin6_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET6, ip, &s.sin6_addr), 1) << ip;
  return s;
}

const sockaddr* sa(const sockaddr_in& s) {
  return reinterpret_cast<const sockaddr*>(&s);
}
const sockaddr* sa(const sockaddr_in6& s) {
  return reinterpret_cast<const sockaddr*>(&s);
}

bool has(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}
bool starts(std::string_view text, std::string_view prefix) {
  return text.starts_with(prefix);
}

std::filesystem::path repo_root() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

TEST(ConfigTest, DefaultConfigLoads) {
  Config c = must_load(default_config_text());
  EXPECT_EQ(c.server.data_dir, "./ringmail-data");
  EXPECT_EQ(c.server.threads, 0u);
  EXPECT_FALSE(c.server.hostname.empty());
  EXPECT_EQ(c.relay.local_domains, std::vector<std::string>{"localhost"});
  EXPECT_TRUE(c.relay.trusted_networks.empty());
  EXPECT_FALSE(c.relay.reject_unknown_recipients);
  EXPECT_FALSE(c.auth.allow_plaintext);
  EXPECT_TRUE(c.tls.cert.empty());
  EXPECT_TRUE(c.tls.key.empty());
  EXPECT_TRUE(c.dns.servers.empty());
  EXPECT_EQ(c.delivery.smtp_port, 25);

  struct Want {
    const char* address;
    uint16_t port;
    Protocol protocol;
  };
  const Want want[] = {{"127.0.0.1:2525", 2525, Protocol::smtp},
                       {"127.0.0.1:2587", 2587, Protocol::submission},
                       {"127.0.0.1:2465", 2465, Protocol::submissions},
                       {"127.0.0.1:2110", 2110, Protocol::pop3},
                       {"127.0.0.1:2995", 2995, Protocol::pop3s},
                       {"127.0.0.1:2143", 2143, Protocol::imap},
                       {"127.0.0.1:2993", 2993, Protocol::imaps}};
  ASSERT_EQ(c.listen.size(), std::size(want));
  for (size_t i = 0; i < std::size(want); ++i) {
    const Listen& l = c.listen[i];
    EXPECT_EQ(l.address, want[i].address);
    EXPECT_EQ(l.protocol, want[i].protocol) << l.address;
    ASSERT_EQ(l.sockaddr_len, sizeof(sockaddr_in));
    const auto& sin = reinterpret_cast<const sockaddr_in&>(l.sockaddr);
    EXPECT_EQ(sin.sin_family, AF_INET);
    EXPECT_EQ(ntohs(sin.sin_port), want[i].port);
    EXPECT_EQ(ntohl(sin.sin_addr.s_addr), 0x7f000001u);
  }
}

TEST(ConfigTest, DefaultsWhenKeysAreLeftOut) {
  Config c = must_load("");
  EXPECT_TRUE(c.listen.empty());  // allowed here; ringmaild complains
  EXPECT_EQ(c.server.data_dir, "./ringmail-data");
  EXPECT_FALSE(c.server.hostname.empty());
  EXPECT_EQ(c.limits.max_message_size, 52428800u);
  EXPECT_EQ(c.limits.max_recipients, 1000u);
  EXPECT_EQ(c.limits.max_line_length, 1000u);
  EXPECT_EQ(c.limits.command_timeout, Seconds(300));
  EXPECT_EQ(c.delivery.retry_intervals,
            (std::vector<Seconds>{minutes(5), minutes(10), minutes(20), minutes(40), hours(1),
                                  hours(2), hours(4)}));
  EXPECT_EQ(c.delivery.max_lifetime, hours(5 * 24));
  EXPECT_EQ(c.delivery.delay_notice_after, hours(4));
  EXPECT_EQ(c.store.backend, "lmdb");
}

TEST(ConfigTest, ExampleFileLoads) {
  std::filesystem::path p = repo_root() / "conf" / "example.toml";
  Result<Config> r = load_file(p.string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Config& c = r.value();
  EXPECT_EQ(c.server.hostname, "mx.example.test");
  EXPECT_EQ(c.listen.size(), 8u);
  EXPECT_EQ(c.relay.trusted_networks.size(), 4u);
  EXPECT_EQ(c.dns.servers, (std::vector<std::string>{"127.0.0.1:53", "[::1]:53"}));
  EXPECT_EQ(c.tls.cert, "/etc/ringmail/cert.pem");
}

TEST(ConfigTest, EveryKeyIsParsed) {
  Config c = must_load(R"(
[server]
hostname = "mx.example.test"
data_dir = "/tmp/rm"
threads = 3

[[listen]]
address = "[::1]:2525"
protocol = "submissions"

[tls]
cert = "/c.pem"
key = "/k.pem"

[relay]
local_domains = ["Example.TEST", "b.example", "example.test"]
trusted_networks = ["10.1.2.3/8", "::1"]
reject_unknown_recipients = true

[auth]
allow_plaintext = true

[limits]
max_message_size = 2048
max_recipients = 100
max_connections = 7
max_connections_per_ip = 3
max_line_length = 4096
max_errors = 5
command_timeout = "2m"
data_timeout = 90
shutdown_timeout = "15"
reject_bare_lf = false
max_queue_size = 1048576
max_inflight_bytes = 4096

[delivery]
smtp_port = 2526
relayhost = "smtp.example.net:587"
retry_intervals = ["1s", 2, "3m"]
max_lifetime = "2d"
delay_notice_after = "1h"

[dns]
servers = ["127.0.0.1:5353", "[::1]", "[::1]:53", "192.0.2.1"]

[store]
backend = "maildir"
)");
  EXPECT_EQ(c.server.hostname, "mx.example.test");
  EXPECT_EQ(c.server.data_dir, "/tmp/rm");
  EXPECT_EQ(c.server.threads, 3u);
  ASSERT_EQ(c.listen.size(), 1u);
  EXPECT_EQ(c.listen[0].protocol, Protocol::submissions);
  EXPECT_EQ(c.tls.cert, "/c.pem");
  EXPECT_EQ(c.tls.key, "/k.pem");
  EXPECT_EQ(c.relay.local_domains, (std::vector<std::string>{"example.test", "b.example"}));
  ASSERT_EQ(c.relay.trusted_networks.size(), 2u);
  EXPECT_TRUE(c.relay.reject_unknown_recipients);
  EXPECT_FALSE(c.relay.trusted_networks[0].v6);
  EXPECT_EQ(c.relay.trusted_networks[0].prefix, 8u);
  EXPECT_EQ(c.relay.trusted_networks[0].addr[0], 10);
  EXPECT_EQ(c.relay.trusted_networks[0].addr[1], 0);  // host bits masked off
  EXPECT_TRUE(c.relay.trusted_networks[1].v6);
  EXPECT_EQ(c.relay.trusted_networks[1].prefix, 128u);
  EXPECT_TRUE(c.auth.allow_plaintext);
  EXPECT_EQ(c.limits.max_message_size, 2048u);
  EXPECT_EQ(c.limits.max_recipients, 100u);
  EXPECT_EQ(c.limits.max_connections, 7u);
  EXPECT_EQ(c.limits.max_connections_per_ip, 3u);
  EXPECT_EQ(c.limits.max_line_length, 4096u);
  EXPECT_EQ(c.limits.max_errors, 5u);
  EXPECT_EQ(c.limits.command_timeout, Seconds(120));
  EXPECT_EQ(c.limits.data_timeout, Seconds(90));
  EXPECT_EQ(c.limits.shutdown_timeout, Seconds(15));
  EXPECT_FALSE(c.limits.reject_bare_lf);
  EXPECT_EQ(c.limits.max_queue_size, 1048576u);
  EXPECT_EQ(c.limits.max_inflight_bytes, 4096u);
  EXPECT_EQ(c.delivery.smtp_port, 2526);
  EXPECT_EQ(c.delivery.relayhost, "smtp.example.net:587");
  EXPECT_EQ(c.delivery.retry_intervals,
            (std::vector<Seconds>{Seconds(1), Seconds(2), Seconds(180)}));
  EXPECT_EQ(c.delivery.max_lifetime, hours(48));
  EXPECT_EQ(c.delivery.delay_notice_after, hours(1));
  EXPECT_EQ(c.dns.servers,
            (std::vector<std::string>{"127.0.0.1:5353", "[::1]", "[::1]:53", "192.0.2.1"}));
  EXPECT_EQ(c.store.backend, "maildir");
}

TEST(ConfigTest, UnknownKeyIsReportedWithItsLine) {
  EXPECT_EQ(errors("[server]\ndata_dir = \"x\"\nthreadz = 2\n"),
            "t.toml:3:1: unknown key 'threadz' in [server]");
  EXPECT_EQ(errors("\n\n[limits]\n  max_recipient = 10\n"),
            "t.toml:4:3: unknown key 'max_recipient' in [limits]");
  EXPECT_EQ(errors("[[listen]]\naddress = \"127.0.0.1:25\"\nprotocol = \"smtp\"\nport = 25\n"),
            "t.toml:4:1: unknown key 'port' in [[listen]]");
  EXPECT_EQ(errors("hostname = \"a\"\n"),
            "t.toml:1:1: unknown key 'hostname' at top level (keys belong in a table such as "
            "[server])");
  // A sub-table of a known table is an unknown key of that table.
  EXPECT_EQ(errors("[limits.smtp]\nx = 1\n"), "t.toml:1:9: unknown key 'smtp' in [limits]");
}

TEST(ConfigTest, UnknownTableIsAnError) {
  std::string e = errors("[server]\nthreads = 1\n\n[serverr]\nthreads = 2\n");
  EXPECT_PRED2(starts, e, "t.toml:4:2: unknown table [serverr]");
  e = errors("[[listener]]\naddress = \"127.0.0.1:25\"\n");
  EXPECT_PRED2(starts, e, "t.toml:1:3: unknown table [listener]");
}

TEST(ConfigTest, WrongTypeIsAnError) {
  EXPECT_EQ(errors("[server]\nthreads = \"2\"\n"),
            "t.toml:2:11: server.threads: expected integer, got string");
  EXPECT_EQ(errors("[auth]\nallow_plaintext = 1\n"),
            "t.toml:2:19: auth.allow_plaintext: expected boolean, got integer");
  EXPECT_EQ(errors("[relay]\nlocal_domains = \"example.test\"\n"),
            "t.toml:2:17: relay.local_domains: expected array, got string");
  EXPECT_EQ(errors("[relay]\nlocal_domains = [\"a.test\", 7]\n"),
            "t.toml:2:28: relay.local_domains[1]: expected string, got integer");
  EXPECT_EQ(errors("server = 3\n"), "t.toml:1:10: server: expected table, got integer");
  EXPECT_EQ(errors("[limits]\nmax_message_size = 1e6\n"),
            "t.toml:2:20: limits.max_message_size: expected integer, got float");
  std::string e = errors("[listen]\naddress = \"127.0.0.1:25\"\n");
  EXPECT_PRED2(has, e, "t.toml:1:1: listen: expected [[listen]] tables");
  e = errors("[limits]\ncommand_timeout = 1.5\n");
  EXPECT_PRED2(has, e, "t.toml:2:19: limits.command_timeout: expected a duration");
}

TEST(ConfigTest, OutOfRangeValues) {
  EXPECT_EQ(errors("[limits]\nmax_line_length = 999\n"),
            "t.toml:2:19: limits.max_line_length: must be between 1000 and 65536 (RFC 5321 "
            "4.5.3.1.6: at least 1000 octets including CRLF), got 999");
  EXPECT_PRED2(has, errors("[limits]\nmax_line_length = 65537\n"), "got 65537");
  EXPECT_EQ(errors("[limits]\nmax_recipients = 99\n"),
            "t.toml:2:18: limits.max_recipients: must be between 100 and 100000 (RFC 5321 "
            "4.5.3.1.8 requires at least 100), got 99");
  EXPECT_PRED2(has, errors("[limits]\nmax_recipients = 100001\n"), "got 100001");
  EXPECT_EQ(errors("[limits]\nmax_message_size = 1023\n"),
            "t.toml:2:20: limits.max_message_size: must be at least 1024, got 1023");
  EXPECT_EQ(errors("[server]\nthreads = 257\n"),
            "t.toml:2:11: server.threads: must be between 0 and 256 (0 = number of cores), got "
            "257");
  EXPECT_EQ(errors("[server]\nthreads = -1\n"),
            "t.toml:2:11: server.threads: must be between 0 and 256 (0 = number of cores), got "
            "-1");
  EXPECT_EQ(errors("[delivery]\nsmtp_port = 0\n"),
            "t.toml:2:13: delivery.smtp_port: must be between 1 and 65535, got 0");
  EXPECT_PRED2(has, errors("[delivery]\nsmtp_port = 65536\n"), "got 65536");
  // uint32 keys reject what does not fit instead of wrapping.
  EXPECT_EQ(errors("[limits]\nmax_connections = 4294967296\n"),
            "t.toml:2:19: limits.max_connections: must be between 1 and 4294967295, got "
            "4294967296");
  EXPECT_PRED2(has, errors("[limits]\nmax_connections_per_ip = -5\n"), "got -5");
  // Beyond 64 bits toml++ itself refuses the number; it still comes with a position.
  std::string e = errors("[limits]\nmax_message_size = 99999999999999999999\n");
  EXPECT_PRED2(starts, e, "t.toml:2:");
  EXPECT_EQ(errors("[server]\ndata_dir = \"\"\n"),
            "t.toml:2:12: server.data_dir: must not be empty");
  EXPECT_PRED2(has, errors("[limits]\nmax_queue_size = 1000\n"), "at least 1 MiB");
}

TEST(ConfigTest, BoundaryValuesAreAccepted) {
  Config c = must_load(
      "[limits]\nmax_line_length = 1000\nmax_recipients = 100000\n"
      "[server]\nthreads = 256\n[delivery]\nsmtp_port = 65535\n");
  EXPECT_EQ(c.limits.max_line_length, 1000u);
  EXPECT_EQ(c.limits.max_recipients, 100000u);
  EXPECT_EQ(c.server.threads, 256u);
  EXPECT_EQ(c.delivery.smtp_port, 65535);
  c = must_load("[limits]\nmax_line_length = 65536\nmax_recipients = 100\n");
  EXPECT_EQ(c.limits.max_line_length, 65536u);
}

TEST(ConfigTest, AllProblemsAreReportedTogetherInLineOrder) {
  std::string e = errors(R"([server]
threads = 1000
bogus = 1
[limits]
max_recipients = 5
[store]
backend = "mbox"
[[listen]]
address = "127.0.0.1"
protocol = "smtp"
)");
  std::vector<std::string> lines;
  for (size_t start = 0; start <= e.size();) {
    size_t nl = e.find('\n', start);
    if (nl == std::string::npos) nl = e.size();
    lines.push_back(e.substr(start, nl - start));
    start = nl + 1;
  }
  ASSERT_EQ(lines.size(), 5u) << e;
  EXPECT_PRED2(starts, lines[0], "t.toml:2:11: server.threads:");
  EXPECT_EQ(lines[1], "t.toml:3:1: unknown key 'bogus' in [server]");
  EXPECT_PRED2(starts, lines[2], "t.toml:5:18: limits.max_recipients:");
  EXPECT_EQ(lines[3],
            "t.toml:7:11: store.backend: unknown backend 'mbox' (expected lmdb, lmtp or maildir)");
  EXPECT_PRED2(starts, lines[4], "t.toml:9:11: listen[0].address: '127.0.0.1': missing port");
}

TEST(ConfigTest, SyntaxErrorHasPosition) {
  std::string e = errors("[server]\nthreads = \n");
  EXPECT_PRED2(starts, e, "t.toml:2:");
  e = errors("[server\n");
  EXPECT_PRED2(starts, e, "t.toml:1:");
  e = errors("[server]\nthreads = 1\nthreads = 2\n");
  EXPECT_PRED2(starts, e, "t.toml:3:");
}

TEST(ConfigTest, ParseDuration) {
  EXPECT_EQ(parse_duration("30s").value(), Seconds(30));
  EXPECT_EQ(parse_duration("5m").value(), Seconds(300));
  EXPECT_EQ(parse_duration("1h").value(), Seconds(3600));
  EXPECT_EQ(parse_duration("5d").value(), Seconds(432000));
  EXPECT_EQ(parse_duration("42").value(), Seconds(42));
  EXPECT_EQ(parse_duration("0").value(), Seconds(0));  // syntax only; the loader wants > 0
  EXPECT_EQ(parse_duration("3650d").value(), Seconds(3650LL * 86400));
  for (const char* bad : {"", "s", "-5", "+5", "5 m", " 5m", "5m ", "5w", "5ms", "1h30m", "5M",
                          "3651d", "99999999999999999999999", "1.5h"}) {
    EXPECT_FALSE(parse_duration(bad).ok()) << "'" << bad << "'";
  }
  EXPECT_EQ(parse_duration("5w").error().message, "'5w': unknown unit (expected s, m, h or d)");
}

TEST(ConfigTest, DurationsInConfig) {
  Config c = must_load(
      "[limits]\ncommand_timeout = 45\ndata_timeout = \"120\"\n"
      "shutdown_timeout = \"1m\"\n");
  EXPECT_EQ(c.limits.command_timeout, Seconds(45));
  EXPECT_EQ(c.limits.data_timeout, Seconds(120));
  EXPECT_EQ(c.limits.shutdown_timeout, Seconds(60));
  EXPECT_EQ(errors("[limits]\ncommand_timeout = \"0s\"\n"),
            "t.toml:2:19: limits.command_timeout: must be greater than zero");
  EXPECT_EQ(errors("[limits]\ncommand_timeout = 0\n"),
            "t.toml:2:19: limits.command_timeout: must be greater than zero");
  EXPECT_PRED2(has, errors("[limits]\ncommand_timeout = -3\n"), "got -3");
  EXPECT_PRED2(has, errors("[delivery]\nmax_lifetime = \"5 days\"\n"),
               "t.toml:2:16: delivery.max_lifetime: '5 days': not a duration");
  EXPECT_EQ(errors("[delivery]\nretry_intervals = []\n"),
            "t.toml:2:19: delivery.retry_intervals: must not be empty (its last interval "
            "repeats until max_lifetime)");
  EXPECT_EQ(errors("[delivery]\nretry_intervals = [\"5m\", \"0s\"]\n"),
            "t.toml:2:26: delivery.retry_intervals[1]: must be greater than zero");
}

TEST(ConfigTest, ParseCidr) {
  Cidr c = parse_cidr("192.0.2.0/24").value();
  EXPECT_FALSE(c.v6);
  EXPECT_EQ(c.prefix, 24u);
  EXPECT_EQ(c.addr[0], 192);
  EXPECT_EQ(c.addr[2], 2);

  c = parse_cidr("192.0.2.77/25").value();  // host bits are masked off
  EXPECT_EQ(c.addr[3], 0);
  c = parse_cidr("192.0.2.200/25").value();
  EXPECT_EQ(c.addr[3], 128);

  c = parse_cidr("203.0.113.9").value();
  EXPECT_EQ(c.prefix, 32u);
  EXPECT_EQ(c.addr[3], 9);

  c = parse_cidr("2001:db8::1").value();
  EXPECT_TRUE(c.v6);
  EXPECT_EQ(c.prefix, 128u);
  EXPECT_EQ(c.addr[15], 1);

  c = parse_cidr("2001:db8:ffff::/33").value();
  EXPECT_EQ(c.prefix, 33u);
  EXPECT_EQ(c.addr[4], 0x80);
  EXPECT_EQ(c.addr[5], 0);

  EXPECT_EQ(parse_cidr("0.0.0.0/0").value().prefix, 0u);
  EXPECT_EQ(parse_cidr("::/0").value().prefix, 0u);

  for (const char* bad : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1",
                          "10.0.0.0/8/9", "10.0.0/8", "example.test", "10.0.0.0/ 8", "[::1]/128",
                          "fe80::1%eth0", "10.0.0.0/1000", "10.0.0.256"}) {
    EXPECT_FALSE(parse_cidr(bad).ok()) << "'" << bad << "'";
  }
  EXPECT_EQ(parse_cidr("10.0.0.0/33").error().message,
            "'10.0.0.0/33': prefix length /33 is out of range for IPv4 (0..32)");
  EXPECT_PRED2(starts, errors("[relay]\ntrusted_networks = [\"10.0.0.0/8\", \"bogus\"]\n"),
               "t.toml:2:35: relay.trusted_networks[1]: 'bogus': not an IP address");
}

TEST(ConfigTest, CidrContains) {
  Cidr net4 = parse_cidr("10.1.0.0/16").value();
  EXPECT_TRUE(net4.contains(sa(v4("10.1.2.3"))));
  EXPECT_TRUE(net4.contains(sa(v4("10.1.255.255"))));
  EXPECT_FALSE(net4.contains(sa(v4("10.2.0.1"))));
  EXPECT_FALSE(net4.contains(sa(v4("11.1.2.3"))));
  // IPv4-mapped peers from a dual-stack socket match IPv4 networks.
  EXPECT_TRUE(net4.contains(sa(v6("::ffff:10.1.9.9"))));
  EXPECT_FALSE(net4.contains(sa(v6("::ffff:10.2.9.9"))));
  // ... but a native IPv6 address with the same low bits does not.
  EXPECT_FALSE(net4.contains(sa(v6("::a01:909"))));

  Cidr odd = parse_cidr("192.0.2.128/25").value();
  EXPECT_TRUE(odd.contains(sa(v4("192.0.2.200"))));
  EXPECT_FALSE(odd.contains(sa(v4("192.0.2.127"))));

  Cidr host4 = parse_cidr("127.0.0.1").value();
  EXPECT_TRUE(host4.contains(sa(v4("127.0.0.1"))));
  EXPECT_FALSE(host4.contains(sa(v4("127.0.0.2"))));

  Cidr net6 = parse_cidr("2001:db8:1::/48").value();
  EXPECT_TRUE(net6.contains(sa(v6("2001:db8:1:ffff::1"))));
  EXPECT_FALSE(net6.contains(sa(v6("2001:db8:2::1"))));
  EXPECT_FALSE(net6.contains(sa(v4("32.1.13.184"))));  // 2001:db8 as IPv4 bytes

  Cidr host6 = parse_cidr("::1").value();
  EXPECT_TRUE(host6.contains(sa(v6("::1"))));
  EXPECT_FALSE(host6.contains(sa(v6("::2"))));
  EXPECT_FALSE(host6.contains(sa(v4("0.0.0.1"))));

  Cidr all4 = parse_cidr("0.0.0.0/0").value();
  EXPECT_TRUE(all4.contains(sa(v4("203.0.113.1"))));
  EXPECT_TRUE(all4.contains(sa(v6("::ffff:203.0.113.1"))));
  EXPECT_FALSE(all4.contains(sa(v6("2001:db8::1"))));

  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_FALSE(all4.contains(reinterpret_cast<const sockaddr*>(&un)));
  EXPECT_FALSE(all4.contains(nullptr));
}

std::string listen_error(const std::string& address) {
  return errors("[[listen]]\naddress = \"" + address + "\"\nprotocol = \"smtp\"\n");
}

TEST(ConfigTest, ListenAddresses) {
  Config c = must_load(R"(
[[listen]]
address = "[::1]:2525"
protocol = "smtp"
[[listen]]
address = "0.0.0.0:25"
protocol = "imaps"
[[listen]]
address = "[::]:25"
protocol = "pop3"
)");
  ASSERT_EQ(c.listen.size(), 3u);
  ASSERT_EQ(c.listen[0].sockaddr_len, sizeof(sockaddr_in6));
  const auto& s6 = reinterpret_cast<const sockaddr_in6&>(c.listen[0].sockaddr);
  EXPECT_EQ(s6.sin6_family, AF_INET6);
  EXPECT_EQ(ntohs(s6.sin6_port), 2525);
  EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&s6.sin6_addr));
  EXPECT_EQ(c.listen[0].address, "[::1]:2525");
  const auto& s4 = reinterpret_cast<const sockaddr_in&>(c.listen[1].sockaddr);
  EXPECT_EQ(s4.sin_family, AF_INET);
  EXPECT_EQ(ntohs(s4.sin_port), 25);
  EXPECT_EQ(s4.sin_addr.s_addr, htonl(INADDR_ANY));
  EXPECT_EQ(c.listen[1].protocol, Protocol::imaps);
  EXPECT_EQ(c.listen[2].protocol, Protocol::pop3);

  EXPECT_EQ(listen_error("127.0.0.1:0"),
            "t.toml:2:11: listen[0].address: '127.0.0.1:0': port must be a number from 1 to "
            "65535");
  EXPECT_EQ(listen_error("::1:25"),
            "t.toml:2:11: listen[0].address: '::1:25': IPv6 addresses are written in brackets, "
            "e.g. \"[::1]:25\"");
  EXPECT_EQ(listen_error("localhost:25"),
            "t.toml:2:11: listen[0].address: 'localhost:25': 'localhost' is not an IPv4 address "
            "(host names are not accepted here)");
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:x",
                          "127.0.0.1:25x", "127.0.0.1:-1", "[::1]", "[::1]25", "[::1:25",
                          "[127.0.0.1]:25", "[::1]:", "256.0.0.1:25", ":25"}) {
    std::string e = listen_error(bad);
    EXPECT_PRED2(starts, e, "t.toml:2:11: listen[0].address: ") << "'" << bad << "': " << e;
  }
  EXPECT_EQ(errors("[[listen]]\naddress = \"127.0.0.1:25\"\nprotocol = \"lmtp\"\n"),
            "t.toml:3:12: listen[0].protocol: unknown protocol 'lmtp' (expected smtp, "
            "submission, submissions, pop3, pop3s, imap or imaps)");
  EXPECT_EQ(errors("[[listen]]\nprotocol = \"smtp\"\n"),
            "t.toml:1:1: listen[0]: missing required key 'address'");
  EXPECT_EQ(errors("\n[[listen]]\naddress = \"127.0.0.1:25\"\n"),
            "t.toml:2:1: listen[0]: missing required key 'protocol'");
  EXPECT_TRUE(must_load("listen = []\n").listen.empty());
}

TEST(ConfigTest, DuplicateListeners) {
  EXPECT_EQ(errors(R"([[listen]]
address = "127.0.0.1:2525"
protocol = "smtp"
[[listen]]
address = "127.0.0.1:2526"
protocol = "smtp"
[[listen]]
address = "127.0.0.1:2525"
protocol = "submission"
)"),
            "t.toml:8:11: listen[2].address: '127.0.0.1:2525' is already used by the listener on "
            "line 2");
  // The same address written two ways is still the same socket.
  std::string e = errors(
      "[[listen]]\naddress = \"[::1]:25\"\nprotocol = \"smtp\"\n"
      "[[listen]]\naddress = \"[0:0::1]:25\"\nprotocol = \"smtp\"\n");
  EXPECT_PRED2(has, e, "t.toml:5:11: listen[1].address: '[0:0::1]:25' is already used");
  // Same port on different addresses or families is fine.
  Config c = must_load(
      "[[listen]]\naddress = \"127.0.0.1:25\"\nprotocol = \"smtp\"\n"
      "[[listen]]\naddress = \"127.0.0.2:25\"\nprotocol = \"smtp\"\n"
      "[[listen]]\naddress = \"[::1]:25\"\nprotocol = \"smtp\"\n");
  EXPECT_EQ(c.listen.size(), 3u);
}

TEST(ConfigTest, LocalDomains) {
  Config c = must_load(
      "[relay]\nlocal_domains = [\"EXAMPLE.test\", \"xn--bcher-kva.example\", \"example.test\", "
      "\"a-b.c\"]\n");
  EXPECT_EQ(c.relay.local_domains,
            (std::vector<std::string>{"example.test", "xn--bcher-kva.example", "a-b.c"}));
  for (const char* bad : {"", "a..b", ".a", "a.", "-a.test", "a-.test", "a_b.test", "a b",
                          "bücher.example", "10.0.0.1", "[10.0.0.1]", "user@example.test"}) {
    std::string e = errors(std::string("[relay]\nlocal_domains = [\"") + bad + "\"]\n");
    EXPECT_PRED2(has, e, "is not a valid domain name") << bad << ": " << e;
  }
  std::string label63(63, 'a');
  EXPECT_TRUE(load_string("[relay]\nlocal_domains = [\"" + label63 + ".test\"]\n", "t").ok());
  EXPECT_FALSE(load_string("[relay]\nlocal_domains = [\"" + label63 + "a.test\"]\n", "t").ok());
  std::string long_name;
  while (long_name.size() < 250) long_name += "abcdefghi.";
  long_name += "test";  // 254 characters
  EXPECT_FALSE(load_string("[relay]\nlocal_domains = [\"" + long_name + "\"]\n", "t").ok());
}

TEST(ConfigTest, Hostname) {
  EXPECT_EQ(must_load("[server]\nhostname = \"MX1.example.test\"\n").server.hostname,
            "MX1.example.test");
  EXPECT_FALSE(must_load("[server]\nhostname = \"\"\n").server.hostname.empty());
  EXPECT_EQ(errors("[server]\nhostname = \"mx example\"\n"),
            "t.toml:2:12: server.hostname: 'mx example' is not a valid domain name (it is used "
            "in the greeting, EHLO reply and Received: lines)");
  EXPECT_PRED2(has, errors("[server]\nhostname = \"mx\\r\\n250 x\"\n"), "'mx\\x0d\\x0a250 x'");
}

TEST(ConfigTest, RelayhostDnsStoreTls) {
  for (const char* ok : {"smtp.example.net:587", "192.0.2.1:25", "[2001:db8::1]:25"}) {
    EXPECT_EQ(must_load(std::string("[delivery]\nrelayhost = \"") + ok + "\"\n").delivery.relayhost,
              ok);
  }
  for (const char* bad : {"smtp.example.net", "smtp.example.net:", "smtp.example.net:0",
                          "smtp example:25", "::1:25", "[smtp.example.net]:25", ":25"}) {
    std::string e = errors(std::string("[delivery]\nrelayhost = \"") + bad + "\"\n");
    EXPECT_PRED2(has, e, "expected \"host:port\"") << bad << ": " << e;
  }
  EXPECT_TRUE(must_load("[delivery]\nrelayhost = \"\"\n").delivery.relayhost.empty());

  for (const char* bad :
       {"dns.example", "127.0.0.1:0", "::1:53", "::1", "[::1]:x", "1.2.3.4:53:1"}) {
    std::string e = errors(std::string("[dns]\nservers = [\"") + bad + "\"]\n");
    EXPECT_PRED2(starts, e, "t.toml:2:12: dns.servers[0]: ") << bad << ": " << e;
  }
  EXPECT_EQ(must_load("[store]\nbackend = \"lmtp\"\n").store.backend, "lmtp");
  EXPECT_EQ(errors("[store]\nbackend = \"\"\n"),
            "t.toml:2:11: store.backend: unknown backend '' (expected lmdb, lmtp or maildir)");
  EXPECT_EQ(errors("[tls]\ncert = \"/c.pem\"\n"),
            "t.toml:1:1: tls: cert and key must be set together (or both left out for a "
            "self-signed certificate)");
  EXPECT_EQ(errors("[server]\ndata_dir = \"/var/x\\u0000y\"\n"),
            "t.toml:2:12: server.data_dir: must not contain NUL characters");
  EXPECT_PRED2(has, errors("[limits]\nmax_message_size = 4194304\nmax_queue_size = 1048576\n"),
               "t.toml:1:1: limits: max_message_size (4194304) is larger than "
               "max_queue_size (1048576)");
}

TEST(ConfigTest, DescribeIsLoadableAndComplete) {
  Config c = must_load(default_config_text());
  std::string d = describe(c);
  EXPECT_PRED2(has, d, "[server]\n");
  EXPECT_PRED2(has, d, "data_dir = \"./ringmail-data\"\n");
  EXPECT_PRED2(has, d, "[[listen]]\naddress = \"127.0.0.1:2525\"\nprotocol = \"smtp\"\n");
  EXPECT_PRED2(has, d, "max_recipients = 1000\n");
  EXPECT_PRED2(has, d, "command_timeout = \"5m\"\n");
  EXPECT_PRED2(has, d,
               "retry_intervals = [\"5m\", \"10m\", \"20m\", \"40m\", \"1h\", \"2h\", \"4h\"]");
  EXPECT_PRED2(has, d, "max_lifetime = \"5d\"\n");
  EXPECT_PRED2(has, d, "local_domains = [\"localhost\"]\n");
  // The dump is itself a config that loads to the same thing.
  Config again = must_load(d);
  EXPECT_EQ(describe(again), d);

  Config full = must_load(
      "[relay]\ntrusted_networks = [\"10.9.8.7/8\", \"2001:db8::/32\"]\n"
      "[server]\ndata_dir = \"/a \\\"quoted\\\" dir\"\n[limits]\ndata_timeout = 61\n");
  d = describe(full);
  EXPECT_PRED2(has, d, "trusted_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]");
  EXPECT_PRED2(has, d, "data_timeout = \"61s\"");
  EXPECT_EQ(describe(must_load(d)), d);
}

TEST(ConfigTest, LoadFile) {
  Result<Config> r = load_file("/nonexistent/ringmail.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOENT);
  EXPECT_EQ(r.error().message,
            "/nonexistent/ringmail.toml: cannot open: No such file or directory");

  std::filesystem::path p = std::filesystem::temp_directory_path() / "ringmail_config_test.toml";
  {
    std::ofstream f(p);
    f << "[server]\nthreads = 2\nnope = 1\n";
  }
  r = load_file(p.string());
  std::filesystem::remove(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, p.string() + ":3:1: unknown key 'nope' in [server]");
}

TEST(ConfigTest, ProtocolNamesRoundTrip) {
  const char* names[] = {"smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps"};
  std::string doc;
  for (int i = 0; i < 7; ++i) {
    doc += "[[listen]]\naddress = \"127.0.0.1:" + std::to_string(2000 + i) + "\"\nprotocol = \"" +
           names[i] + "\"\n";
  }
  Config c = must_load(doc);
  ASSERT_EQ(c.listen.size(), 7u);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(static_cast<int>(c.listen[i].protocol), i);
    EXPECT_EQ(protocol_name(c.listen[i].protocol), names[i]);
  }
}

}  // namespace
}  // namespace ringmail::conf

namespace ringmail::conf {
namespace {

TEST(ConfigAuthTest, DefaultsAreSafe) {
  Config c = must_load("");
  EXPECT_FALSE(c.auth.allow_plaintext);
  EXPECT_TRUE(c.auth.sender_ownership);
  EXPECT_EQ(c.auth.max_failures, 5u);
  EXPECT_EQ(c.auth.failure_window, Seconds(900));
  EXPECT_EQ(c.auth.failure_delay, Seconds(1));
  EXPECT_EQ(c.auth.hash_threads, 2u);
}

TEST(ConfigAuthTest, KeysAndLimits) {
  Config c = must_load(
      "[auth]\nsender_ownership = false\nmax_failures = 3\nfailure_window = \"1h\"\n"
      "failure_delay = \"0s\"\nhash_threads = 4\n");
  EXPECT_FALSE(c.auth.sender_ownership);
  EXPECT_EQ(c.auth.max_failures, 3u);
  EXPECT_EQ(c.auth.failure_window, Seconds(3600));
  EXPECT_EQ(c.auth.failure_delay, Seconds(0)) << "0s turns the delay off";
  EXPECT_EQ(c.auth.hash_threads, 4u);
  EXPECT_EQ(errors("[auth]\nmax_failures = 0\n"),
            "t.toml:2:16: auth.max_failures: must be between 1 and 4294967295, got 0");
  EXPECT_EQ(errors("[auth]\nfailure_window = \"0s\"\n"),
            "t.toml:2:18: auth.failure_window: must be greater than zero");
  EXPECT_EQ(errors("[auth]\nhash_threads = 65\n"),
            "t.toml:2:16: auth.hash_threads: must be between 1 and 64, got 65");
  EXPECT_EQ(errors("[auth]\nmax_failure = 3\n"), "t.toml:2:1: unknown key 'max_failure' in [auth]");
}

}  // namespace
}  // namespace ringmail::conf

namespace ringmail::conf {
namespace {

TEST(ConfigTest, DeliveryPolicyAndDomainOverrides) {
  Config c = must_load(R"(
[delivery]
max_connections = 7
max_messages_per_connection = 3
tls = "required"
relayhost = "smart.example.test:587"
relayhost_username = "u"
relayhost_password = "p"
command_timeout = "3s"
enabled = false

[delivery.domains."Slow.Example"]
max_connections = 1
max_messages_per_minute = 60
tls = "none"

[dns]
timeout = "1s"
attempts = 3
)");
  EXPECT_FALSE(c.delivery.enabled);
  EXPECT_EQ(c.delivery.defaults.max_connections, 7u);
  EXPECT_EQ(c.delivery.defaults.tls, Config::TlsPolicy::required);
  EXPECT_EQ(c.delivery.command_timeout, std::chrono::seconds(3));
  ASSERT_EQ(c.delivery.domains.size(), 1u);
  EXPECT_EQ(c.delivery.domains[0].first, "slow.example");
  const auto& slow = c.delivery.policy_for("SLOW.example");
  EXPECT_EQ(slow.max_connections, 1u);
  EXPECT_EQ(slow.max_messages_per_minute, 60u);
  EXPECT_EQ(slow.tls, Config::TlsPolicy::none);
  // Keys the override leaves out come from [delivery], not from the built-in defaults.
  EXPECT_EQ(slow.max_messages_per_connection, 3u);
  EXPECT_EQ(&c.delivery.policy_for("other.example"), &c.delivery.defaults);
  EXPECT_EQ(c.dns.timeout, std::chrono::seconds(1));
  EXPECT_EQ(c.dns.attempts, 3u);
  // describe() output loads again.
  EXPECT_TRUE(load_string(describe(c), "again").ok()) << describe(c);
}

TEST(ConfigTest, DeliveryPolicyErrors) {
  EXPECT_NE(errors("[delivery]\ntls = \"maybe\"\n").find("unknown TLS policy"), std::string::npos);
  EXPECT_NE(errors("[delivery.domains.\"bad domain\"]\nmax_connections = 1\n")
                .find("not a valid domain name"),
            std::string::npos);
  EXPECT_NE(errors("[delivery.domains.\"a.example\"]\nmax_conections = 1\n").find("unknown key"),
            std::string::npos);
  EXPECT_NE(errors("[delivery]\nmax_connections = 0\n").find("must be between 1"),
            std::string::npos);
  EXPECT_NE(errors("[delivery]\nrelayhost_username = \"u\"\n").find("relayhost is empty"),
            std::string::npos);
}

}  // namespace
}  // namespace ringmail::conf
