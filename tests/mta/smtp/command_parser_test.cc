// mta/smtp/command_parser.h: verbs, MAIL FROM / RCPT TO with their ESMTP parameters
// (RFC 1870 SIZE, 6152 BODY, 6531 SMTPUTF8, 3461 DSN), and BDAT (RFC 3030).
#include "mta/smtp/command_parser.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmail::smtp {
namespace {

using queue::BodyType;
using queue::Ret;

// The reply code of a parse that must fail (0 if it unexpectedly succeeded).
template <class T>
int code_of(const Result<T>& r) {
  return r.ok() ? 0 : r.error().code;
}

MailFrom mail_ok(std::string_view arg) {
  auto r = parse_mail_from(arg);
  EXPECT_TRUE(r.ok()) << arg << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : MailFrom{};
}

RcptTo rcpt_ok(std::string_view arg, bool utf8 = false) {
  auto r = parse_rcpt_to(arg, utf8);
  EXPECT_TRUE(r.ok()) << arg << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : RcptTo{};
}

// --- verbs --------------------------------------------------------------------------

TEST(ParseCommand, VerbsAreCaseInsensitive) {
  struct {
    const char* line;
    Verb verb;
  } cases[] = {
      {"EHLO x", Verb::ehlo},       {"ehlo x", Verb::ehlo},        {"eHlO x", Verb::ehlo},
      {"HELO x", Verb::helo},       {"helo x", Verb::helo},        {"MAIL FROM:<>", Verb::mail},
      {"mail FROM:<>", Verb::mail}, {"Rcpt TO:<a@b>", Verb::rcpt}, {"DATA", Verb::data},
      {"data", Verb::data},         {"BDAT 10", Verb::bdat},       {"bdat 10 last", Verb::bdat},
      {"RSET", Verb::rset},         {"rset", Verb::rset},          {"NOOP", Verb::noop},
      {"noop hi", Verb::noop},      {"QUIT", Verb::quit},          {"Quit", Verb::quit},
      {"VRFY a", Verb::vrfy},       {"EXPN a", Verb::expn},        {"HELP", Verb::help},
      {"StartTLS", Verb::starttls}, {"AUTH PLAIN", Verb::auth},    {"auth login", Verb::auth},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_command(c.line).verb, c.verb) << c.line;
}

TEST(ParseCommand, ArgumentIsWhatFollowsTheFirstSpace) {
  Command c = parse_command("MAIL FROM:<a@b.example> SIZE=10");
  EXPECT_EQ(c.verb, Verb::mail);
  EXPECT_EQ(c.arg, "FROM:<a@b.example> SIZE=10");
  EXPECT_EQ(parse_command("DATA").arg, "");
  EXPECT_EQ(parse_command("NOOP ").arg, "");
  EXPECT_EQ(parse_command("EHLO  two").arg, " two");
}

TEST(ParseCommand, HttpVerbsAreRecognised) {
  for (const char* l : {"GET / HTTP/1.1", "POST /x HTTP/1.0", "HEAD /", "PUT /", "CONNECT a:25",
                        "OPTIONS *", "get /"})
    EXPECT_EQ(parse_command(l).verb, Verb::http) << l;
}

TEST(ParseCommand, UnknownVerbs) {
  for (const char* l : {"", " ", "MAILFROM:<a@b>", "MAI", "MAILX FROM:<>", "XEXCH50 1 2", "EHL",
                        "DATA\tx", "\x01\x02", "STARTTLSX"})
    EXPECT_EQ(parse_command(l).verb, Verb::unknown) << l;
  // The verb is the text before the first space: a leading space makes it empty.
  EXPECT_EQ(parse_command(" QUIT").verb, Verb::unknown);
}

// --- MAIL FROM -----------------------------------------------------------------------

TEST(ParseMailFrom, PlainSender) {
  MailFrom m = mail_ok("FROM:<Alice@Example.COM>");
  EXPECT_FALSE(m.path.null);
  EXPECT_EQ(m.path.mailbox.local, "Alice");
  EXPECT_EQ(m.path.mailbox.domain, "example.com");
  EXPECT_EQ(m.size, 0u);
  EXPECT_EQ(m.body, BodyType::unspecified);
  EXPECT_FALSE(m.smtputf8);
  EXPECT_EQ(m.ret, Ret::unspecified);
  EXPECT_EQ(m.envid, "");
}

TEST(ParseMailFrom, KeywordIsCaseInsensitiveAndSpaceAfterColonTolerated) {
  EXPECT_EQ(mail_ok("from:<a@b.example>").path.mailbox.domain, "b.example");
  EXPECT_EQ(mail_ok("FrOm:<a@b.example>").path.mailbox.local, "a");
  EXPECT_EQ(mail_ok("FROM: <a@b.example>").path.mailbox.local, "a");
  EXPECT_EQ(mail_ok("FROM:   <a@b.example>").path.mailbox.local, "a");
}

TEST(ParseMailFrom, NullSender) {
  MailFrom m = mail_ok("FROM:<>");
  EXPECT_TRUE(m.path.null);
  EXPECT_EQ(m.path.str(), "");
  MailFrom m2 = mail_ok("FROM:<> SIZE=100 BODY=8BITMIME");
  EXPECT_TRUE(m2.path.null);
  EXPECT_EQ(m2.size, 100u);
  EXPECT_EQ(m2.body, BodyType::eight_bit_mime);
}

TEST(ParseMailFrom, SyntaxErrorsAre501) {
  for (const char* a : {"", "FROM", "FROM<a@b.example>", "TO:<a@b.example>", "FROM:a@b.example",
                        "FROM:<a@b.example", "FROM:<a@@b.example>", "FROM:<a@b.example>SIZE=1",
                        "FROM:<a@b.example>x", "FROM:<a b@c.example>", " FROM:<a@b.example>"}) {
    auto r = parse_mail_from(a);
    EXPECT_EQ(code_of(r), 501) << a;
    if (!r.ok()) {
      EXPECT_EQ(r.error().message.substr(0, 2), "5.") << a;
    }
  }
}

TEST(ParseMailFrom, Size) {
  EXPECT_EQ(mail_ok("FROM:<a@b.example> SIZE=0").size, 0u);
  EXPECT_EQ(mail_ok("FROM:<a@b.example> SIZE=1048576").size, 1048576u);
  EXPECT_EQ(mail_ok("FROM:<a@b.example> size=12").size, 12u);
  EXPECT_EQ(mail_ok("FROM:<a@b.example> SIZE=18446744073709551615").size, UINT64_MAX);
  for (const char* a :
       {"FROM:<a@b.example> SIZE", "FROM:<a@b.example> SIZE=", "FROM:<a@b.example> SIZE=-1",
        "FROM:<a@b.example> SIZE=1k", "FROM:<a@b.example> SIZE=+5", "FROM:<a@b.example> SIZE=0x10",
        "FROM:<a@b.example> SIZE=18446744073709551616",
        "FROM:<a@b.example> SIZE=123456789012345678901"})
    EXPECT_EQ(code_of(parse_mail_from(a)), 501) << a;
}

TEST(ParseMailFrom, Body) {
  EXPECT_EQ(mail_ok("FROM:<a@b.example> BODY=7BIT").body, BodyType::seven_bit);
  EXPECT_EQ(mail_ok("FROM:<a@b.example> BODY=8BITMIME").body, BodyType::eight_bit_mime);
  EXPECT_EQ(mail_ok("FROM:<a@b.example> body=8bitmime").body, BodyType::eight_bit_mime);
  EXPECT_EQ(code_of(parse_mail_from("FROM:<a@b.example> BODY=BINARYMIME")), 504);
  EXPECT_EQ(code_of(parse_mail_from("FROM:<a@b.example> BODY=binarymime")), 504);
  for (const char* a : {"FROM:<a@b.example> BODY", "FROM:<a@b.example> BODY=",
                        "FROM:<a@b.example> BODY=8BIT", "FROM:<a@b.example> BODY=7BITS"})
    EXPECT_EQ(code_of(parse_mail_from(a)), 501) << a;
}

TEST(ParseMailFrom, SmtpUtf8) {
  EXPECT_TRUE(mail_ok("FROM:<a@b.example> SMTPUTF8").smtputf8);
  EXPECT_TRUE(mail_ok("FROM:<a@b.example> smtputf8").smtputf8);
  EXPECT_EQ(code_of(parse_mail_from("FROM:<a@b.example> SMTPUTF8=yes")), 501);
  EXPECT_EQ(code_of(parse_mail_from("FROM:<a@b.example> SMTPUTF8 SMTPUTF8")), 501);
}

TEST(ParseMailFrom, Utf8AddressNeedsSmtpUtf8) {
  // Without SMTPUTF8 a non-ASCII address is 553 5.6.7 (RFC 6531 3.5).
  auto r = parse_mail_from("FROM:<j\xC3\xB6rg@b\xC3\xA4r.example>");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 553);
  EXPECT_EQ(r.error().message.substr(0, 6), "5.6.7 ");
  // With it, the parameter after the path decides how the path is parsed.
  MailFrom m = mail_ok("FROM:<j\xC3\xB6rg@b\xC3\xA4r.example> SMTPUTF8");
  EXPECT_TRUE(m.smtputf8);
  EXPECT_TRUE(m.path.utf8);
  EXPECT_EQ(m.path.mailbox.local, "j\xC3\xB6rg");
  MailFrom m2 = mail_ok("FROM:<j\xC3\xB6rg@b\xC3\xA4r.example> BODY=8BITMIME SMTPUTF8 SIZE=5");
  EXPECT_TRUE(m2.smtputf8);
  EXPECT_EQ(m2.size, 5u);
}

