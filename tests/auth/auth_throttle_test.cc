// auth/auth_throttle.h: counting, blocking, the sliding window, and the memory bound,
// with explicit time points instead of sleeping.
#include "auth/auth_throttle.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace ringmail::auth {
namespace {

using std::chrono::seconds;
using TP = AuthThrottle::TimePoint;

const TP t0 = TP() + std::chrono::hours(1000);

TEST(AuthThrottle, BlocksAtMaxFailures) {
  AuthThrottle t(3, seconds(900));
  EXPECT_FALSE(t.blocked("192.0.2.1", t0));
  EXPECT_EQ(t.record_failure("192.0.2.1", t0), 1u);
  EXPECT_EQ(t.record_failure("192.0.2.1", t0 + seconds(1)), 2u);
  EXPECT_FALSE(t.blocked("192.0.2.1", t0 + seconds(2)));
  EXPECT_EQ(t.record_failure("192.0.2.1", t0 + seconds(2)), 3u);
  EXPECT_TRUE(t.blocked("192.0.2.1", t0 + seconds(3)));
  // Other addresses are not affected.
  EXPECT_FALSE(t.blocked("192.0.2.2", t0 + seconds(3)));
  EXPECT_FALSE(t.blocked("2001:db8::1", t0 + seconds(3)));
}

TEST(AuthThrottle, WindowSlides) {
  AuthThrottle t(3, seconds(100));
  t.record_failure("a", t0);
  t.record_failure("a", t0 + seconds(10));
  t.record_failure("a", t0 + seconds(20));
  EXPECT_TRUE(t.blocked("a", t0 + seconds(99)));
  // A failure exactly `window` old no longer counts.
  EXPECT_FALSE(t.blocked("a", t0 + seconds(100)));
  EXPECT_EQ(t.record_failure("a", t0 + seconds(100)), 3u);
  EXPECT_TRUE(t.blocked("a", t0 + seconds(109)));
  EXPECT_FALSE(t.blocked("a", t0 + seconds(110)));
  EXPECT_FALSE(t.blocked("a", t0 + seconds(1000)));
  EXPECT_EQ(t.record_failure("a", t0 + seconds(1000)), 1u);
}

TEST(AuthThrottle, ExpiredEntriesArePruned) {
  AuthThrottle t(5, seconds(60));
  for (int i = 0; i < 10; ++i) t.record_failure("10.0.0." + std::to_string(i), t0);
  EXPECT_EQ(t.tracked(), 10u);
  t.record_failure("10.0.1.1", t0 + seconds(30));
  EXPECT_EQ(t.tracked(), 11u);
  EXPECT_FALSE(t.blocked("nobody", t0 + seconds(60)));
  EXPECT_EQ(t.tracked(), 1u);
  EXPECT_FALSE(t.blocked("nobody", t0 + seconds(90)));
  EXPECT_EQ(t.tracked(), 0u);
}

TEST(AuthThrottle, BoundDropsLeastRecentlySeen) {
  AuthThrottle t(2, seconds(900), 3);
  t.record_failure("a", t0);
  t.record_failure("a", t0 + seconds(1));
  t.record_failure("b", t0 + seconds(2));
  t.record_failure("c", t0 + seconds(3));
  EXPECT_EQ(t.tracked(), 3u);
  // "a" is blocked and still trying: that keeps it in the table.
  EXPECT_TRUE(t.blocked("a", t0 + seconds(4)));
  t.record_failure("d", t0 + seconds(5));
  EXPECT_EQ(t.tracked(), 3u);
  EXPECT_TRUE(t.blocked("a", t0 + seconds(6)));
  // "b" was the least recently seen and is gone: its count starts again.
  EXPECT_EQ(t.record_failure("b", t0 + seconds(7)), 1u);
  EXPECT_EQ(t.tracked(), 3u);
  // Now "c" went.
  EXPECT_EQ(t.record_failure("c", t0 + seconds(8)), 1u);
  // A flood of new addresses eventually pushes everything out, but never grows the table.
  for (int i = 0; i < 1000; ++i) t.record_failure("x" + std::to_string(i), t0 + seconds(9));
  EXPECT_EQ(t.tracked(), 3u);
  EXPECT_FALSE(t.blocked("a", t0 + seconds(10)));
}

TEST(AuthThrottle, CountSaturatesButBlockingStaysExact) {
  AuthThrottle t(2, seconds(100));
  for (uint32_t i = 1; i <= 8; ++i) EXPECT_EQ(t.record_failure("a", t0 + seconds(i)), i);
  EXPECT_EQ(t.record_failure("a", t0 + seconds(9)), 8u);
  EXPECT_EQ(t.record_failure("a", t0 + seconds(10)), 8u);
  // The newest two failures (t0+9, t0+10) keep it blocked until t0+109.
  EXPECT_TRUE(t.blocked("a", t0 + seconds(108)));
  EXPECT_FALSE(t.blocked("a", t0 + seconds(109)));

  AuthThrottle big(20, seconds(100));
  for (uint32_t i = 1; i <= 25; ++i) EXPECT_EQ(big.record_failure("a", t0), std::min(i, 20u));
  EXPECT_TRUE(big.blocked("a", t0 + seconds(99)));
}

TEST(AuthThrottle, OnlyTimeClearsAnAddress) {
  // There is deliberately no way to clear an address (a successful AUTH must not): the
  // count only ages out, one failure at a time, and asking does not extend it.
  AuthThrottle t(2, seconds(100));
  t.record_failure("a", t0);
  t.record_failure("a", t0 + seconds(1));
  for (int s = 2; s < 100; s += 7) EXPECT_TRUE(t.blocked("a", t0 + seconds(s)));
  EXPECT_TRUE(t.blocked("a", t0 + seconds(99)));
  EXPECT_FALSE(t.blocked("a", t0 + seconds(100)));
  EXPECT_EQ(t.record_failure("a", t0 + seconds(100)), 2u);
  EXPECT_TRUE(t.blocked("a", t0 + seconds(100)));
}

TEST(AuthThrottle, ZeroMaxFailuresMeansOne) {
  AuthThrottle t(0, seconds(100));
  EXPECT_FALSE(t.blocked("a", t0));
  EXPECT_EQ(t.record_failure("a", t0), 1u);
  EXPECT_TRUE(t.blocked("a", t0));
}

TEST(AuthThrottle, OutOfOrderTimesFromOtherThreads) {
  AuthThrottle t(3, seconds(100));
  t.record_failure("a", t0 + seconds(5));
  t.record_failure("a", t0 + seconds(3));  // another loop thread read the clock earlier
  t.record_failure("a", t0 + seconds(4));
  EXPECT_TRUE(t.blocked("a", t0 + seconds(102)));
  EXPECT_FALSE(t.blocked("a", t0 + seconds(103)));
}

TEST(AuthThrottle, ConcurrentUse) {
  AuthThrottle t(1000000, seconds(100), 64);
  std::vector<std::thread> threads;
  for (int n = 0; n < 4; ++n)
    threads.emplace_back([&t, n] {
      for (int i = 0; i < 2000; ++i) {
        std::string ip = "198.51.100." + std::to_string((i * 7 + n) % 100);
        t.blocked(ip, t0 + seconds(i / 100));
        t.record_failure(ip, t0 + seconds(i / 100));
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_LE(t.tracked(), 64u);
}

}  // namespace
}  // namespace ringmail::auth
