// queue/admin: the operator's view of the queue, for `ringctl status`, `stats` and
// `queue flush`.
//
// Owns the queries an operator asks (what happened to a message, a Message-ID or an
// address; how much is queued, for whom, and what happened lately) and the one admin
// write that reschedules: flush. Reads use their own read-only transactions, so a
// running daemon is never blocked; flush is one write transaction through
// Store::update_recipients. It never prints, never talks to the daemon (the daemon's
// scheduler rescans the schedule index), never adds delivery events and never changes a
// recipient's state.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"
#include "queue/envelope.h"
#include "queue/store.h"

namespace ringmail::queue {

// --- delivery events ----------------------------------------------------------------

// The fields of one event_json object (store.h). Strings absent from the object are
// empty, numbers absent are 0.
struct EventFields {
  std::string time;  // "2026-11-27T10:31:22.123456Z" as written
  std::string event;
  std::string queue_id, message_id, sender, recipient, client;
  uint64_t size = 0;
  // Delivery attempts only:
  bool has_attempt = false;  // the object carried "attempt" (received events do not)
  int64_t attempt = 0;
  std::string mx, address;
  int64_t code = 0;
  std::string status, response;
  std::string next_attempt;  // ISO time, deferred only
  std::string dsn_queue_id;
};

// Parses one flat JSON object the way event_json writes it: string, integer, true,
// false and null values; unknown keys are skipped; nested objects or arrays, a
// fraction where an integer field is expected, and anything malformed are errors.
Result<EventFields> parse_event(std::string_view json);

// One row of the events sub-database with its key decoded.
struct StoredEvent {
  int64_t time_us = 0;  // from the key: ordering, and the "last hour" window
  QueueId id;
  uint32_t rcpt_index = 0;
  std::string json;     // exactly as stored
  bool parsed = false;  // false: `json` is damaged and `fields` is empty
  EventFields fields;
};

// --- status -------------------------------------------------------------------------

enum class MatchKind { none, queue_id, message_id, address };

struct RecipientHistory {
  uint32_t index = 0;
  std::string address;
  std::optional<Recipient> current;  // set while the message is still in the queue
  std::vector<StoredEvent> events;   // time order
};

struct MessageHistory {
  QueueId id;
  bool in_queue = false;
  // From the envelope while queued, else from the message's events.
  std::string sender, message_id, client;
  uint64_t size = 0;
  std::string arrival;                       // ISO time ("" when unknown)
  std::vector<RecipientHistory> recipients;  // index order
  std::vector<StoredEvent> events() const;   // every recipient's, in key (time) order
};

struct StatusResult {
  MatchKind kind = MatchKind::none;
  std::vector<MessageHistory> messages;  // queue-id order; empty when nothing matched
};

// Resolves `key` in this order: a queue id (QueueId::parse accepts it and the message
// has events or is queued), then a Message-ID (equal after stripping one pair of <> on
// both sides), then an address (equal ignoring ASCII case to the sender or a recipient).
// A message matched by a recipient address shows only the matching recipients; matched
// any other way it shows them all. Scans the whole event log: it is keyed by time.
Result<StatusResult> find_status(Store& store, std::string_view key);

// --- stats --------------------------------------------------------------------------

inline constexpr size_t kRcptStates = 6;  // RcptState::queued .. RcptState::expired

struct StateCounts {
  std::array<uint64_t, kRcptStates> n{};  // indexed by RcptState
  uint64_t total() const;
};

struct QueueStats {
  uint64_t messages = 0;
  uint64_t bytes = 0;  // sum of Envelope::body_size
  StateCounts recipients;
  std::map<std::string, StateCounts> domains;  // after the recipient's last '@', lower-cased
  // By event name; damaged records count as "unreadable".
  std::map<std::string, uint64_t> events_all;
  std::map<std::string, uint64_t> events_last_hour;  // time >= now - 3600 s
};

// `now` in unix seconds. One read transaction, so the numbers agree with each other.
Result<QueueStats> queue_stats(Store& store, int64_t now);

// --- flush --------------------------------------------------------------------------

struct FlushResult {
  size_t recipients = 0;  // rescheduled
  size_t messages = 0;    // with at least one recipient rescheduled
};

// Sets next_attempt = now (unix seconds) on every queued or deferred recipient whose
// next_attempt is later, in one message (`only`) or all of them, in one write
// transaction. In-flight recipients are left alone: an attempt is running, and making
// them due again could start a second one. Error code ENOENT when `only` is not queued.
Result<FlushResult> flush(Store& store, std::optional<QueueId> only, int64_t now);

}  // namespace ringmail::queue
