// Latency percentiles over every message of a run (no sampling, no histogram buckets:
// a few million uint32 microseconds sort in well under a second).
#pragma once

#include <cstdint>
#include <vector>

namespace ringbench {

struct Latency {
  uint64_t count = 0;
  double min_ms = 0, mean_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
};

// Sorts `us` (microseconds) in place.
Latency summarize(std::vector<uint32_t>& us);

}  // namespace ringbench
