#include "auth/password.h"

#include <crypt.h>
#include <openssl/mem.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace ringmail::auth {

namespace {

// crypt(3)'s own base64 alphabet.
bool is_b64(char c) {
  return c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z');
}
bool all_b64(std::string_view s) {
  for (char c : s)
    if (!is_b64(c)) return false;
  return true;
}
bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// "$2b$12$" + 22 salt + 31 checksum characters.
bool bcrypt_shape(std::string_view h) {
  if (h.size() != 60 || h[0] != '$' || h[1] != '2' || h[3] != '$' || h[6] != '$') return false;
  if (h[2] != 'a' && h[2] != 'b' && h[2] != 'y') return false;  // "$2x$" is the broken one
  std::string_view cost = h.substr(4, 2);
  if (!all_digits(cost)) return false;
  int c = (cost[0] - '0') * 10 + (cost[1] - '0');
  return c >= 4 && c <= 31 && all_b64(h.substr(7));
}

// "$6$[rounds=N$]salt$checksum" (SHA-crypt, Drepper's specification).
bool sha_crypt_shape(std::string_view rest, size_t checksum_len) {
  constexpr std::string_view kRounds = "rounds=";
  if (rest.substr(0, kRounds.size()) == kRounds) {
    size_t end = rest.find('$');
    if (end == std::string_view::npos) return false;
    std::string_view n = rest.substr(kRounds.size(), end - kRounds.size());
    if (!all_digits(n) || n.size() > 9) return false;
    rest.remove_prefix(end + 1);
  }
  size_t dollar = rest.find('$');
  if (dollar == std::string_view::npos || dollar > 16) return false;
  std::string_view salt = rest.substr(0, dollar), sum = rest.substr(dollar + 1);
  return all_b64(salt) && sum.size() == checksum_len && all_b64(sum);
}

// "$y$params$salt$checksum" (yescrypt, gost-yescrypt).
bool yescrypt_shape(std::string_view rest) {
  size_t a = rest.find('$');
  if (a == std::string_view::npos || a == 0) return false;
  size_t b = rest.find('$', a + 1);
  if (b == std::string_view::npos || b == a + 1) return false;
  std::string_view params = rest.substr(0, a), salt = rest.substr(a + 1, b - a - 1),
                   sum = rest.substr(b + 1);
  return all_b64(params) && all_b64(salt) && sum.size() == 43 && all_b64(sum);
}

// "$7$" + N, r, p (11 characters) + salt + "$" + checksum (scrypt).
bool scrypt_shape(std::string_view rest) {
  size_t dollar = rest.find('$');
  if (dollar == std::string_view::npos || dollar <= 11) return false;
  std::string_view setting = rest.substr(0, dollar), sum = rest.substr(dollar + 1);
  return all_b64(setting) && sum.size() == 43 && all_b64(sum);
}

bool has_prefix(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// struct crypt_data is about 32 KiB: too big for a coroutine frame or a small stack.
// Value-initialised (zeroed) as libxcrypt wants before first use; cleansed afterwards
// because it held the password.
struct CryptData {
  std::unique_ptr<crypt_data> d = std::make_unique<crypt_data>();
  ~CryptData() { OPENSSL_cleanse(d.get(), sizeof *d); }
};

}  // namespace

bool is_supported_hash(std::string_view hash) {
  if (hash.empty() || hash.size() >= CRYPT_OUTPUT_SIZE) return false;
  if (hash.find('\0') != std::string_view::npos) return false;
  bool shape;
  if (has_prefix(hash, "$y$"))
    shape = yescrypt_shape(hash.substr(3));
  else if (has_prefix(hash, "$gy$"))
    shape = yescrypt_shape(hash.substr(4));
  else if (has_prefix(hash, "$7$"))
    shape = scrypt_shape(hash.substr(3));
  else if (has_prefix(hash, "$6$"))
    shape = sha_crypt_shape(hash.substr(3), 86);
  else if (has_prefix(hash, "$5$"))
    shape = sha_crypt_shape(hash.substr(3), 43);
  else if (has_prefix(hash, "$2"))
    shape = bcrypt_shape(hash);
  else
    return false;  // DES, BSDi "_", MD5 "$1$", NT "$3$", SunMD5, ...: weak or legacy
  if (!shape) return false;
  // The library's own opinion too: INVALID also covers a method compiled out of this
  // libxcrypt. LEGACY is accepted because Debian's build files SHA-256-crypt ($5$)
  // there; the weak formats never get this far.
  std::string s(hash);
  return crypt_checksalt(s.c_str()) != CRYPT_SALT_INVALID;
}

Result<std::string> hash_password(std::string_view password) {
  if (password.find('\0') != std::string_view::npos)
    return Error{EINVAL, "password contains a NUL byte"};
  if (password.empty()) return Error{EINVAL, "empty password"};
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  // count 0: libxcrypt's default cost; rbytes null: it reads the OS random source.
  if (!crypt_gensalt_rn("$y$", 0, nullptr, 0, setting, sizeof setting) || setting[0] == '*')
    return Error{errno ? errno : EINVAL, "crypt_gensalt(yescrypt) failed"};
  std::string pw(password);
  CryptData data;
  const char* out = crypt_rn(pw.c_str(), setting, data.d.get(), sizeof *data.d);
  OPENSSL_cleanse(pw.data(), pw.size());
  if (!out || out[0] == '*') return Error{errno ? errno : EINVAL, "crypt(yescrypt) failed"};
  return std::string(out);
}

bool verify_password(std::string_view password, std::string_view hash) {
  if (password.find('\0') != std::string_view::npos) return false;
  if (!is_supported_hash(hash)) return false;
  std::string pw(password), setting(hash);
  CryptData data;
  const char* out = crypt_rn(pw.c_str(), setting.c_str(), data.d.get(), sizeof *data.d);
  OPENSSL_cleanse(pw.data(), pw.size());
  if (!out || out[0] == '*') return false;
  size_t n = std::strlen(out);
  // The length is not secret (it follows from the format); the bytes are.
  return n == hash.size() && CRYPTO_memcmp(out, hash.data(), n) == 0;
}

}  // namespace ringmail::auth
