#include "auth/auth_throttle.h"

#include <algorithm>

namespace ringmail::auth {

namespace {
// A few timestamps beyond max_failures keep the returned count useful for the n-th
// failure's reply delay (conf: up to 5x) even with max_failures below that.
constexpr size_t kMinCap = 8;
}  // namespace

AuthThrottle::AuthThrottle(uint32_t max_failures, std::chrono::seconds window, size_t max_tracked)
    : max_failures_(std::max<uint32_t>(max_failures, 1)),
      window_(window),
      max_tracked_(std::max<size_t>(max_tracked, 1)),
      cap_(std::max<size_t>(max_failures_, kMinCap)) {}

uint32_t AuthThrottle::count_within(const Entry& e, TimePoint now) const {
  // Keeping only the newest cap_ >= max_failures timestamps loses nothing a block needs:
  // if max_failures of them are in the window, so are the newest max_failures.
  uint32_t n = 0;
  for (auto it = e.failures.rbegin(); it != e.failures.rend(); ++it) {
    if (now - *it >= window_) break;
    ++n;
  }
  return n;
}

void AuthThrottle::prune(TimePoint now) {
  // The LRU order is roughly the order of the newest failures (blocked() also moves an
  // entry back, and callers' `now` may be a little out of order between threads); an
  // expired entry behind a live one waits, which only delays freeing it.
  while (!lru_.empty()) {
    auto it = entries_.find(lru_.front());
    if (now - it->second.failures.back() < window_) break;
    entries_.erase(it);
    lru_.pop_front();
  }
}

bool AuthThrottle::blocked(std::string_view client_ip, TimePoint now) {
  std::lock_guard lock(mu_);
  prune(now);
  auto it = entries_.find(std::string(client_ip));
  if (it == entries_.end() || count_within(it->second, now) < max_failures_) return false;
  // A blocked address records no more failures, so without this touch a crowd of newer
  // addresses would push it out of the table while it still knocks.
  lru_.splice(lru_.end(), lru_, it->second.lru);
  return true;
}

uint32_t AuthThrottle::record_failure(std::string_view client_ip, TimePoint now) {
  std::lock_guard lock(mu_);
  prune(now);
  auto [it, inserted] = entries_.try_emplace(std::string(client_ip));
  Entry& e = it->second;
  if (inserted) {
    e.lru = lru_.insert(lru_.end(), it->first);
  } else {
    lru_.splice(lru_.end(), lru_, e.lru);
  }
  e.failures.insert(std::upper_bound(e.failures.begin(), e.failures.end(), now), now);
  if (e.failures.size() > cap_) e.failures.erase(e.failures.begin());
  uint32_t n = count_within(e, now);
  // Over the bound, forget whoever was seen least recently: an address that is still
  // failing, or still trying while blocked, keeps moving to the back.
  while (entries_.size() > max_tracked_) {
    entries_.erase(lru_.front());
    lru_.pop_front();
  }
  return n;
}

size_t AuthThrottle::tracked() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace ringmail::auth