TEST(ParseMailFrom, Utf8AddressWithSmtpUtf8AndAGreaterThanInALaterValue) {
  // '>' (62) is a legal esmtp-value octet, so it may appear in ENVID after SMTPUTF8.
  // The look-ahead for SMTPUTF8 must still find the parameter.
  MailFrom m = mail_ok("FROM:<j\xC3\xB6rg@example.com> SMTPUTF8 ENVID=a>b");
  EXPECT_TRUE(m.smtputf8);
  EXPECT_EQ(m.envid, "a>b");
}

TEST(ParseMailFrom, Utf8AddressWithoutSmtpUtf8IsRefusedWhateverTheValuesHold) {
  // The text "SMTPUTF8" inside another parameter's value is not the SMTPUTF8 parameter:
  // the UTF-8 path still needs the real one (553 5.6.7).
  auto r = parse_mail_from("FROM:<j\xC3\xB6rg@example.com> ENVID=a>SMTPUTF8");
  if (r.ok()) {
    EXPECT_FALSE(r->path.utf8 && !r->smtputf8) << "UTF-8 sender accepted without SMTPUTF8";
  } else {
    EXPECT_EQ(r.error().code, 553);
  }
  EXPECT_EQ(code_of(parse_mail_from("FROM:<j\xC3\xB6rg@example.com> ENVID=SMTPUTF8")), 553);
}

