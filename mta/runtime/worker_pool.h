// WorkerPool: threads for blocking or CPU-heavy work a loop thread must never do
// (password hashing: yescrypt takes tens of milliseconds by design).
//
// A coroutine writes `T r = co_await pool.run(loop, fn);`: fn runs on a pool thread, and
// the coroutine resumes on its own loop thread through Loop::post(). The queue is a mutex
// and a condition variable: it is touched once per offloaded job, each of which costs
// milliseconds, so a lock-free queue would buy nothing. The pool must outlive every loop
// that uses it; its destructor finishes the queued jobs and joins.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "mta/runtime/loop.h"

namespace ringmail::rt {

class WorkerPool {
 public:
  // `name`: the threads' name (conf/thread_name.h), numbered from 0.
  explicit WorkerPool(unsigned threads, std::string name = "rm-work");
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  template <class F>
  class RunOp final : public Posted {
   public:
    using R = std::invoke_result_t<F&>;
    RunOp(WorkerPool& pool, Loop& loop, F fn) : pool_(pool), loop_(loop), fn_(std::move(fn)) {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      h_ = h;
      pool_.submit([this] {
        result_.emplace(fn_());
        loop_.post(this);
      });
    }
    R await_resume() { return std::move(*result_); }
    void run() override { h_.resume(); }

   private:
    WorkerPool& pool_;
    Loop& loop_;
    F fn_;
    std::optional<R> result_;
    std::coroutine_handle<> h_;
  };

  // Awaitable running `fn` (returning a value) on a pool thread.
  template <class F>
  RunOp<F> run(Loop& loop, F fn) {
    return RunOp<F>(*this, loop, std::move(fn));
  }

  // Fire-and-forget job (tests, or work nobody waits for).
  void submit(std::function<void()> job);
  // Jobs waiting for a thread (not counting running ones): callers shed load on it.
  size_t queued();
  unsigned threads() const { return static_cast<unsigned>(threads_.size()); }

 private:
  void work();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ringmail::rt
