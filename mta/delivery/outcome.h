// Outcome: what one delivery attempt means for the queue — the recipients' new states,
// the delivery events, and the notices (DSNs) owed to the sender.
//
// This part owns the retry and notification rules of DESIGN "SMTP" (client): 2xx
// delivered; 5xx bounced; 4xx, timeouts, connection and DNS failures deferred on
// delivery.retry_intervals (the last one repeating), expired and bounced once
// delivery.max_lifetime has passed; one "delayed" notice per recipient after
// delivery.delay_notice_after; "relayed" success notices when NOTIFY=SUCCESS was asked
// and the next hop did not take the DSN parameters. One notice per kind per attempt
// covers every recipient of that kind. It is a pure function of its inputs (the clock
// and the notice ids are passed in): it never touches the queue, the network or a file;
// the scheduler writes what it decides through the committer in one transaction.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mta/delivery/smtp_client.h"
#include "queue/envelope.h"
#include "queue/store.h"

namespace ringmail::delivery {

struct RetryPolicy {
  std::vector<std::chrono::seconds> intervals;  // not empty; the last one repeats
  std::chrono::seconds max_lifetime{5 * 24 * 3600};
  std::chrono::seconds delay_notice_after{4 * 3600};
};

// The wait before attempt number `attempts + 1`, after `attempts` failed ones.
std::chrono::seconds retry_interval(const RetryPolicy& p, uint32_t attempts);

// What happened to one recipient in this attempt.
struct RecipientResult {
  uint32_t index = 0;   // into Envelope::recipients
  Response response;    // delivered / deferred / failed, with code, status and text
  std::string mx;       // host that answered (or was tried last); "" if none was reached
  std::string address;  // its IP address
  // Delivered into a mailbox here (a success notice says "delivered"), rather than
  // handed to a next hop (it says "relayed" unless the hop took NOTIFY itself).
  bool local = false;
  bool dsn_passed_on = false;  // the next hop offered DSN and got the parameters
};

// A notice to queue from <> to the message's sender.
struct Notice {
  queue::QueueId id;
  queue::Envelope envelope;
  std::string body;
};

struct Decision {
  std::vector<std::pair<uint32_t, queue::Recipient>> changes;
  std::vector<queue::Store::Event> events;
  std::vector<Notice> notices;
};

struct DecideParams {
  std::string_view hostname;  // server.hostname: Reporting-MTA, notice From/Message-ID
  int64_t now_us = 0;
  // Gives each notice its queue id (next_queue_id() in the daemon; a counter in tests).
  std::function<queue::QueueId()> new_id;
};

// `env` is the message with its recipients as stored when the attempt began; `message`
// the stored message (returned in failure notices). Results for recipients that are no
// longer pending (ringctl changed them meanwhile) are ignored.
Decision decide(queue::QueueId id, const queue::Envelope& env, std::string_view message,
                std::span<const RecipientResult> results, const RetryPolicy& policy,
                const DecideParams& params);

}  // namespace ringmail::delivery
