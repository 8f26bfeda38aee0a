#include "auth/passwd_file.h"

#include <cerrno>
#include <map>

#include "auth/password.h"
#include "auth/user_db.h"

namespace ringmail::auth {

namespace {

Error refuse(std::string reason) {
  return Error{EINVAL, std::move(reason)};
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// Schemes Dovecot knows that are too weak to carry over: the user must set a new password.
bool weak_scheme(std::string_view s) {
  static constexpr std::string_view kWeak[] = {
      "MD5-CRYPT", "MD5",        "PLAIN-MD5",   "LDAP-MD5", "SMD5",   "SHA",
      "SHA1",      "SSHA",       "SHA256",      "SSHA256",  "SHA512", "SSHA512",
      "CRAM-MD5",  "DIGEST-MD5", "HMAC-MD5",    "NTLM",     "LANMAN", "RPA",
      "OTP",       "SKEY",       "PLAIN-TRUNC", "DES-CRYPT"};
  for (auto w : kWeak)
    if (s == w) return true;
  return false;
}

// Why a crypt string password.h refuses is not accepted (for the message).
std::string crypt_refusal(std::string_view hash) {
  if (starts_with(hash, "$1$")) return "weak MD5-crypt ($1$) hash refused";
  if (starts_with(hash, "$2x$")) return "bcrypt $2x$ (known-broken variant) hash refused";
  if (starts_with(hash, "$3$")) return "weak NT hash refused";
  if (starts_with(hash, "_")) return "weak BSDi DES-crypt hash refused";
  if (hash.size() == 13 && hash[0] != '$') return "weak DES-crypt hash refused";
  return "not a supported crypt hash";
}

// N[b|k|M|G|T] with `unit` the multiplier for a bare number. false on syntax or overflow.
bool parse_size(std::string_view s, uint64_t unit, uint64_t& out) {
  size_t i = 0;
  uint64_t n = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    if (n > (UINT64_MAX - 9) / 10) return false;
    n = n * 10 + static_cast<uint64_t>(s[i] - '0');
  }
  if (i == 0) return false;
  std::string_view suffix = s.substr(i);
  if (suffix.size() > 1) return false;
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'b':
      case 'B':
        unit = 1;
        break;
      case 'k':
      case 'K':
        unit = 1ULL << 10;
        break;
      case 'm':
      case 'M':
        unit = 1ULL << 20;
        break;
      case 'g':
      case 'G':
        unit = 1ULL << 30;
        break;
      case 't':
      case 'T':
        unit = 1ULL << 40;
        break;
      default:
        return false;
    }
  }
  if (n != 0 && unit > UINT64_MAX / n) return false;
  out = n * unit;
  return true;
}

// "*:storage=1G" (Dovecot quota_rule). Rules for single mailboxes ("Trash:storage=+100M")
// and limits other than storage/bytes (messages=...) mean nothing here and are skipped.
Status parse_quota_rule(std::string_view rule, uint64_t& quota) {
  size_t colon = rule.find(':');
  if (colon == std::string_view::npos) return refuse("quota rule '" + std::string(rule) + "'");
  if (rule.substr(0, colon) != "*") return ok_status();
  std::string_view limits = rule.substr(colon + 1);
  while (!limits.empty()) {
    size_t next = limits.find(':');
    std::string_view limit = limits.substr(0, next);
    limits = next == std::string_view::npos ? std::string_view() : limits.substr(next + 1);
    uint64_t unit;
    std::string_view value;
    if (starts_with(limit, "storage=")) {
      unit = 1024;  // Dovecot: storage is in kilobytes unless a suffix says otherwise
      value = limit.substr(8);
    } else if (starts_with(limit, "bytes=")) {
      unit = 1;
      value = limit.substr(6);
    } else {
      continue;
    }
    if (!parse_size(value, unit, quota))
      return refuse("quota rule '" + std::string(rule) +
                    "': want storage=N[b|k|M|G|T] (relative and % limits are not supported)");
  }
  return ok_status();
}

}  // namespace

