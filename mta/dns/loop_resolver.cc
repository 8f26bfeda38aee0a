#include "mta/dns/loop_resolver.h"

#include <liburing.h>
#include <poll.h>

#include <cstdio>
#include <cstdlib>

namespace ringmail::dns {

using namespace std::chrono_literals;

// One one-shot poll on a c-ares socket. One-shot and re-armed rather than multishot:
// multishot poll reports wake-ups (edge-like), and c-ares 1.18 reads TCP only once per
// ares_process_fd, so a level-style re-arm is what keeps a partly read answer from
// stalling. DNS is not a hot path; one SQE per event costs nothing that matters.
class LoopResolver::PollOp final : public rt::Completion {
 public:
  PollOp(LoopResolver* owner, int fd, unsigned mask) : owner(owner), fd(fd), mask(mask) {}
  void complete(int res, uint32_t) override { owner->on_poll(this, res); }
  LoopResolver* owner;
  int fd;
  unsigned mask;
  bool stale = false;  // cancelled: its completion only frees it
};

class LoopResolver::TimerOp final : public rt::Completion {
 public:
  TimerOp(LoopResolver* owner, rt::Clock::time_point deadline) : owner(owner), deadline(deadline) {}
  void complete(int, uint32_t) override { owner->on_timer(this); }
  LoopResolver* owner;
  rt::Clock::time_point deadline;
  __kernel_timespec ts{};
  bool stale = false;
};

// close() waits for this so that it always resumes from the loop, never from inside a
// resolver callback that the channel's destruction would pull out from under.
class LoopResolver::NopOp final : public rt::Completion {
 public:
  explicit NopOp(LoopResolver* owner) : owner(owner) {}
  void complete(int, uint32_t) override {
    LoopResolver* o = owner;
    delete this;
    o->op_done();
  }
  LoopResolver* owner;
};

struct LoopResolver::IdleWait {
  LoopResolver* self;
  bool await_ready() const noexcept { return self->in_flight_ == 0; }
  void await_suspend(std::coroutine_handle<> h) noexcept { self->closer_ = h; }
  void await_resume() const noexcept {}
};

Result<std::unique_ptr<LoopResolver>> LoopResolver::create(rt::Loop& loop,
                                                           const Resolver::Options& o) {
  std::unique_ptr<LoopResolver> lr(new LoopResolver(loop));
  LoopResolver* self = lr.get();
  auto r =
      Resolver::create(o, [self](int fd, bool rd, bool wr) { self->on_socket_state(fd, rd, wr); });
  if (!r) return r.error();
  lr->resolver_ = std::move(r.value());
  return lr;
}

LoopResolver::~LoopResolver() {
  if (in_flight_ != 0) {
    std::fprintf(stderr, "LoopResolver destroyed with %zu ring ops in flight: co_await close()\n",
                 in_flight_);
    std::abort();
  }
  // Nothing in flight means no sockets are open; the flag keeps any late socket-state
  // callback from ares_destroy from arming a poll.
  closing_ = true;
  resolver_.reset();
}

void LoopResolver::on_socket_state(int fd, bool read, bool write) {
  auto it = watches_.find(fd);
  if (!read && !write) {
    // c-ares closes the socket right after this: the poll must not outlive our interest
    // (the fd number may come back at once as a new socket with its own watch).
    if (it == watches_.end()) return;
    if (PollOp* op = it->second.armed) {
      op->stale = true;
      loop_.cancel(op);
    }
    watches_.erase(it);
    return;
  }
  if (closing_) return;
  Watch& w = it != watches_.end() ? it->second : watches_[fd];
  unsigned mask = (read ? POLLIN : 0) | (write ? POLLOUT : 0);
  w.read = read;
  w.write = write;
  if (w.armed) {
    if (w.armed->mask == mask) return;
    w.armed->stale = true;
    loop_.cancel(w.armed);
    w.armed = nullptr;
  }
  arm_poll(fd, w);
}

void LoopResolver::arm_poll(int fd, Watch& w) {
  unsigned mask = (w.read ? POLLIN : 0) | (w.write ? POLLOUT : 0);
  auto* op = new PollOp(this, fd, mask);
  io_uring_sqe* s = loop_.sqe();
  io_uring_prep_poll_add(s, fd, mask);
  io_uring_sqe_set_data(s, static_cast<rt::Completion*>(op));
  ++in_flight_;
  w.armed = op;
}

void LoopResolver::on_poll(PollOp* op, int res) {
  int fd = op->fd;
  bool stale = op->stale;
  auto it = watches_.find(fd);
  if (!stale && it != watches_.end() && it->second.armed == op) it->second.armed = nullptr;
  delete op;
  if (!stale && !closing_) {
    bool want_r = it != watches_.end() && it->second.read;
    bool want_w = it != watches_.end() && it->second.write;
    // POLLERR/POLLHUP and ring errors go to c-ares as readiness: its read or write then
    // fails and it moves the query to the next server, which is what an error should do.
    bool err = res < 0 || (res & (POLLERR | POLLHUP | POLLNVAL)) != 0;
    bool r = want_r && (err || (res & POLLIN));
    bool w = want_w && (err || (res & POLLOUT));
    resolver_->process(r ? fd : -1, w ? fd : -1);
    // process() may have closed this socket, or closed and reopened the fd number with a
    // watch and poll of its own; re-arm only a watch left without one.
    it = watches_.find(fd);
    if (!closing_ && it != watches_.end() && !it->second.armed &&
        (it->second.read || it->second.write))
      arm_poll(fd, it->second);
    sync_timer();
  }
  op_done();
}

void LoopResolver::sync_timer() {
  if (closing_) return;
  std::optional<std::chrono::nanoseconds> due = resolver_->next_timeout();
  if (!due) {
    if (timer_) {
      timer_->stale = true;
      loop_.cancel(timer_);
      timer_ = nullptr;
    }
    return;
  }
  // A millisecond late so the timer does not beat c-ares' own clock and spin.
  auto deadline = rt::Clock::now() + *due + 1ms;
  if (timer_) {
    // Firing early is harmless (c-ares finds nothing due and we re-arm); firing late
    // delays a retry, so only a later timer is replaced.
    if (timer_->deadline <= deadline) return;
    timer_->stale = true;
    loop_.cancel(timer_);
    timer_ = nullptr;
  }
  auto* t = new TimerOp(this, deadline);
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*due + 1ms).count();
  t->ts.tv_sec = ns / 1000000000;
  t->ts.tv_nsec = ns % 1000000000;
  io_uring_sqe* s = loop_.sqe();
  io_uring_prep_timeout(s, &t->ts, 0, 0);
  io_uring_sqe_set_data(s, static_cast<rt::Completion*>(t));
  ++in_flight_;
  timer_ = t;
}

