// mta/delivery/outcome.h: what one delivery attempt means for the recipients (state,
// attempts, last reply, next try), the events it logs and the notices it owes.
#include "mta/delivery/outcome.h"

#include <gtest/gtest.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ringmail::delivery {
namespace {

using namespace std::chrono_literals;
using queue::Envelope;
using queue::QueueId;
using queue::RcptState;
using queue::Recipient;

constexpr int64_t kArrival = 1700000000;  // 2023-11-14T22:13:20Z
constexpr int64_t kHour = 3600;
constexpr int64_t kLifetime = 5 * 24 * kHour;
constexpr int64_t kExpires = kArrival + kLifetime;
constexpr std::string_view kHost = "mx.example.test";
const QueueId kId{0x123456789ab};

const std::string kMessage =
    "Received: from client.example ([192.0.2.1])\r\n"
    "\tby mx.example.test (ringmail) with ESMTP id Q1; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: lunch\r\n"
    "Message-ID: <m1@example.org>\r\n"
    "\r\n"
    "See you at noon.\r\n";

RetryPolicy policy() {
  RetryPolicy p;
  p.intervals = {300s, 900s, 3600s};
  p.max_lifetime = std::chrono::seconds(kLifetime);
  p.delay_notice_after = std::chrono::seconds(4 * kHour);
  return p;
}

Envelope envelope(const std::vector<std::string>& rcpts, std::string sender = "alice@example.org") {
  Envelope e;
  e.sender = std::move(sender);
  e.client_address = "192.0.2.1";
  e.message_id = "<m1@example.org>";
  e.arrival_us = kArrival * 1000000;
  e.body_size = kMessage.size();
  for (const auto& a : rcpts) {
    Recipient r;
    r.address = a;
    r.state = RcptState::inflight;
    e.recipients.push_back(std::move(r));
  }
  return e;
}

RecipientResult delivered(uint32_t index) {
  RecipientResult r;
  r.index = index;
  r.response = {Outcome::delivered, 250, "2.0.0", "250 2.0.0 Ok: queued as 4Xyz"};
  r.mx = "mx1.example.net";
  r.address = "198.51.100.7";
  return r;
}

RecipientResult failed(uint32_t index) {
  RecipientResult r;
  r.index = index;
  r.response = {Outcome::failed, 550, "5.1.1", "550 5.1.1 no such user"};
  r.mx = "mx1.example.net";
  r.address = "198.51.100.7";
  return r;
}

RecipientResult deferred(uint32_t index) {
  RecipientResult r;
  r.index = index;
  r.response = {Outcome::deferred, 451, "4.3.0", "451 4.3.0 try again later"};
  r.mx = "mx2.example.net";
  r.address = "198.51.100.8";
  return r;
}

// decide() with notice ids from a counter (1001, 1002, ...).
struct Attempt {
  Decision d;
  std::vector<QueueId> ids;  // the ids new_id handed out, in order
};

Attempt run(const Envelope& env, const std::vector<RecipientResult>& results, int64_t now_s,
            const RetryPolicy& pol = policy(), int64_t extra_us = 0,
            std::string_view message = kMessage) {
  Attempt r;
  DecideParams p;
  p.hostname = kHost;
  p.now_us = now_s * 1000000 + extra_us;
  p.new_id = [&r] {
    QueueId id{1001 + r.ids.size()};
    r.ids.push_back(id);
    return id;
  };
  r.d = decide(kId, env, message, results, pol, p);
  return r;
}

// --- A flat JSON object reader: {"k":"string","n":123,...} ----------------------------

std::map<std::string, std::string> parse_json(const std::string& s) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  auto fail = [&](const char* why) {
    ADD_FAILURE() << "bad JSON (" << why << ") at " << i << ": " << s;
    return std::map<std::string, std::string>{};
  };
  auto str = [&](std::string& v) -> bool {
    if (i >= s.size() || s[i] != '"') return false;
    ++i;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') {
        if (++i >= s.size()) return false;
        switch (s[i]) {
          case 'n':
            v += '\n';
            break;
          case 'r':
            v += '\r';
            break;
          case 't':
            v += '\t';
            break;
          case 'u':
            if (i + 4 >= s.size()) return false;
            v += static_cast<char>(std::stoi(s.substr(i + 1, 4), nullptr, 16));
            i += 4;
            break;
          default:
            v += s[i];
        }
      } else {
        v += s[i];
      }
      ++i;
    }
    if (i >= s.size()) return false;
    ++i;
    return true;
  };
  if (s.empty() || s[0] != '{') return fail("no {");
  ++i;
  while (i < s.size() && s[i] != '}') {
    std::string k, v;
    if (!str(k)) return fail("key");
    if (i >= s.size() || s[i] != ':') return fail(":");
    ++i;
    if (i < s.size() && s[i] == '"') {
      if (!str(v)) return fail("string value");
    } else {
      while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '-'))
        v += s[i++];
      if (v.empty()) return fail("value");
    }
    if (out.count(k)) return fail("duplicate key");
    out[k] = v;
    if (i < s.size() && s[i] == ',') ++i;
  }
  if (i + 1 != s.size()) return fail("trailing data");
  return out;
}