Result<std::optional<PasswdEntry>> parse_passwd_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos || line[first] == '#') return std::optional<PasswdEntry>();
  if (line.find('\0') != std::string_view::npos) return refuse("NUL byte in line");

  // user:password:uid:gid:gecos:home:shell:extra fields (which may hold ':' themselves)
  std::string_view fields[8];
  std::string_view rest = line;
  size_t nfields = 0;
  while (nfields < 7) {
    size_t colon = rest.find(':');
    fields[nfields++] = rest.substr(0, colon);
    if (colon == std::string_view::npos) {
      rest = {};
      break;
    }
    rest.remove_prefix(colon + 1);
    if (nfields == 7) fields[nfields++] = rest;
  }
  if (nfields < 2) return refuse("no ':' after the user name (want user:{SCHEME}hash)");

  PasswdEntry e;
  auto addr = normalize_user_address(fields[0]);
  if (!addr) return refuse(addr.error().message);
  e.address = std::move(*addr);

  std::string_view pw = fields[1];
  if (pw.empty()) return refuse("no password for " + e.address);
  std::string_view value = pw;
  if (pw.front() == '{') {
    size_t close = pw.find('}');
    if (close == std::string_view::npos) return refuse("unterminated {SCHEME}");
    e.scheme = upper(pw.substr(1, close - 1));
    value = pw.substr(close + 1);
  }
  const std::string& s = e.scheme;
  if (s == "PLAIN" || s == "CLEAR") {
    if (value.empty()) return refuse("empty {" + s + "} password for " + e.address);
    e.clear_password = std::string(value);
  } else if (s == "SHA512-CRYPT" || s == "SHA256-CRYPT" || s == "BLF-CRYPT") {
    bool prefix_ok = s == "SHA512-CRYPT" ? starts_with(value, "$6$")
                     : s == "SHA256-CRYPT"
                         ? starts_with(value, "$5$")
                         : (starts_with(value, "$2a$") || starts_with(value, "$2b$") ||
                            starts_with(value, "$2y$"));
    if (!prefix_ok) {
      const char* want = s == "SHA512-CRYPT"   ? "$6$"
                         : s == "SHA256-CRYPT" ? "$5$"
                                               : "$2a$, $2b$ or $2y$";
      return refuse("{" + s + "} hash does not start with " + want);
    }
    if (!is_supported_hash(value)) return refuse("malformed {" + s + "} hash");
    e.password_hash = std::string(value);
  } else if (s == "CRYPT" || s.empty()) {
    if (!is_supported_hash(value)) {
      std::string why = crypt_refusal(value);
      if (s.empty() && why == "not a supported crypt hash")
        why = "not a supported crypt hash (and no {SCHEME} prefix)";
      return refuse(why);
    }
    e.password_hash = std::string(value);
  } else if (weak_scheme(s)) {
    return refuse("weak scheme {" + s + "} refused; the user must set a new password");
  } else {
    return refuse("unknown or unsupported scheme {" + s + "}");
  }

  // Extra fields: space-separated key=value pairs.
  std::string_view extra = fields[7];
  bool have_quota = false;
  while (!extra.empty()) {
    size_t sp = extra.find_first_of(" \t");
    std::string_view field = extra.substr(0, sp);
    extra = sp == std::string_view::npos ? std::string_view() : extra.substr(sp + 1);
    if (field.empty()) continue;
    size_t eq = field.find('=');
    std::string_view key = field.substr(0, eq);
    if ((key == "userdb_quota_rule" || key == "quota_rule") && eq != std::string_view::npos &&
        !have_quota) {
      auto q = parse_quota_rule(field.substr(eq + 1), e.quota);
      if (!q) return q.error();
      have_quota = true;
    }
  }
  return std::optional<PasswdEntry>(std::move(e));
}

PasswdFile parse_passwd_file(std::string_view text) {
  PasswdFile out;
  std::map<std::string, size_t> seen;
  size_t lineno = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++lineno;
    auto r = parse_passwd_line(line);
    if (!r) {
      out.errors.push_back({lineno, r.error().message});
      continue;
    }
    if (!*r) continue;
    PasswdEntry& e = **r;
    e.line = lineno;
    auto [it, fresh] = seen.emplace(e.address, lineno);
    if (!fresh) {
      out.errors.push_back(
          {lineno, e.address + " already appears on line " + std::to_string(it->second)});
      continue;
    }
    out.entries.push_back(std::move(e));
  }
  return out;
}

}  // namespace ringmail::auth
