#include "mta/delivery/outcome.h"

#include <algorithm>

#include "mta/delivery/dsn.h"

namespace ringmail::delivery {

using queue::RcptState;

std::chrono::seconds retry_interval(const RetryPolicy& p, uint32_t attempts) {
  if (p.intervals.empty()) return std::chrono::seconds(300);
  size_t i = attempts == 0 ? 0 : std::min<size_t>(attempts - 1, p.intervals.size() - 1);
  return p.intervals[i];
}

namespace {

struct Pending {
  DsnKind kind;
  std::vector<DsnRecipient> recipients;
  std::vector<size_t> events;  // positions in Decision::events to tag
};

DsnRecipient dsn_recipient(const queue::Recipient& r, DsnAction action, const RecipientResult& res,
                           int64_t now_s) {
  DsnRecipient d;
  d.address = r.address;
  d.orcpt = r.orcpt;
  d.action = action;
  d.status = res.response.status;
  d.remote_mta = res.mx;
  d.diagnostic = res.response.text;
  // A reply from the remote host is an SMTP diagnostic; our own explanation (DNS, a
  // refused connection, expiry) is not, and RFC 3464 2.3.6 wants it marked as ours.
  d.diagnostic_type = res.response.code != 0 ? "smtp" : "X-Ringmail";
  d.last_attempt = now_s;
  return d;
}

}  // namespace

Decision decide(queue::QueueId id, const queue::Envelope& env, std::string_view message,
                std::span<const RecipientResult> results, const RetryPolicy& policy,
                const DecideParams& p) {
  Decision out;
  const int64_t now_s = p.now_us / 1000000;
  const int64_t arrival_s = env.arrival_us / 1000000;
  const int64_t expires = arrival_s + policy.max_lifetime.count();
  Pending failure{DsnKind::failure, {}, {}};
  Pending delay{DsnKind::delay, {}, {}};
  Pending success{DsnKind::success, {}, {}};

  for (const RecipientResult& res : results) {
    if (res.index >= env.recipients.size()) continue;
    queue::Recipient r = env.recipients[res.index];
    if (!queue::is_pending(r.state)) continue;
    r.attempts++;
    r.last_attempt = now_s;
    r.last_response = res.response.text;
    r.last_status = res.response.status;
    r.last_mx = res.mx;
    queue::EventDetail detail;
    detail.attempt = r.attempts;
    detail.mx = res.mx;
    detail.address = res.address;
    detail.code = res.response.code;
    detail.status = res.response.status;
    detail.response = res.response.text;
    std::string_view event;
    switch (res.response.outcome) {
      case Outcome::delivered:
        r.state = RcptState::delivered;
        event = "delivered";
        if (dsn_wanted(DsnKind::success, r.notify, env.sender) && !res.dsn_passed_on) {
          success.recipients.push_back(
              dsn_recipient(r, res.local ? DsnAction::delivered : DsnAction::relayed, res, now_s));
          success.events.push_back(out.events.size());
        }
        break;
      case Outcome::failed:
        r.state = RcptState::bounced;
        event = "bounced";
        if (dsn_wanted(DsnKind::failure, r.notify, env.sender)) {
          failure.recipients.push_back(dsn_recipient(r, DsnAction::failed, res, now_s));
          failure.events.push_back(out.events.size());
        }
        break;
      case Outcome::deferred:
        if (now_s >= expires) {
          r.state = RcptState::expired;
          event = "expired";
          if (dsn_wanted(DsnKind::failure, r.notify, env.sender)) {
            DsnRecipient d = dsn_recipient(r, DsnAction::failed, res, now_s);
            // RFC 3463 4.4.7: delivery time expired; the last reply stays the diagnostic.
            d.status = "4.4.7";
            failure.recipients.push_back(std::move(d));
            failure.events.push_back(out.events.size());
          }
        } else {
          r.state = RcptState::deferred;
          event = "deferred";
          // Never past the expiry: the last try happens at max_lifetime, not after it.
          r.next_attempt = std::min(now_s + retry_interval(policy, r.attempts).count(), expires);
          if (r.next_attempt <= now_s) r.next_attempt = now_s + 1;
          detail.next_attempt = r.next_attempt;
        }
        break;
    }
    out.events.push_back(
        {p.now_us, res.index, queue::event_json(event, p.now_us, id, env, &r, &detail)});
    if (r.state == RcptState::deferred && !r.delay_notified &&
        now_s - arrival_s >= policy.delay_notice_after.count()) {
      r.delay_notified = true;
      queue::EventDetail dd = detail;
      dd.next_attempt = 0;
      if (dsn_wanted(DsnKind::delay, r.notify, env.sender)) {
        DsnRecipient d = dsn_recipient(r, DsnAction::delayed, res, now_s);
        d.will_retry_until = expires;
        delay.recipients.push_back(std::move(d));
        delay.events.push_back(out.events.size());
      }
      out.events.push_back(
          {p.now_us, res.index, queue::event_json("delayed", p.now_us, id, env, &r, &dd)});
    }
    out.changes.emplace_back(res.index, std::move(r));
  }

  for (Pending* n : {&failure, &delay, &success}) {
    if (n->recipients.empty()) continue;
    queue::QueueId nid = p.new_id();
    std::string unique = nid.str();
    DsnParams dp;
    dp.kind = n->kind;
    dp.hostname = p.hostname;
    dp.now = now_s;
    dp.unique = unique;
    dp.recipients = std::move(n->recipients);
    Result<Dsn> dsn = build_dsn(env, message, dp);
    if (!dsn) continue;  // only caller bugs or damaged queue data; the events still say it
    Notice notice;
    notice.id = nid;
    notice.envelope.sender = "";
    notice.envelope.body = dsn->body;
    notice.envelope.smtputf8 = dsn->smtputf8;
    notice.envelope.arrival_us = p.now_us;
    notice.envelope.message_id = "<" + unique + "@" + std::string(p.hostname) + ">";
    notice.envelope.body_size = dsn->message.size();
    queue::Recipient to;
    to.address = env.sender;
    notice.envelope.recipients.push_back(std::move(to));
    notice.body = std::move(dsn->message);
    // Tag the events this notice answers, so `ringctl status` can follow it.
    for (size_t e : n->events) {
      std::string& json = out.events[e].json;
      json.pop_back();  // '}'
      json += ",\"dsn_queue_id\":\"" + unique + "\"}";
    }
    out.notices.push_back(std::move(notice));
  }
  return out;
}

}  // namespace ringmail::delivery
