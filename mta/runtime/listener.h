// Listener: a SO_REUSEPORT socket with a multishot accept on one Loop.
//
// Every loop thread opens its own listener on the same address and the kernel spreads
// connections between them. Each accepted fd goes to the on_accept callback, which owns
// it from then on. The listener stays open until close(): closing a SO_REUSEPORT
// listener drops its backlog, so it is closed only when the loop stops.
#pragma once

#include <sys/socket.h>

#include <functional>

#include "conf/result.h"
#include "mta/runtime/loop.h"

namespace ringmail::rt {

// A bound, listening, SO_REUSEPORT TCP socket.
Result<int> listen_socket(const sockaddr* addr, socklen_t len, int backlog = 4096);
// SO_REUSEPORT lets a second process with the same uid bind the same port silently and
// take half the connections (a forgotten old daemon would then greet nobody). Call this
// before binding a listener group: it fails with a clear error if anything listens there.
Status check_port_free(const sockaddr* addr, socklen_t len);

class Listener final : public Completion {
 public:
  using OnAccept = std::function<void(int fd)>;
  Listener(Loop& loop, int fd, OnAccept on_accept);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void start();
  void close();
  void complete(int res, uint32_t flags) override;

 private:
  Loop& loop_;
  int fd_;
  OnAccept on_accept_;
  bool closed_ = false;
  bool armed_ = false;
  // Out of fds (EMFILE/ENFILE) ends the multishot accept; re-arming at once would spin,
  // so it waits a little on this timer first.
  struct Retry final : Completion {
    Listener* self;
    __kernel_timespec ts{0, 100 * 1000 * 1000};
    void complete(int, uint32_t) override { self->start(); }
  } retry_;
  bool retry_pending_ = false;
};

// Sets TCP_NODELAY (replies must not wait for delayed ACKs).
void set_nodelay(int fd);

}  // namespace ringmail::rt