std::string iso(int64_t secs) {
  time_t t = static_cast<time_t>(secs);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// --- A reader for the notices: header fields and the delivery-status groups ----------

// Unfolded "Name: value" fields of a header section or status group.
std::multimap<std::string, std::string> fields(std::string_view text) {
  std::multimap<std::string, std::string> out;
  std::string name, value;
  auto flush = [&] {
    if (!name.empty()) out.emplace(name, value);
    name.clear();
    value.clear();
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t e = text.find("\r\n", pos);
    if (e == std::string_view::npos) e = text.size();
    std::string_view line = text.substr(pos, e - pos);
    pos = e + 2;
    if (line.empty()) break;
    if (line[0] == ' ' || line[0] == '\t') {
      value += line;
      continue;
    }
    flush();
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    name = line.substr(0, colon);
    value = line.substr(colon + 1);
    while (!value.empty() && value[0] == ' ') value.erase(0, 1);
  }
  flush();
  return out;
}

std::string field(const std::multimap<std::string, std::string>& f, const std::string& name) {
  auto it = f.find(name);
  return it == f.end() ? "" : it->second;
}

struct Report {
  std::multimap<std::string, std::string> header;            // the notice's own header
  std::multimap<std::string, std::string> per_message;       // Reporting-MTA, ...
  std::vector<std::multimap<std::string, std::string>> per;  // one per recipient
  std::string returned;                                      // the third part's content
};

Report read_notice(const std::string& m) {
  Report r;
  size_t end = m.find("\r\n\r\n");
  if (end == std::string::npos) {
    ADD_FAILURE() << "no header end in notice";
    return r;
  }
  r.header = fields(std::string_view(m).substr(0, end + 2));
  std::string ct = field(r.header, "Content-Type");
  size_t b = ct.find("boundary=\"");
  if (b == std::string::npos) {
    ADD_FAILURE() << "no boundary: " << ct;
    return r;
  }
  b += 10;
  std::string delim = "\r\n--" + ct.substr(b, ct.find('"', b) - b);
  std::vector<std::string> parts;
  for (size_t pos = m.find(delim, end); pos != std::string::npos;) {
    size_t start = pos + delim.size();
    if (m.compare(start, 2, "--") == 0) break;
    size_t next = m.find(delim, start);
    parts.push_back(m.substr(start + 2, next - start - 2));
    pos = next;
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    size_t sep = p.find("\r\n\r\n");
    std::string content = sep == std::string::npos ? "" : p.substr(sep + 4);
    if (p.find("Content-Type: message/delivery-status") == 0 ||
        p.find("\r\nContent-Type: message/delivery-status") != std::string::npos) {
      size_t at = 0;
      bool first = true;
      while (at < content.size()) {
        size_t e = content.find("\r\n\r\n", at);
        std::string group =
            content.substr(at, e == std::string::npos ? std::string::npos : e + 2 - at);
        if (first)
          r.per_message = fields(group);
        else
          r.per.push_back(fields(group));
        first = false;
        if (e == std::string::npos) break;
        at = e + 4;
      }
    } else if (i == 2) {
      r.returned = content;
    }
  }
  return r;
}

std::vector<std::string> all(const std::vector<std::multimap<std::string, std::string>>& groups,
                             const std::string& name) {
  std::vector<std::string> v;
  for (const auto& g : groups) v.push_back(field(g, name));
  return v;
}

using Strings = std::vector<std::string>;

// --- retry_interval ------------------------------------------------------------------

TEST(OutcomeRetryInterval, Table) {
  RetryPolicy p = policy();
  EXPECT_EQ(retry_interval(p, 0), 300s);  // nothing failed yet: the first interval
  EXPECT_EQ(retry_interval(p, 1), 300s);
  EXPECT_EQ(retry_interval(p, 2), 900s);
  EXPECT_EQ(retry_interval(p, 3), 3600s);
  EXPECT_EQ(retry_interval(p, 4), 3600s);  // the last one repeats
  EXPECT_EQ(retry_interval(p, 1000), 3600s);
  EXPECT_EQ(retry_interval(p, UINT32_MAX), 3600s);
}

TEST(OutcomeRetryInterval, SingleIntervalRepeats) {
  RetryPolicy p;
  p.intervals = {42s};
  for (uint32_t a : {0u, 1u, 2u, 7u, 100000u}) EXPECT_EQ(retry_interval(p, a), 42s) << a;
}

// --- state transitions ---------------------------------------------------------------

TEST(OutcomeDecide, DeliveredSetsStateAttemptsAndLastFields) {
  Envelope env = envelope({"bob@example.net"});
  env.recipients[0].attempts = 2;
  env.recipients[0].orcpt = "rfc822;bob@example.net";
  env.recipients[0].notify = queue::kNotifyFailure;
  const int64_t now = kArrival + 600;
  Attempt r = run(env, {delivered(0)}, now);
  ASSERT_EQ(r.d.changes.size(), 1u);
  EXPECT_EQ(r.d.changes[0].first, 0u);
  const Recipient& c = r.d.changes[0].second;
  EXPECT_EQ(c.state, RcptState::delivered);
  EXPECT_EQ(c.attempts, 3u);
  EXPECT_EQ(c.last_attempt, now);
  EXPECT_EQ(c.last_response, "250 2.0.0 Ok: queued as 4Xyz");
  EXPECT_EQ(c.last_status, "2.0.0");
  EXPECT_EQ(c.last_mx, "mx1.example.net");
  // What the recipient was given at RCPT stays.
  EXPECT_EQ(c.address, "bob@example.net");
  EXPECT_EQ(c.orcpt, "rfc822;bob@example.net");
  EXPECT_EQ(c.notify, queue::kNotifyFailure);
  EXPECT_FALSE(c.delay_notified);
  EXPECT_TRUE(r.d.notices.empty());
  EXPECT_TRUE(r.ids.empty());
  ASSERT_EQ(r.d.events.size(), 1u);
}

TEST(OutcomeDecide, FailedBounces) {
  Envelope env = envelope({"bob@example.net"});
  const int64_t now = kArrival + 10;
  Attempt r = run(env, {failed(0)}, now);
  ASSERT_EQ(r.d.changes.size(), 1u);
  const Recipient& c = r.d.changes[0].second;
  EXPECT_EQ(c.state, RcptState::bounced);
  EXPECT_EQ(c.attempts, 1u);
  EXPECT_EQ(c.last_attempt, now);
  EXPECT_EQ(c.last_response, "550 5.1.1 no such user");
  EXPECT_EQ(c.last_status, "5.1.1");
  EXPECT_EQ(c.last_mx, "mx1.example.net");
  EXPECT_EQ(r.d.notices.size(), 1u);  // NOTIFY absent: failure notices are wanted
}

TEST(OutcomeDecide, DeferredSchedulesTheNextIntervalByAttempts) {
  const int64_t now = kArrival + 100;
  struct Case {
    uint32_t before;
    int64_t wait;
  };
  for (Case k : {Case{0, 300}, Case{1, 900}, Case{2, 3600}, Case{3, 3600}, Case{20, 3600}}) {
    Envelope env = envelope({"bob@example.net"});
    env.recipients[0].attempts = k.before;
    env.recipients[0].state = k.before ? RcptState::deferred : RcptState::queued;
    Attempt r = run(env, {deferred(0)}, now);
    ASSERT_EQ(r.d.changes.size(), 1u);
    const Recipient& c = r.d.changes[0].second;
    EXPECT_EQ(c.state, RcptState::deferred);
    EXPECT_EQ(c.attempts, k.before + 1);
    EXPECT_EQ(c.next_attempt, now + k.wait) << "attempts before: " << k.before;
    EXPECT_EQ(c.last_attempt, now);
    EXPECT_EQ(c.last_response, "451 4.3.0 try again later");
    EXPECT_EQ(c.last_status, "4.3.0");
    EXPECT_EQ(c.last_mx, "mx2.example.net");
    EXPECT_TRUE(r.d.notices.empty());
  }
}

TEST(OutcomeDecide, NextAttemptNeverPastTheExpiry) {
  Envelope env = envelope({"bob@example.net"});
  env.recipients[0].attempts = 10;  // 3600 s interval
  RetryPolicy pol = policy();
  pol.delay_notice_after = std::chrono::seconds(kLifetime * 2);  // keep the delay notice out
  Attempt r = run(env, {deferred(0)}, kExpires - 100, pol);
  ASSERT_EQ(r.d.changes.size(), 1u);
  EXPECT_EQ(r.d.changes[0].second.state, RcptState::deferred);
  EXPECT_EQ(r.d.changes[0].second.next_attempt, kExpires);

  r = run(env, {deferred(0)}, kExpires - 1, pol);
  ASSERT_EQ(r.d.changes.size(), 1u);
  EXPECT_EQ(r.d.changes[0].second.state, RcptState::deferred);
  EXPECT_EQ(r.d.changes[0].second.next_attempt, kExpires);
}

TEST(OutcomeDecide, NextAttemptIsAlwaysAfterNow) {
  Envelope env = envelope({"bob@example.net"});
  RetryPolicy pol = policy();
  pol.intervals = {0s};
  const int64_t now = kArrival + 50;
  Attempt r = run(env, {deferred(0)}, now, pol);
  ASSERT_EQ(r.d.changes.size(), 1u);
  EXPECT_EQ(r.d.changes[0].second.next_attempt, now + 1);
}

TEST(OutcomeDecide, ExpiresAtMaxLifetime) {
  for (int64_t now : {kExpires, kExpires + 1, kExpires + 7 * 24 * kHour}) {
    Envelope env = envelope({"bob@example.net"});
    env.recipients[0].attempts = 30;
    env.recipients[0].state = RcptState::deferred;
    env.recipients[0].delay_notified = true;
    Attempt r = run(env, {deferred(0)}, now);
    ASSERT_EQ(r.d.changes.size(), 1u);
    const Recipient& c = r.d.changes[0].second;
    EXPECT_EQ(c.state, RcptState::expired) << now - kExpires;
    EXPECT_EQ(c.attempts, 31u);
    EXPECT_EQ(c.last_attempt, now);
    EXPECT_EQ(c.last_response, "451 4.3.0 try again later");
    ASSERT_EQ(r.d.notices.size(), 1u);
    Report n = read_notice(r.d.notices[0].body);
    EXPECT_EQ(field(n.header, "Subject"), "Undelivered Mail Returned to Sender");
    ASSERT_EQ(n.per.size(), 1u);
    EXPECT_EQ(field(n.per[0], "Final-Recipient"), "rfc822; bob@example.net");
    EXPECT_EQ(field(n.per[0], "Action"), "failed");
    EXPECT_EQ(field(n.per[0], "Status"), "4.4.7");
    // The last reply stays the diagnostic.
    EXPECT_EQ(field(n.per[0], "Diagnostic-Code"), "smtp; 451 4.3.0 try again later");
    EXPECT_EQ(field(n.per[0], "Remote-MTA"), "dns; mx2.example.net");
    ASSERT_EQ(r.d.events.size(), 1u);  // no "delayed" for an expired recipient
    EXPECT_EQ(parse_json(r.d.events[0].json)["event"], "expired");
  }
}

TEST(OutcomeDecide, OurOwnReasonIsNotAnSmtpDiagnostic) {
  Envelope env = envelope({"bob@example.net"});
  RecipientResult res = deferred(0);
  res.response = {Outcome::deferred, 0, "4.4.1", "connection refused"};
  res.mx = "";
  Attempt r = run(env, {res}, kExpires);
  ASSERT_EQ(r.d.notices.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  ASSERT_EQ(n.per.size(), 1u);
  EXPECT_EQ(field(n.per[0], "Diagnostic-Code"), "X-Ringmail; connection refused");
  EXPECT_EQ(field(n.per[0], "Status"), "4.4.7");
}

// --- delay notices -------------------------------------------------------------------

TEST(OutcomeDelay, ExactlyOneDelayNotice) {
  Envelope env = envelope({"bob@example.net"});
  env.recipients[0].attempts = 5;
  env.recipients[0].state = RcptState::deferred;
  const int64_t now = kArrival + 4 * kHour;
  Attempt r = run(env, {deferred(0)}, now);
  ASSERT_EQ(r.d.changes.size(), 1u);
  Recipient after = r.d.changes[0].second;
  EXPECT_EQ(after.state, RcptState::deferred);
  EXPECT_TRUE(after.delay_notified);
  ASSERT_EQ(r.d.notices.size(), 1u);
  ASSERT_EQ(r.ids.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  EXPECT_EQ(field(n.header, "Subject"), "Delayed Mail (still being retried)");
  ASSERT_EQ(n.per.size(), 1u);
  EXPECT_EQ(field(n.per[0], "Final-Recipient"), "rfc822; bob@example.net");
  EXPECT_EQ(field(n.per[0], "Action"), "delayed");
  EXPECT_EQ(field(n.per[0], "Status"), "4.3.0");
  EXPECT_EQ(field(n.per[0], "Will-Retry-Until"), "Sun, 19 Nov 2023 22:13:20 +0000");

  ASSERT_EQ(r.d.events.size(), 2u);
  auto deferred_ev = parse_json(r.d.events[0].json);
  auto delayed_ev = parse_json(r.d.events[1].json);
  EXPECT_EQ(deferred_ev["event"], "deferred");
  EXPECT_EQ(deferred_ev.count("dsn_queue_id"), 0u);
  EXPECT_EQ(deferred_ev["next_attempt"], iso(now + 3600));
  EXPECT_EQ(delayed_ev["event"], "delayed");
  EXPECT_EQ(delayed_ev["dsn_queue_id"], r.ids[0].str());
  EXPECT_EQ(delayed_ev.count("next_attempt"), 0u);
  EXPECT_EQ(delayed_ev["attempt"], "6");
  EXPECT_EQ(delayed_ev["recipient"], "bob@example.net");
  EXPECT_EQ(r.d.events[1].rcpt_index, 0u);
  EXPECT_EQ(r.d.events[1].time_us, now * 1000000);

  // The next attempt, with the recipient as it was written: no second notice.
  env.recipients[0] = after;
  Attempt again = run(env, {deferred(0)}, after.next_attempt);
  ASSERT_EQ(again.d.changes.size(), 1u);
  EXPECT_TRUE(again.d.changes[0].second.delay_notified);
  EXPECT_TRUE(again.d.notices.empty());
  EXPECT_TRUE(again.ids.empty());
  ASSERT_EQ(again.d.events.size(), 1u);
  EXPECT_EQ(parse_json(again.d.events[0].json)["event"], "deferred");
}

TEST(OutcomeDelay, NoneBeforeTheThreshold) {
  Envelope env = envelope({"bob@example.net"});
  Attempt r = run(env, {deferred(0)}, kArrival + 4 * kHour - 1);
  ASSERT_EQ(r.d.changes.size(), 1u);
  EXPECT_FALSE(r.d.changes[0].second.delay_notified);
  EXPECT_TRUE(r.d.notices.empty());
  EXPECT_EQ(r.d.events.size(), 1u);
}

TEST(OutcomeDelay, NotifyNeverOrFailureOnlyStillLogsDelayedAndSetsTheFlag) {
  for (uint8_t notify : {uint8_t{queue::kNotifyNever}, uint8_t{queue::kNotifyFailure},
                         uint8_t{queue::kNotifyFailure | queue::kNotifySuccess}}) {
    Envelope env = envelope({"bob@example.net"});
    env.recipients[0].notify = notify;
    Attempt r = run(env, {deferred(0)}, kArrival + 5 * kHour);
    ASSERT_EQ(r.d.changes.size(), 1u);
    EXPECT_TRUE(r.d.changes[0].second.delay_notified) << int(notify);
    EXPECT_TRUE(r.d.notices.empty()) << int(notify);
    EXPECT_TRUE(r.ids.empty());
    ASSERT_EQ(r.d.events.size(), 2u);
    auto ev = parse_json(r.d.events[1].json);
    EXPECT_EQ(ev["event"], "delayed");
    EXPECT_EQ(ev.count("dsn_queue_id"), 0u);
  }
}

TEST(OutcomeDelay, ExplicitNotifyDelayGetsOne) {
  Envelope env = envelope({"bob@example.net"});
  env.recipients[0].notify = queue::kNotifyDelay;
  Attempt r = run(env, {deferred(0)}, kArrival + 5 * kHour);
  EXPECT_EQ(r.d.notices.size(), 1u);
}

TEST(OutcomeDelay, OneNoticeForAllNewlyDelayedRecipients) {
  Envelope env = envelope({"bob@example.net", "carol@example.com", "dave@example.org"});
  env.recipients[2].delay_notified = true;  // already told about dave
  Attempt r = run(env, {deferred(0), deferred(1), deferred(2)}, kArrival + 6 * kHour);
  ASSERT_EQ(r.d.notices.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  EXPECT_EQ(all(n.per, "Final-Recipient"),
            (Strings{"rfc822; bob@example.net", "rfc822; carol@example.com"}));
  EXPECT_EQ(all(n.per, "Action"), (Strings{"delayed", "delayed"}));
  // deferred+delayed for bob and carol, deferred for dave.
  ASSERT_EQ(r.d.events.size(), 5u);
  Strings names;
  for (const auto& e : r.d.events) names.push_back(parse_json(e.json)["event"]);
  EXPECT_EQ(names, (Strings{"deferred", "delayed", "deferred", "delayed", "deferred"}));
}

// --- failure notices -----------------------------------------------------------------

TEST(OutcomeFailure, OneNoticeCoversEveryFailedRecipient) {
  Envelope env = envelope({"bob@example.net", "carol@example.com", "dave@example.org"});
  RecipientResult carol = failed(1);
  carol.response = {Outcome::failed, 552, "5.2.2", "552 5.2.2 mailbox full"};
  carol.mx = "mx.example.com";
  Attempt r = run(env, {failed(0), carol, delivered(2)}, kArrival + 30);
  ASSERT_EQ(r.d.notices.size(), 1u);
  ASSERT_EQ(r.ids.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  EXPECT_EQ(field(n.per_message, "Reporting-MTA"), "dns; mx.example.test");
  EXPECT_EQ(all(n.per, "Final-Recipient"),
            (Strings{"rfc822; bob@example.net", "rfc822; carol@example.com"}));
  EXPECT_EQ(all(n.per, "Action"), (Strings{"failed", "failed"}));
  EXPECT_EQ(all(n.per, "Status"), (Strings{"5.1.1", "5.2.2"}));
  EXPECT_EQ(all(n.per, "Remote-MTA"), (Strings{"dns; mx1.example.net", "dns; mx.example.com"}));
  // A failure notice returns the whole message.
  EXPECT_EQ(n.returned, kMessage);

  ASSERT_EQ(r.d.events.size(), 3u);
  std::string nid = r.ids[0].str();
  EXPECT_EQ(parse_json(r.d.events[0].json)["dsn_queue_id"], nid);
  EXPECT_EQ(parse_json(r.d.events[1].json)["dsn_queue_id"], nid);
  EXPECT_EQ(parse_json(r.d.events[2].json).count("dsn_queue_id"), 0u);
}

TEST(OutcomeFailure, BouncedAndExpiredShareOneNotice) {
  Envelope env = envelope({"bob@example.net", "carol@example.com"});
  Attempt r = run(env, {failed(0), deferred(1)}, kExpires);
  ASSERT_EQ(r.d.notices.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  EXPECT_EQ(all(n.per, "Final-Recipient"),
            (Strings{"rfc822; bob@example.net", "rfc822; carol@example.com"}));
  EXPECT_EQ(all(n.per, "Action"), (Strings{"failed", "failed"}));
  EXPECT_EQ(all(n.per, "Status"), (Strings{"5.1.1", "4.4.7"}));
}

TEST(OutcomeFailure, NoticeEnvelopeAndId) {
  Envelope env = envelope({"bob@example.net"});
  const int64_t now = kArrival + 30;
  Attempt r = run(env, {failed(0)}, now, policy(), 123456);
  ASSERT_EQ(r.d.notices.size(), 1u);
  ASSERT_EQ(r.ids.size(), 1u);
  const Notice& n = r.d.notices[0];
  EXPECT_EQ(n.id, r.ids[0]);
  EXPECT_EQ(n.id, QueueId{1001});
  EXPECT_EQ(n.envelope.sender, "");
  ASSERT_EQ(n.envelope.recipients.size(), 1u);
  EXPECT_EQ(n.envelope.recipients[0].address, "alice@example.org");
  EXPECT_EQ(n.envelope.recipients[0].state, RcptState::queued);
  EXPECT_EQ(n.envelope.message_id, "<" + n.id.str() + "@mx.example.test>");
  EXPECT_EQ(n.envelope.body_size, n.body.size());
  EXPECT_EQ(n.envelope.arrival_us, now * 1000000 + 123456);
  EXPECT_EQ(n.envelope.body, queue::BodyType::seven_bit);
  EXPECT_FALSE(n.envelope.smtputf8);
  Report rep = read_notice(n.body);
  EXPECT_EQ(field(rep.header, "Message-ID"), n.envelope.message_id);
  EXPECT_EQ(field(rep.header, "To"), "<alice@example.org>");
  EXPECT_EQ(field(rep.header, "In-Reply-To"), "<m1@example.org>");
}

TEST(OutcomeFailure, NoticeDatesComeFromTheAttempt) {
  Envelope env = envelope({"bob@example.net"});
  Attempt r = run(env, {failed(0)}, kArrival + 3600);
  ASSERT_EQ(r.d.notices.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  EXPECT_EQ(field(n.header, "Date"), "Tue, 14 Nov 2023 23:13:20 +0000");
  EXPECT_EQ(field(n.per_message, "Arrival-Date"), "Tue, 14 Nov 2023 22:13:20 +0000");
  ASSERT_EQ(n.per.size(), 1u);
  EXPECT_EQ(field(n.per[0], "Last-Attempt-Date"), "Tue, 14 Nov 2023 23:13:20 +0000");
}

TEST(OutcomeFailure, NoticeEnvelopeTakesBodyTypeAndSmtputf8FromTheNotice) {
  Envelope env = envelope({"bob@example.net"}, "j\xc3\xb6ran@example.org");
  env.smtputf8 = true;
  std::string message = kMessage +
                        "Gr\xc3\xbc\xc3\x9f"
                        "e\r\n";
  Attempt r = run(env, {failed(0)}, kArrival + 30, policy(), 0, message);
  ASSERT_EQ(r.d.notices.size(), 1u);
  const Notice& n = r.d.notices[0];
  EXPECT_TRUE(n.envelope.smtputf8);
  EXPECT_EQ(n.envelope.body, queue::BodyType::eight_bit_mime);
  ASSERT_EQ(n.envelope.recipients.size(), 1u);
  EXPECT_EQ(n.envelope.recipients[0].address, "j\xc3\xb6ran@example.org");
  EXPECT_EQ(read_notice(n.body).returned, message);
}

TEST(OutcomeFailure, NotifyDecidesPerRecipient) {
  Envelope env = envelope({"never@example.net", "success@example.net", "failure@example.net"});
  env.recipients[0].notify = queue::kNotifyNever;
  env.recipients[1].notify = queue::kNotifySuccess;
  env.recipients[2].notify = queue::kNotifyFailure;
  Attempt r = run(env, {failed(0), failed(1), failed(2)}, kArrival + 30);
  ASSERT_EQ(r.d.notices.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  EXPECT_EQ(all(n.per, "Final-Recipient"), (Strings{"rfc822; failure@example.net"}));
  ASSERT_EQ(r.d.events.size(), 3u);
  EXPECT_EQ(parse_json(r.d.events[0].json).count("dsn_queue_id"), 0u);
  EXPECT_EQ(parse_json(r.d.events[1].json).count("dsn_queue_id"), 0u);
  EXPECT_EQ(parse_json(r.d.events[2].json)["dsn_queue_id"], r.ids.at(0).str());
  for (const auto& c : r.d.changes) EXPECT_EQ(c.second.state, RcptState::bounced);
}

TEST(OutcomeFailure, OneNoticePerKindEachWithItsOwnId) {
  Envelope env = envelope({"bob@example.net", "carol@example.com", "dave@example.org"});
  env.recipients[2].notify = queue::kNotifySuccess;
  Attempt r = run(env, {delivered(2), deferred(1), failed(0)}, kArrival + 5 * kHour);
  ASSERT_EQ(r.ids.size(), 3u);
  ASSERT_EQ(r.d.notices.size(), 3u);
  Strings subjects;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.d.notices[i].id, r.ids[i]);
    subjects.push_back(field(read_notice(r.d.notices[i].body).header, "Subject"));
  }
  EXPECT_EQ(subjects,
            (Strings{"Undelivered Mail Returned to Sender", "Delayed Mail (still being retried)",
                     "Successful Mail Delivery Report"}));
  // Events in result order: delivered(dave), deferred+delayed(carol), bounced(bob).
  ASSERT_EQ(r.d.events.size(), 4u);
  auto e0 = parse_json(r.d.events[0].json), e1 = parse_json(r.d.events[1].json),
       e2 = parse_json(r.d.events[2].json), e3 = parse_json(r.d.events[3].json);
  EXPECT_EQ(e0["event"], "delivered");
  EXPECT_EQ(e0["dsn_queue_id"], r.ids[2].str());
  EXPECT_EQ(e1["event"], "deferred");
  EXPECT_EQ(e1.count("dsn_queue_id"), 0u);
  EXPECT_EQ(e2["event"], "delayed");
  EXPECT_EQ(e2["dsn_queue_id"], r.ids[1].str());
  EXPECT_EQ(e3["event"], "bounced");
  EXPECT_EQ(e3["dsn_queue_id"], r.ids[0].str());
}

TEST(OutcomeFailure, NullSenderNeverGetsANotice) {
  Envelope env = envelope(
      {"bob@example.net", "carol@example.com", "dave@example.org", "erin@example.org"}, "");
  env.recipients[2].notify = queue::kNotifySuccess | queue::kNotifyFailure | queue::kNotifyDelay;
  env.recipients[3].notify = queue::kNotifyDelay;
  // bob bounces, carol expires, dave is delivered, erin is delayed.
  Attempt r = run(env, {failed(0), deferred(1), delivered(2)}, kExpires);
  EXPECT_TRUE(r.d.notices.empty());
  EXPECT_TRUE(r.ids.empty());
  EXPECT_EQ(r.d.events.size(), 3u);

  RetryPolicy pol = policy();
  pol.max_lifetime = std::chrono::seconds(kLifetime * 10);
  r = run(env, {deferred(3)}, kArrival + 5 * kHour, pol);
  EXPECT_TRUE(r.d.notices.empty());
  EXPECT_TRUE(r.ids.empty());
  ASSERT_EQ(r.d.changes.size(), 1u);
  EXPECT_TRUE(r.d.changes[0].second.delay_notified);
  ASSERT_EQ(r.d.events.size(), 2u);
  EXPECT_EQ(parse_json(r.d.events[1].json)["event"], "delayed");
  for (const auto& e : r.d.events) EXPECT_EQ(parse_json(e.json).count("dsn_queue_id"), 0u);
}

// --- success notices -----------------------------------------------------------------

TEST(OutcomeSuccess, RelayedWhenTheNextHopDidNotTakeNotify) {
  Envelope env = envelope({"bob@example.net"});
  env.recipients[0].notify = queue::kNotifySuccess;
  Attempt r = run(env, {delivered(0)}, kArrival + 30);
  ASSERT_EQ(r.d.notices.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  EXPECT_EQ(field(n.header, "Subject"), "Successful Mail Delivery Report");
  ASSERT_EQ(n.per.size(), 1u);
  EXPECT_EQ(field(n.per[0], "Final-Recipient"), "rfc822; bob@example.net");
  EXPECT_EQ(field(n.per[0], "Action"), "relayed");
  EXPECT_EQ(field(n.per[0], "Status"), "2.0.0");
  ASSERT_EQ(r.d.events.size(), 1u);
  EXPECT_EQ(parse_json(r.d.events[0].json)["dsn_queue_id"], r.ids.at(0).str());
}

TEST(OutcomeSuccess, LocalDeliveryIsDelivered) {
  Envelope env = envelope({"bob@example.net"});
  env.recipients[0].notify = queue::kNotifySuccess | queue::kNotifyFailure;
  RecipientResult res = delivered(0);
  res.local = true;
  res.mx = "";
  res.address = "";
  Attempt r = run(env, {res}, kArrival + 30);
  ASSERT_EQ(r.d.notices.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  ASSERT_EQ(n.per.size(), 1u);
  EXPECT_EQ(field(n.per[0], "Action"), "delivered");
}

TEST(OutcomeSuccess, NoneWhenTheHopTookTheDsnParameters) {
  Envelope env = envelope({"bob@example.net"});
  env.recipients[0].notify = queue::kNotifySuccess;
  RecipientResult res = delivered(0);
  res.dsn_passed_on = true;
  Attempt r = run(env, {res}, kArrival + 30);
  EXPECT_TRUE(r.d.notices.empty());
  EXPECT_TRUE(r.ids.empty());
  ASSERT_EQ(r.d.events.size(), 1u);
  EXPECT_EQ(parse_json(r.d.events[0].json).count("dsn_queue_id"), 0u);
}

TEST(OutcomeSuccess, NoneWithoutNotifySuccess) {
  for (uint8_t notify : {uint8_t{0}, uint8_t{queue::kNotifyFailure | queue::kNotifyDelay},
                         uint8_t{queue::kNotifyNever}}) {
    Envelope env = envelope({"bob@example.net"});
    env.recipients[0].notify = notify;
    Attempt r = run(env, {delivered(0)}, kArrival + 30);
    EXPECT_TRUE(r.d.notices.empty()) << int(notify);
  }
}

// --- results that do not apply -------------------------------------------------------

TEST(OutcomeIgnored, ResultsForRecipientsNoLongerPending) {
  Envelope env = envelope({"a@example.net", "b@example.net", "c@example.net", "d@example.net"});
  env.recipients[0].state = RcptState::delivered;
  env.recipients[1].state = RcptState::bounced;
  env.recipients[2].state = RcptState::expired;
  env.recipients[3].state = RcptState::deferred;
  Attempt r = run(env, {failed(0), failed(1), deferred(2), failed(3)}, kArrival + 30);
  ASSERT_EQ(r.d.changes.size(), 1u);
  EXPECT_EQ(r.d.changes[0].first, 3u);
  EXPECT_EQ(r.d.changes[0].second.state, RcptState::bounced);
  ASSERT_EQ(r.d.events.size(), 1u);
  EXPECT_EQ(r.d.events[0].rcpt_index, 3u);
  ASSERT_EQ(r.d.notices.size(), 1u);
  Report n = read_notice(r.d.notices[0].body);
  EXPECT_EQ(all(n.per, "Final-Recipient"), (Strings{"rfc822; d@example.net"}));
}

TEST(OutcomeIgnored, QueuedAndInflightArePending) {
  Envelope env = envelope({"a@example.net", "b@example.net"});
  env.recipients[0].state = RcptState::queued;
  env.recipients[1].state = RcptState::inflight;
  Attempt r = run(env, {delivered(0), delivered(1)}, kArrival + 30);
  EXPECT_EQ(r.d.changes.size(), 2u);
}

TEST(OutcomeIgnored, OutOfRangeIndexes) {
  Envelope env = envelope({"a@example.net"});
  Attempt r = run(env, {failed(1), failed(7), delivered(0), failed(UINT32_MAX)}, kArrival + 30);
  ASSERT_EQ(r.d.changes.size(), 1u);
  EXPECT_EQ(r.d.changes[0].first, 0u);
  EXPECT_EQ(r.d.changes[0].second.state, RcptState::delivered);
  EXPECT_EQ(r.d.events.size(), 1u);
  EXPECT_TRUE(r.d.notices.empty());
}

TEST(OutcomeIgnored, NoResultsNoDecision) {
  Envelope env = envelope({"a@example.net"});
  Attempt r = run(env, {}, kArrival + 30);
  EXPECT_TRUE(r.d.changes.empty());
  EXPECT_TRUE(r.d.events.empty());
  EXPECT_TRUE(r.d.notices.empty());
}

// --- events --------------------------------------------------------------------------

TEST(OutcomeEvents, OnePerResultWithTheAttemptDetails) {
  Envelope env = envelope({"bob@example.net", "carol@example.com", "dave@example.org"});
  env.recipients[1].attempts = 1;
  const int64_t now = kArrival + 60;  // 2023-11-14T22:14:20Z
  Attempt r = run(env, {delivered(0), deferred(1), failed(2)}, now, policy(), 250);
  ASSERT_EQ(r.d.events.size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.d.events[i].rcpt_index, i);
    EXPECT_EQ(r.d.events[i].time_us, now * 1000000 + 250);
  }
  auto d = parse_json(r.d.events[0].json);
  EXPECT_EQ(d["time"], "2023-11-14T22:14:20.000250Z");
  EXPECT_EQ(d["event"], "delivered");
  EXPECT_EQ(d["queue_id"], kId.str());
  EXPECT_EQ(d["message_id"], "<m1@example.org>");
  EXPECT_EQ(d["sender"], "alice@example.org");
  EXPECT_EQ(d["recipient"], "bob@example.net");
  EXPECT_EQ(d["client"], "192.0.2.1");
  EXPECT_EQ(d["size"], std::to_string(kMessage.size()));
  EXPECT_EQ(d["attempt"], "1");
  EXPECT_EQ(d["mx"], "mx1.example.net");
  EXPECT_EQ(d["address"], "198.51.100.7");
  EXPECT_EQ(d["code"], "250");
  EXPECT_EQ(d["status"], "2.0.0");
  EXPECT_EQ(d["response"], "250 2.0.0 Ok: queued as 4Xyz");
  EXPECT_EQ(d.count("next_attempt"), 0u);

  auto f = parse_json(r.d.events[1].json);
  EXPECT_EQ(f["event"], "deferred");
  EXPECT_EQ(f["recipient"], "carol@example.com");
  EXPECT_EQ(f["attempt"], "2");
  EXPECT_EQ(f["code"], "451");
  EXPECT_EQ(f["status"], "4.3.0");
  EXPECT_EQ(f["response"], "451 4.3.0 try again later");
  EXPECT_EQ(f["mx"], "mx2.example.net");
  EXPECT_EQ(f["address"], "198.51.100.8");
  EXPECT_EQ(f["next_attempt"], "2023-11-14T22:29:20Z");  // now + 900
  EXPECT_EQ(f["next_attempt"], iso(now + 900));
  EXPECT_EQ(f.count("dsn_queue_id"), 0u);

  auto b = parse_json(r.d.events[2].json);
  EXPECT_EQ(b["event"], "bounced");
  EXPECT_EQ(b["recipient"], "dave@example.org");
  EXPECT_EQ(b["attempt"], "1");
  EXPECT_EQ(b["code"], "550");
  EXPECT_EQ(b["status"], "5.1.1");
  EXPECT_EQ(b.count("next_attempt"), 0u);
  EXPECT_EQ(b["dsn_queue_id"], r.ids.at(0).str());
}

TEST(OutcomeEvents, ExpiredHasNoNextAttempt) {
  Envelope env = envelope({"bob@example.net"});
  Attempt r = run(env, {deferred(0)}, kExpires);
  ASSERT_EQ(r.d.events.size(), 1u);
  auto e = parse_json(r.d.events[0].json);
  EXPECT_EQ(e["event"], "expired");
  EXPECT_EQ(e.count("next_attempt"), 0u);
  EXPECT_EQ(e["dsn_queue_id"], r.ids.at(0).str());
}

TEST(OutcomeEvents, RemoteTextIsEscapedInTheJson) {
  Envelope env = envelope({"bob@example.net"});
  RecipientResult res = failed(0);
  res.response.text = "550 \"quoted\" back\\slash\r\nnext";
  Attempt r = run(env, {res}, kArrival + 30);
  ASSERT_EQ(r.d.events.size(), 1u);
  auto e = parse_json(r.d.events[0].json);
  EXPECT_EQ(e["response"], "550 \"quoted\" back\\slash\r\nnext");
  EXPECT_EQ(e["dsn_queue_id"], r.ids.at(0).str());
}

}  // namespace
}  // namespace ringmail::delivery
