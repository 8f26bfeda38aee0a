// mta/delivery/smtp_reply: replies parsed from arbitrary byte splits, their bounds, and
// the EHLO keywords the delivery client acts on.
#include "mta/delivery/smtp_reply.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringmail::delivery {
namespace {

using namespace std::string_literals;

// Feeds `wire` to a parser `step` bytes at a time, keeping what it leaves unconsumed the
// way rt::Stream does, and collects every reply; `error` gets the first protocol error.
std::vector<Reply> parse_all(std::string_view wire, size_t step, std::string* error = nullptr,
                             const ReplyLimits& limits = {}) {
  ReplyParser p(limits);
  std::vector<Reply> out;
  std::string buf;
  size_t fed = 0;
  for (;;) {
    size_t used = 0;
    Result<bool> r = p.parse(buf, used);
    buf.erase(0, used);
    if (!r.ok()) {
      if (error) *error = r.error().message;
      return out;
    }
    if (r.value()) {
      out.push_back(p.take());
      continue;
    }
    if (fed == wire.size()) return out;
    size_t n = std::min(step, wire.size() - fed);
    buf.append(wire.substr(fed, n));
    fed += n;
  }
}

Reply one(std::string_view wire) {
  std::string err;
  auto v = parse_all(wire, wire.size(), &err);
  EXPECT_EQ(err, "");
  EXPECT_EQ(v.size(), 1u);
  return v.empty() ? Reply{} : v.front();
}

TEST(SmtpReply, SingleLineWithEnhancedCode) {
  Reply r = one("250 2.1.0 Ok\r\n");
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.enhanced, "2.1.0");
  ASSERT_EQ(r.lines.size(), 1u);
  EXPECT_EQ(r.lines[0], "2.1.0 Ok");
  EXPECT_EQ(r.text(), "Ok");
  EXPECT_EQ(r.summary(), "250 2.1.0 Ok");
}

TEST(SmtpReply, MultiLineRepeatsTheEnhancedCodeOnlyOnceInTheSummary) {
  const std::string wire =
      "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
      "550-5.1.1 Please try\r\n"
      "550 5.1.1 https://support.example/answer 3sm\r\n";
  // Every split point, one byte at a time included: the result never depends on how
  // the bytes arrived.
  for (size_t step : {size_t{1}, size_t{2}, size_t{7}, wire.size()}) {
    std::string err;
    auto v = parse_all(wire, step, &err);
    ASSERT_EQ(err, "") << step;
    ASSERT_EQ(v.size(), 1u) << step;
    EXPECT_EQ(v[0].code, 550);
    EXPECT_EQ(v[0].enhanced, "5.1.1");
    EXPECT_EQ(v[0].lines.size(), 3u);
    EXPECT_EQ(v[0].summary(),
              "550 5.1.1 The email account that you tried to reach does not exist. Please "
              "try https://support.example/answer 3sm");
  }
}

TEST(SmtpReply, PipelinedRepliesComeOutOneByOne) {
  std::string err;
  auto v = parse_all("250 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n354 go\r\n", 5, &err);
  EXPECT_EQ(err, "");
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0].code, 250);
  EXPECT_EQ(v[0].enhanced, "");
  EXPECT_EQ(v[2].code, 550);
  EXPECT_EQ(v[3].code, 354);
  EXPECT_EQ(v[3].summary(), "354 go");
}

TEST(SmtpReply, PartialLineIsLeftUnconsumed) {
  ReplyParser p;
  size_t used = 99;
  Result<bool> r = p.parse("250-first\r\n250 sec", used);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value());
  EXPECT_EQ(used, 11u);  // the first line only
  r = p.parse("250 second\r\n", used);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.value());
  Reply rep = p.take();
  EXPECT_EQ(rep.lines, (std::vector<std::string>{"first", "second"}));
}

TEST(SmtpReply, BareCodeAndBareLfAreTolerated) {
  Reply r = one("250\n");
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.lines, std::vector<std::string>{""});
  EXPECT_EQ(r.summary(), "250");
}

TEST(SmtpReply, EnhancedCodeOfTheWrongClassIsText) {
  Reply r = one("550 2.1.0 odd\r\n");
  EXPECT_EQ(r.enhanced, "");
  EXPECT_EQ(r.summary(), "550 2.1.0 odd");
}

TEST(SmtpReply, EnhancedCodeShapes) {
  EXPECT_EQ(enhanced_code("5.7.1 denied"), "5.7.1");
  EXPECT_EQ(enhanced_code("4.4.2"), "4.4.2");
  EXPECT_EQ(enhanced_code("2.123.456 x"), "2.123.456");
  EXPECT_EQ(enhanced_code("2.1234.5 x"), "");
  EXPECT_EQ(enhanced_code("3.1.1 x"), "");
  EXPECT_EQ(enhanced_code("5.1.1x"), "");
  EXPECT_EQ(enhanced_code("5..1 x"), "");
  EXPECT_EQ(enhanced_code("5.1. x"), "");
  EXPECT_EQ(enhanced_code("Ok"), "");
}

TEST(SmtpReply, ControlCharactersAreReplaced) {
  Reply r = one("550 bad\tthing\x1b[31m\0here\r\n"s);
  EXPECT_EQ(r.lines[0], "bad thing?[31m?here");
}

TEST(SmtpReply, MalformedLinesAreProtocolErrors) {
  for (std::string wire : {"hello\r\n", "25\r\n", "2x0 ok\r\n", "250x ok\r\n", "150 ok\r\n",
                           "650 ok\r\n", "\r\n", " 250 ok\r\n"}) {
    std::string err;
    auto v = parse_all(wire, 3, &err);
    EXPECT_TRUE(v.empty()) << wire;
    EXPECT_NE(err, "") << wire;
  }
}

