#include "mta/delivery/smtp_reply.h"

#include <algorithm>

namespace ringmail::delivery {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

char upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

std::string upper(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = upper(c);
  return r;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (upper(a[i]) != upper(b[i])) return false;
  return true;
}

// Reply text ends up in log lines and in DSN header fields, where a stray CR, NUL or
// escape sequence from the peer would break the record or a terminal: tabs become spaces
// and other control characters '?'. Bytes >= 0x80 stay (servers do send UTF-8 text).
std::string sanitize(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\t')
      c = ' ';
    else if (u < 0x20 || u == 0x7f)
      c = '?';
  }
  return r;
}

// 1-3 digits at s[i]; advances i.
bool digits_1_3(std::string_view s, size_t& i) {
  size_t start = i;
  while (i < s.size() && is_digit(s[i]) && i - start < 3) ++i;
  return i > start && (i >= s.size() || !is_digit(s[i]));
}

// RFC 4422 3.1: SASL mechanism names are 1-20 of [A-Z0-9-_].
bool valid_mechanism(std::string_view m) {
  if (m.empty() || m.size() > 20) return false;
  for (char c : m)
    if (!((c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_')) return false;
  return true;
}

void add_mechanisms(Capabilities& caps, std::string_view list) {
  while (!list.empty()) {
    size_t sp = list.find(' ');
    std::string m = upper(list.substr(0, sp));
    list = sp == std::string_view::npos ? std::string_view() : list.substr(sp + 1);
    if (!valid_mechanism(m)) continue;
    if (std::find(caps.auth.begin(), caps.auth.end(), m) == caps.auth.end())
      caps.auth.push_back(std::move(m));
  }
}

// RFC 1870: "SIZE" [SP number]; no number or 0 means no fixed limit. Anything that is
// not a plain number is treated the same way rather than refusing to talk to the host.
uint64_t parse_size(std::string_view p) {
  while (!p.empty() && p.front() == ' ') p.remove_prefix(1);
  while (!p.empty() && p.back() == ' ') p.remove_suffix(1);
  if (p.empty() || p.size() > 19) return 0;
  uint64_t v = 0;
  for (char c : p) {
    if (!is_digit(c)) return 0;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

}  // namespace

std::string_view enhanced_code(std::string_view text) {
  if (text.size() < 5) return {};
  if (text[0] != '2' && text[0] != '4' && text[0] != '5') return {};
  if (text[1] != '.') return {};
  size_t i = 2;
  if (!digits_1_3(text, i) || i >= text.size() || text[i] != '.') return {};
  ++i;
  if (!digits_1_3(text, i)) return {};
  if (i < text.size() && text[i] != ' ') return {};
  return text.substr(0, i);
}

std::string Reply::text() const {
  std::string r;
  for (const auto& l : lines) {
    std::string_view t = l;
    // RFC 2034 repeats the enhanced code on every line; once is enough.
    if (!enhanced.empty() && enhanced_code(t) == enhanced) t.remove_prefix(enhanced.size());
    while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
    if (t.empty()) continue;
    if (!r.empty()) r += ' ';
    r.append(t);
  }
  return r;
}

std::string Reply::summary() const {
  std::string r = std::to_string(code);
  if (!enhanced.empty()) r += ' ' + enhanced;
  std::string t = text();
  if (!t.empty()) r += ' ' + t;
  return r;
}

Result<bool> ReplyParser::parse(std::string_view in, size_t& consumed) {
  consumed = 0;
  if (!failed_.empty()) return Error{0, failed_};
  if (done_) return true;
  for (;;) {
    std::string_view rest = in.substr(consumed);
    // Look for the end of the line only as far as a line may go, so a peer that never
    // sends LF costs a bounded scan and a bounded buffer.
    size_t window = std::min(rest.size(), limits_.max_line + 2);
    size_t lf = rest.substr(0, window).find('\n');
    if (lf == std::string_view::npos) {
      if (rest.size() < limits_.max_line + 2) return false;
      failed_ = "reply line longer than " + std::to_string(limits_.max_line) + " octets";
      return Error{0, failed_};
    }
    std::string_view l = rest.substr(0, lf);
    consumed += lf + 1;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    Status s = line(l);
    if (!s.ok()) {
      failed_ = s.error().message;
      return Error{0, failed_};
    }
    if (done_) return true;
  }
}

Status ReplyParser::line(std::string_view l) {
  if (l.size() > limits_.max_line)
    return Error{0, "reply line longer than " + std::to_string(limits_.max_line) + " octets"};
  // RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39; the second digit is taken up to
  // 9 because some servers use it and nothing here depends on it.
  if (l.size() < 3 || l[0] < '2' || l[0] > '5' || !is_digit(l[1]) || !is_digit(l[2]))
    return Error{0, "malformed reply line: \"" + sanitize(l.substr(0, 40)) + "\""};
  int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
  bool last;
  if (l.size() == 3 || l[3] == ' ')
    last = true;
  else if (l[3] == '-')
    last = false;
  else
    return Error{0, "malformed reply line: \"" + sanitize(l.substr(0, 40)) + "\""};
  if (!cur_.lines.empty() && code != cur_.code)
    return Error{0, "reply code changed from " + std::to_string(cur_.code) + " to " +
                        std::to_string(code) + " within one reply"};
  if (cur_.lines.size() >= limits_.max_lines)
    return Error{0, "more than " + std::to_string(limits_.max_lines) + " lines in one reply"};
  std::string_view text = l.size() > 4 ? l.substr(4) : std::string_view();
  if (cur_.lines.empty()) {
    cur_.code = code;
    // RFC 3463 2: the class of the enhanced code matches the reply's; one that does not
    // is not trusted as a status (it stays in the text).
    std::string_view e = enhanced_code(text);
    if (!e.empty() && e[0] == l[0]) cur_.enhanced = std::string(e);
  }
  cur_.lines.push_back(sanitize(text));
  done_ = last;
  return ok_status();
}

Reply ReplyParser::take() {
  Reply r = std::move(cur_);
  cur_ = Reply{};
  done_ = false;
  return r;
}

bool Capabilities::has_auth(std::string_view mechanism) const {
  for (const auto& m : auth)
    if (iequals(m, mechanism)) return true;
  return false;
}

Capabilities parse_ehlo(const Reply& r) {
  Capabilities caps;
  caps.esmtp = true;
  // The first line is the server's name and greeting text, never a keyword.
  for (size_t i = 1; i < r.lines.size(); ++i) {
    std::string_view l = r.lines[i];
    while (!l.empty() && l.front() == ' ') l.remove_prefix(1);
    size_t sp = l.find(' ');
    std::string_view kw = l.substr(0, sp);
    std::string_view params = sp == std::string_view::npos ? std::string_view() : l.substr(sp + 1);
    if (iequals(kw, "PIPELINING")) {
      caps.pipelining = true;
    } else if (iequals(kw, "SIZE")) {
      caps.size = true;
      caps.size_limit = parse_size(params);
    } else if (iequals(kw, "8BITMIME")) {
      caps.eightbitmime = true;
    } else if (iequals(kw, "SMTPUTF8")) {
      caps.smtputf8 = true;
    } else if (iequals(kw, "DSN")) {
      caps.dsn = true;
    } else if (iequals(kw, "STARTTLS")) {
      caps.starttls = true;
    } else if (iequals(kw, "CHUNKING")) {
      caps.chunking = true;
    } else if (iequals(kw, "ENHANCEDSTATUSCODES")) {
      caps.enhanced_status_codes = true;
    } else if (iequals(kw, "AUTH")) {
      add_mechanisms(caps, params);
    } else if (kw.size() > 5 && iequals(kw.substr(0, 5), "AUTH=")) {
      // The pre-RFC 2554 form some servers still send next to (or instead of) the real one.
      add_mechanisms(caps, kw.substr(5));
      add_mechanisms(caps, params);
    }
  }
  return caps;
}

}  // namespace ringmail::delivery
