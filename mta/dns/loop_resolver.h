// LoopResolver: the dns::Resolver driven by one io_uring loop.
//
// It owns one dns::Resolver (one c-ares channel, one cache) per loop thread and the ring
// operations that drive it: a one-shot IORING_OP_POLL_ADD per c-ares socket, re-armed
// after each event, and a single timeout op set to ares_timeout() (DESIGN "Runtime").
// It offers awaitables, so a delivery coroutine writes
//
//   Result<dns::MxAnswer> mx = co_await resolver.mx("example.test");
//
// It never blocks, never spawns tasks and never resumes a coroutine from inside c-ares
// (the Resolver defers every callback until c-ares has returned). It is not thread-safe:
// use it only on its loop's thread.
//
// Shutdown: `co_await close()` before destroying it. close() makes every pending lookup
// return kTemporary, cancels the polls and the timer, waits on the ring until the kernel
// has completed every one of them, then destroys the channel. Destroying it with ring
// operations still in flight is a bug and aborts.
#pragma once

#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "conf/result.h"
#include "dns/answer.h"
#include "dns/resolver.h"
#include "mta/runtime/loop.h"
#include "mta/runtime/task.h"

namespace ringmail::dns {

class LoopResolver {
 public:
  // Fails on a bad `servers` entry or when c-ares cannot start.
  static Result<std::unique_ptr<LoopResolver>> create(rt::Loop& loop, const Resolver::Options& o);
  ~LoopResolver();
  LoopResolver(const LoopResolver&) = delete;
  LoopResolver& operator=(const LoopResolver&) = delete;

  // co_await yields the lookup's Result; see dns::Resolver for what the errors mean.
  template <class T>
  class Lookup {
   public:
    bool await_ready() const noexcept { return false; }
    // Returns false (no suspension) when the answer came at once, e.g. from the cache.
    bool await_suspend(std::coroutine_handle<> h) {
      h_ = h;
      start_(*owner_, name_, [this](Result<T> r) {
        result_.emplace(std::move(r));
        if (suspended_) h_.resume();
      });
      if (result_) return false;
      suspended_ = true;
      return true;
    }
    Result<T> await_resume() { return std::move(*result_); }

   private:
    friend class LoopResolver;
    using Start = void (*)(LoopResolver&, const std::string&, std::function<void(Result<T>)>);
    Lookup(LoopResolver& owner, std::string_view name, Start start)
        : owner_(&owner), name_(name), start_(start) {}
    LoopResolver* owner_;
    std::string name_;
    Start start_;
    std::coroutine_handle<> h_;
    std::optional<Result<T>> result_;
    bool suspended_ = false;
  };

  Lookup<MxAnswer> mx(std::string_view domain);
  Lookup<std::vector<Address>> addresses(std::string_view host);

  // Callback forms, for code that is not a coroutine.
  void lookup_mx(std::string_view domain, Resolver::MxCallback cb);
  void lookup_addresses(std::string_view host, Resolver::AddressCallback cb);

  // See the header comment. Only the first call waits; later ones return at once.
  rt::Task<void> close();

  // REQUIRES: close() has not finished (it destroys the Resolver).
  Resolver& resolver() { return *resolver_; }
  // Polls, timers and cancellations the kernel still owes a completion for.
  size_t ops_in_flight() const { return in_flight_; }
  size_t watched_sockets() const { return watches_.size(); }

 private:
  class PollOp;
  class TimerOp;
  class NopOp;
  struct Watch {
    bool read = false;
    bool write = false;
    PollOp* armed = nullptr;
  };
  struct IdleWait;

  explicit LoopResolver(rt::Loop& loop) : loop_(loop) {}
  void on_socket_state(int fd, bool read, bool write);
  void arm_poll(int fd, Watch& w);
  void on_poll(PollOp* op, int res);
  void sync_timer();
  void on_timer(TimerOp* op);
  // Every op ends here; the last one during close() resumes it. Nothing after the call
  // may touch `this`: close()'s caller may destroy it.
  void op_done();

  rt::Loop& loop_;
  std::unique_ptr<Resolver> resolver_;
  std::unordered_map<int, Watch> watches_;
  TimerOp* timer_ = nullptr;
  size_t in_flight_ = 0;
  bool closing_ = false;
  std::coroutine_handle<> closer_;
};

}  // namespace ringmail::dns