TEST(ParseMailFrom, Ret) {
  EXPECT_EQ(mail_ok("FROM:<a@b.example> RET=FULL").ret, Ret::full);
  EXPECT_EQ(mail_ok("FROM:<a@b.example> RET=HDRS").ret, Ret::hdrs);
  EXPECT_EQ(mail_ok("FROM:<a@b.example> ret=hdrs").ret, Ret::hdrs);
  for (const char* a : {"FROM:<a@b.example> RET", "FROM:<a@b.example> RET=",
                        "FROM:<a@b.example> RET=HEADERS", "FROM:<a@b.example> RET=NONE"})
    EXPECT_EQ(code_of(parse_mail_from(a)), 501) << a;
}

TEST(ParseMailFrom, AuthParameter) {
  // RFC 4954 5: accepted (a server offering AUTH must), checked, never trusted.
  EXPECT_EQ(mail_ok("FROM:<a@b.example> AUTH=<>").auth, "<>");
  EXPECT_EQ(mail_ok("FROM:<a@b.example> AUTH=alice+40example.test").auth, "alice+40example.test");
  EXPECT_EQ(mail_ok("FROM:<a@b.example> auth=<>").auth, "<>");
  const std::vector<std::string> bad = {
      "FROM:<a@b.example> AUTH", "FROM:<a@b.example> AUTH=", "FROM:<a@b.example> AUTH=a+zz",
      "FROM:<a@b.example> AUTH=<> AUTH=<>", "FROM:<a@b.example> AUTH=" + std::string(501, 'x')};
  for (const std::string& a : bad) EXPECT_EQ(code_of(parse_mail_from(a)), 501) << a;
}

