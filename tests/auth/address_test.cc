// auth/address.h: strict RFC 5321 Reverse-path / Forward-path parsing.
#include "auth/address.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmail::auth {
namespace {

struct Parsed {
  Result<Path> path;
  size_t consumed;
};

Parsed parse(std::string_view s, bool allow_null = false, bool allow_utf8 = false) {
  size_t consumed = 12345;
  Result<Path> p = parse_path(s, allow_null, allow_utf8, &consumed);
  return {std::move(p), consumed};
}

Path ok(std::string_view s, bool allow_null = false, bool allow_utf8 = false) {
  Parsed r = parse(s, allow_null, allow_utf8);
  EXPECT_TRUE(r.path.ok()) << s << ": " << (r.path.ok() ? "" : r.path.error().message);
  return r.path.ok() ? std::move(r.path).value() : Path{};
}

int code(std::string_view s, bool allow_null = false, bool allow_utf8 = false) {
  Parsed r = parse(s, allow_null, allow_utf8);
  return r.path.ok() ? 0 : r.path.error().code;
}

TEST(ParsePath, DotString) {
  Path p = ok("<first.last@example.com>");
  EXPECT_FALSE(p.null);
  EXPECT_FALSE(p.source_route);
  EXPECT_FALSE(p.utf8);
  EXPECT_FALSE(p.mailbox.quoted_local);
  EXPECT_FALSE(p.mailbox.address_literal);
  EXPECT_EQ(p.mailbox.local, "first.last");
  EXPECT_EQ(p.mailbox.domain, "example.com");
  EXPECT_EQ(p.str(), "first.last@example.com");
  // Every atext special is allowed in an atom.
  EXPECT_EQ(ok("<!#$%&'*+-/=?^_`{|}~@example.com>").mailbox.local, "!#$%&'*+-/=?^_`{|}~");
  EXPECT_EQ(ok("<a.b.c.d@x.example>").mailbox.local, "a.b.c.d");
  EXPECT_EQ(ok("<1@2.example>").mailbox.local, "1");
}

TEST(ParsePath, BadDotStrings) {
  for (const char* s :
       {"<.a@example.com>", "<a.@example.com>", "<a..b@example.com>", "<a b@example.com>",
        "<a(b)@example.com>", "<a,b@example.com>", "<a[b]@example.com>", "<a\\b@example.com>",
        "<a:b@example.com>", "<a;b@example.com>", "<@example.com>", "<.@example.com>",
        "<a\tb@example.com>", "<a\"b@example.com>"})
    EXPECT_EQ(code(s), 501) << s;
}

TEST(ParsePath, DomainIsLowerCasedLocalPartKept) {
  Path p = ok("<John.Smith@Mail.EXAMPLE.Com>");
  EXPECT_EQ(p.mailbox.local, "John.Smith");
  EXPECT_EQ(p.mailbox.domain, "mail.example.com");
}

TEST(ParsePath, BadDomains) {
  for (const char* s : {"<a@>", "<a@.example.com>", "<a@example..com>", "<a@-example.com>",
                        "<a@example-.com>", "<a@exa_mple.com>", "<a@example.com.>",
                        "<a@exa mple.com>", "<a@b@example.com>", "<a>", "<a@example.com@>"})
    EXPECT_EQ(code(s), 501) << s;
  EXPECT_EQ(ok("<a@x-1.example>").mailbox.domain, "x-1.example");
  EXPECT_EQ(ok("<a@localhost>").mailbox.domain, "localhost");
}

TEST(ParsePath, NullPath) {
  Path p = ok("<>", /*allow_null=*/true);
  EXPECT_TRUE(p.null);
  EXPECT_EQ(p.str(), "");
  EXPECT_EQ(code("<>", /*allow_null=*/false), 501);
}

TEST(ParsePath, MissingBrackets) {
  EXPECT_EQ(code("a@example.com"), 501);
  EXPECT_EQ(code("<a@example.com"), 501);
  EXPECT_EQ(code(""), 501);
  EXPECT_EQ(code("<"), 501);
  EXPECT_EQ(code(" <a@example.com>"), 501);
  EXPECT_EQ(code("a@example.com>"), 501);
}

TEST(ParsePath, ConsumedStopsAtClosingBracket) {
  Parsed r = parse("<a@example.com> SIZE=100");
  ASSERT_TRUE(r.path.ok());
  EXPECT_EQ(r.consumed, 15u);
  Parsed r2 = parse("<a@example.com>>>garbage");
  ASSERT_TRUE(r2.path.ok());
  EXPECT_EQ(r2.consumed, 15u);
  Parsed r3 = parse("<>x", true);
  ASSERT_TRUE(r3.path.ok());
  EXPECT_EQ(r3.consumed, 2u);
  // A '>' inside a quoted local part does not end the path.
  Parsed r4 = parse("<\"a>b\"@example.com> NOTIFY=NEVER");
  ASSERT_TRUE(r4.path.ok());
  EXPECT_EQ(r4.consumed, 19u);
  EXPECT_EQ(r4.path->mailbox.local, "\"a>b\"");
}

TEST(ParsePath, QuotedLocalPart) {
  Path p = ok("<\"john smith\"@example.com>");
  EXPECT_TRUE(p.mailbox.quoted_local);
  EXPECT_EQ(p.mailbox.local, "\"john smith\"");
  EXPECT_EQ(p.mailbox.domain, "example.com");
  // Escaped quote and backslash.
  Path q = ok("<\"a\\\"b\\\\c\"@example.com>");
  EXPECT_TRUE(q.mailbox.quoted_local);
  EXPECT_EQ(q.mailbox.local, "\"a\\\"b\\\\c\"");
  // An '@' hidden in the quotes: the separating '@' is the one after the quotes.
  Path h = ok("<\"user@elsewhere.example\"@example.com>");
  EXPECT_TRUE(h.mailbox.quoted_local);
  EXPECT_EQ(h.mailbox.local, "\"user@elsewhere.example\"");
  EXPECT_EQ(h.mailbox.domain, "example.com");
  Path e = ok("<\"\\@\"@example.com>");
  EXPECT_TRUE(e.mailbox.quoted_local);
  EXPECT_EQ(e.mailbox.domain, "example.com");
  EXPECT_EQ(ok("<\"\"@example.com>").mailbox.local, "\"\"");
}

TEST(ParsePath, BadQuotedLocalParts) {
  for (std::string_view s :
       {std::string_view("<\"abc@example.com>"),       // unterminated
        std::string_view("<\"abc\"example.com>"),      // no '@' after the quotes
        std::string_view("<\"abc\"x@example.com>"),    // junk after the quotes
        std::string_view("<\"a\tb\"@example.com>"),    // control character
        std::string_view("<\"a\\\tb\"@example.com>"),  // quoted-pair of a control
        std::string_view("<\"a\x01\"@example.com>"), std::string_view("<\"a\x7f\"@example.com>"),
        std::string_view("<\"abc\\\"@example.com>"),  // escaped closing quote
        std::string_view("<\"ab\"@>"), std::string_view("<\"a\0b\"@example.com>", 19)})
    EXPECT_EQ(code(s), 501) << s;
}

TEST(ParsePath, SourceRoute) {
  Path p = ok("<@relay1.example,@Relay2.example:user@Final.example>");
  EXPECT_TRUE(p.source_route);
  EXPECT_EQ(p.mailbox.local, "user");
  EXPECT_EQ(p.mailbox.domain, "final.example");
  Path one = ok("<@relay.example:user@final.example>");
  EXPECT_TRUE(one.source_route);
  EXPECT_EQ(one.str(), "user@final.example");
  for (const char* s :
       {"<@:user@final.example>", "<@relay.example user@final.example>",
        "<@relay.example,:user@final.example>", "<@relay.example,relay2:u@f.example>",
        "<@relay..example:user@final.example>", "<@relay.example:>", "<@relay.example:user>",
        "<@relay.example,@:u@f.example>", "<@[1.2.3.4]:u@f.example>"})
    EXPECT_EQ(code(s), 501) << s;
}

TEST(ParsePath, AddressLiteralIPv4) {
  Path p = ok("<postmaster@[192.0.2.1]>");
  EXPECT_TRUE(p.mailbox.address_literal);
  EXPECT_EQ(p.mailbox.domain, "[192.0.2.1]");
  EXPECT_EQ(ok("<a@[0.0.0.0]>").mailbox.domain, "[0.0.0.0]");
  EXPECT_EQ(ok("<a@[255.255.255.255]>").mailbox.domain, "[255.255.255.255]");
  for (const char* s :
       {"<a@[256.0.0.1]>", "<a@[1.2.3]>", "<a@[1.2.3.4.5]>", "<a@[1.2.3.]>", "<a@[.1.2.3]>",
        "<a@[1..2.3]>", "<a@[1.2.3.4]x>", "<a@[1.2.3.4>", "<a@[]>", "<a@[1234.1.1.1]>",
        "<a@[a.b.c.d]>", "<a@1.2.3.4]>", "<a@[ 1.2.3.4]>", "<a@[:1.2.3.4]>"})
    EXPECT_EQ(code(s), 501) << s;
}

TEST(ParsePath, AddressLiteralIPv6) {
  Path p = ok("<a@[IPv6:2001:db8::1]>");
  EXPECT_TRUE(p.mailbox.address_literal);
  EXPECT_FALSE(p.mailbox.quoted_local);
  EXPECT_TRUE(ok("<a@[IPv6:::1]>").mailbox.address_literal);
  EXPECT_TRUE(ok("<a@[IPv6:::ffff:192.0.2.1]>").mailbox.address_literal);
  EXPECT_TRUE(ok("<a@[IPv6:2001:db8:0:0:0:0:0:1]>").mailbox.address_literal);
  for (const char* s : {"<a@[IPv6:]>", "<a@[IPv6]>", "<a@[IPv6:2001:db8::1>", "<a@[:::1]>",
                        "<a@[IPv6:2001:db8::1 ]>", "<a@[IPv6:[::1]]>"})
    EXPECT_EQ(code(s), 501) << s;
}

TEST(ParsePath, AddressLiteralIPv6MustHoldAnIPv6Address) {
  // RFC 5321 4.1.3: IPv6-address-literal = "IPv6:" IPv6-addr. The "IPv6" tag is not a
  // free-form General-address-literal tag: what follows it must be an IPv6 address.
  for (const char* s :
       {"<a@[IPv6:zzz]>", "<a@[IPv6:1:2]>", "<a@[IPv6:not-an-address]>",
        "<a@[IPv6:1:2:3:4:5:6:7:8:9]>", "<a@[IPv6:12345::1]>", "<a@[IPv6:2001:db8:::1]>"})
    EXPECT_EQ(code(s), 501) << s;
}

TEST(ParsePath, AddressLiteralIPv6TagIsCaseInsensitive) {
  // ABNF quoted strings are case-insensitive (RFC 5234 2.3): "ipv6:" is the same tag as
  // "IPv6:", so it too must be followed by a valid IPv6 address.
  EXPECT_TRUE(ok("<a@[ipv6:2001:db8::1]>").mailbox.address_literal);
  EXPECT_TRUE(ok("<a@[IPV6:::1]>").mailbox.address_literal);
  for (const char* s : {"<a@[ipv6:zzz]>", "<a@[IPV6:zzz]>", "<a@[Ipv6:1:2]>", "<a@[ipv6:1.2.3.4]>"})
    EXPECT_EQ(code(s), 501) << s;
}

TEST(ParsePath, GeneralAddressLiteral) {
  Path p = ok("<a@[x-tag:some.content]>");
  EXPECT_TRUE(p.mailbox.address_literal);
  EXPECT_EQ(code("<a@[x_tag:foo]>"), 501);
  EXPECT_EQ(code("<a@[x-tag:]>"), 501);
  EXPECT_EQ(code("<a@[x-tag:a\\b]>"), 501);
}

TEST(ParsePath, LocalPartLength) {
  std::string l64(64, 'a');
  EXPECT_EQ(ok("<" + l64 + "@example.com>").mailbox.local, l64);
  EXPECT_EQ(code("<" + std::string(65, 'a') + "@example.com>"), 501);
  // Quoted: 62 octets of content plus the two quotes is 64.
  std::string q64 = "\"" + std::string(62, 'q') + "\"";
  EXPECT_EQ(ok("<" + q64 + "@example.com>").mailbox.local, q64);
}

std::string domain_of_length(size_t n) {
  // labels of 63 separated by dots, the last one shorter.
  std::string d;
  while (d.size() < n) {
    if (!d.empty()) d.push_back('.');
    size_t take = std::min<size_t>(63, n - d.size());
    d.append(take, 'd');
  }
  if (d.back() == '.') d.back() = 'e';
  return d;
}

TEST(ParsePath, DomainAndPathLength) {
  // RFC 5321 4.5.3.1.3: a path is at most 256 octets including "<" and ">", so the
  // longest mailbox is 254 octets.
  std::string d252 = domain_of_length(252);
  ASSERT_EQ(d252.size(), 252u);
  Parsed r = parse("<a@" + d252 + ">");  // 256 octets
  ASSERT_TRUE(r.path.ok()) << r.path.error().message;
  EXPECT_EQ(r.path->mailbox.domain, d252);
  EXPECT_EQ(r.consumed, 256u);
  // A label over 63 is never valid.
  EXPECT_EQ(code("<a@" + std::string(64, 'x') + ".example>"), 501);
  EXPECT_EQ(ok("<a@" + std::string(63, 'x') + ".example>").mailbox.domain.size(), 71u);
  // Far over every limit.
  EXPECT_EQ(code("<a@" + domain_of_length(300) + ">"), 501);
  EXPECT_EQ(code("<" + std::string(64, 'a') + "@" + domain_of_length(255) + ">"), 501);
}

TEST(ParsePath, PathOver256OctetsIsRejected) {
  std::string d253 = domain_of_length(253);
  ASSERT_EQ(d253.size(), 253u);
  // "<a@" + 253 + ">" = 257 octets: one over the RFC 5321 limit.
  EXPECT_EQ(code("<a@" + d253 + ">"), 501);
  EXPECT_EQ(code("<ab@" + d253 + ">"), 501);
}

TEST(ParsePath, Utf8WithoutSmtpUtf8Is553) {
  for (const char* s : {"<j\xC3\xB6rg@example.com>", "<a@b\xC3\xA4r.example>",
                        "<\"\xC3\xA9\"@example.com>", "<\xE7\x94\xA8\xE6\x88\xB7@example.com>"}) {
    Parsed r = parse(s, false, /*allow_utf8=*/false);
    ASSERT_FALSE(r.path.ok()) << s;
    EXPECT_EQ(r.path.error().code, 553) << s;
  }
}

TEST(ParsePath, Utf8WithSmtpUtf8) {
  Path p = ok("<j\xC3\xB6rg@B\xC3\xA4r.Example>", false, /*allow_utf8=*/true);
  EXPECT_TRUE(p.utf8);
  EXPECT_EQ(p.mailbox.local, "j\xC3\xB6rg");
  // ASCII letters are lower-cased, UTF-8 octets kept.
  EXPECT_EQ(p.mailbox.domain, "b\xC3\xA4r.example");
  Path q = ok("<\"\xC3\xA9 x\"@example.com>", false, true);
  EXPECT_TRUE(q.utf8);
  EXPECT_TRUE(q.mailbox.quoted_local);
  Path a = ok("<plain@example.com>", false, true);
  EXPECT_FALSE(a.utf8);
}

TEST(ParsePath, Utf8InASourceRouteNeedsSmtpUtf8) {
  // Without SMTPUTF8 no octet of the path may be non-ASCII, the route included.
  EXPECT_NE(code("<@r\xC3\xA4.example:user@final.example>", false, false), 0);
  EXPECT_TRUE(ok("<@r\xC3\xA4.example:user@final.example>", false, true).source_route);
}

TEST(ParsePath, RelayTricksAreKeptVisible) {
  Path pct = ok("<user%elsewhere.example@example.com>");
  EXPECT_EQ(pct.mailbox.local, "user%elsewhere.example");
  EXPECT_EQ(pct.mailbox.domain, "example.com");
  Path bang = ok("<elsewhere.example!user@example.com>");
  EXPECT_EQ(bang.mailbox.local, "elsewhere.example!user");
  Path quoted = ok("<\"user@elsewhere.example\"@example.com>");
  EXPECT_TRUE(quoted.mailbox.quoted_local);
}

TEST(ParsePath, ControlAndOddCharacters) {
  for (std::string_view s :
       {std::string_view("<a\0@example.com>", 16), std::string_view("<a@exam\0ple.com>", 16),
        std::string_view("<a\r\n@example.com>"), std::string_view("<a@example.com\r\n>"),
        std::string_view("<a@example.com >"), std::string_view("< a@example.com>")})
    EXPECT_EQ(code(s), 501) << s;
}

}  // namespace
}  // namespace ringmail::auth
