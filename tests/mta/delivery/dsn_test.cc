// mta/delivery/dsn.h: which recipients get a notice, and the exact text of the notice.
#include "mta/delivery/dsn.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace ringmail::delivery {
namespace {

using namespace std::string_literals;
using queue::Envelope;
using queue::Ret;

constexpr int64_t kArrival = 1700000000;  // Tue, 14 Nov 2023 22:13:20 +0000
constexpr int64_t kNow = 1700003600;      // Tue, 14 Nov 2023 23:13:20 +0000

const std::string kMessage =
    "Received: from client.example ([192.0.2.1])\r\n"
    "\tby mx.example.test (ringmail) with ESMTP id Q1; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: lunch\r\n"
    "Message-ID: <m1@example.org>\r\n"
    "\r\n"
    "See you at noon.\r\n";

Envelope envelope() {
  Envelope e;
  e.sender = "alice@example.org";
  e.arrival_us = kArrival * 1000000;
  e.message_id = "<m1@example.org>";
  return e;
}

DsnRecipient failed_bob() {
  DsnRecipient r;
  r.address = "bob@example.net";
  r.action = DsnAction::failed;
  r.status = "5.1.1";
  r.remote_mta = "mx1.example.net";
  r.diagnostic = "550 5.1.1 <bob@example.net>: no such user";
  r.last_attempt = kNow - 5;
  return r;
}

DsnParams params(DsnKind kind, std::vector<DsnRecipient> rcpts) {
  DsnParams p;
  p.kind = kind;
  p.hostname = "mx.example.test";
  p.now = kNow;
  p.unique = "Q1.f";
  p.recipients = std::move(rcpts);
  return p;
}

Dsn build(const Envelope& e, std::string_view msg, const DsnParams& p) {
  auto r = build_dsn(e, msg, p);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : Dsn{};
}

// A small MIME reader for the shape we write: top header, then parts split on the
// boundary named in Content-Type.
struct Part {
  std::string header;   // through the CRLF of its last field
  std::string content;  // everything after the blank line, up to the delimiter's CRLF
};
struct Parsed {
  std::string header;
  std::string boundary;
  std::vector<Part> parts;
  bool closed = false;  // saw the close delimiter
};

Parsed parse(const std::string& m) {
  Parsed p;
  size_t end = m.find("\r\n\r\n");
  if (end == std::string::npos) return p;
  p.header = m.substr(0, end + 2);
  size_t b = p.header.find("boundary=\"");
  if (b == std::string::npos) return p;
  b += 10;
  p.boundary = p.header.substr(b, p.header.find('"', b) - b);
  std::string delim = "\r\n--" + p.boundary;
  size_t pos = m.find(delim, end);
  while (pos != std::string::npos) {
    size_t after = pos + delim.size();
    if (m.compare(after, 4, "--\r\n") == 0) {
      p.closed = after + 4 == m.size();
      break;
    }
    size_t body_start = after + 2;  // past CRLF ending the delimiter line
    size_t next = m.find(delim, body_start);
    std::string whole = m.substr(body_start, next - body_start);
    size_t sep = whole.find("\r\n\r\n");
    Part part;
    part.header = whole.substr(0, sep + 2);
    part.content = sep == std::string::npos ? "" : whole.substr(sep + 4);
    p.parts.push_back(part);
    pos = next;
  }
  return p;
}

// Lines of a text, without their CRLFs.
std::vector<std::string> lines(std::string_view s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t e = s.find("\r\n", pos);
    if (e == std::string_view::npos) e = s.size();
    out.emplace_back(s.substr(pos, e - pos));
    pos = e + 2;
  }
  return out;
}

// Text as one line, to find a sentence wherever it wrapped.
std::string flat(std::string s) {
  for (size_t at = s.find("\r\n"); at != std::string::npos; at = s.find("\r\n", at))
    s.replace(at, 2, " ");
  return s;
}

// Every line ends in CRLF, none is over 998 octets, and there is no bare CR or LF.
void expect_well_formed(const std::string& m) {
  ASSERT_GE(m.size(), 2u);
  EXPECT_EQ(m.substr(m.size() - 2), "\r\n");
  size_t line = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\r') {
      ASSERT_TRUE(i + 1 < m.size() && m[i + 1] == '\n') << "bare CR at " << i;
      ++i;
      line = 0;
    } else {
      ASSERT_NE(m[i], '\n') << "bare LF at " << i;
      ASSERT_LE(++line, 998u) << "long line at " << i;
    }
  }
}

