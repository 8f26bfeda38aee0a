// Stream: one connected socket's buffered input and output on a Loop.
//
// Input is zero-copy where it can be: received bytes stay in the kernel-picked ring buffer
// while the protocol parses them in place; only bytes left over when more are needed (a
// command split across segments) are copied into a small carry buffer, capped by the
// caller's limit. Output is gathered with write() and sent with one flush(), so the
// replies to one pipelined batch leave in one send (RFC 2920). An idle Stream holds no
// buffer at all. The Stream owns the fd and closes it.
//
// start_tls() turns the same Stream into TLS (mta/runtime/tls.h): from then on input()
// is decrypted plaintext (always in the carry buffer) and flush() encrypts; the protocol
// code above does not change.
#pragma once

#include <openssl/base.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "mta/runtime/loop.h"
#include "mta/runtime/task.h"

namespace ringmail::rt {

class OpBase;
class TlsConn;

class Stream {
 public:
  Stream(Loop& loop, int fd);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  int fd() const { return fd_; }

  // Unconsumed input.
  std::string_view input() const {
    return carry_off_ < carry_.size()
               ? std::string_view(carry_).substr(carry_off_)
               : std::string_view(borrowed_ + borrowed_off_, borrowed_len_ - borrowed_off_);
  }
  void consume(size_t n);

  // Receives more input, keeping what is unconsumed in front of it. Returns the number of
  // new bytes, 0 on EOF, -ETIME on timeout, -ECANCELED after cancel_read(), or -errno.
  // -ENOBUFS if the unconsumed input is already `max_buffered` bytes.
  Task<int> fill(Duration timeout, size_t max_buffered);

  void write(std::string_view s) { out_.append(s); }
  size_t pending_output() const { return out_.size(); }
  // Sends everything written so far. 0 or -errno / -ETIME.
  Task<int> flush(Duration timeout);

  // Interrupts a fill() in progress (shutdown); it returns -ECANCELED.
  void cancel_read();
  bool reading() const { return pending_read_ != nullptr; }

  // Drops buffered input (STARTTLS must not keep plaintext that came before it).
  void discard_input();

  // Discards buffered input (plaintext sent before the handshake never reaches the
  // protocol: the CVE-2011-0411 class) and runs a TLS handshake as server or client.
  // 0, or -EPROTO (tls()->error() says why), -ETIME, -ECANCELED, -ECONNRESET, -errno.
  // After a failure the Stream is unusable.
  Task<int> start_tls(SSL_CTX* ctx, bool server, Duration timeout, std::string_view sni = {});
  const TlsConn* tls() const { return tls_.get(); }
  // Sends a close_notify alert (best effort, before the socket closes; flush() first).
  Task<void> close_tls(Duration timeout);

 private:
  void release_borrowed();
  void compact_carry();
  Task<int> fill_tls(Duration timeout, size_t max_buffered);
  // Receives into a ring buffer; the buffer id in `bid`. Retries when no buffer is free.
  Task<int> recv(Duration timeout, int& bid);
  Task<int> send_all(std::string& buf, Duration timeout);

  Loop& loop_;
  int fd_;
  // Ring buffer currently lent to us by the kernel (bid < 0: none).
  int borrowed_bid_ = -1;
  const char* borrowed_ = nullptr;
  size_t borrowed_off_ = 0;
  size_t borrowed_len_ = 0;
  std::string carry_;
  size_t carry_off_ = 0;
  std::string out_;
  OpBase* pending_read_ = nullptr;
  bool cancel_requested_ = false;
  std::unique_ptr<TlsConn> tls_;
};

}  // namespace ringmail::rt
