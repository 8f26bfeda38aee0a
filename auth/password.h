// auth: crypt(3) password hashes through libxcrypt.
//
// New passwords get yescrypt ("$y$", libxcrypt's default cost); verification accepts the
// formats a server may import: yescrypt ($y$), gost-yescrypt ($gy$), scrypt ($7$),
// SHA-512-crypt ($6$), SHA-256-crypt ($5$) and bcrypt ($2a$/$2b$/$2y$). Legacy and weak
// formats (DES, BSDi, MD5-crypt "$1$", NT, bcrypt "$2x$") are refused, never verified.
// This header owns no state and never touches the user database (user_db.h).
//
// These functions are slow on purpose (yescrypt and bcrypt cost tens to hundreds of
// milliseconds): never call them on a loop thread; hand them to a worker thread.
#pragma once

#include <string>
#include <string_view>

#include "conf/result.h"

namespace ringmail::auth {

// A fresh yescrypt hash of `password` with a random salt. An error for a password
// containing NUL (crypt(3) would silently cut it) or when libxcrypt fails.
Result<std::string> hash_password(std::string_view password);

// true when `password` hashes to `hash`. Compares in constant time; false for a hash
// is_supported_hash() refuses, for a malformed hash and for a password containing NUL.
bool verify_password(std::string_view password, std::string_view hash);

// true when `hash` is a complete crypt string (setting and checksum) in one of the
// formats listed above. Cheap: checks the shape only, computes nothing.
bool is_supported_hash(std::string_view hash);

}  // namespace ringmail::auth
