// Delivery status notifications: the bounce, delay and success reports ringmail sends to a
// message's envelope sender (RFC 3461 SMTP DSN extension, RFC 3464 delivery-status format,
// RFC 6522 multipart/report, RFC 6533 for SMTPUTF8 messages, RFC 3834 auto-replies).
//
// This part owns two decisions and one format: whether a recipient's NOTIFY asks for a
// notice of a given kind (dsn_wanted), and the complete RFC 5322 + MIME text of the notice
// (build_dsn). Both are pure functions: no I/O, no clock (the time is passed in), no
// randomness (the Message-ID's unique part is passed in), so tests compare bytes. It never
// queues, sends or logs anything, never decides when a delay notice is due, and never picks
// a recipient's Action or Status: the scheduler does, and queues the result from the null
// sender `<>` to Envelope::sender with the BODY and SMTPUTF8 that Dsn reports.
//
// What comes from the wire (remote replies, ENVID, ORCPT, the returned message) is
// treated as hostile: every byte that ends up in a header field is printable, so a remote
// reply with CR, LF or other controls cannot add header fields or MIME parts.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"
#include "queue/envelope.h"

namespace ringmail::delivery {

enum class DsnKind : uint8_t {
  failure,  // "failed" recipients: a bounce
  delay,    // "delayed" recipients: still being retried (delivery.delay_notice_after)
  success,  // "delivered", "relayed" or "expanded" recipients (NOTIFY=SUCCESS only)
};

// RFC 3464 2.3.3. `relayed` is for a recipient that asked for NOTIFY=SUCCESS and was
// handed to a next hop that does not offer DSN (RFC 3461 4.1, 6.2): no later notice can
// reach the sender, so we say so now. When the next hop offers DSN the parameters are
// passed on instead and no notice is built here.
enum class DsnAction : uint8_t { failed, delayed, delivered, relayed, expanded };
std::string_view action_name(DsnAction a);

// Whether a recipient with these NOTIFY bits (queue::Notify, 0 = not given) gets a notice
// of `kind` for a message from `sender` (Envelope::sender, "" = `<>`):
// - a message from the null sender never gets one (RFC 5321 4.5.5, never bounce a bounce);
// - NOTIFY=NEVER: none;
// - NOTIFY absent: failure and delay, not success (RFC 3461 4.1 "FAILURE,DELAY" default);
// - otherwise exactly the kinds listed.
bool dsn_wanted(DsnKind kind, uint8_t notify, std::string_view sender);

struct DsnRecipient {
  std::string address;  // the final recipient (RCPT TO), without angle brackets
  std::string orcpt;    // Recipient::orcpt as stored ("addr-type;xtext"), "" when none
  DsnAction action = DsnAction::failed;
  // RFC 3463 "class.subject.detail". An empty or malformed value becomes 5.0.0 / 4.0.0 /
  // 2.0.0 by action: a garbled code from a remote must not cost the sender the notice.
  std::string status;
  std::string remote_mta;  // host whose answer this is (MX name or [IP]); "" when none
  // That host's reply as received, e.g. "550 5.1.1 <bob@example.net>: no such user";
  // multi-line replies keep their line breaks. Printed as `Diagnostic-Code:
  // <diagnostic_type>; ...` with controls replaced and lines joined. "" when none.
  std::string diagnostic;
  // RFC 3464 2.3.6 diagnostic-type: "smtp" for an SMTP reply; a local reason (DNS
  // failure, connection refused, expiry) should use an "X-" type, e.g. "X-Ringmail".
  std::string diagnostic_type = "smtp";
  int64_t last_attempt = 0;      // unix seconds; 0 = no attempt (field omitted)
  int64_t will_retry_until = 0;  // unix seconds; printed for `delayed` only; 0 = omit
};

// Used when DsnParams::max_return_size is left alone: messages up to 10 MiB come back
// whole in a failure notice; larger ones as headers only, so a bounce of a huge message
// does not double the load on the sender's mailbox and our queue.
inline constexpr uint64_t kDefaultMaxReturnSize = uint64_t{10} << 20;

struct DsnParams {
  DsnKind kind = DsnKind::failure;
  std::string_view hostname;  // ours (server.hostname): Reporting-MTA, From, Message-ID
  int64_t now = 0;            // unix seconds: the notice's Date
  // Left part of the Message-ID, <unique@hostname>, and the seed of the MIME boundary.
  // Unique per notice, e.g. the queue id plus a kind letter. RFC 5322 atext and '.'.
  std::string_view unique;
  std::vector<DsnRecipient> recipients;  // all of this kind for this message; not empty
  uint64_t max_return_size = kDefaultMaxReturnSize;
};

struct Dsn {
  std::string message;  // the whole notice, CRLF line endings, starting with From:
  // What to queue it with. seven_bit unless the returned content has 8-bit bytes
  // (eight_bit_mime) or lines over 998 octets / NULs / bare CR or LF (binary_mime).
  queue::BodyType body = queue::BodyType::seven_bit;
  // The notice uses the RFC 6533 "global" types and may hold UTF-8 in headers: queue it
  // with SMTPUTF8. True when the original was SMTPUTF8 or any address is non-ASCII.
  bool smtputf8 = false;
};

// Builds one notice covering all `params.recipients` of `envelope`'s message:
//   multipart/report; report-type=delivery-status
//     1. text/plain: what happened, per recipient, with the remote reply
//     2. message/delivery-status (message/global-delivery-status under SMTPUTF8)
//     3. the original: message/rfc822 (message/global) for a failure notice unless
//        RET=HDRS or the message exceeds max_return_size; otherwise its header section as
//        text/rfc822-headers (message/global-headers). Delay and success notices return
//        headers only: RET is about failure notices (RFC 3461 4.3).
// `message` is the stored message (CRLF, starting with our Received: field).
// Errors (all caller bugs or corrupt queue data, never wire input): null sender, no
// recipients, an Action that does not fit `kind`, a bad hostname or unique, controls in
// an address or the sender.
Result<Dsn> build_dsn(const queue::Envelope& envelope, std::string_view message,
                      const DsnParams& params);

// The header section of `message`: its field lines through the CRLF ending the last one.
// It ends at the empty line, or at the first line that is neither a field ("name:") nor a
// continuation, so a message with no empty line still yields only its real fields.
std::string_view header_section(std::string_view message);

// RFC 3461 4 xtext decoding ("+2B" -> "+"). Input that is not valid xtext is returned as
// is; the caller checks with smtp::valid_xtext first when it matters.
std::string xtext_decode(std::string_view xtext);

}  // namespace ringmail::delivery
