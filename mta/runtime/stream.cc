#include "mta/runtime/stream.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include "mta/runtime/buffer_ring.h"
#include "mta/runtime/ops.h"

namespace ringmail::rt {

namespace {
// Above this, a finished buffer is freed rather than kept for the next use: idle
// sessions must stay small.
constexpr size_t kKeepCapacity = 1024;
// No receive buffer free: retry after this long (back-pressure, not failure).
constexpr auto kNoBufferBackoff = std::chrono::milliseconds(2);

void trim(std::string& s) {
  s.clear();
  if (s.capacity() > kKeepCapacity) std::string().swap(s);
}
}  // namespace

Stream::Stream(Loop& loop, int fd) : loop_(loop), fd_(fd) {}

Stream::~Stream() {
  release_borrowed();
  if (fd_ >= 0) ::close(fd_);
}

void Stream::release_borrowed() {
  if (borrowed_bid_ >= 0) loop_.buffers().give_back(static_cast<uint16_t>(borrowed_bid_));
  borrowed_bid_ = -1;
  borrowed_ = nullptr;
  borrowed_off_ = borrowed_len_ = 0;
}

void Stream::consume(size_t n) {
  if (carry_off_ < carry_.size()) {
    carry_off_ += n;
    if (carry_off_ >= carry_.size()) {
      trim(carry_);
      carry_off_ = 0;
    }
    return;
  }
  borrowed_off_ += n;
  if (borrowed_off_ >= borrowed_len_) release_borrowed();
}

void Stream::discard_input() {
  release_borrowed();
  trim(carry_);
  carry_off_ = 0;
}

Task<int> Stream::fill(Duration timeout, size_t max_buffered) {
  size_t have = input().size();
  if (have >= max_buffered) co_return -ENOBUFS;
  // Whatever is left of the lent buffer moves to the carry so the buffer can go back.
  if (borrowed_bid_ >= 0) {
    if (carry_off_ > 0) {
      carry_.erase(0, carry_off_);
      carry_off_ = 0;
    }
    carry_.append(borrowed_ + borrowed_off_, borrowed_len_ - borrowed_off_);
    release_borrowed();
  } else if (carry_off_ > 0) {
    carry_.erase(0, carry_off_);
    carry_off_ = 0;
  }
  for (;;) {
    RecvSelect op(loop_, fd_, timeout);
    pending_read_ = &op;
    int n = co_await op;
    pending_read_ = nullptr;
    if (n == -ENOBUFS) {
      Sleep pause(loop_, kNoBufferBackoff);
      pending_read_ = &pause;
      int r = co_await pause;
      pending_read_ = nullptr;
      if (r == -ECANCELED) co_return r;
      continue;
    }
    if (n <= 0) co_return n;
    const char* data = loop_.buffers().data(op.buffer_id());
    if (carry_.empty()) {
      borrowed_bid_ = op.buffer_id();
      borrowed_ = data;
      borrowed_off_ = 0;
      borrowed_len_ = static_cast<size_t>(n);
    } else {
      // Bounded: fill() refuses once max_buffered is held, so the carry never exceeds
      // max_buffered plus one ring buffer.
      carry_.append(data, static_cast<size_t>(n));
      loop_.buffers().give_back(op.buffer_id());
    }
    co_return n;
  }
}

Task<int> Stream::flush(Duration timeout) {
  size_t off = 0;
  while (off < out_.size()) {
    Send op(loop_, fd_, out_.data() + off, out_.size() - off, timeout);
    int n = co_await op;
    if (n < 0) {
      trim(out_);
      co_return n;
    }
    if (n == 0) {
      trim(out_);
      co_return -EPIPE;
    }
    off += static_cast<size_t>(n);
  }
  trim(out_);
  co_return 0;
}

void Stream::cancel_read() {
  if (pending_read_) pending_read_->cancel();
}

}  // namespace ringmail::rt