TEST(DsnWanted, NotifyMatrix) {
  using K = DsnKind;
  const std::string_view s = "alice@example.org";
  // Absent: failure and delay, never success (RFC 3461 4.1).
  EXPECT_TRUE(dsn_wanted(K::failure, 0, s));
  EXPECT_TRUE(dsn_wanted(K::delay, 0, s));
  EXPECT_FALSE(dsn_wanted(K::success, 0, s));
  // NEVER: nothing.
  for (K k : {K::failure, K::delay, K::success})
    EXPECT_FALSE(dsn_wanted(k, queue::kNotifyNever, s));
  // Exactly what was listed.
  EXPECT_TRUE(dsn_wanted(K::success, queue::kNotifySuccess, s));
  EXPECT_FALSE(dsn_wanted(K::failure, queue::kNotifySuccess, s));
  EXPECT_FALSE(dsn_wanted(K::delay, queue::kNotifySuccess, s));
  EXPECT_TRUE(dsn_wanted(K::failure, queue::kNotifyFailure, s));
  EXPECT_FALSE(dsn_wanted(K::delay, queue::kNotifyFailure, s));
  EXPECT_TRUE(dsn_wanted(K::delay, queue::kNotifyDelay, s));
  EXPECT_FALSE(dsn_wanted(K::failure, queue::kNotifyDelay, s));
  uint8_t all = queue::kNotifySuccess | queue::kNotifyFailure | queue::kNotifyDelay;
  for (K k : {K::failure, K::delay, K::success}) EXPECT_TRUE(dsn_wanted(k, all, s));
  uint8_t fs = queue::kNotifySuccess | queue::kNotifyFailure;
  EXPECT_TRUE(dsn_wanted(K::success, fs, s));
  EXPECT_TRUE(dsn_wanted(K::failure, fs, s));
  EXPECT_FALSE(dsn_wanted(K::delay, fs, s));
}

TEST(DsnWanted, NullSenderNeverGetsOne) {
  uint8_t all = queue::kNotifySuccess | queue::kNotifyFailure | queue::kNotifyDelay;
  for (uint8_t n : {uint8_t{0}, all})
    for (DsnKind k : {DsnKind::failure, DsnKind::delay, DsnKind::success}) {
      EXPECT_FALSE(dsn_wanted(k, n, ""));
      EXPECT_FALSE(dsn_wanted(k, n, "<>"));
    }
}

TEST(BuildDsn, NullSenderIsRefused) {
  Envelope e = envelope();
  e.sender = "";
  auto r = build_dsn(e, kMessage, params(DsnKind::failure, {failed_bob()}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("null sender"), std::string::npos);
}

TEST(BuildDsn, GoldenFailure) {
  Dsn d = build(envelope(), kMessage, params(DsnKind::failure, {failed_bob()}));
  EXPECT_EQ(d.body, queue::BodyType::seven_bit);
  EXPECT_FALSE(d.smtputf8);
  expect_well_formed(d.message);
  Parsed p = parse(d.message);
  EXPECT_EQ(p.boundary, "=_rm_Q1f_00000000");
  EXPECT_EQ(p.header,
            "From: \"Mail Delivery System\" <MAILER-DAEMON@mx.example.test>\r\n"
            "To: <alice@example.org>\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            "Date: Tue, 14 Nov 2023 23:13:20 +0000\r\n"
            "Message-ID: <Q1.f@mx.example.test>\r\n"
            "In-Reply-To: <m1@example.org>\r\n"
            "References: <m1@example.org>\r\n"
            "MIME-Version: 1.0\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            " boundary=\"=_rm_Q1f_00000000\"\r\n");
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_TRUE(p.closed);
  EXPECT_EQ(p.parts[0].header,
            "Content-Description: Notification\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n");
  EXPECT_NE(p.parts[0].content.find("This is the mail system at host mx.example.test.\r\n"),
            std::string::npos);
  EXPECT_NE(p.parts[0].content.find("<bob@example.net>: failed\r\n"
                                    "    Host mx1.example.net said:\r\n"
                                    "        550 5.1.1 <bob@example.net>: no such user\r\n"),
            std::string::npos)
      << p.parts[0].content;
  EXPECT_EQ(p.parts[1].header,
            "Content-Description: Delivery report\r\n"
            "Content-Type: message/delivery-status\r\n");
  EXPECT_EQ(p.parts[1].content,
            "Reporting-MTA: dns; mx.example.test\r\n"
            "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            "\r\n"
            "Final-Recipient: rfc822; bob@example.net\r\n"
            "Action: failed\r\n"
            "Status: 5.1.1\r\n"
            "Remote-MTA: dns; mx1.example.net\r\n"
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: no such user\r\n"
            "Last-Attempt-Date: Tue, 14 Nov 2023 23:13:15 +0000\r\n");
  // RET not given: a failure returns the whole message, byte for byte.
  EXPECT_EQ(p.parts[2].header,
            "Content-Description: Undelivered Message\r\n"
            "Content-Type: message/rfc822\r\n");
  EXPECT_EQ(p.parts[2].content, kMessage);
}

TEST(BuildDsn, RetHdrsReturnsOnlyTheHeaderSection) {
  Envelope e = envelope();
  e.ret = Ret::hdrs;
  Parsed p = parse(build(e, kMessage, params(DsnKind::failure, {failed_bob()})).message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].header,
            "Content-Description: Message Headers\r\n"
            "Content-Type: text/rfc822-headers\r\n");
  EXPECT_EQ(p.parts[2].content, kMessage.substr(0, kMessage.find("\r\n\r\n") + 2));
  EXPECT_EQ(p.parts[2].content.find("See you at noon"), std::string::npos);
  EXPECT_NE(p.parts[0].content.find("headers are attached"), std::string::npos);
}

