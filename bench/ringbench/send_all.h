// SendAll: an io_uring send of a caller-owned buffer that resubmits itself after short
// sends, so a 100 KB message is one co_await and no copy.
//
// rt::Stream::write() copies into the stream's string and flush() frees that string when
// it grew past 1 KiB (idle sessions must stay small), so sending a large body through it
// would allocate and copy for every message. The buffer must stay alive and unchanged
// until the await returns.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <cerrno>
#include <coroutine>
#include <string_view>

#include "mta/runtime/ops.h"

namespace ringbench {

class SendAll final : public ringmail::rt::OpBase {
 public:
  // `timeout` bounds each send, not the whole buffer.
  SendAll(ringmail::rt::Loop& loop, int fd, std::string_view bytes, ringmail::rt::Duration timeout)
      : OpBase(loop, timeout), fd_(fd), bytes_(bytes) {}

  void await_suspend(std::coroutine_handle<> h) { submit(h); }
  void complete(int res, uint32_t flags) override {
    if (res > 0 && (off_ += static_cast<size_t>(res)) < bytes_.size()) {
      submit(h_);
      return;
    }
    OpBase::complete(res, flags);
  }
  // 0 when everything was sent; -errno, -ETIME, or -EPIPE if the peer stopped taking data.
  int await_resume() const {
    int r = result();
    if (r < 0) return r;
    return off_ >= bytes_.size() ? 0 : -EPIPE;
  }

 private:
  void submit(std::coroutine_handle<> h) {
    io_uring_sqe* s = begin(h);
    io_uring_prep_send(s, fd_, bytes_.data() + off_, bytes_.size() - off_, MSG_NOSIGNAL);
    link_deadline(s);
  }

  int fd_;
  std::string_view bytes_;
  size_t off_ = 0;
};

}  // namespace ringbench
