#include "bench/ringbench/stats.h"

#include <algorithm>

namespace ringbench {

namespace {
// Nearest-rank percentile of sorted values: the smallest value with at least q of the
// samples at or below it.
double rank_ms(const std::vector<uint32_t>& s, double q) {
  size_t n = s.size();
  size_t k = static_cast<size_t>(q * static_cast<double>(n) + 0.999999);
  k = std::clamp<size_t>(k, 1, n);
  return s[k - 1] / 1000.0;
}
}  // namespace

Latency summarize(std::vector<uint32_t>& us) {
  Latency l;
  l.count = us.size();
  if (us.empty()) return l;
  std::sort(us.begin(), us.end());
  uint64_t sum = 0;
  for (uint32_t v : us) sum += v;
  l.min_ms = us.front() / 1000.0;
  l.max_ms = us.back() / 1000.0;
  l.mean_ms = static_cast<double>(sum) / static_cast<double>(us.size()) / 1000.0;
  l.p50_ms = rank_ms(us, 0.50);
  l.p90_ms = rank_ms(us, 0.90);
  l.p99_ms = rank_ms(us, 0.99);
  l.p999_ms = rank_ms(us, 0.999);
  return l;
}

}  // namespace ringbench
