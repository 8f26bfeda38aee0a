// dns/domain.h: RFC 5321 domain syntax and ASCII lower-casing.
#include "dns/domain.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmail::dns {
namespace {

TEST(ValidDomain, Accepts) {
  for (const char* d : {"a", "example", "example.com", "mail.example.com", "x-1.example",
                        "a-b-c.d-e", "123.example", "1.2.3.4", "xn--bcher-kva.example",
                        "EXAMPLE.COM", "a.b.c.d.e.f.g", "0", "a1", "1a", "a--b"})
    EXPECT_TRUE(valid_domain(d, false)) << d;
}

TEST(ValidDomain, Rejects) {
  for (const char* d : {"",
                        ".",
                        "..",
                        ".example",
                        "example.",
                        "example..com",
                        "-example.com",
                        "example-.com",
                        "ex-.ample",
                        "-",
                        "a.-b",
                        "a.b-",
                        "exa_mple.com",
                        "exa mple.com",
                        "example.com ",
                        " example.com",
                        "[1.2.3.4]",
                        "a@b",
                        "a/b",
                        "a:b",
                        "a*b",
                        "a\tb"})
    EXPECT_FALSE(valid_domain(d, false)) << '"' << d << '"';
  EXPECT_FALSE(valid_domain(std::string_view("a\0b", 3), false));
  EXPECT_FALSE(valid_domain(std::string_view("a\0", 2), true));
}

TEST(ValidDomain, LabelLength) {
  std::string l63(63, 'a');
  EXPECT_TRUE(valid_domain(l63, false));
  EXPECT_TRUE(valid_domain(l63 + ".example", false));
  EXPECT_TRUE(valid_domain("example." + l63, false));
  EXPECT_FALSE(valid_domain(std::string(64, 'a'), false));
  EXPECT_FALSE(valid_domain(std::string(64, 'a') + ".example", false));
  EXPECT_FALSE(valid_domain("example." + std::string(64, 'a'), false));
}

TEST(ValidDomain, TotalLength) {
  // 63.63.63.63 = 255 octets: the limit. One more label octet anywhere is too long.
  std::string l63(63, 'a');
  std::string d255 = l63 + "." + l63 + "." + l63 + "." + l63;
  ASSERT_EQ(d255.size(), 255u);
  EXPECT_TRUE(valid_domain(d255, false));
  std::string d256 = l63 + "." + l63 + "." + l63 + "." + l63 + "a";
  EXPECT_FALSE(valid_domain(d256, false));
  std::string d257 = d255 + ".b";
  EXPECT_FALSE(valid_domain(d257, false));
  // Many short labels: 128 * "a." minus the last dot = 255.
  std::string many;
  for (int i = 0; i < 128; ++i) many += i ? ".a" : "a";
  ASSERT_EQ(many.size(), 255u);
  EXPECT_TRUE(valid_domain(many, false));
  EXPECT_FALSE(valid_domain(many + ".a", false));
}

TEST(ValidDomain, Utf8Labels) {
  const char* u =
      "b\xC3\xBC"
      "cher.example";
  EXPECT_FALSE(valid_domain(u, false));
  EXPECT_TRUE(valid_domain(u, true));
  EXPECT_TRUE(valid_domain("\xE4\xBE\x8B\xE3\x81\x88.\xE3\x83\x86\xE3\x82\xB9\xE3\x83\x88", true));
  // UTF-8 octets count toward the 63-octet label limit.
  std::string l = std::string(31, '\xC3') + std::string(1, 'a') + std::string(31, '\xA9');
  ASSERT_EQ(l.size(), 63u);
  EXPECT_TRUE(valid_domain(l, true));
  EXPECT_FALSE(valid_domain(l + "\xC3", true));
  // Structure rules still apply.
  EXPECT_FALSE(valid_domain("\xC3\xBC.", true));
  EXPECT_FALSE(valid_domain(".\xC3\xBC", true));
  EXPECT_FALSE(valid_domain("\xC3\xBC-", true));
  EXPECT_FALSE(valid_domain("a_\xC3\xBC", true));
}

TEST(Lower, AsciiOnly) {
  EXPECT_EQ(lower("Mail.EXAMPLE.com"), "mail.example.com");
  EXPECT_EQ(lower(""), "");
  EXPECT_EQ(lower("already.lower"), "already.lower");
  EXPECT_EQ(lower("A-Z_0-9@[]"), "a-z_0-9@[]");
  // UTF-8 octets are kept as they are (no locale-dependent folding).
  EXPECT_EQ(lower("B\xC3\x9C"
                  "CHER.Example"),
            "b\xC3\x9C"
            "cher.example");
  EXPECT_EQ(lower("\xC0\xDA\xFF"), "\xC0\xDA\xFF");
  EXPECT_EQ(lower(std::string_view("A\0B", 3)), std::string("a\0b", 3));
}

}  // namespace
}  // namespace ringmail::dns
