#include "auth/scram_credentials.h"

#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace ringmail::auth {

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), key.size(), reinterpret_cast<const uint8_t*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string sha256(std::string_view data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

ScramCredentials scram_credentials(std::string_view password, std::string_view salt,
                                   uint32_t iterations) {
  unsigned char salted[SHA256_DIGEST_LENGTH];
  PKCS5_PBKDF2_HMAC(password.data(), password.size(),
                    reinterpret_cast<const uint8_t*>(salt.data()), salt.size(), iterations,
                    EVP_sha256(), sizeof salted, salted);
  std::string_view sp(reinterpret_cast<const char*>(salted), sizeof salted);
  ScramCredentials c;
  c.salt = std::string(salt);
  c.iterations = iterations;
  c.stored_key = sha256(hmac_sha256(sp, "Client Key"));
  c.server_key = hmac_sha256(sp, "Server Key");
  return c;
}

ScramCredentials new_scram_credentials(std::string_view password, uint32_t iterations) {
  uint8_t salt[16];
  RAND_bytes(salt, sizeof salt);
  return scram_credentials(password, std::string_view(reinterpret_cast<char*>(salt), sizeof salt),
                           iterations);
}

}  // namespace ringmail::auth
