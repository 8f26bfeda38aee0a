// auth: Dovecot passwd-file lines, for `ringctl user import`.
//
//   user:{SCHEME}hash[:uid:gid:gecos:home:shell:extra_fields]
//
// Owns only the parsing: it never touches the user database and never hashes (a clear-text
// {PLAIN}/{CLEAR} password comes back as such; the importer hashes it with yescrypt off any
// loop thread). Accepted schemes: SHA512-CRYPT ($6$), SHA256-CRYPT ($5$), BLF-CRYPT
// ($2a$/$2b$/$2y$), CRYPT (any crypt string password.h supports, yescrypt included),
// PLAIN/CLEAR, and a bare crypt string with no {SCHEME}. Weak or unknown schemes
// (MD5-CRYPT, PLAIN-MD5, SSHA, DES crypt, ...) and hashes that do not match their scheme
// are refused with a reason. uid, gid, gecos, home and shell are ignored; of the extra
// fields only the quota rule is read: [userdb_]quota_rule=*:storage=N[b|k|M|G|T] (Dovecot:
// kilobytes without a suffix) or *:bytes=N[...] (bytes without a suffix).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"

namespace ringmail::auth {

struct PasswdEntry {
  size_t line = 0;             // 1-based line number in the file
  std::string address;         // normalised (lower-cased) login address
  std::string password_hash;   // crypt(3) string; empty when clear_password is set
  std::string clear_password;  // from {PLAIN}/{CLEAR}; empty otherwise
  std::string scheme;          // upper-cased scheme as written, "" when there was none
  uint64_t quota = 0;          // bytes; 0 = none given
};

struct PasswdError {
  size_t line = 0;
  std::string reason;
};

struct PasswdFile {
  std::vector<PasswdEntry> entries;  // in file order
  std::vector<PasswdError> errors;   // refused lines, in file order
};

// One line without its line ending (a trailing CR is ignored). nullopt for a blank or
// '#' comment line; an Error (code EINVAL) with the reason for a refused line.
Result<std::optional<PasswdEntry>> parse_passwd_line(std::string_view line);

// A whole file: every line parsed, none stops the rest.
PasswdFile parse_passwd_file(std::string_view text);

}  // namespace ringmail::auth