TEST(BuildDsn, RetFullReturnsTheMessage) {
  Envelope e = envelope();
  e.ret = Ret::full;
  Parsed p = parse(build(e, kMessage, params(DsnKind::failure, {failed_bob()})).message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_NE(p.parts[2].header.find("Content-Type: message/rfc822\r\n"), std::string::npos);
  EXPECT_EQ(p.parts[2].content, kMessage);
}

TEST(BuildDsn, MessageWithoutTrailingCrlfIsReturnedExactly) {
  std::string m = kMessage.substr(0, kMessage.size() - 2);  // "...noon." with no CRLF
  Parsed p = parse(build(envelope(), m, params(DsnKind::failure, {failed_bob()})).message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].content, m);
}

TEST(BuildDsn, EnvidAndOrcptRoundTrip) {
  Envelope e = envelope();
  e.envid = "QQ+2B314=";  // not valid xtext ('='): kept, sanitised
  DsnRecipient r = failed_bob();
  r.orcpt = "rfc822;Bob+2Balias@Example.NET";
  {
    e.envid = "QQ+2B314";
    Parsed p = parse(build(e, kMessage, params(DsnKind::failure, {r})).message);
    ASSERT_EQ(p.parts.size(), 3u);
    EXPECT_EQ(p.parts[1].content,
              "Reporting-MTA: dns; mx.example.test\r\n"
              "Original-Envelope-Id: QQ+314\r\n"
              "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
              "\r\n"
              "Original-Recipient: rfc822; Bob+alias@Example.NET\r\n"
              "Final-Recipient: rfc822; bob@example.net\r\n"
              "Action: failed\r\n"
              "Status: 5.1.1\r\n"
              "Remote-MTA: dns; mx1.example.net\r\n"
              "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: no such user\r\n"
              "Last-Attempt-Date: Tue, 14 Nov 2023 23:13:15 +0000\r\n");
    EXPECT_NE(p.parts[0].content.find("<bob@example.net> (originally Bob+alias@Example.NET)"),
              std::string::npos);
  }
  {
    // Same address as the final recipient: no "(originally ...)" noise in the text.
    r.orcpt = "rfc822;BOB@example.net";
    Parsed p = parse(build(e, kMessage, params(DsnKind::failure, {r})).message);
    EXPECT_NE(p.parts[1].content.find("Original-Recipient: rfc822; BOB@example.net\r\n"),
              std::string::npos);
    EXPECT_EQ(p.parts[0].content.find("originally"), std::string::npos);
  }
}

TEST(BuildDsn, XtextThatDecodesToControlsStaysEncoded) {
  Envelope e = envelope();
  e.envid = "id+0D+0AX-Evil:+20yes";
  DsnRecipient r = failed_bob();
  r.orcpt = "rfc822;a+0D+0ABcc:+20victim@example.org";
  Dsn d = build(e, kMessage, params(DsnKind::failure, {r}));
  expect_well_formed(d.message);
  for (const auto& l : lines(d.message)) {
    EXPECT_NE(l.rfind("X-Evil", 0), 0u) << l;
    EXPECT_NE(l.rfind("Bcc", 0), 0u) << l;
  }
  Parsed p = parse(d.message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_NE(p.parts[1].content.find("Original-Envelope-Id: id+0D+0AX-Evil:+20yes\r\n"),
            std::string::npos);
  EXPECT_NE(p.parts[1].content.find("Original-Recipient: rfc822; a+0D+0ABcc:+20victim@"),
            std::string::npos);
}

TEST(BuildDsn, MalformedOrcptIsLeftOut) {
  DsnRecipient r = failed_bob();
  for (const char* bad : {"no-semicolon", ";x@y", "rfc822;", "rfc 822;x@y", "rfc822;a=b"}) {
    r.orcpt = bad;
    Parsed p = parse(build(envelope(), kMessage, params(DsnKind::failure, {r})).message);
    ASSERT_EQ(p.parts.size(), 3u) << bad;
    EXPECT_EQ(p.parts[1].content.find("Original-Recipient"), std::string::npos) << bad;
  }
}

TEST(BuildDsn, DelayNotice) {
  Envelope e = envelope();
  e.ret = Ret::full;  // delay notices return headers only regardless
  DsnRecipient r;
  r.address = "carol@example.com";
  r.action = DsnAction::delayed;
  r.status = "4.4.1";
  r.diagnostic = "connect to mx.example.com[192.0.2.9]:25: Connection refused";
  r.diagnostic_type = "X-Ringmail";
  r.last_attempt = kNow - 60;
  r.will_retry_until = kArrival + 5 * 86400;
  Dsn d = build(e, kMessage, params(DsnKind::delay, {r}));
  expect_well_formed(d.message);
  Parsed p = parse(d.message);
  EXPECT_NE(p.header.find("Subject: Delayed Mail (still being retried)\r\n"), std::string::npos);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[1].content,
            "Reporting-MTA: dns; mx.example.test\r\n"
            "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            "\r\n"
            "Final-Recipient: rfc822; carol@example.com\r\n"
            "Action: delayed\r\n"
            "Status: 4.4.1\r\n"
            "Diagnostic-Code: X-Ringmail; connect to mx.example.com[192.0.2.9]:25:\r\n"
            " Connection refused\r\n"
            "Last-Attempt-Date: Tue, 14 Nov 2023 23:12:20 +0000\r\n"
            "Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n");
  EXPECT_NE(p.parts[2].header.find("Content-Type: text/rfc822-headers\r\n"), std::string::npos);
  EXPECT_EQ(p.parts[2].content.find("See you at noon"), std::string::npos);
  EXPECT_NE(flat(p.parts[0].content).find("retried until Sun, 19 Nov 2023 22:13:20 +0000."),
            std::string::npos)
      << p.parts[0].content;
  EXPECT_NE(p.parts[0].content.find("Reason:\r\n        connect to"), std::string::npos);
}

