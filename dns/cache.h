// dns: a bounded TTL cache of query outcomes.
//
// This header owns the cache the resolver keeps per loop thread: (name, type) -> RRset,
// positive and negative, each kept for its TTL and never longer than the caps, the least
// recently used entry evicted when the cache is full. Time is passed in by the caller
// (the resolver's injected clock), so tests step it by hand. It never stores temporary
// failures (the next attempt should ask again) and never locks: one cache per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "dns/answer.h"

namespace ringmail::dns {

class Cache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Limits {
    size_t max_entries = 10000;
    // A TTL above these is cut down: a week-long TTL should not pin a stale route
    // across a DNS change the operator made to fix delivery.
    std::chrono::seconds max_ttl{86400};
    // RFC 2308 5 suggests one to three hours for negative answers.
    std::chrono::seconds max_negative_ttl{3600};
    // A negative answer without an SOA (RFC 2308 5: "SHOULD NOT be cached" strictly)
    // is kept this long anyway, so a burst of mail to a dead domain does not become a
    // burst of queries.
    std::chrono::seconds negative_ttl_without_soa{300};
  };

  explicit Cache(Limits limits) : limits_(limits) {}

  // The entry for (name, type) if it has not expired at `now`; expired ones are dropped.
  std::shared_ptr<const RRset> get(std::string_view name, uint16_t type, TimePoint now);
  // Stores `r` as of `now`. Temporary outcomes and zero TTLs are not stored.
  void put(std::string_view name, uint16_t type, std::shared_ptr<const RRset> r, TimePoint now);

  size_t size() const { return index_.size(); }
  void clear();

  // How long `r` may be kept under `limits` (zero: not at all).
  static std::chrono::seconds lifetime(const RRset& r, const Limits& limits);

 private:
  struct Entry {
    std::string key;
    TimePoint expires;
    std::shared_ptr<const RRset> value;
  };
  static std::string key(std::string_view name, uint16_t type);

  Limits limits_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace ringmail::dns
