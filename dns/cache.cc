#include "dns/cache.h"

#include <algorithm>

namespace ringmail::dns {

std::string Cache::key(std::string_view name, uint16_t type) {
  std::string k;
  k.reserve(name.size() + 2);
  k += static_cast<char>(type >> 8);
  k += static_cast<char>(type & 0xff);
  k += name;
  return k;
}

std::chrono::seconds Cache::lifetime(const RRset& r, const Limits& limits) {
  using std::chrono::seconds;
  switch (r.kind) {
    case RRset::Kind::temporary:
      return seconds(0);
    case RRset::Kind::answer:
      return std::min(seconds(r.ttl.value_or(0)), limits.max_ttl);
    case RRset::Kind::nodata:
    case RRset::Kind::nxdomain:
      if (!r.ttl) return std::min(limits.negative_ttl_without_soa, limits.max_negative_ttl);
      return std::min(seconds(*r.ttl), limits.max_negative_ttl);
  }
  return seconds(0);
}

std::shared_ptr<const RRset> Cache::get(std::string_view name, uint16_t type, TimePoint now) {
  auto it = index_.find(key(name, type));
  if (it == index_.end()) return nullptr;
  if (it->second->expires <= now) {
    lru_.erase(it->second);
    index_.erase(it);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->value;
}

void Cache::put(std::string_view name, uint16_t type, std::shared_ptr<const RRset> r,
                TimePoint now) {
  if (!r || limits_.max_entries == 0) return;
  auto life = lifetime(*r, limits_);
  if (life <= std::chrono::seconds(0)) return;
  std::string k = key(name, type);
  if (auto it = index_.find(k); it != index_.end()) {
    it->second->expires = now + life;
    it->second->value = std::move(r);
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  // Full: the least recently used entry goes, expired or not; expired entries are also
  // dropped whenever they are looked up, so they do not pile up in a busy cache.
  while (index_.size() >= limits_.max_entries) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{k, now + life, std::move(r)});
  index_.emplace(std::move(k), lru_.begin());
}

void Cache::clear() {
  index_.clear();
  lru_.clear();
}

}  // namespace ringmail::dns