TEST(ParseMailFrom, Envid) {
  EXPECT_EQ(mail_ok("FROM:<a@b.example> ENVID=QQ314159").envid, "QQ314159");
  // xtext: "+" followed by two upper-case hex digits encodes one octet; kept as received.
  EXPECT_EQ(mail_ok("FROM:<a@b.example> ENVID=a+2Bb+3D").envid, "a+2Bb+3D");
  EXPECT_EQ(mail_ok("FROM:<a@b.example> ENVID=" + std::string(100, 'x')).envid,
            std::string(100, 'x'));
  for (std::string a :
       {std::string("FROM:<a@b.example> ENVID"), std::string("FROM:<a@b.example> ENVID="),
        std::string("FROM:<a@b.example> ENVID=a+2"), std::string("FROM:<a@b.example> ENVID=a+"),
        std::string("FROM:<a@b.example> ENVID=a+2b"),  // lower-case hex
        std::string("FROM:<a@b.example> ENVID=a+GG"), std::string("FROM:<a@b.example> ENVID=a+b"),
        std::string("FROM:<a@b.example> ENVID=\xC3\xA4"),  // not xtext
        "FROM:<a@b.example> ENVID=" + std::string(101, 'x')})
    EXPECT_EQ(code_of(parse_mail_from(a)), 501) << a;
}

TEST(ParseMailFrom, AllParametersTogether) {
  MailFrom m = mail_ok("FROM:<bounce@list.example> SIZE=4096 BODY=8BITMIME RET=HDRS ENVID=id+2B1");
  EXPECT_EQ(m.path.str(), "bounce@list.example");
  EXPECT_EQ(m.size, 4096u);
  EXPECT_EQ(m.body, BodyType::eight_bit_mime);
  EXPECT_EQ(m.ret, Ret::hdrs);
  EXPECT_EQ(m.envid, "id+2B1");
  // Several spaces between parameters are tolerated.
  EXPECT_EQ(mail_ok("FROM:<a@b.example>  SIZE=7   RET=FULL").size, 7u);
}

TEST(ParseMailFrom, DuplicateParametersAre501) {
  for (const char* a :
       {"FROM:<a@b.example> SIZE=1 SIZE=1", "FROM:<a@b.example> SIZE=1 size=2",
        "FROM:<a@b.example> BODY=7BIT BODY=7BIT", "FROM:<a@b.example> BODY=7BIT BODY=8BITMIME",
        "FROM:<a@b.example> RET=FULL RET=HDRS", "FROM:<a@b.example> ENVID=a ENVID=b",
        "FROM:<a@b.example> SMTPUTF8 smtputf8"}) {
    auto r = parse_mail_from(a);
    EXPECT_EQ(code_of(r), 501) << a;
  }
}

TEST(ParseMailFrom, UnknownParameterIs555) {
  for (const char* a : {"FROM:<a@b.example> FOO=bar", "FROM:<a@b.example> XAUTH=<>",
                        "FROM:<a@b.example> SIZE=1 X-TRACE", "FROM:<a@b.example> BY=100;R",
                        "FROM:<a@b.example> MT-PRIORITY=3"}) {
    auto r = parse_mail_from(a);
    EXPECT_EQ(code_of(r), 555) << a;
    if (!r.ok()) {
      EXPECT_EQ(r.error().message.substr(0, 6), "5.5.4 ") << a;
    }
  }
}

TEST(ParseMailFrom, MalformedParameterSyntaxIs501) {
  for (const char* a :
       {"FROM:<a@b.example> =1", "FROM:<a@b.example> -X=1", "FROM:<a@b.example> SI_ZE=1",
        "FROM:<a@b.example> FOO=a=b", "FROM:<a@b.example> FOO="})
    EXPECT_EQ(code_of(parse_mail_from(a)), 501) << a;
}

// --- RCPT TO -------------------------------------------------------------------------

