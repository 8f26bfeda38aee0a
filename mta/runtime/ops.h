// Awaitable io_uring operations. Each awaiter is the completion itself (its address is
// the user_data), so an operation allocates nothing. A deadline is an
// IORING_OP_LINK_TIMEOUT linked to the operation: on expiry the operation completes with
// -ECANCELED and await_resume() reports -ETIME instead, unless cancel() was asked for
// explicitly (then -ECANCELED stays).
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <cerrno>
#include <coroutine>
#include <cstdint>

#include "mta/runtime/loop.h"

namespace ringmail::rt {

class OpBase : public Completion {
 public:
  explicit OpBase(Loop& loop, Duration timeout = Duration::zero())
      : loop_(loop), timeout_(timeout) {}
  bool await_ready() const noexcept { return false; }
  void complete(int res, uint32_t flags) override {
    res_ = res;
    flags_ = flags;
    h_.resume();
  }
  // Marks this op as cancelled by us (shutdown), not by its deadline.
  void cancel() {
    cancelled_ = true;
    loop_.cancel(this);
  }
  uint32_t cqe_flags() const { return flags_; }

 protected:
  // Takes the SQE(s), links the deadline, remembers the coroutine.
  io_uring_sqe* begin(std::coroutine_handle<> h) {
    h_ = h;
    loop_.reserve(2);
    io_uring_sqe* s = loop_.sqe();
    io_uring_sqe_set_data(s, static_cast<Completion*>(this));
    return s;
  }
  void link_deadline(io_uring_sqe* s) {
    if (timeout_ <= Duration::zero()) return;
    s->flags |= IOSQE_IO_LINK;
    auto ns = timeout_.count();
    ts_.tv_sec = ns / 1000000000;
    ts_.tv_nsec = ns % 1000000000;
    io_uring_sqe* t = loop_.sqe();
    io_uring_prep_link_timeout(t, &ts_, 0);
    io_uring_sqe_set_data(t, nullptr);
  }
  int result() const {
    if (res_ == -ECANCELED && !cancelled_ && timeout_ > Duration::zero()) return -ETIME;
    return res_;
  }

  Loop& loop_;
  Duration timeout_;
  __kernel_timespec ts_{};
  std::coroutine_handle<> h_;
  int res_ = 0;
  uint32_t flags_ = 0;
  bool cancelled_ = false;
};

// recv() into a buffer the kernel picks from the loop's BufferRing when data arrives.
// Result: bytes (>0), 0 on EOF, or -errno; buffer_id() is valid when bytes > 0.
class RecvSelect : public OpBase {
 public:
  RecvSelect(Loop& loop, int fd, Duration timeout) : OpBase(loop, timeout), fd_(fd) {}
  void await_suspend(std::coroutine_handle<> h) {
    io_uring_sqe* s = begin(h);
    io_uring_prep_recv(s, fd_, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = 0;
    link_deadline(s);
  }
  int await_resume() const { return result(); }
  uint16_t buffer_id() const { return static_cast<uint16_t>(flags_ >> IORING_CQE_BUFFER_SHIFT); }
  bool has_buffer() const { return (flags_ & IORING_CQE_F_BUFFER) != 0; }

 private:
  int fd_;
};

class Send : public OpBase {
 public:
  Send(Loop& loop, int fd, const void* data, size_t len, Duration timeout)
      : OpBase(loop, timeout), fd_(fd), data_(data), len_(len) {}
  void await_suspend(std::coroutine_handle<> h) {
    io_uring_sqe* s = begin(h);
    io_uring_prep_send(s, fd_, data_, len_, MSG_NOSIGNAL);
    link_deadline(s);
  }
  int await_resume() const { return result(); }

 private:
  int fd_;
  const void* data_;
  size_t len_;
};

class Connect : public OpBase {
 public:
  Connect(Loop& loop, int fd, const sockaddr* addr, socklen_t len, Duration timeout)
      : OpBase(loop, timeout), fd_(fd), addr_(addr), len_(len) {}
  void await_suspend(std::coroutine_handle<> h) {
    io_uring_sqe* s = begin(h);
    io_uring_prep_connect(s, fd_, addr_, len_);
    link_deadline(s);
  }
  int await_resume() const { return result(); }

 private:
  int fd_;
  const sockaddr* addr_;
  socklen_t len_;
};

// Sleeps on the ring. Result: 0 when the time passed, -ECANCELED if cancelled.
class Sleep : public OpBase {
 public:
  Sleep(Loop& loop, Duration d) : OpBase(loop) {
    auto ns = d.count();
    ts_.tv_sec = ns / 1000000000;
    ts_.tv_nsec = ns % 1000000000;
  }
  void await_suspend(std::coroutine_handle<> h) {
    io_uring_sqe* s = begin(h);
    io_uring_prep_timeout(s, &ts_, 0, 0);
  }
  int await_resume() const { return res_ == -ETIME ? 0 : res_; }
};

}  // namespace ringmail::rt