TEST(SmtpReply, CodeMustStayTheSameAcrossLines) {
  std::string err;
  auto v = parse_all("250-a\r\n251 b\r\n", 100, &err);
  EXPECT_TRUE(v.empty());
  EXPECT_NE(err.find("changed"), std::string::npos) << err;
}

TEST(SmtpReply, ErrorIsSticky) {
  ReplyParser p;
  size_t used = 0;
  EXPECT_FALSE(p.parse("xyz\r\n", used).ok());
  EXPECT_FALSE(p.parse("250 ok\r\n", used).ok());
  EXPECT_EQ(used, 0u);
}

TEST(SmtpReply, LineLengthIsBounded) {
  ReplyLimits l;
  l.max_line = 20;
  std::string ok = "250 " + std::string(16, 'a') + "\r\n";
  std::string err;
  EXPECT_EQ(parse_all(ok, 4, &err, l).size(), 1u);
  EXPECT_EQ(err, "");
  // One octet more, with and without the line end ever arriving: the parser gives up
  // after max_line + 2 bytes instead of buffering forever.
  std::string too_long = "250 " + std::string(17, 'a') + "\r\n";
  EXPECT_TRUE(parse_all(too_long, 4, &err, l).empty());
  EXPECT_NE(err.find("longer"), std::string::npos);
  err.clear();
  EXPECT_TRUE(parse_all("250 " + std::string(5000, 'a'), 64, &err, l).empty());
  EXPECT_NE(err.find("longer"), std::string::npos);
  // The default tolerates 2048 octets.
  err.clear();
  EXPECT_EQ(parse_all("250 " + std::string(2044, 'a') + "\r\n", 512, &err).size(), 1u);
  EXPECT_EQ(err, "");
}

TEST(SmtpReply, LineCountIsBounded) {
  ReplyLimits l;
  l.max_lines = 3;
  std::string err;
  EXPECT_EQ(parse_all("250-a\r\n250-b\r\n250 c\r\n", 100, &err, l).size(), 1u);
  EXPECT_TRUE(parse_all("250-a\r\n250-b\r\n250-c\r\n250 d\r\n", 100, &err, l).empty());
  EXPECT_NE(err.find("more than 3 lines"), std::string::npos) << err;
}

Capabilities caps_of(std::string_view wire) {
  return parse_ehlo(one(wire));
}

TEST(SmtpReply, EhloCapabilities) {
  Capabilities c = caps_of(
      "250-mx.example.test Hello [192.0.2.1]\r\n"
      "250-PIPELINING\r\n"
      "250-SIZE 35882577\r\n"
      "250-8BITMIME\r\n"
      "250-smtputf8\r\n"
      "250-DSN\r\n"
      "250-STARTTLS\r\n"
      "250-CHUNKING\r\n"
      "250-ENHANCEDSTATUSCODES\r\n"
      "250-AUTH LOGIN plain XOAUTH2\r\n"
      "250 X-UNKNOWN stuff\r\n");
  EXPECT_TRUE(c.esmtp);
  EXPECT_TRUE(c.pipelining);
  EXPECT_TRUE(c.size);
  EXPECT_EQ(c.size_limit, 35882577u);
  EXPECT_TRUE(c.eightbitmime);
  EXPECT_TRUE(c.smtputf8);
  EXPECT_TRUE(c.dsn);
  EXPECT_TRUE(c.starttls);
  EXPECT_TRUE(c.chunking);
  EXPECT_TRUE(c.enhanced_status_codes);
  EXPECT_EQ(c.auth, (std::vector<std::string>{"LOGIN", "PLAIN", "XOAUTH2"}));
  EXPECT_TRUE(c.has_auth("plain"));
  EXPECT_FALSE(c.has_auth("CRAM-MD5"));
}

TEST(SmtpReply, EhloFirstLineIsNeverAKeyword) {
  Capabilities c = caps_of("250 PIPELINING\r\n");
  EXPECT_TRUE(c.esmtp);
  EXPECT_FALSE(c.pipelining);
}

TEST(SmtpReply, OldAuthEqualsFormIsMerged) {
  Capabilities c = caps_of("250-mx\r\n250-AUTH=LOGIN PLAIN\r\n250 AUTH PLAIN CRAM-MD5\r\n");
  EXPECT_EQ(c.auth, (std::vector<std::string>{"LOGIN", "PLAIN", "CRAM-MD5"}));
  Capabilities only_old = caps_of("250-mx\r\n250 AUTH=PLAIN\r\n");
  EXPECT_EQ(only_old.auth, std::vector<std::string>{"PLAIN"});
}

TEST(SmtpReply, InvalidMechanismNamesAreDropped) {
  Capabilities c = caps_of("250-mx\r\n250 AUTH PLAIN a/b THIS-NAME-IS-FAR-TOO-LONG-FOR-SASL\r\n");
  EXPECT_EQ(c.auth, std::vector<std::string>{"PLAIN"});
}

TEST(SmtpReply, SizeWithoutNumberMeansNoFixedLimit) {
  Capabilities c = caps_of("250-mx\r\n250 SIZE\r\n");
  EXPECT_TRUE(c.size);
  EXPECT_EQ(c.size_limit, 0u);
  EXPECT_EQ(caps_of("250-mx\r\n250 SIZE 0\r\n").size_limit, 0u);
  EXPECT_EQ(caps_of("250-mx\r\n250 SIZE lots\r\n").size_limit, 0u);
  EXPECT_EQ(caps_of("250-mx\r\n250 SIZE 99999999999999999999999\r\n").size_limit, 0u);
  EXPECT_EQ(caps_of("250-mx\r\n250 size  1000 \r\n").size_limit, 1000u);
}

}  // namespace
}  // namespace ringmail::delivery