TEST(BuildDsn, WillRetryUntilOnlyForDelayed) {
  DsnRecipient r = failed_bob();
  r.will_retry_until = kNow + 3600;
  Parsed p = parse(build(envelope(), kMessage, params(DsnKind::failure, {r})).message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[1].content.find("Will-Retry-Until"), std::string::npos);
}

TEST(BuildDsn, MultipleRecipientsOneGroupEachInOrder) {
  DsnRecipient a = failed_bob();
  DsnRecipient b;
  b.address = "dave@example.com";
  b.orcpt = "rfc822;dave@example.com";
  b.action = DsnAction::failed;
  b.status = "5.4.7";
  b.diagnostic = "delivery time expired";
  b.diagnostic_type = "X-Ringmail";
  DsnRecipient c = failed_bob();
  c.address = "erin@example.net";
  c.status = "5.2.2";
  c.diagnostic = "552-5.2.2 mailbox full\r\n552 5.2.2 try again never";
  Parsed p = parse(build(envelope(), kMessage, params(DsnKind::failure, {a, b, c})).message);
  ASSERT_EQ(p.parts.size(), 3u);
  const std::string& s = p.parts[1].content;
  // Groups are separated by one blank line; per-message group first.
  std::vector<std::string> groups;
  size_t pos = 0;
  while (true) {
    size_t e = s.find("\r\n\r\n", pos);
    groups.push_back(s.substr(pos, e == std::string::npos ? std::string::npos : e + 2 - pos));
    if (e == std::string::npos) break;
    pos = e + 4;
  }
  ASSERT_EQ(groups.size(), 4u) << s;
  EXPECT_EQ(groups[0].rfind("Reporting-MTA: dns; mx.example.test\r\n", 0), 0u);
  EXPECT_EQ(groups[1].rfind("Final-Recipient: rfc822; bob@example.net\r\n", 0), 0u);
  EXPECT_EQ(groups[2],
            "Original-Recipient: rfc822; dave@example.com\r\n"
            "Final-Recipient: rfc822; dave@example.com\r\n"
            "Action: failed\r\n"
            "Status: 5.4.7\r\n"
            "Diagnostic-Code: X-Ringmail; delivery time expired\r\n");
  // A multi-line reply is one unfolded field (lines joined by a space) ...
  EXPECT_NE(
      groups[3].find("Diagnostic-Code: smtp; 552-5.2.2 mailbox full 552 5.2.2 try again never\r\n"),
      std::string::npos)
      << groups[3];
  // ... and one text line per reply line for people.
  EXPECT_NE(p.parts[0].content.find("        552-5.2.2 mailbox full\r\n"
                                    "        552 5.2.2 try again never\r\n"),
            std::string::npos);
  size_t ib = p.parts[0].content.find("<bob@");
  size_t id = p.parts[0].content.find("<dave@");
  size_t ie = p.parts[0].content.find("<erin@");
  EXPECT_TRUE(ib < id && id < ie);
}

