// Loop: one io_uring per thread, and everything that runs on it.
//
// A Loop owns its ring, its provided-buffer ring for receives, the coroutines spawned on
// it and a lock-free inbox other threads post work to (woken through an eventfd read
// that is always armed). It knows nothing about mail: sessions are plain Task<void>s.
// It is not thread-safe except for post() and stop(), which any thread may call.
#pragma once

#include <liburing.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "conf/mpsc.h"
#include "mta/runtime/task.h"

namespace ringmail::rt {

class BufferRing;

// Anything waiting for a completion; its address is the SQE's user_data.
class Completion {
 public:
  virtual void complete(int res, uint32_t cqe_flags) = 0;

 protected:
  ~Completion() = default;
};

// Work handed to a loop from another thread; run() executes on the loop's thread.
class Posted : public ringmail::MpscNode {
 public:
  virtual void run() = 0;

 protected:
  ~Posted() = default;
};

class Loop {
 public:
  struct Options {
    unsigned entries = 1024;      // SQ size; the CQ is 8x (many idle reads in flight)
    unsigned buffer_count = 256;  // provided receive buffers (power of two)
    unsigned buffer_size = 16384;
  };

  Loop();
  explicit Loop(const Options& o);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // The loop running on this thread (set by run()), or nullptr.
  static Loop* current();

  // An SQE, submitting pending ones first if the SQ is full. Never null.
  io_uring_sqe* sqe();
  // Makes sure `n` SQEs can be taken without an intervening submit (linked ops).
  void reserve(unsigned n);

  // Runs until stop() was called and every spawned task has finished.
  void run();
  // Any thread. Sets stopping(), runs the on_stop hook on the loop thread.
  void stop();
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  void set_on_stop(std::function<void()> f) { on_stop_ = std::move(f); }

  // Any thread. `p` runs on this loop's thread; it must stay alive until then.
  void post(Posted* p);

  // Runs `t` to completion on this loop; the loop owns it.
  void spawn(Task<void> t);
  size_t live_tasks() const { return live_tasks_; }

  // Asks the kernel to cancel the op whose user_data is `c` (it completes -ECANCELED).
  void cancel(Completion* c);

  BufferRing& buffers() { return *buffers_; }
  io_uring* ring() { return &ring_; }

 private:
  class WakeReader;
  friend struct SpawnAccess;
  void drain_inbox();
  void arm_wake();

  io_uring ring_{};
  std::unique_ptr<BufferRing> buffers_;
  int wake_fd_ = -1;
  uint64_t wake_value_ = 0;
  std::unique_ptr<WakeReader> wake_reader_;
  ringmail::MpscStack inbox_;
  std::atomic<bool> stopping_{false};
  bool stop_handled_ = false;
  std::function<void()> on_stop_;
  size_t live_tasks_ = 0;
};

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;

}  // namespace ringmail::rt
