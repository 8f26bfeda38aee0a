#include "mta/runtime/listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ringmail::rt {

Result<int> listen_socket(const sockaddr* addr, socklen_t len, int backlog) {
  int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{errno, std::string("socket: ") + std::strerror(errno)};
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (addr->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, addr, len) < 0 || ::listen(fd, backlog) < 0) {
    int e = errno;
    ::close(fd);
    return Error{e, std::strerror(e)};
  }
  return fd;
}

Status check_port_free(const sockaddr* addr, socklen_t len) {
  // Without SO_REUSEPORT this bind fails while any socket listens on the address, even
  // one that set SO_REUSEPORT itself: exactly the case the real listeners would not see.
  int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{errno, std::string("socket: ") + std::strerror(errno)};
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  int rc = ::bind(fd, addr, len);
  int e = errno;
  ::close(fd);
  if (rc < 0)
    return Error{e, e == EADDRINUSE ? "address already in use (is another ringmaild running?)"
                                    : std::strerror(e)};
  return ok_status();
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Listener::Listener(Loop& loop, int fd, OnAccept on_accept)
    : loop_(loop), fd_(fd), on_accept_(std::move(on_accept)) {
  retry_.self = this;
}

Listener::~Listener() {
  if (fd_ >= 0) ::close(fd_);
}

void Listener::start() {
  retry_pending_ = false;
  if (closed_ || armed_) return;
  io_uring_sqe* s = loop_.sqe();
  io_uring_prep_multishot_accept(s, fd_, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(s, static_cast<Completion*>(this));
  armed_ = true;
}

void Listener::close() {
  if (closed_) return;
  closed_ = true;
  if (armed_) loop_.cancel(this);
  if (retry_pending_) loop_.cancel(&retry_);
  // The fd itself is closed by the destructor, after the cancelled accept has completed
  // or the ring is gone; closing it now could hand its number to a new socket while
  // the kernel still references the old one.
  ::shutdown(fd_, SHUT_RDWR);
}

void Listener::complete(int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) armed_ = false;
  if (res >= 0) {
    if (closed_) {
      ::close(res);
    } else {
      on_accept_(res);
    }
    if (!armed_ && !closed_) start();
  } else if (!armed_ && !closed_ && !retry_pending_) {
    retry_pending_ = true;
    io_uring_sqe* s = loop_.sqe();
    io_uring_prep_timeout(s, &retry_.ts, 0, 0);
    io_uring_sqe_set_data(s, static_cast<Completion*>(&retry_));
  }
}

}  // namespace ringmail::rt
