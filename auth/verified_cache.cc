#include "auth/verified_cache.h"

#include <openssl/rand.h>

#include "auth/scram_credentials.h"

namespace ringmail::auth {

VerifiedCache::VerifiedCache(std::chrono::seconds ttl, size_t max_entries)
    : ttl_(ttl), max_entries_(max_entries == 0 ? 1 : max_entries), secret_(32, '\0') {
  RAND_bytes(reinterpret_cast<uint8_t*>(secret_.data()), secret_.size());
}

std::string VerifiedCache::key(std::string_view login, std::string_view password,
                               std::string_view hash) const {
  // Lengths first, so no two different triples can produce the same input.
  std::string in;
  in.reserve(login.size() + password.size() + hash.size() + 24);
  for (size_t n : {login.size(), hash.size(), password.size()}) {
    in += std::to_string(n);
    in += ':';
  }
  in += login;
  in += hash;
  in += password;
  return hmac_sha256(secret_, in);
}

bool VerifiedCache::hit(std::string_view login, std::string_view password, std::string_view hash,
                        TimePoint now) {
  if (ttl_.count() == 0) return false;
  std::string k = key(login, password, hash);
  std::lock_guard lock(mu_);
  auto it = expiry_.find(k);
  if (it == expiry_.end()) return false;
  if (it->second <= now) {
    expiry_.erase(it);
    return false;
  }
  return true;
}

void VerifiedCache::remember(std::string_view login, std::string_view password,
                             std::string_view hash, TimePoint now) {
  if (ttl_.count() == 0) return;
  std::string k = key(login, password, hash);
  TimePoint until = now + ttl_;
  std::lock_guard lock(mu_);
  // Drop expired entries from the front, then the oldest while over the bound.
  while (!order_.empty() && (order_.front().second <= now || expiry_.size() >= max_entries_ ||
                             order_.size() >= 2 * max_entries_)) {
    auto it = expiry_.find(order_.front().first);
    if (it != expiry_.end() && it->second == order_.front().second) expiry_.erase(it);
    order_.pop_front();
  }
  expiry_[k] = until;
  order_.emplace_back(std::move(k), until);
}

size_t VerifiedCache::size() const {
  std::lock_guard lock(mu_);
  return expiry_.size();
}

}  // namespace ringmail::auth
