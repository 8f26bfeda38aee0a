// auth/verified_cache: what a remembered login matches, and for how long.
#include "auth/verified_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmail::auth {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(VerifiedCache, OnlyTheSamePasswordAndHashHit) {
  VerifiedCache c(300s);
  auto t = Clock::now();
  EXPECT_FALSE(c.hit("alice@example.test", "secret", "$y$h1", t));
  c.remember("alice@example.test", "secret", "$y$h1", t);
  EXPECT_TRUE(c.hit("alice@example.test", "secret", "$y$h1", t + 10s));
  EXPECT_FALSE(c.hit("alice@example.test", "Secret", "$y$h1", t)) << "another password";
  EXPECT_FALSE(c.hit("bob@example.test", "secret", "$y$h1", t)) << "another user";
  EXPECT_FALSE(c.hit("alice@example.test", "secret", "$y$h2", t)) << "password changed";
  // Field boundaries are part of the key: moving bytes between fields never matches.
  EXPECT_FALSE(c.hit("alice@example.tests", "ecret", "$y$h1", t));
}

TEST(VerifiedCache, EntriesExpire) {
  VerifiedCache c(60s);
  auto t = Clock::now();
  c.remember("a@b.test", "pw", "$y$x", t);
  EXPECT_TRUE(c.hit("a@b.test", "pw", "$y$x", t + 59s));
  EXPECT_FALSE(c.hit("a@b.test", "pw", "$y$x", t + 60s));
  EXPECT_EQ(c.size(), 0u) << "an expired entry found by hit() is dropped";
}

TEST(VerifiedCache, ZeroTtlDisables) {
  VerifiedCache c(0s);
  auto t = Clock::now();
  c.remember("a@b.test", "pw", "$y$x", t);
  EXPECT_FALSE(c.hit("a@b.test", "pw", "$y$x", t));
  EXPECT_EQ(c.size(), 0u);
}

TEST(VerifiedCache, SizeIsBoundedOldestGoFirst) {
  VerifiedCache c(300s, 100);
  auto t = Clock::now();
  for (int i = 0; i < 1000; ++i) c.remember("u" + std::to_string(i), "pw", "$y$x", t);
  EXPECT_LE(c.size(), 100u);
  EXPECT_TRUE(c.hit("u999", "pw", "$y$x", t));
  EXPECT_FALSE(c.hit("u0", "pw", "$y$x", t));
  // Re-remembering one key over and over does not grow the bookkeeping without bound.
  for (int i = 0; i < 10000; ++i) c.remember("same", "pw", "$y$x", t);
  EXPECT_TRUE(c.hit("same", "pw", "$y$x", t));
  EXPECT_LE(c.size(), 100u);
}

}  // namespace
}  // namespace ringmail::auth
