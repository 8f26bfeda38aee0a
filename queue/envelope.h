// The data the queue stores about a message: envelope, recipients and their states.
// Plain values; encoding lives in record.{h,cc}, storage in store.{h,cc}.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ringmail::queue {

// Queue ids: 64 bits of (arrival time in microseconds << 4 | counter), printed as 13
// Crockford base32 characters, so sorting the text sorts by arrival (DESIGN: "short,
// unique, sortable by arrival").
struct QueueId {
  uint64_t value = 0;
  std::string str() const;
  static std::optional<QueueId> parse(std::string_view text);
  auto operator<=>(const QueueId&) const = default;
};

// Unique within this process and monotonic; `floor` (the largest id already stored)
// keeps ids increasing across restarts even if the clock stepped back.
QueueId next_queue_id();
void raise_queue_id_floor(uint64_t floor);

enum class RcptState : uint8_t { queued, inflight, deferred, delivered, bounced, expired };
std::string_view state_name(RcptState s);

// RFC 3461 NOTIFY bits; 0 means the parameter was not given.
enum Notify : uint8_t {
  kNotifyNever = 1,
  kNotifySuccess = 2,
  kNotifyFailure = 4,
  kNotifyDelay = 8
};

struct Recipient {
  std::string address;  // without angle brackets
  std::string orcpt;    // RFC 3461 ORCPT, "addr-type;xtext" as received (empty: none)
  uint8_t notify = 0;
  RcptState state = RcptState::queued;
  uint32_t attempts = 0;
  int64_t next_attempt = 0;   // unix seconds
  std::string last_response;  // the last attempt's reply on one line ("451 4.3.0 try later")
  // Since record version 2: what a later DSN (Remote-MTA, Status, Last-Attempt-Date) and
  // `ringctl status` need from the last attempt, and whether the one "delayed" DSN
  // (delivery.delay_notice_after) has gone out.
  std::string last_status;   // RFC 3463 status of the last attempt ("4.4.1")
  std::string last_mx;       // the host that gave last_response ("" when none answered)
  int64_t last_attempt = 0;  // unix seconds, 0 = never tried
  bool delay_notified = false;
};

// True while the recipient still waits for delivery (queued, in flight or deferred).
inline bool is_pending(RcptState s) {
  return s == RcptState::queued || s == RcptState::inflight || s == RcptState::deferred;
}

enum class BodyType : uint8_t { unspecified, seven_bit, eight_bit_mime, binary_mime };
enum class Ret : uint8_t { unspecified, full, hdrs };

struct Envelope {
  std::string sender;          // empty = null reverse-path <>
  uint64_t declared_size = 0;  // MAIL SIZE=, 0 when absent
  BodyType body = BodyType::unspecified;
  bool smtputf8 = false;
  Ret ret = Ret::unspecified;
  std::string envid;           // RFC 3461 ENVID (xtext as received)
  std::string client_address;  // peer IP
  std::string helo;
  std::string auth_user;
  std::string message_id;  // Message-ID header value, for `ringctl status`
  int64_t arrival_us = 0;  // unix microseconds
  uint64_t body_size = 0;  // stored message size in bytes
  std::vector<Recipient> recipients;
};

}  // namespace ringmail::queue