void LoopResolver::on_timer(TimerOp* op) {
  bool stale = op->stale;
  delete op;
  if (!stale && !closing_) {
    timer_ = nullptr;
    resolver_->process_timeouts();
    sync_timer();
  }
  op_done();
}

void LoopResolver::op_done() {
  if (--in_flight_ == 0 && closer_) std::exchange(closer_, {}).resume();
}

void LoopResolver::lookup_mx(std::string_view domain, Resolver::MxCallback cb) {
  if (!resolver_) return cb(Error{kTemporary, "resolver shut down"});
  resolver_->lookup_mx(domain, std::move(cb));
  sync_timer();
}

void LoopResolver::lookup_addresses(std::string_view host, Resolver::AddressCallback cb) {
  if (!resolver_) return cb(Error{kTemporary, "resolver shut down"});
  resolver_->lookup_addresses(host, std::move(cb));
  sync_timer();
}

LoopResolver::Lookup<MxAnswer> LoopResolver::mx(std::string_view domain) {
  return Lookup<MxAnswer>(
      *this, domain,
      [](LoopResolver& lr, const std::string& name, std::function<void(Result<MxAnswer>)> cb) {
        lr.lookup_mx(name, std::move(cb));
      });
}

LoopResolver::Lookup<std::vector<Address>> LoopResolver::addresses(std::string_view host) {
  return Lookup<std::vector<Address>>(*this, host,
                                      [](LoopResolver& lr, const std::string& name,
                                         std::function<void(Result<std::vector<Address>>)> cb) {
                                        lr.lookup_addresses(name, std::move(cb));
                                      });
}

rt::Task<void> LoopResolver::close() {
  if (closing_) co_return;
  closing_ = true;
  // Waiting coroutines resume here with kTemporary; c-ares closes its sockets, and
  // on_socket_state cancels their polls.
  resolver_->cancel_all();
  for (auto& [fd, w] : watches_) {
    if (w.armed) {
      w.armed->stale = true;
      loop_.cancel(w.armed);
    }
  }
  watches_.clear();
  if (timer_) {
    timer_->stale = true;
    loop_.cancel(timer_);
    timer_ = nullptr;
  }
  auto* nop = new NopOp(this);
  io_uring_sqe* s = loop_.sqe();
  io_uring_prep_nop(s);
  io_uring_sqe_set_data(s, static_cast<rt::Completion*>(nop));
  ++in_flight_;
  co_await IdleWait{this};
  resolver_.reset();
}

}  // namespace ringmail::dns
