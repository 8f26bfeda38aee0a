// VerifiedCache: remembers, for a short time, which (login, password) pairs were just
// verified against a user's current password hash.
//
// yescrypt costs ~70 ms of CPU per check by design; mail clients log in again and again
// (phones polling, submission per message), so without a cache AUTH throughput is bounded
// by the hash cost rather than the attacker's. Like Dovecot's auth_cache, entries are
// keyed by an HMAC under a random per-process secret over login, stored hash and
// password: nothing in memory is a password equivalent, a password change (new hash)
// misses at once, and only successes are cached, so guessing still pays full price.
// Thread-safe (a mutex: it is touched once per AUTH, on worker threads).
#pragma once

#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ringmail::auth {

class VerifiedCache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  // ttl 0 disables the cache.
  explicit VerifiedCache(std::chrono::seconds ttl, size_t max_entries = 65536);

  // True if this password was verified against exactly `hash` for `login` within the ttl.
  bool hit(std::string_view login, std::string_view password, std::string_view hash, TimePoint now);
  void remember(std::string_view login, std::string_view password, std::string_view hash,
                TimePoint now);
  size_t size() const;

 private:
  std::string key(std::string_view login, std::string_view password, std::string_view hash) const;

  std::chrono::seconds ttl_;
  size_t max_entries_;
  std::string secret_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, TimePoint> expiry_;
  std::deque<std::pair<std::string, TimePoint>> order_;  // insertion order, for eviction
};

}  // namespace ringmail::auth
