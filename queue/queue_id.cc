#include <atomic>
#include <chrono>

#include "queue/envelope.h"

namespace ringmail::queue {

namespace {
constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";  // Crockford base32
constexpr int kChars = 13;                                        // ceil(64 / 5)
std::atomic<uint64_t> g_last{0};

int decode_char(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  for (int i = 0; i < 32; ++i)
    if (kAlphabet[i] == c) return i;
  return -1;
}
}  // namespace

std::string QueueId::str() const {
  std::string s(kChars, '0');
  uint64_t v = value;
  for (int i = kChars - 1; i >= 0; --i) {
    s[static_cast<size_t>(i)] = kAlphabet[v & 31];
    v >>= 5;
  }
  return s;
}

std::optional<QueueId> QueueId::parse(std::string_view text) {
  if (text.size() != kChars) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    int d = decode_char(text[i]);
    if (d < 0) return std::nullopt;
    // The first character carries only the top 4 bits of 64.
    if (i == 0 && d > 15) return std::nullopt;
    v = (v << 5) | static_cast<uint64_t>(d);
  }
  return QueueId{v};
}

QueueId next_queue_id() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  uint64_t candidate =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now).count())
      << 4;
  uint64_t last = g_last.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = candidate > last ? candidate : last + 1;
  } while (!g_last.compare_exchange_weak(last, next, std::memory_order_relaxed));
  return QueueId{next};
}

void raise_queue_id_floor(uint64_t floor) {
  uint64_t last = g_last.load(std::memory_order_relaxed);
  while (last < floor && !g_last.compare_exchange_weak(last, floor, std::memory_order_relaxed)) {
  }
}

std::string_view state_name(RcptState s) {
  switch (s) {
    case RcptState::queued:
      return "queued";
    case RcptState::inflight:
      return "in-flight";
    case RcptState::deferred:
      return "deferred";
    case RcptState::delivered:
      return "delivered";
    case RcptState::bounced:
      return "bounced";
    case RcptState::expired:
      return "expired";
  }
  return "unknown";
}

}  // namespace ringmail::queue
