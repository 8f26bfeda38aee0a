#include "mta/smtp/received.h"

#include <cctype>
#include <ctime>

namespace ringmail::smtp {

std::string rfc5322_date(int64_t unix_time) {
  time_t t = static_cast<time_t>(unix_time);
  struct tm tm;
  gmtime_r(&t, &tm);
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  // Not strftime: %a/%b follow the locale, RFC 5322 wants these English names.
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::string received_header(const TraceInfo& t) {
  std::string h;
  h.reserve(256);
  h += "Received: from ";
  h += t.helo;
  h += " ([";
  h += t.client_ip;
  h += "])\r\n\t";
  if (!t.tls.empty()) {
    h += "(";
    h += t.tls;
    h += ")\r\n\t";
  }
  h += "by ";
  h += t.hostname;
  h += " (ringmail) with ";
  h += t.protocol;
  h += " id ";
  h += t.queue_id;
  if (!t.recipient.empty()) {
    h += "\r\n\tfor <";
    h += t.recipient;
    h += ">";
  }
  h += "; ";
  h += rfc5322_date(t.unix_time);
  h += "\r\n";
  return h;
}

std::string find_message_id(std::string_view m, size_t max_scan) {
  if (m.size() > max_scan) m = m.substr(0, max_scan);
  size_t pos = 0;
  while (pos < m.size()) {
    size_t eol = m.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = m.size();
    std::string_view line = m.substr(pos, eol - pos);
    if (line.empty()) break;  // end of the header section
    constexpr std::string_view kName = "message-id:";
    bool match = line.size() >= kName.size();
    for (size_t i = 0; match && i < kName.size(); ++i)
      match = std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    if (match) {
      std::string value(line.substr(kName.size()));
      // Unfold continuation lines.
      size_t next = eol + 2;
      while (next < m.size() && (m[next] == ' ' || m[next] == '\t')) {
        size_t e = m.find("\r\n", next);
        if (e == std::string_view::npos) e = m.size();
        value += m.substr(next, e - next);
        next = e + 2;
      }
      size_t b = value.find_first_not_of(" \t");
      size_t e = value.find_last_not_of(" \t");
      return b == std::string::npos ? std::string() : value.substr(b, e - b + 1);
    }
    pos = eol + 2;
  }
  return {};
}

}  // namespace ringmail::smtp
