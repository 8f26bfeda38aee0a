// SCRAM-SHA-256 verifiers from a password (RFC 5802 section 3, RFC 7677).
//
// Used where a password is set (ringctl user add/passwd, import of clear-text passwords);
// the SCRAM exchange itself is auth/scram.h. PBKDF2 over 4096+ iterations is slow on
// purpose: never call this on a loop thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "auth/user.h"

namespace ringmail::auth {

inline constexpr uint32_t kScramDefaultIterations = 4096;  // RFC 7677 minimum

// Verifiers for `password` with the given raw salt.
ScramCredentials scram_credentials(std::string_view password, std::string_view salt,
                                   uint32_t iterations);
// The same with 16 fresh random salt bytes.
ScramCredentials new_scram_credentials(std::string_view password,
                                       uint32_t iterations = kScramDefaultIterations);

// HMAC-SHA-256 and SHA-256, raw bytes in and out (shared with the SCRAM exchange).
std::string hmac_sha256(std::string_view key, std::string_view data);
std::string sha256(std::string_view data);

}  // namespace ringmail::auth
