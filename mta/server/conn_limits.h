// ConnLimits: limits.max_connections (all protocols together) and
// limits.max_connections_per_ip, shared by every loop thread.
//
// The total is one atomic. The per-address table takes a mutex, once at accept and once
// at close, never per command; contention is one uncontended lock per connection.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace ringmail::server {

class ConnLimits {
 public:
  enum class Verdict { ok, too_many_total, too_many_from_ip };

  ConnLimits(uint32_t max_total, uint32_t max_per_ip)
      : max_total_(max_total), max_per_ip_(max_per_ip) {}

  // On ok, the caller must release() with the same address when the connection ends.
  Verdict acquire(const sockaddr_storage& peer);
  void release(const sockaddr_storage& peer);
  uint32_t total() const { return total_.load(std::memory_order_relaxed); }

 private:
  static std::string key(const sockaddr_storage& peer);

  const uint32_t max_total_;
  const uint32_t max_per_ip_;
  std::atomic<uint32_t> total_{0};
  std::mutex mu_;
  std::unordered_map<std::string, uint32_t> per_ip_;
};

}  // namespace ringmail::server