TEST(ParseRcptTo, Plain) {
  RcptTo r = rcpt_ok("TO:<bob@Example.ORG>");
  EXPECT_EQ(r.path.mailbox.local, "bob");
  EXPECT_EQ(r.path.mailbox.domain, "example.org");
  EXPECT_EQ(r.notify, 0);
  EXPECT_EQ(r.orcpt, "");
  EXPECT_EQ(rcpt_ok("to: <bob@example.org>").path.str(), "bob@example.org");
}

TEST(ParseRcptTo, SyntaxErrors) {
  for (const char* a : {"", "TO", "TO:", "TO:<>", "FROM:<a@b.example>", "TO:bob@example.org",
                        "TO:<bob@example.org", "TO:<bob>", "TO:<bob@example.org>NOTIFY=NEVER"})
    EXPECT_EQ(code_of(parse_rcpt_to(a, false)), 501) << a;
}

TEST(ParseRcptTo, Utf8) {
  EXPECT_EQ(code_of(parse_rcpt_to("TO:<\xC3\xA9@example.org>", false)), 553);
  RcptTo r = rcpt_ok("TO:<\xC3\xA9@example.org>", true);
  EXPECT_TRUE(r.path.utf8);
}

TEST(ParseRcptTo, NotifyValues) {
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=NEVER").notify, queue::kNotifyNever);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=SUCCESS").notify, queue::kNotifySuccess);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=FAILURE").notify, queue::kNotifyFailure);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=DELAY").notify, queue::kNotifyDelay);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=SUCCESS,FAILURE").notify,
            queue::kNotifySuccess | queue::kNotifyFailure);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=delay,success,failure").notify,
            queue::kNotifySuccess | queue::kNotifyFailure | queue::kNotifyDelay);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> notify=Failure,Delay").notify,
            queue::kNotifyFailure | queue::kNotifyDelay);
}

TEST(ParseRcptTo, NotifyRules) {
  // NEVER must stand alone (RFC 3461 4.1); no repeats; no empty items; a value is required.
  for (const char* a :
       {"TO:<b@x.example> NOTIFY=NEVER,SUCCESS", "TO:<b@x.example> NOTIFY=FAILURE,NEVER",
        "TO:<b@x.example> NOTIFY=NEVER,NEVER", "TO:<b@x.example> NOTIFY=SUCCESS,SUCCESS",
        "TO:<b@x.example> NOTIFY=SUCCESS,", "TO:<b@x.example> NOTIFY=,SUCCESS",
        "TO:<b@x.example> NOTIFY=SUCCESS,,FAILURE",
        "TO:<b@x.example> NOTIFY=", "TO:<b@x.example> NOTIFY", "TO:<b@x.example> NOTIFY=ALWAYS",
        "TO:<b@x.example> NOTIFY=NEVER NOTIFY=NEVER",
        "TO:<b@x.example> NOTIFY=SUCCESS NOTIFY=FAILURE"})
    EXPECT_EQ(code_of(parse_rcpt_to(a, false)), 501) << a;
}

TEST(ParseRcptTo, BarePostmaster) {
  // RFC 5321 4.1.1.3: "<Postmaster>" is a recipient without a domain; any case (4.5.1).
  for (const char* a : {"TO:<Postmaster>", "TO:<postmaster>", "TO:<POSTMASTER>"}) {
    RcptTo r = rcpt_ok(a);
    EXPECT_TRUE(r.path.mailbox.domain.empty()) << a;
    EXPECT_EQ(r.path.str(), std::string(a).substr(4, 10)) << a;
  }
  RcptTo p = rcpt_ok("TO:<Postmaster> NOTIFY=NEVER");
  EXPECT_EQ(p.notify, queue::kNotifyNever);
  // Only exactly that: other domain-less paths stay syntax errors.
  for (const char* a : {"TO:<postmasterx>", "TO:<postmaste>", "TO:<post master>",
                        "TO:<Postmaster>x", "TO:<Postmaster", "TO:<user>", "TO:<@a:postmaster>"})
    EXPECT_EQ(code_of(parse_rcpt_to(a, false)), 501) << a;
}

