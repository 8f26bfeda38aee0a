#include "mta/delivery/dsn.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>

#include "mta/smtp/command_parser.h"
#include "mta/smtp/received.h"

namespace ringmail::delivery {
namespace {

using queue::BodyType;

// Text we write wraps at 76 columns for readers; nothing we write exceeds this hard
// bound, which keeps every generated line under RFC 5322's 998 octets with room for
// an indent and a fold.
constexpr size_t kWrap = 76;
constexpr size_t kHardLine = 900;
// A remote reply beyond this is noise (RFC 5321 caps a reply line at 512 octets; a
// multi-line reply of 8 lines fits), and it is repeated in two parts.
constexpr size_t kMaxDiagnostic = 4096;

Error fail(std::string msg) {
  return Error{0, "dsn: " + std::move(msg)};
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool has_controls(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7F;
  });
}

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629 4: no overlongs, no
// surrogates, at most U+10FFFF), or 0.
size_t utf8_seq(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char c = b(0);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(k) < 0x80 || b(k) > 0xBF) return 0;
  return n;
}

// Remote or user-supplied text made safe for one header field or text line: every
// control (CR and LF included) becomes a space, runs of spaces collapse, non-ASCII stays
// only where UTF-8 may appear (`utf8`) and is well formed, else becomes '?'.
std::string sanitize(std::string_view s, bool utf8) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F || c == ' ') {
      if (!out.empty() && out.back() != ' ') out += ' ';
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if (size_t n = utf8 ? utf8_seq(s, i) : 0; n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += '?';
      ++i;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Splits `text` (already sanitized: no controls) into lines of at most `width` octets
// (`first` for the first line), breaking at spaces. A word too long for its line stays
// whole up to kHardLine octets and is cut beyond that, which only garbles input no real
// reply has.
std::vector<std::string_view> wrap(std::string_view text, size_t first, size_t width) {
  std::vector<std::string_view> lines;
  for (size_t w = first; !text.empty(); w = width) {
    if (text.size() <= w) {
      lines.push_back(text);
      break;
    }
    size_t cut = text.rfind(' ', w);
    if (cut == std::string_view::npos || cut == 0) {
      cut = text.find(' ');
      if (cut == std::string_view::npos || cut > kHardLine) cut = std::min(text.size(), kHardLine);
    }
    lines.push_back(text.substr(0, cut));
    text.remove_prefix(cut);
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  }
  return lines;
}

// "Name: value" folded at spaces (RFC 5322 2.2.3), CRLF-terminated. `value` has no
// controls, so the field cannot end early or grow a sibling.
void append_field(std::string& out, std::string_view name, std::string_view value) {
  size_t first = kWrap > name.size() + 2 ? kWrap - name.size() - 2 : 1;
  out += name;
  out += ':';
  bool start = true;
  for (auto l : wrap(value, first, kWrap - 1)) {
    out += start ? " " : "\r\n ";
    out += l;
    start = false;
  }
  out += "\r\n";
}

void append_text(std::string& out, std::string_view text, std::string_view indent = {}) {
  for (auto l : wrap(text, kWrap - indent.size(), kWrap - indent.size())) {
    out += indent;
    out += l;
    out += "\r\n";
  }
}

std::string default_status(DsnAction a) {
  switch (a) {
    case DsnAction::failed:
      return "5.0.0";
    case DsnAction::delayed:
      return "4.0.0";
    default:
      return "2.0.0";
  }
}

// RFC 3464 2.3.4: status-code = DIGIT "." 1*3DIGIT "." 1*3DIGIT, class 2, 4 or 5.
bool valid_status(std::string_view s) {
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  size_t pos = 2;
  for (int part = 0; part < 2; ++part) {
    size_t digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos, ++digits;
    if (digits < 1 || digits > 3) return false;
    if (part == 0) {
      if (pos >= s.size() || s[pos] != '.') return false;
      ++pos;
    }
  }
  return pos == s.size();
}

bool action_fits(DsnKind k, DsnAction a) {
  switch (k) {
    case DsnKind::failure:
      return a == DsnAction::failed;
    case DsnKind::delay:
      return a == DsnAction::delayed;
    case DsnKind::success:
      return a == DsnAction::delivered || a == DsnAction::relayed || a == DsnAction::expanded;
  }
  return false;
}

// Our own hostname: LDH labels, or an address literal. Anything else is a config bug.
bool valid_hostname(std::string_view h) {
  if (h.empty() || h.size() > 255) return false;
  return std::all_of(h.begin(), h.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '[' || c == ']' || c == ':';
  });
}

// RFC 5322 3.2.3 atext plus '.', the id-left of a Message-ID.
bool valid_unique(std::string_view u) {
  if (u.empty() || u.size() > 128) return false;
  return std::all_of(u.begin(), u.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-/=?^_`{|}~.").find(c) != std::string_view::npos;
  });
}

bool atom(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
  });
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool printable_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
}

// ENVID/ORCPT arrive as xtext. The report carries the decoded text (as sendmail and
// Postfix do); when decoding would yield controls or 8-bit bytes we keep the xtext, which
// is printable by construction, rather than let "+0D+0A" become a line break.
std::string xtext_for_report(std::string_view xtext) {
  if (!smtp::valid_xtext(xtext)) return sanitize(xtext, false);
  std::string d = xtext_decode(xtext);
  return printable_ascii(d) ? d : std::string(xtext);
}

// RFC 6533 3 utf-8-addr-unitext: UTF-8 kept, ASCII controls, space, '\', '+' and '='
// as \x{HH}. Used for non-ASCII addresses in message/global-delivery-status.
std::string unitext(std::string_view addr) {
  std::string out;
  for (char ch : addr) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7F || c == '\\' || c == '+' || c == '=') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x{%02X}", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out;
}

// "rfc822; addr" for ASCII; "utf-8; unitext" for an internationalised address, which only
// a global notice carries (build_dsn switches to global when it sees one).
std::string typed_address(std::string_view addr) {
  if (is_ascii(addr)) return "rfc822; " + std::string(addr);
  return "utf-8; " + unitext(addr);
}

struct Orcpt {
  std::string field;    // value of Original-Recipient:
  std::string display;  // the address alone, for the text part
};

// Empty field when there is no usable ORCPT: a malformed one is left out rather than
// guessed at (the parser never stores one, so this is corrupt data).
Orcpt report_orcpt(std::string_view orcpt) {
  Orcpt o;
  size_t semi = orcpt.find(';');
  if (semi == std::string_view::npos || !atom(orcpt.substr(0, semi))) return o;
  std::string_view type = orcpt.substr(0, semi);
  std::string_view x = orcpt.substr(semi + 1);
  if (x.empty() || !smtp::valid_xtext(x)) return o;
  // utf-8 ORCPTs hold utf-8-addr-xtext inside the xtext (RFC 6533 3); decoded it is
  // still 7-bit and valid in both the plain and the global report.
  o.display = xtext_for_report(x);
  o.field = (iequals(type, "utf-8") ? std::string("utf-8") : std::string(type)) + "; " + o.display;
  return o;
}

const char* subject_for(DsnKind k) {
  switch (k) {
    case DsnKind::failure:
      return "Undelivered Mail Returned to Sender";
    case DsnKind::delay:
      return "Delayed Mail (still being retried)";
    case DsnKind::success:
      return "Successful Mail Delivery Report";
  }
  return "";
}

// What the returned content needs from the transport (RFC 2045 2.7-2.8, 6.4).
BodyType classify(std::string_view s) {
  BodyType t = BodyType::seven_bit;
  size_t line = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      if (i + 1 >= s.size() || s[i + 1] != '\n') return BodyType::binary_mime;
      ++i;
      line = 0;
      continue;
    }
    if (c == '\n' || c == 0) return BodyType::binary_mime;
    if (++line > 998) return BodyType::binary_mime;
    if (c >= 0x80) t = BodyType::eight_bit_mime;
  }
  return t;
}

const char* cte_name(BodyType t) {
  return t == BodyType::binary_mime ? "binary" : t == BodyType::eight_bit_mime ? "8bit" : "7bit";
}

// A Message-ID as find_message_id returns it, usable in In-Reply-To only if it is one
// plain "<...>" token.
bool plain_msg_id(std::string_view id) {
  return id.size() >= 3 && id.size() <= 900 && id.front() == '<' && id.back() == '>' &&
         id.find_first_of(" <>", 1) == id.size() - 1 && printable_ascii(id);
}

// A boundary that occurs nowhere in the parts (RFC 2046 5.1.1). Candidates share a prefix
// and end in a fixed-width counter, so each one the content blocks needs its own
// occurrence of the prefix: one scan collects them all and the first free counter wins,
// however the content was crafted.
std::string pick_boundary(std::string_view unique, const std::vector<std::string_view>& parts) {
  std::string prefix = "=_rm_";
  for (char c : unique)
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) prefix += c;
  prefix.resize(std::min<size_t>(prefix.size(), 50));
  prefix += '_';
  constexpr size_t kCounter = 8;
  std::set<std::string_view> taken;
  for (auto p : parts) {
    for (size_t at = p.find(prefix); at != std::string_view::npos; at = p.find(prefix, at + 1))
      taken.insert(p.substr(at + prefix.size(), kCounter));
  }
  for (uint64_t n = 0;; ++n) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08llx", static_cast<unsigned long long>(n));
    if (!taken.count(std::string_view(buf, kCounter))) return prefix + buf;
  }
}

}  // namespace

std::string_view action_name(DsnAction a) {
  switch (a) {
    case DsnAction::failed:
      return "failed";
    case DsnAction::delayed:
      return "delayed";
    case DsnAction::delivered:
      return "delivered";
    case DsnAction::relayed:
      return "relayed";
    case DsnAction::expanded:
      return "expanded";
  }
  return "failed";
}

bool dsn_wanted(DsnKind kind, uint8_t notify, std::string_view sender) {
  if (sender.empty() || sender == "<>") return false;
  if (notify & queue::kNotifyNever) return false;
  if (notify == 0) return kind != DsnKind::success;
  switch (kind) {
    case DsnKind::failure:
      return notify & queue::kNotifyFailure;
    case DsnKind::delay:
      return notify & queue::kNotifyDelay;
    case DsnKind::success:
      return notify & queue::kNotifySuccess;
  }
  return false;
}

std::string xtext_decode(std::string_view x) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == '+' && i + 2 < x.size() && hex(x[i + 1]) >= 0 && hex(x[i + 2]) >= 0) {
      out += static_cast<char>(hex(x[i + 1]) * 16 + hex(x[i + 2]));
      i += 2;
    } else {
      out += x[i];
    }
  }
  return out;
}

std::string_view header_section(std::string_view m) {
  size_t pos = 0;
  bool any = false;
  while (pos < m.size()) {
    size_t nl = m.find('\n', pos);
    size_t next = nl == std::string_view::npos ? m.size() : nl + 1;
    std::string_view line = m.substr(pos, next - pos);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') {
      if (!any) break;
    } else {
      // field-name = 1*ftext, ftext = %d33-57 / %d59-126 (RFC 5322 3.6.8)
      size_t colon = line.find(':');
      if (colon == 0 || colon == std::string_view::npos) break;
      bool name_ok = std::all_of(line.begin(), line.begin() + static_cast<long>(colon),
                                 [](char c) { return c >= 33 && c <= 126; });
      if (!name_ok) break;
      any = true;
    }
    pos = next;
  }
  return m.substr(0, pos);
}

Result<Dsn> build_dsn(const queue::Envelope& env, std::string_view message, const DsnParams& p) {
  // --- Check: everything here is our own data; a failure is a bug upstream.
  if (env.sender.empty() || env.sender == "<>")
    return fail("a message from the null sender never gets a notice");
  if (has_controls(env.sender)) return fail("control characters in the envelope sender");
  if (p.recipients.empty()) return fail("no recipients");
  if (!valid_hostname(p.hostname)) return fail("bad hostname");
  if (!valid_unique(p.unique)) return fail("bad unique part for Message-ID");
  bool global = env.smtputf8 || !is_ascii(env.sender);
  for (const auto& r : p.recipients) {
    if (r.address.empty() || has_controls(r.address)) return fail("bad recipient address");
    if (!action_fits(p.kind, r.action))
      return fail(std::string(action_name(r.action)) + " does not fit this kind of notice");
    if (!atom(r.diagnostic_type)) return fail("bad diagnostic type");
    if (!is_ascii(r.address)) global = true;
  }

  // --- Part 3 first: what we return decides a note in part 1 and the transfer encoding.
  bool want_full = p.kind == DsnKind::failure && env.ret != queue::Ret::hdrs;
  bool too_big = want_full && message.size() > p.max_return_size;
  bool full = want_full && !too_big;
  std::string_view returned = full ? message : header_section(message);
  bool headers_cut = false;
  if (!full && returned.size() > p.max_return_size) {
    // Only a pathological message has a header section this big; cut at a line end.
    size_t cut = p.max_return_size >= 2 ? returned.rfind("\r\n", p.max_return_size - 2)
                                        : std::string_view::npos;
    returned = returned.substr(0, cut == std::string_view::npos ? 0 : cut + 2);
    headers_cut = true;
  }
  std::string headers_copy;
  if (!full && !returned.empty() && returned.back() != '\n') {
    headers_copy = std::string(returned) + "\r\n";
    returned = headers_copy;
  }
  const char* returned_type = full ? (global ? "message/global" : "message/rfc822")
                                   : (global ? "message/global-headers" : "text/rfc822-headers");
  BodyType body = classify(returned);

  // --- Part 1: for people.
  std::string text;
  text += "This is the mail system at host " + std::string(p.hostname) + ".\r\n\r\n";
  switch (p.kind) {
    case DsnKind::failure:
      append_text(text,
                  "Your message could not be delivered to one or more recipients. "
                  "No further attempts will be made to deliver it to them. The recipients "
                  "and the reasons are listed below.");
      break;
    case DsnKind::delay: {
      int64_t until = 0;
      for (const auto& r : p.recipients) until = std::max(until, r.will_retry_until);
      std::string s =
          "Your message has not yet been delivered to one or more recipients. "
          "It is still in the queue and will be retried";
      s += until > 0 ? " until " + smtp::rfc5322_date(until) + "." : ".";
      s += " You do not need to send it again; you will be told if it finally fails.";
      append_text(text, s);
      break;
    }
    case DsnKind::success:
      append_text(text, "Your message was delivered to, or passed on for, the recipients below.");
      break;
  }
  for (const auto& r : p.recipients) {
    Orcpt o = report_orcpt(r.orcpt);
    text += "\r\n";
    std::string who = "<" + sanitize(r.address, global) + ">";
    if (!o.display.empty() && !iequals(o.display, r.address))
      who += " (originally " + o.display + ")";
    append_text(text, who + ": " + std::string(action_name(r.action)));
    if (r.action == DsnAction::relayed)
      append_text(text,
                  "The next server does not send delivery notifications; no further "
                  "notice will come for this recipient.",
                  "    ");
    if (!r.diagnostic.empty()) {
      std::string_view d = std::string_view(r.diagnostic).substr(0, kMaxDiagnostic);
      std::string intro =
          r.remote_mta.empty() ? "Reason:" : "Host " + sanitize(r.remote_mta, false) + " said:";
      append_text(text, intro, "    ");
      // One text line per reply line: multi-line replies stay readable.
      size_t pos = 0;
      while (pos < d.size()) {
        size_t e = d.find_first_of("\r\n", pos);
        if (e == std::string_view::npos) e = d.size();
        std::string line = sanitize(d.substr(pos, e - pos), global);
        if (!line.empty()) append_text(text, line, "        ");
        pos = e + 1;
      }
    }
  }
  text += "\r\n";
  char bound[160];
  std::snprintf(bound, sizeof bound, "The message was larger than %llu bytes",
                static_cast<unsigned long long>(p.max_return_size));
  if (full)
    append_text(text, "The message is attached below.");
  else if (returned.empty())
    append_text(text, too_big ? std::string(bound) + " and is not attached." : "");
  else if (headers_cut)
    append_text(text, "The message's header section is larger than " +
                          std::to_string(p.max_return_size) +
                          " bytes; only its first lines are attached.");
  else if (too_big)
    append_text(text, std::string(bound) + ", so only its headers are attached.");
  else
    append_text(text, "The message's headers are attached below.");

  // --- Part 2: for programs (RFC 3464 2.2 per-message, 2.3 per-recipient fields).
  std::string status;
  append_field(status, "Reporting-MTA", "dns; " + std::string(p.hostname));
  if (!env.envid.empty()) append_field(status, "Original-Envelope-Id", xtext_for_report(env.envid));
  if (env.arrival_us > 0)
    append_field(status, "Arrival-Date", smtp::rfc5322_date(env.arrival_us / 1000000));
  for (const auto& r : p.recipients) {
    status += "\r\n";
    Orcpt o = report_orcpt(r.orcpt);
    if (!o.field.empty()) append_field(status, "Original-Recipient", o.field);
    append_field(status, "Final-Recipient", typed_address(r.address));
    append_field(status, "Action", action_name(r.action));
    append_field(status, "Status", valid_status(r.status) ? r.status : default_status(r.action));
    std::string mta = sanitize(r.remote_mta, false);
    mta.erase(std::remove(mta.begin(), mta.end(), ' '), mta.end());
    if (!mta.empty()) append_field(status, "Remote-MTA", "dns; " + mta);
    if (!r.diagnostic.empty()) {
      std::string d = sanitize(std::string_view(r.diagnostic).substr(0, kMaxDiagnostic), global);
      if (!d.empty()) append_field(status, "Diagnostic-Code", r.diagnostic_type + "; " + d);
    }
    if (r.last_attempt > 0)
      append_field(status, "Last-Attempt-Date", smtp::rfc5322_date(r.last_attempt));
    if (r.action == DsnAction::delayed && r.will_retry_until > 0)
      append_field(status, "Will-Retry-Until", smtp::rfc5322_date(r.will_retry_until));
  }

  // --- Assemble (RFC 6522 3: report first after the text, original last).
  if (classify(text) == BodyType::eight_bit_mime || classify(status) == BodyType::eight_bit_mime)
    body = std::max(body, BodyType::eight_bit_mime);
  std::string boundary = pick_boundary(p.unique, {text, status, returned});

  Dsn d;
  d.body = body;
  d.smtputf8 = global;
  std::string& m = d.message;
  m.reserve(text.size() + status.size() + returned.size() + 2048);
  append_field(m, "From",
               "\"Mail Delivery System\" <MAILER-DAEMON@" + std::string(p.hostname) + ">");
  append_field(m, "To", "<" + env.sender + ">");
  append_field(m, "Subject", subject_for(p.kind));
  append_field(m, "Date", smtp::rfc5322_date(p.now));
  append_field(m, "Message-ID", "<" + std::string(p.unique) + "@" + std::string(p.hostname) + ">");
  if (plain_msg_id(env.message_id)) {
    // RFC 3834 3.1.5: responses thread with what they answer.
    append_field(m, "In-Reply-To", env.message_id);
    append_field(m, "References", env.message_id);
  }
  append_field(m, "MIME-Version", "1.0");
  append_field(m, "Auto-Submitted", "auto-replied");
  append_field(m, "Content-Type",
               "multipart/report; report-type=delivery-status; boundary=\"" + boundary + "\"");
  if (body != BodyType::seven_bit) append_field(m, "Content-Transfer-Encoding", cte_name(body));
  m += "\r\nThis is a MIME-encapsulated message.\r\n";

  bool text_8bit = !is_ascii(text);
  m += "\r\n--" + boundary + "\r\n";
  append_field(m, "Content-Description", "Notification");
  append_field(m, "Content-Type",
               text_8bit ? "text/plain; charset=utf-8" : "text/plain; charset=us-ascii");
  if (text_8bit) append_field(m, "Content-Transfer-Encoding", "8bit");
  m += "\r\n";
  m += text;

  m += "\r\n--" + boundary + "\r\n";
  append_field(m, "Content-Description", "Delivery report");
  append_field(m, "Content-Type",
               global ? "message/global-delivery-status" : "message/delivery-status");
  if (!is_ascii(status)) append_field(m, "Content-Transfer-Encoding", "8bit");
  m += "\r\n";
  m += status;

  if (!returned.empty()) {
    m += "\r\n--" + boundary + "\r\n";
    append_field(m, "Content-Description", full ? "Undelivered Message" : "Message Headers");
    append_field(m, "Content-Type", returned_type);
    BodyType rt = classify(returned);
    if (rt != BodyType::seven_bit) append_field(m, "Content-Transfer-Encoding", cte_name(rt));
    m += "\r\n";
    m += returned;
  }
  // The CRLF before each delimiter belongs to the delimiter (RFC 2046 5.1.1), so every
  // part's content, the returned message included, is kept byte for byte.
  m += "\r\n--" + boundary + "--\r\n";
  return d;
}

}  // namespace ringmail::delivery