TEST(BuildDsn, SuccessAndRelayed) {
  DsnRecipient a;
  a.address = "bob@example.net";
  a.action = DsnAction::delivered;
  a.status = "2.0.0";
  a.remote_mta = "mx1.example.net";
  a.diagnostic = "250 2.0.0 Ok: queued as 12345";
  DsnRecipient b = a;
  b.address = "old@example.net";
  b.action = DsnAction::relayed;
  Envelope e = envelope();
  e.ret = Ret::full;
  Dsn d = build(e, kMessage, params(DsnKind::success, {a, b}));
  Parsed p = parse(d.message);
  EXPECT_NE(p.header.find("Subject: Successful Mail Delivery Report\r\n"), std::string::npos);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_NE(p.parts[1].content.find("Action: delivered\r\n"), std::string::npos);
  EXPECT_NE(p.parts[1].content.find("Action: relayed\r\n"), std::string::npos);
  EXPECT_NE(flat(p.parts[0].content).find("does not send delivery notifications"),
            std::string::npos);
  // Success notices return headers only even with RET=FULL (RET is about failures).
  EXPECT_NE(p.parts[2].header.find("text/rfc822-headers"), std::string::npos);
}

TEST(BuildDsn, ActionMustFitKind) {
  DsnRecipient r = failed_bob();
  EXPECT_FALSE(build_dsn(envelope(), kMessage, params(DsnKind::delay, {r})).ok());
  EXPECT_FALSE(build_dsn(envelope(), kMessage, params(DsnKind::success, {r})).ok());
  r.action = DsnAction::delivered;
  EXPECT_FALSE(build_dsn(envelope(), kMessage, params(DsnKind::failure, {r})).ok());
  EXPECT_FALSE(build_dsn(envelope(), kMessage, params(DsnKind::failure, {})).ok());
}

TEST(BuildDsn, BadOwnInputsAreErrors) {
  DsnParams p = params(DsnKind::failure, {failed_bob()});
  p.hostname = "mx.example.test\r\nX: y";
  EXPECT_FALSE(build_dsn(envelope(), kMessage, p).ok());
  p = params(DsnKind::failure, {failed_bob()});
  p.unique = "a b";
  EXPECT_FALSE(build_dsn(envelope(), kMessage, p).ok());
  p.unique = "";
  EXPECT_FALSE(build_dsn(envelope(), kMessage, p).ok());
  Envelope e = envelope();
  e.sender = "alice@example.org\r\nBcc: x@y";
  EXPECT_FALSE(build_dsn(e, kMessage, params(DsnKind::failure, {failed_bob()})).ok());
  DsnRecipient r = failed_bob();
  r.address = "bob@example.net\nX: y";
  EXPECT_FALSE(build_dsn(envelope(), kMessage, params(DsnKind::failure, {r})).ok());
  r = failed_bob();
  r.diagnostic_type = "smtp; x";
  EXPECT_FALSE(build_dsn(envelope(), kMessage, params(DsnKind::failure, {r})).ok());
}

TEST(BuildDsn, MalformedStatusFallsBackByAction) {
  DsnRecipient r = failed_bob();
  for (const char* bad : {"", "5.1", "6.1.1", "5.1.1 ", "5.1234.1", "5..1", "x.1.1"}) {
    r.status = bad;
    Parsed p = parse(build(envelope(), kMessage, params(DsnKind::failure, {r})).message);
    ASSERT_EQ(p.parts.size(), 3u);
    EXPECT_NE(p.parts[1].content.find("Status: 5.0.0\r\n"), std::string::npos) << bad;
  }
  r.status = "4.123.7";
  r.action = DsnAction::delayed;
  Parsed p = parse(build(envelope(), kMessage, params(DsnKind::delay, {r})).message);
  EXPECT_NE(p.parts[1].content.find("Status: 4.123.7\r\n"), std::string::npos);
}

TEST(BuildDsn, NoHeaderBodySeparator) {
  // Fields, then text that is not a field, with no empty line between them.
  std::string m =
      "Received: from x ([192.0.2.1])\r\n\tby mx.example.test; Tue, 14 Nov 2023\r\n"
      "Subject: no separator\r\n"
      "this line is body text\r\n"
      "X-Not: a header, it follows body text\r\n";
  Envelope e = envelope();
  e.ret = Ret::hdrs;
  Parsed p = parse(build(e, m, params(DsnKind::failure, {failed_bob()})).message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].content,
            "Received: from x ([192.0.2.1])\r\n\tby mx.example.test; Tue, 14 Nov 2023\r\n"
            "Subject: no separator\r\n");
  // Only fields, no body and no final CRLF at all: a CRLF is added to the headers part.
  EXPECT_EQ(header_section("A: 1\r\nB: 2"), "A: 1\r\nB: 2");
  p = parse(build(e, "A: 1\r\nB: 2", params(DsnKind::failure, {failed_bob()})).message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].content, "A: 1\r\nB: 2\r\n");
  // No fields at all: nothing to return, the part is left out.
  p = parse(build(e, "just text\r\n", params(DsnKind::failure, {failed_bob()})).message);
  EXPECT_EQ(p.parts.size(), 2u);
  EXPECT_TRUE(p.closed);
}