TEST(ParseRcptTo, Orcpt) {
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> ORCPT=rfc822;b@x.example").orcpt, "rfc822;b@x.example");
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> ORCPT=rfc822;a+2Bb@x.example").orcpt,
            "rfc822;a+2Bb@x.example");
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> ORCPT=utf-8;caf+C3+A9@x.example").orcpt,
            "utf-8;caf+C3+A9@x.example");
  RcptTo both = rcpt_ok("TO:<b@x.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig@y.example");
  EXPECT_EQ(both.notify, queue::kNotifySuccess | queue::kNotifyDelay);
  EXPECT_EQ(both.orcpt, "rfc822;orig@y.example");
  for (std::string a :
       {std::string("TO:<b@x.example> ORCPT"), std::string("TO:<b@x.example> ORCPT="),
        std::string("TO:<b@x.example> ORCPT=b@x.example"),  // no addr-type
        std::string("TO:<b@x.example> ORCPT=;b@x.example"),
        std::string("TO:<b@x.example> ORCPT=rfc_822;b@x.example"),
        std::string("TO:<b@x.example> ORCPT=rfc822;a+zzb"),
        std::string("TO:<b@x.example> ORCPT=rfc822;a+2"),
        std::string("TO:<b@x.example> ORCPT=rfc822;a ORCPT=rfc822;b"),
        "TO:<b@x.example> ORCPT=rfc822;" + std::string(494, 'a')})
    EXPECT_EQ(code_of(parse_rcpt_to(a, false)), 501) << a;
  // 500 characters is the limit (RFC 3461 4.2).
  std::string v = "rfc822;" + std::string(493, 'a');
  ASSERT_EQ(v.size(), 500u);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> ORCPT=" + v).orcpt, v);
}

TEST(ParseRcptTo, UnknownParameterIs555) {
  EXPECT_EQ(code_of(parse_rcpt_to("TO:<b@x.example> FOO=1", false)), 555);
  EXPECT_EQ(code_of(parse_rcpt_to("TO:<b@x.example> SIZE=1", false)), 555);
  EXPECT_EQ(code_of(parse_rcpt_to("TO:<b@x.example> NOTIFY=NEVER BAR", false)), 555);
  EXPECT_EQ(code_of(parse_rcpt_to("TO:<b@x.example> RRVS=2026-01-01T00:00:00Z", false)), 555);
}

// --- xtext ---------------------------------------------------------------------------

TEST(ValidXtext, Rules) {
  EXPECT_TRUE(valid_xtext(""));
  EXPECT_TRUE(valid_xtext("abc"));
  EXPECT_TRUE(valid_xtext("!~<>\"@;"));
  EXPECT_TRUE(valid_xtext("+2B"));
  EXPECT_TRUE(valid_xtext("a+2B+3Db+00+FF"));
  EXPECT_FALSE(valid_xtext("="));
  EXPECT_FALSE(valid_xtext("a b"));
  EXPECT_FALSE(valid_xtext("+"));
  EXPECT_FALSE(valid_xtext("+2"));
  EXPECT_FALSE(valid_xtext("x+2"));
  EXPECT_FALSE(valid_xtext("+2b"));
  EXPECT_FALSE(valid_xtext("+G0"));
  EXPECT_FALSE(valid_xtext("a\x7f"));
  EXPECT_FALSE(valid_xtext("a\x01"));
  EXPECT_FALSE(valid_xtext("\xC3\xA9"));
  EXPECT_FALSE(valid_xtext(std::string_view("a\0b", 3)));
}

// --- BDAT ----------------------------------------------------------------------------

TEST(ParseBdat, SizeAndLast) {
  auto r = parse_bdat("1000");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size, 1000u);
  EXPECT_FALSE(r->last);
  auto l = parse_bdat("0 LAST");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->size, 0u);
  EXPECT_TRUE(l->last);
  auto l2 = parse_bdat("42 last");
  ASSERT_TRUE(l2.ok());
  EXPECT_EQ(l2->size, 42u);
  EXPECT_TRUE(l2->last);
  auto big = parse_bdat("18446744073709551615");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->size, UINT64_MAX);
}

TEST(ParseBdat, Errors) {
  for (const char* a : {"", " ", "LAST", "-1", "1.5", "10k", "0x10", "10 LAS", "10 LASTX",
                        "10  LAST", "10 LAST ", "10 LAST x", "18446744073709551616", " 10", "10 "})
    EXPECT_EQ(code_of(parse_bdat(a)), 501) << '"' << a << '"';
}

}  // namespace
}  // namespace ringmail::smtp
