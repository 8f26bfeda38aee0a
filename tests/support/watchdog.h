// Watchdog for tests that run coroutines on an rt::Loop: a Sleep that, if the test has
// not finished in time, fails it and stops the loop, so a hang is a failure, never a
// stuck run. Call disarm() when the test's own work is done so the loop can end.
#pragma once

#include <gtest/gtest.h>

#include "mta/runtime/loop.h"
#include "mta/runtime/ops.h"
#include "mta/runtime/task.h"

namespace ringmail::testing {

class Watchdog {
 public:
  Watchdog(rt::Loop& loop, rt::Duration limit) : loop_(loop) { loop.spawn(run(limit)); }
  void disarm() {
    if (op_) op_->cancel();
  }
  bool fired() const { return fired_; }

 private:
  rt::Task<void> run(rt::Duration limit) {
    rt::Sleep s(loop_, limit);
    op_ = &s;
    int r = co_await s;
    op_ = nullptr;
    if (r == 0) {
      fired_ = true;
      ADD_FAILURE() << "watchdog: the test did not finish in time";
      loop_.stop();
    }
  }
  rt::Loop& loop_;
  rt::Sleep* op_ = nullptr;
  bool fired_ = false;
};

}  // namespace ringmail::testing
