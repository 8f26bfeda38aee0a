#include "mta/runtime/loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mta/runtime/buffer_ring.h"

namespace ringmail::rt {

namespace {
thread_local Loop* t_current = nullptr;

[[noreturn]] void die(const char* what, int err) {
  std::fprintf(stderr, "ringmail runtime: %s: %s\n", what, std::strerror(err));
  std::abort();
}

// A detached coroutine frame that owns one spawned Task and tells the loop when it ends.
struct Spawned {
  struct promise_type {
    Spawned get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }
  };
};
}  // namespace

struct SpawnAccess {
  static Spawned run(Loop* loop, Task<void> t) {
    co_await t;
    --loop->live_tasks_;
  }
};

class Loop::WakeReader final : public Completion {
 public:
  explicit WakeReader(Loop* l) : loop_(l) {}
  void complete(int res, uint32_t) override {
    if (res == -ECANCELED) return;  // ring teardown
    loop_->drain_inbox();
    loop_->arm_wake();
  }

 private:
  Loop* loop_;
};

Loop::Loop() : Loop(Options{}) {}

Loop::Loop(const Options& o) {
  io_uring_params p{};
  // One ring per thread, driven only by that thread: let the kernel skip cross-thread
  // wake-ups and run completions when we wait (kernel 6.1+). Older kernels: plain ring.
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = o.entries * 8;
  int r = io_uring_queue_init_params(o.entries, &ring_, &p);
  if (r == -EINVAL) {
    p = {};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = o.entries * 8;
    r = io_uring_queue_init_params(o.entries, &ring_, &p);
  }
  if (r < 0) die("io_uring_queue_init", -r);
  buffers_ = std::make_unique<BufferRing>(&ring_, o.buffer_count, o.buffer_size);
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) die("eventfd", errno);
  wake_reader_ = std::make_unique<WakeReader>(this);
}

Loop::~Loop() {
  buffers_.reset();
  io_uring_queue_exit(&ring_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Loop* Loop::current() {
  return t_current;
}

io_uring_sqe* Loop::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (!s) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void Loop::reserve(unsigned n) {
  if (io_uring_sq_space_left(&ring_) < n) io_uring_submit(&ring_);
}

void Loop::arm_wake() {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, wake_fd_, &wake_value_, sizeof wake_value_, 0);
  io_uring_sqe_set_data(s, static_cast<Completion*>(wake_reader_.get()));
}

void Loop::drain_inbox() {
  for (ringmail::MpscNode* n = inbox_.take_all(); n;) {
    ringmail::MpscNode* next = n->mpsc_next;
    static_cast<Posted*>(n)->run();
    n = next;
  }
}

void Loop::post(Posted* p) {
  if (inbox_.push(p)) {
    uint64_t one = 1;
    // A failed write means the counter is saturated: the loop is awake anyway.
    [[maybe_unused]] ssize_t w = ::write(wake_fd_, &one, sizeof one);
  }
}

void Loop::stop() {
  stopping_.store(true, std::memory_order_release);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(wake_fd_, &one, sizeof one);
}

void Loop::spawn(Task<void> t) {
  ++live_tasks_;
  SpawnAccess::run(this, std::move(t));
}

void Loop::cancel(Completion* c) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel(s, c, 0);
  io_uring_sqe_set_data(s, nullptr);
}

void Loop::run() {
  Loop* prev = t_current;
  t_current = this;
  arm_wake();
  struct Done {
    void* user_data;
    int res;
    uint32_t flags;
  };
  constexpr unsigned kBatch = 256;
  io_uring_cqe* cqes[kBatch];
  Done done[kBatch];
  for (;;) {
    drain_inbox();
    if (stopping() && !stop_handled_) {
      stop_handled_ = true;
      if (on_stop_) on_stop_();
    }
    if (stop_handled_ && live_tasks_ == 0) break;
    int r = io_uring_submit_and_wait(&ring_, 1);
    if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN) die("io_uring_submit_and_wait", -r);
    unsigned n;
    // Copy completions out before running them: a resumed coroutine submits new work
    // and may be destroyed, so nothing may touch the CQ entries after it runs.
    while ((n = io_uring_peek_batch_cqe(&ring_, cqes, kBatch)) > 0) {
      for (unsigned i = 0; i < n; ++i)
        done[i] = {io_uring_cqe_get_data(cqes[i]), cqes[i]->res, cqes[i]->flags};
      io_uring_cq_advance(&ring_, n);
      for (unsigned i = 0; i < n; ++i)
        if (done[i].user_data)
          static_cast<Completion*>(done[i].user_data)->complete(done[i].res, done[i].flags);
    }
  }
  t_current = prev;
}

}  // namespace ringmail::rt
