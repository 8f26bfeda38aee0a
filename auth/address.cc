#include "auth/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>

#include <cctype>

#include "dns/domain.h"

namespace ringmail::auth {

namespace {
// RFC 5321 4.5.3.1: local part 64 octets, domain 255, path 256.
constexpr size_t kMaxLocal = 64;
constexpr size_t kMaxPath = 256;

bool is_atext(unsigned char c, bool utf8) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
  }
  return utf8 && c >= 0x80;
}

Error syntax(std::string_view what) {
  return Error{501, std::string(what)};
}

// Dot-string = Atom *("." Atom)
bool valid_dot_string(std::string_view s, bool utf8) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char ch : s) {
    if (ch == '.') {
      if (prev == '.') return false;
    } else if (!is_atext(static_cast<unsigned char>(ch), utf8)) {
      return false;
    }
    prev = ch;
  }
  return true;
}

bool has_non_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return true;
  return false;
}

bool valid_ipv4(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = i;
    int v = 0;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])) && j - i < 3)
      v = v * 10 + (s[j++] - '0');
    if (j == i || v > 255) return false;
    ++parts;
    if (j == s.size()) break;
    if (s[j] != '.') return false;
    i = j + 1;
  }
  return parts == 4;
}

// address-literal = "[" ( IPv4 / "IPv6:" IPv6 / tag ":" dcontent ) "]"
bool valid_address_literal(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') return false;
  std::string_view in = s.substr(1, s.size() - 2);
  if (valid_ipv4(in)) return true;
  constexpr std::string_view kV6 = "IPv6:";
  // The tag is an ABNF string, so case-insensitive (RFC 5234 2.3): "ipv6:" is "IPv6:".
  if (in.size() > kV6.size() && strncasecmp(in.data(), kV6.data(), kV6.size()) == 0) {
    std::string addr(in.substr(kV6.size()));
    in6_addr a;
    return addr.size() < INET6_ADDRSTRLEN && inet_pton(AF_INET6, addr.c_str(), &a) == 1;
  }
  size_t colon = in.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  for (size_t i = 0; i < colon; ++i) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    if (!std::isalnum(c) && c != '-') return false;
  }
  std::string_view rest = in.substr(colon + 1);
  if (rest.empty()) return false;
  for (unsigned char c : rest)
    if (c < 33 || c > 126 || c == '[' || c == ']' || c == '\\') return false;
  return true;
}
}  // namespace

Result<Path> parse_path(std::string_view s, bool allow_null, bool allow_utf8, size_t* consumed) {
  // Characters are checked as if SMTPUTF8 were on; without it, any non-ASCII octet gets
  // the specific 553 5.6.7 at the end (RFC 6531 3.5) rather than a vague syntax error.
  constexpr bool kUtf8Chars = true;
  if (s.empty() || s.front() != '<') return syntax("address must be in angle brackets");
  size_t close = std::string_view::npos;
  // Find the closing '>' outside a quoted string.
  bool in_quote = false;
  for (size_t i = 1; i < s.size(); ++i) {
    char c = s[i];
    if (in_quote) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_quote = false;
      }
    } else if (c == '"') {
      in_quote = true;
    } else if (c == '>') {
      close = i;
      break;
    }
  }
  if (close == std::string_view::npos) return syntax("missing '>'");
  // RFC 5321 4.5.3.1.3: 256 octets "including the punctuation and element separators".
  if (close + 1 > kMaxPath) return syntax("path too long");
  *consumed = close + 1;
  std::string_view in = s.substr(1, close - 1);
  const bool non_ascii = has_non_ascii(in);
  Path p;
  if (in.empty()) {
    if (!allow_null) return syntax("null address not allowed here");
    p.null = true;
    return p;
  }
  // A-d-l = At-domain *( "," At-domain ) ":"  — accepted, remembered, never trusted.
  if (in.front() == '@') {
    size_t colon = in.find(':');
    if (colon == std::string_view::npos) return syntax("bad source route");
    std::string_view route = in.substr(0, colon);
    size_t start = 0;
    while (start < route.size()) {
      size_t comma = route.find(',', start);
      std::string_view hop = route.substr(
          start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
      if (hop.size() < 2 || hop.front() != '@' || !dns::valid_domain(hop.substr(1), kUtf8Chars))
        return syntax("bad source route");
      if (comma == std::string_view::npos) break;
      start = comma + 1;
      if (start == route.size()) return syntax("bad source route");  // "@a,:" has an empty hop
    }
    p.source_route = true;
    in = in.substr(colon + 1);
  }
  // Local-part "@" Domain; the '@' that separates them is the first one outside quotes.
  size_t at;
  if (!in.empty() && in.front() == '"') {
    size_t i = 1;
    std::string content;
    bool closed = false;
    for (; i < in.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(in[i]);
      if (c == '\\') {
        // quoted-pairSMTP = %d92 %d32-126
        if (i + 1 >= in.size()) return syntax("bad quoted local part");
        unsigned char n = static_cast<unsigned char>(in[++i]);
        if (n < 32 || n > 126) return syntax("bad quoted local part");
        content.push_back(static_cast<char>(n));
      } else if (c == '"') {
        closed = true;
        break;
      } else if ((c >= 32 && c <= 126) || (kUtf8Chars && c >= 0x80)) {
        content.push_back(static_cast<char>(c));
      } else {
        return syntax("bad quoted local part");
      }
    }
    if (!closed) return syntax("unterminated quoted local part");
    at = i + 1;
    if (at >= in.size() || in[at] != '@') return syntax("missing domain");
    p.mailbox.quoted_local = true;
    p.mailbox.local = std::string(in.substr(0, at));
  } else {
    at = in.find('@');
    if (at == std::string_view::npos) return syntax("missing domain");
    std::string_view local = in.substr(0, at);
    if (!valid_dot_string(local, kUtf8Chars)) return syntax("bad local part");
    p.mailbox.local = std::string(local);
  }
  if (p.mailbox.local.size() > kMaxLocal + (p.mailbox.quoted_local ? 2 : 0))
    return syntax("local part too long");
  std::string_view domain = in.substr(at + 1);
  if (!domain.empty() && domain.front() == '[') {
    if (!valid_address_literal(domain)) return syntax("bad address literal");
    p.mailbox.address_literal = true;
  } else if (!dns::valid_domain(domain, kUtf8Chars)) {
    return syntax("bad domain");
  }
  p.mailbox.domain.reserve(domain.size());
  for (char c : domain)
    p.mailbox.domain.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  p.utf8 = non_ascii;
  if (p.utf8 && !allow_utf8) return Error{553, "non-ASCII address needs SMTPUTF8"};
  return p;
}

bool is_postmaster(std::string_view address) {
  size_t at = address.rfind('@');
  std::string_view local = address.substr(0, at);
  return local.size() == 10 && strncasecmp(local.data(), "postmaster", 10) == 0;
}

}  // namespace ringmail::auth