TEST(HeaderSection, Boundaries) {
  EXPECT_EQ(header_section(""), "");
  EXPECT_EQ(header_section("\r\nbody"), "");
  EXPECT_EQ(header_section(" folded-first: x\r\n"), "");
  EXPECT_EQ(header_section("A: 1\r\n folded\r\n\r\nbody"), "A: 1\r\n folded\r\n");
  EXPECT_EQ(header_section(": x\r\n"), "");
  EXPECT_EQ(header_section("A B: x\r\n"), "");
  EXPECT_EQ(header_section("A: 1\r\nFrom nobody\r\n"), "A: 1\r\n");
}

TEST(BuildDsn, HugeMessageReturnsHeadersWithANote) {
  std::string m = kMessage + std::string(200, 'x') + "\r\n";
  DsnParams p = params(DsnKind::failure, {failed_bob()});
  p.max_return_size = kMessage.size();  // one byte less than m needs
  Parsed r = parse(build(envelope(), m, p).message);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_NE(r.parts[2].header.find("text/rfc822-headers"), std::string::npos);
  EXPECT_EQ(r.parts[2].content.find("xxxx"), std::string::npos);
  EXPECT_NE(flat(r.parts[0].content)
                .find("larger than " + std::to_string(kMessage.size()) +
                      " bytes, so only its headers are attached"),
            std::string::npos)
      << r.parts[0].content;
  // At the bound exactly the message still comes back whole.
  p.max_return_size = m.size();
  r = parse(build(envelope(), m, p).message);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(r.parts[2].content, m);
}

TEST(BuildDsn, OversizedHeaderSectionIsCutAtALineEnd) {
  Envelope e = envelope();
  e.ret = Ret::hdrs;
  DsnParams p = params(DsnKind::failure, {failed_bob()});
  size_t first_field = kMessage.find("From: Alice");  // end of the folded Received:
  p.max_return_size = first_field + 5;
  Parsed r = parse(build(e, kMessage, p).message);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(r.parts[2].content, kMessage.substr(0, first_field));
  EXPECT_NE(flat(r.parts[0].content)
                .find("header section is larger than " + std::to_string(p.max_return_size) +
                      " bytes; only its first lines are attached."),
            std::string::npos)
      << r.parts[0].content;
  // Whatever the bound, what comes back fits in it and ends at a line end.
  for (size_t bound = 0; bound < kMessage.size(); ++bound) {
    p.max_return_size = bound;
    r = parse(build(e, kMessage, p).message);
    std::string got = r.parts.size() == 3 ? r.parts[2].content : "";
    EXPECT_LE(got.size(), bound);
    EXPECT_EQ(kMessage.compare(0, got.size(), got), 0);
    if (!got.empty()) {
      EXPECT_EQ(got.substr(got.size() - 2), "\r\n");
    }
  }
  // A bound too small for even one line: no third part, and the text says why.
  e.ret = Ret::unspecified;
  p.max_return_size = 10;
  r = parse(build(e, kMessage, p).message);
  ASSERT_EQ(r.parts.size(), 2u);
  EXPECT_TRUE(r.closed);
  EXPECT_NE(flat(r.parts[0].content).find("larger than 10 bytes and is not attached"),
            std::string::npos);
}

TEST(BuildDsn, LongUnfoldableValueStaysOnItsFieldLine) {
  DsnParams p = params(DsnKind::failure, {failed_bob()});
  std::string unique(120, 'u');
  std::string host = std::string(60, 'h') + ".example.test";
  p.unique = unique;
  p.hostname = host;
  Dsn d = build(envelope(), kMessage, p);
  expect_well_formed(d.message);
  EXPECT_NE(d.message.find("\r\nMessage-ID: <" + unique + "@" + host + ">\r\n"), std::string::npos);
}

TEST(BuildDsn, DefaultBoundIsTenMebibytes) {
  EXPECT_EQ(kDefaultMaxReturnSize, 10u * 1024 * 1024);
  std::string m = kMessage;
  std::string line(78, 'y');
  line += "\r\n";
  while (m.size() <= kDefaultMaxReturnSize) m += line;
  Dsn d = build(envelope(), m, params(DsnKind::failure, {failed_bob()}));
  EXPECT_LT(d.message.size(), 16u * 1024);
  Parsed p = parse(d.message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].content, kMessage.substr(0, kMessage.find("\r\n\r\n") + 2));
}

