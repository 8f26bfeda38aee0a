// AuthThrottle: counts failed AUTH attempts per client address over a sliding window, so
// the session can refuse AUTH (421) to an address that keeps guessing (DESIGN "Auth and
// relay policy"; conf [auth] max_failures, failure_window).
//
// It only counts: the session decides what a count means (delays, 421), and this never
// sleeps, reads a clock or does I/O; callers pass the time, which also lets tests skip
// sleeping. A success does not reset the count: whoever holds one valid account could
// otherwise clear the count between guesses at other accounts. Memory is bounded: at
// most max_tracked addresses, each with at most max(max_failures, 8) timestamps.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ringmail::auth {

class AuthThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  // max_failures 0 is treated as 1 (the config loader refuses 0 anyway).
  AuthThrottle(uint32_t max_failures, std::chrono::seconds window, size_t max_tracked = 100000);

  // True when this address has max_failures or more failures within the window, i.e.
  // failures at times t with now - t < window.
  bool blocked(std::string_view client_ip, TimePoint now);
  // Counts a failure at `now`; returns the failures within the window including this
  // one. The count is exact up to max(max_failures, 8) and stays there beyond, which is
  // all a blocking decision or a capped delay needs.
  uint32_t record_failure(std::string_view client_ip, TimePoint now);

  // Addresses currently tracked (for tests and stats).
  size_t tracked() const;

 private:
  struct Entry {
    std::vector<TimePoint> failures;  // sorted, oldest first, at most cap_ entries
    std::list<std::string>::iterator lru;
  };

  uint32_t count_within(const Entry& e, TimePoint now) const;
  // Drops addresses whose newest failure has left the window, oldest first.
  void prune(TimePoint now);

  const uint32_t max_failures_;
  const std::chrono::seconds window_;
  const size_t max_tracked_;
  const size_t cap_;

  // One lock for all loop threads: it is taken only when AUTH starts and when it fails,
  // never per command, so contention is bounded by the (throttled) AUTH rate.
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // GUARDED_BY(mu_)
  std::list<std::string> lru_;                      // GUARDED_BY(mu_): least recently seen first
};

}  // namespace ringmail::auth
