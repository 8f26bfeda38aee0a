// Trace and identification helpers for accepted messages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ringmail::smtp {

struct TraceInfo {
  std::string_view helo;
  std::string_view client_ip;  // "192.0.2.1" or "IPv6:2001:db8::1"
  std::string_view hostname;   // ours
  std::string_view protocol;   // SMTP, ESMTP, ESMTPS, ESMTPA, UTF8SMTP, ...
  std::string_view queue_id;
  std::string_view tls;        // "using TLSv1.3 with cipher ... (128 bits)", or empty
  std::string_view recipient;  // set only for single-recipient messages
  int64_t unix_time = 0;
};

// RFC 5321 4.4 time stamp line, folded, ending in CRLF.
std::string received_header(const TraceInfo& t);

// RFC 5322 date-time in UTC: "Fri, 27 Nov 2026 03:36:36 +0000".
std::string rfc5322_date(int64_t unix_time);

// The Message-ID header's value from the header section of `message` (unfolded, trimmed),
// or "" if there is none. Reads headers only, at most `max_scan` bytes.
std::string find_message_id(std::string_view message, size_t max_scan = 256 * 1024);

}  // namespace ringmail::smtp