TEST(BuildDsn, RemoteTextCannotInjectHeadersOrParts) {
  Parsed clean =
      parse(build(envelope(), kMessage, params(DsnKind::failure, {failed_bob()})).message);
  DsnRecipient r = failed_bob();
  r.remote_mta = "mx1.example.net\r\nX-Injected-Mta: 1";
  r.diagnostic = "550 5.1.1 no\r\nX-Injected: yes\r\n\r\n--" + clean.boundary +
                 "\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\x01\x1b[31m\x7f\rZ\nY\0W"s;
  r.status = "5.1.1\r\nX-Injected-Status: 1";
  Dsn d = build(envelope(), kMessage, params(DsnKind::failure, {r}));
  expect_well_formed(d.message);
  for (const auto& l : lines(d.message)) {
    EXPECT_NE(l.rfind("X-Injected", 0), 0u) << l;
    EXPECT_NE(l.rfind("Content-Type: text/html", 0), 0u) << l;
    for (char c : l) EXPECT_FALSE((c >= 0 && c < 0x20 && c != '\t') || c == 0x7f) << l;
  }
  Parsed p = parse(d.message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_TRUE(p.closed);
  EXPECT_NE(p.boundary, clean.boundary);  // the remote text named it, so it moved
  EXPECT_NE(p.parts[1].content.find("Status: 5.0.0\r\n"), std::string::npos);
  // Everything the remote said is still there, on one field, controls as spaces.
  EXPECT_NE(p.parts[1].content.find("Remote-MTA: dns; mx1.example.netX-Injected-Mta:1\r\n"),
            std::string::npos)
      << p.parts[1].content;
  EXPECT_NE(p.parts[1].content.find("Diagnostic-Code: smtp; 550 5.1.1 no X-Injected: yes --"),
            std::string::npos)
      << p.parts[1].content;
}

TEST(BuildDsn, BoundaryAvoidsTheContent) {
  std::string m = kMessage + "--=_rm_Q1f_00000000\r\n--=_rm_Q1f_00000001--\r\n";
  Dsn d = build(envelope(), m, params(DsnKind::failure, {failed_bob()}));
  Parsed p = parse(d.message);
  EXPECT_EQ(p.boundary, "=_rm_Q1f_00000002");
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].content, m);
  // The boundary occurs only as our delimiters and in the Content-Type.
  size_t n = 0;
  for (size_t at = d.message.find(p.boundary); at != std::string::npos;
       at = d.message.find(p.boundary, at + 1))
    ++n;
  EXPECT_EQ(n, 1u + 3u + 1u);
}

TEST(BuildDsn, EightBitOriginalIsLabelled) {
  std::string m = kMessage + "caf\xc3\xa9\r\n";
  Dsn d = build(envelope(), m, params(DsnKind::failure, {failed_bob()}));
  EXPECT_EQ(d.body, queue::BodyType::eight_bit_mime);
  Parsed p = parse(d.message);
  EXPECT_NE(p.header.find("Content-Transfer-Encoding: 8bit\r\n"), std::string::npos);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_NE(p.parts[2].header.find("Content-Transfer-Encoding: 8bit\r\n"), std::string::npos);
  EXPECT_EQ(p.parts[2].content, m);
  // A line over 998 octets needs BINARYMIME.
  std::string longline = kMessage + std::string(1200, 'z') + "\r\n";
  d = build(envelope(), longline, params(DsnKind::failure, {failed_bob()}));
  EXPECT_EQ(d.body, queue::BodyType::binary_mime);
  EXPECT_NE(d.message.find("Content-Transfer-Encoding: binary\r\n"), std::string::npos);
}

TEST(BuildDsn, Smtputf8UsesGlobalTypes) {
  Envelope e = envelope();
  e.smtputf8 = true;
  e.sender = "ali\xc3\xa7\x65@example.org";
  DsnRecipient r = failed_bob();
  r.address = "j\xc3\xb6rg+x@b\xc3\xbc\x63her.example";
  r.orcpt = "utf-8;j\\x{F6}rg\\x{2B}x@b\\x{FC}cher.example";
  r.diagnostic = "550 5.1.1 unbekannter Empf\xc3\xa4nger \xff";
  Dsn d = build(e, kMessage, params(DsnKind::failure, {r}));
  EXPECT_TRUE(d.smtputf8);
  EXPECT_EQ(d.body, queue::BodyType::eight_bit_mime);
  expect_well_formed(d.message);
  Parsed p = parse(d.message);
  EXPECT_NE(p.header.find("To: <ali\xc3\xa7\x65@example.org>\r\n"), std::string::npos);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_NE(p.parts[0].header.find("text/plain; charset=utf-8"), std::string::npos);
  EXPECT_NE(p.parts[1].header.find("Content-Type: message/global-delivery-status\r\n"),
            std::string::npos);
  EXPECT_NE(p.parts[2].header.find("Content-Type: message/global\r\n"), std::string::npos);
  EXPECT_NE(p.parts[1].content.find(
                "Original-Recipient: utf-8; j\\x{F6}rg\\x{2B}x@b\\x{FC}cher.example\r\n"
                "Final-Recipient: utf-8; j\xc3\xb6rg\\x{2B}x@b\xc3\xbc\x63her.example\r\n"),
            std::string::npos)
      << p.parts[1].content;
  // Well-formed UTF-8 in the reply survives; a stray byte becomes '?'.
  EXPECT_NE(p.parts[1].content.find("Empf\xc3\xa4nger ?\r\n"), std::string::npos);
  e.ret = Ret::hdrs;
  p = parse(build(e, kMessage, params(DsnKind::failure, {r})).message);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_NE(p.parts[2].header.find("Content-Type: message/global-headers\r\n"), std::string::npos);
}

