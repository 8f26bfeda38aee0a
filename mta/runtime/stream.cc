#include "mta/runtime/stream.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include "mta/runtime/buffer_ring.h"
#include "mta/runtime/ops.h"
#include "mta/runtime/tls.h"

namespace ringmail::rt {

namespace {
// Above this, a finished buffer is freed rather than kept for the next use: idle
// sessions must stay small.
constexpr size_t kKeepCapacity = 1024;
// No receive buffer free: retry after this long (back-pressure, not failure).
constexpr auto kNoBufferBackoff = std::chrono::milliseconds(2);
// Plaintext taken from BoringSSL per SSL_read: one TLS record at most.
constexpr size_t kTlsReadChunk = 16384;

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

void Stream::compact_carry() {
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
}

Task<int> Stream::recv(Duration timeout, int& bid) {
  cancel_requested_ = false;
  for (;;) {
    // A cancel that raced with an -ENOBUFS completion must still end the read.
    if (cancel_requested_) co_return -ECANCELED;
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
    if (n > 0) bid = op.buffer_id();
    co_return n;
  }
}

Task<int> Stream::fill(Duration timeout, size_t max_buffered) {
  size_t have = input().size();
  if (have >= max_buffered) co_return -ENOBUFS;
  compact_carry();
  if (tls_) co_return co_await fill_tls(timeout, max_buffered);
  int bid = -1;
  int n = co_await recv(timeout, bid);
  if (n <= 0) co_return n;
  const char* data = loop_.buffers().data(static_cast<uint16_t>(bid));
  if (carry_.empty()) {
    borrowed_bid_ = bid;
    borrowed_ = data;
    borrowed_off_ = 0;
    borrowed_len_ = static_cast<size_t>(n);
  } else {
    // Bounded: fill() refuses once max_buffered is held, so the carry never exceeds
    // max_buffered plus one ring buffer.
    carry_.append(data, static_cast<size_t>(n));
    loop_.buffers().give_back(static_cast<uint16_t>(bid));
  }
  co_return n;
}

Task<int> Stream::fill_tls(Duration timeout, size_t) {
  // Plaintext always lands in the carry (the ring buffer holds ciphertext). One SSL_read
  // yields at most one record, so the carry stays within max_buffered plus 16 KiB. It
  // decrypts into a per-thread scratch buffer rather than a grown carry, so a session
  // waiting for its next command keeps no 16 KiB of capacity.
  static thread_local char scratch[kTlsReadChunk];
  SSL* ssl = tls_->ssl();
  int bid = -1;
  for (;;) {
    int r = SSL_read(ssl, scratch, static_cast<int>(sizeof scratch));
    if (r > 0) carry_.append(scratch, static_cast<size_t>(r));
    if (bid >= 0) {
      // Decrypted while the ring buffer was still ours; keep only the unread remainder.
      tls_->keep_unread();
      loop_.buffers().give_back(static_cast<uint16_t>(bid));
      bid = -1;
    }
    if (r > 0) co_return r;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN) co_return 0;  // close_notify
    if (e != SSL_ERROR_WANT_READ) {
      tls_->set_error(tls_error_text());
      co_return -EPROTO;
    }
    // Whatever BoringSSL wants to say first (alerts, tickets, key updates) goes out now.
    if (!tls_->out().empty()) {
      int s = co_await send_all(tls_->out(), timeout);
      if (s < 0) co_return s;
    }
    int n = co_await recv(timeout, bid);
    if (n <= 0) co_return n;
    tls_->feed(
        std::string_view(loop_.buffers().data(static_cast<uint16_t>(bid)), static_cast<size_t>(n)));
  }
}

Task<int> Stream::send_all(std::string& buf, Duration timeout) {
  size_t off = 0;
  while (off < buf.size()) {
    Send op(loop_, fd_, buf.data() + off, buf.size() - off, timeout);
    int n = co_await op;
    if (n <= 0) {
      trim(buf);
      co_return n == 0 ? -EPIPE : n;
    }
    off += static_cast<size_t>(n);
  }
  trim(buf);
  co_return 0;
}

Task<int> Stream::flush(Duration timeout) {
  if (!tls_) co_return co_await send_all(out_, timeout);
  if (!out_.empty()) {
    // A memory BIO never blocks, so SSL_write takes everything at once.
    int r = SSL_write(tls_->ssl(), out_.data(), static_cast<int>(out_.size()));
    trim(out_);
    if (r <= 0) {
      tls_->set_error(tls_error_text());
      co_return -EPROTO;
    }
  }
  co_return co_await send_all(tls_->out(), timeout);
}

Task<int> Stream::start_tls(SSL_CTX* ctx, bool server, Duration timeout, std::string_view sni) {
  discard_input();
  tls_ = std::make_unique<TlsConn>(ctx, server, sni);
  SSL* ssl = tls_->ssl();
  int bid = -1;
  for (;;) {
    int r = SSL_do_handshake(ssl);
    if (bid >= 0) {
      tls_->keep_unread();
      loop_.buffers().give_back(static_cast<uint16_t>(bid));
      bid = -1;
    }
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
      tls_->set_error(tls_error_text());
      co_await send_all(tls_->out(), timeout);  // the alert, so the peer learns why
      co_return -EPROTO;
    }
    if (!tls_->out().empty()) {
      int s = co_await send_all(tls_->out(), timeout);
      if (s < 0) co_return s;
    }
    if (e == SSL_ERROR_NONE) co_return 0;
    int n = co_await recv(timeout, bid);
    if (n <= 0) co_return n == 0 ? -ECONNRESET : n;
    tls_->feed(
        std::string_view(loop_.buffers().data(static_cast<uint16_t>(bid)), static_cast<size_t>(n)));
  }
}

void Stream::cancel_read() {
  if (!pending_read_) return;
  cancel_requested_ = true;
  pending_read_->cancel();
}

Task<void> Stream::close_tls(Duration timeout) {
  // Only a finished handshake has a session to close; after a failed one the alert is sent.
  if (!tls_ || !SSL_is_init_finished(tls_->ssl())) co_return;
  SSL_shutdown(tls_->ssl());
  co_await send_all(tls_->out(), timeout);
}

}  // namespace ringmail::rt
