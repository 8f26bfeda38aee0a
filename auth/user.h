// User: one mail account as the user database stores it (auth/user_db.h).
//
// The login name is the account's address, lower-cased. A user may also own aliases:
// extra addresses mail is accepted for and that the user may send as (sender ownership).
// Passwords are kept only as a crypt(3) hash (yescrypt for new passwords; SHA-512-crypt and
// bcrypt accepted on import) plus the SCRAM-SHA-256 verifiers (RFC 5802 / 7677), which
// hold no password-equivalent secret either. Users imported from another server's hash
// have no SCRAM verifiers until they set a password here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ringmail::auth {

// RFC 5802 section 3: what the server keeps for one SCRAM mechanism.
struct ScramCredentials {
  std::string salt;         // raw bytes
  uint32_t iterations = 0;  // PBKDF2 iteration count (RFC 7677: at least 4096)
  std::string stored_key;   // H(ClientKey), 32 raw bytes for SHA-256
  std::string server_key;   // HMAC(SaltedPassword, "Server Key"), 32 raw bytes
  bool empty() const { return stored_key.empty(); }
};

struct User {
  std::string address;               // login name, lower-cased
  std::string password_hash;         // crypt(3) string, e.g. "$y$j9T$..."
  std::vector<std::string> aliases;  // lower-cased addresses the user also owns
  uint64_t quota = 0;                // mailbox quota in bytes; 0 = unlimited
  bool enabled = true;               // a disabled user cannot log in; mail is still accepted
  ScramCredentials scram;            // empty for imported users (no SCRAM until a new password)
};

}  // namespace ringmail::auth