TEST(BuildDsn, NonUtf8NoticeReplacesEightBitReplyBytes) {
  DsnRecipient r = failed_bob();
  r.diagnostic = "550 Empf\xc3\xa4nger";
  Dsn d = build(envelope(), kMessage, params(DsnKind::failure, {r}));
  EXPECT_EQ(d.body, queue::BodyType::seven_bit);
  EXPECT_NE(d.message.find("Diagnostic-Code: smtp; 550 Empf??nger\r\n"), std::string::npos);
}

TEST(BuildDsn, LongReplyIsFoldedAndBounded) {
  DsnRecipient r = failed_bob();
  std::string word(1500, 'w');  // no spaces: hard-cut below 998
  r.diagnostic = "550 " + std::string(3000, 'a') + " " + word;
  for (int i = 0; i < 100; ++i) r.diagnostic += " more words here";
  Dsn d = build(envelope(), kMessage, params(DsnKind::failure, {r}));
  expect_well_formed(d.message);
  Parsed p = parse(d.message);
  ASSERT_EQ(p.parts.size(), 3u);
  // Capped at 4 KiB of reply, so the tail is gone.
  EXPECT_EQ(p.parts[1].content.find("more words"), std::string::npos);
}

TEST(Xtext, Decode) {
  EXPECT_EQ(xtext_decode("a+2Bb+3Dc"), "a+b=c");
  EXPECT_EQ(xtext_decode("plain"), "plain");
  EXPECT_EQ(xtext_decode("end+4"), "end+4");
  EXPECT_EQ(xtext_decode("+41+42"), "AB");
}

// Writes sample notices for tests/integration/test_dsn_format.py, which parses them with
// Python's email package: an independent MIME parser reading what we write. The files go
// to $RINGMAIL_DSN_SAMPLES; without it the test has nothing to do.
TEST(DsnSamples, Write) {
  const char* dir = std::getenv("RINGMAIL_DSN_SAMPLES");
  if (!dir) GTEST_SKIP() << "RINGMAIL_DSN_SAMPLES not set";
  auto write = [&](const std::string& name, const Dsn& d) {
    std::ofstream f(std::string(dir) + "/" + name, std::ios::binary);
    f << d.message;
    ASSERT_TRUE(f.good()) << name;
  };
  Envelope e = envelope();
  e.envid = "QQ+2B314";
  DsnRecipient bob = failed_bob();
  bob.orcpt = "rfc822;Bob+2Balias@Example.NET";
  DsnRecipient erin = failed_bob();
  erin.address = "erin@example.net";
  erin.status = "5.2.2";
  erin.diagnostic = "552-5.2.2 mailbox full\r\n552 5.2.2 X-Injected: yes";
  write("failure_full.eml", build(e, kMessage, params(DsnKind::failure, {bob, erin})));
  e.ret = Ret::hdrs;
  write("failure_hdrs.eml", build(e, kMessage, params(DsnKind::failure, {bob})));
  e.ret = Ret::full;
  DsnRecipient carol;
  carol.address = "carol@example.com";
  carol.action = DsnAction::delayed;
  carol.status = "4.4.1";
  carol.diagnostic = "connection refused";
  carol.diagnostic_type = "X-Ringmail";
  carol.last_attempt = kNow - 60;
  carol.will_retry_until = kArrival + 5 * 86400;
  write("delay.eml", build(e, kMessage, params(DsnKind::delay, {carol})));
  DsnRecipient old;
  old.address = "old@example.net";
  old.action = DsnAction::relayed;
  old.status = "2.0.0";
  write("relayed.eml", build(e, kMessage, params(DsnKind::success, {old})));
  DsnParams big = params(DsnKind::failure, {failed_bob()});
  big.max_return_size = kMessage.size() - 1;  // room for the headers, not the body
  write("huge.eml", build(envelope(), kMessage, big));
  Envelope u = envelope();
  u.smtputf8 = true;
  DsnRecipient jorg = failed_bob();
  jorg.address = "j\xc3\xb6rg@example.net";
  write("utf8.eml", build(u, kMessage, params(DsnKind::failure, {jorg})));
}

}  // namespace
}  // namespace ringmail::delivery
