// SMTP server replies as the delivery client reads them (RFC 5321 4.2), their enhanced
// status codes (RFC 2034, RFC 3463) and the EHLO keywords the client acts on.
//
// Sans-IO: ReplyParser takes the bytes a Stream has buffered and says how many it used;
// it never reads a socket, never waits and never trusts the peer. Every reply it returns
// has a three-digit code that is the same on all its lines, at most `max_lines` lines of
// at most `max_line` octets, and text with control characters replaced, so it can go
// into a log line or a DSN's Diagnostic-Code as it is. Anything else is a protocol error
// (the connection is then unusable), never a crash or an unbounded buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"

namespace ringmail::delivery {

struct Reply {
  int code = 0;                    // 200..599
  std::string enhanced;            // "5.1.1" from the first line, "" when not given
  std::vector<std::string> lines;  // each line's text after "NNN-" / "NNN ", sanitized

  int klass() const { return code / 100; }
  // The text of all lines on one line, each line's leading enhanced code (when it repeats
  // the first line's) dropped: "The email account does not exist. See https://..."
  std::string text() const;
  // "550 5.1.1 The email account does not exist." (no enhanced part when absent).
  std::string summary() const;
};

struct ReplyLimits {
  size_t max_line = 2048;  // octets per line without CRLF; RFC 5321 4.5.3.1.5 says 512
  size_t max_lines = 1000;
};

class ReplyParser {
 public:
  explicit ReplyParser(const ReplyLimits& limits = {}) : limits_(limits) {}

  // Parses complete lines from the front of `in` and sets `consumed` to how many bytes
  // the caller drops from its buffer (a partial line is left there, unconsumed). true:
  // a whole reply is ready, take() it; false: more input is needed. An error is a
  // protocol violation; the parser stays failed and the connection should be closed.
  Result<bool> parse(std::string_view in, size_t& consumed);
  // The finished reply; the parser is ready for the next one.
  Reply take();

 private:
  Status line(std::string_view l);

  ReplyLimits limits_;
  Reply cur_;
  bool done_ = false;
  std::string failed_;  // non-empty once a protocol error was seen
};

// "x.y.z" at the start of `text` (class 2, 4 or 5, 1-3 digits each, then a space or the
// end), "" when there is none.
std::string_view enhanced_code(std::string_view text);

// What an EHLO reply offers (RFC 5321 4.1.1.1: first line is the greeting, each further
// line one keyword with optional parameters; keywords are case-insensitive).
struct Capabilities {
  bool esmtp = false;  // false: the server only took HELO, so no extension applies
  bool pipelining = false;
  bool size = false;
  uint64_t size_limit = 0;  // SIZE n (RFC 1870); 0 = no fixed limit announced
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool dsn = false;
  bool starttls = false;
  bool chunking = false;
  bool enhanced_status_codes = false;
  std::vector<std::string> auth;  // mechanisms, upper case, from "AUTH a b" and "AUTH=a b"

  bool has_auth(std::string_view mechanism) const;
};

Capabilities parse_ehlo(const Reply& r);

}  // namespace ringmail::delivery
