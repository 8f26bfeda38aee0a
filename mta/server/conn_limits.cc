#include "mta/server/conn_limits.h"

#include <netinet/in.h>

#include <cstring>

namespace ringmail::server {

std::string ConnLimits::key(const sockaddr_storage& peer) {
  if (peer.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
    return std::string(reinterpret_cast<const char*>(&a->sin_addr), 4);
  }
  if (peer.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
    // An IPv4-mapped peer counts as the IPv4 address it is.
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
      return std::string(reinterpret_cast<const char*>(&a->sin6_addr) + 12, 4);
    return std::string(reinterpret_cast<const char*>(&a->sin6_addr), 16);
  }
  return {};
}

ConnLimits::Verdict ConnLimits::acquire(const sockaddr_storage& peer) {
  if (total_.fetch_add(1, std::memory_order_relaxed) >= max_total_) {
    total_.fetch_sub(1, std::memory_order_relaxed);
    return Verdict::too_many_total;
  }
  std::lock_guard lock(mu_);
  uint32_t& n = per_ip_[key(peer)];
  if (n >= max_per_ip_) {
    if (n == 0) per_ip_.erase(key(peer));
    total_.fetch_sub(1, std::memory_order_relaxed);
    return Verdict::too_many_from_ip;
  }
  ++n;
  return Verdict::ok;
}

void ConnLimits::release(const sockaddr_storage& peer) {
  total_.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(key(peer));
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
}

}  // namespace ringmail::server
