// queue/envelope.h QueueId: 13 Crockford base32 characters, unique, monotonic, and
// sorting the text sorts by value (DESIGN: "short, unique, sortable by arrival").
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "queue/envelope.h"

namespace ringmail::queue {
namespace {

TEST(QueueId, KnownValues) {
  EXPECT_EQ(QueueId{0}.str(), "0000000000000");
  EXPECT_EQ(QueueId{1}.str(), "0000000000001");
  EXPECT_EQ(QueueId{31}.str(), "000000000000Z");
  EXPECT_EQ(QueueId{32}.str(), "0000000000010");
  EXPECT_EQ(QueueId{UINT64_MAX}.str(), "FZZZZZZZZZZZZ");
  EXPECT_EQ(QueueId{1ULL << 63}.str(), "8000000000000");
  // Crockford's alphabet has no I, L, O or U.
  std::string all;
  for (uint64_t v = 0; v < 32; ++v) all += QueueId{v}.str().back();
  EXPECT_EQ(all, "0123456789ABCDEFGHJKMNPQRSTVWXYZ");
}

TEST(QueueId, StrParseRoundTrip) {
  std::mt19937_64 rng(1234);
  std::vector<uint64_t> vals = {0,    1,          31,         32,         1023,
                                1024, UINT32_MAX, 1ULL << 63, UINT64_MAX, UINT64_MAX - 1};
  for (int i = 0; i < 2000; ++i) vals.push_back(rng() >> (rng() % 64));
  for (uint64_t v : vals) {
    std::string s = QueueId{v}.str();
    ASSERT_EQ(s.size(), 13u);
    auto p = QueueId::parse(s);
    ASSERT_TRUE(p.has_value()) << s;
    EXPECT_EQ(p->value, v) << s;
  }
}

TEST(QueueId, ParseIsCaseInsensitive) {
  auto p = QueueId::parse("fzzzzzzzzzzzz");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->value, UINT64_MAX);
  auto q = QueueId::parse("0000000000abc");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q, QueueId::parse("0000000000ABC"));
}

TEST(QueueId, BadInput) {
  for (std::string_view s :
       {std::string_view(""), std::string_view("000000000000"), std::string_view("00000000000000"),
        std::string_view("G000000000000"), std::string_view("Z000000000000"),
        std::string_view("000000000000U"), std::string_view("000000000000I"),
        std::string_view("000000000000L"), std::string_view("000000000000O"),
        std::string_view("00000000000-0"), std::string_view("0000000000 00"),
        std::string_view(" 000000000000"), std::string_view("000000000000\0", 13),
        std::string_view("00000000000\xc3\xa9")})
    EXPECT_FALSE(QueueId::parse(s).has_value()) << s;
}

TEST(QueueId, TextOrderIsNumericOrder) {
  std::mt19937_64 rng(42);
  std::vector<uint64_t> vals;
  for (int i = 0; i < 3000; ++i) vals.push_back(rng() >> (rng() % 64));
  vals.push_back(0);
  vals.push_back(UINT64_MAX);
  std::vector<std::string> texts;
  for (uint64_t v : vals) texts.push_back(QueueId{v}.str());
  std::sort(vals.begin(), vals.end());
  std::sort(texts.begin(), texts.end());
  ASSERT_EQ(vals.size(), texts.size());
  for (size_t i = 0; i < vals.size(); ++i) EXPECT_EQ(QueueId::parse(texts[i])->value, vals[i]);
  EXPECT_LT(QueueId{5}, QueueId{6});
  EXPECT_EQ(QueueId{7}, QueueId{7});
}

TEST(QueueId, NextIsMonotonicAndUnique) {
  QueueId prev = next_queue_id();
  for (int i = 0; i < 100000; ++i) {
    QueueId id = next_queue_id();
    ASSERT_GT(id.value, prev.value);
    ASSERT_LT(prev.str(), id.str());
    prev = id;
  }
}

TEST(QueueId, NextCarriesTheArrivalTime) {
  auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  QueueId id = next_queue_id();
  // time in microseconds << 4: never earlier than the clock (ids only run ahead of it).
  EXPECT_GE(id.value >> 4, static_cast<uint64_t>(now_us));
}

TEST(QueueId, UniqueAcrossThreads) {
  constexpr int kThreads = 8, kEach = 20000;
  std::vector<std::vector<uint64_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&got, t] {
      got[t].reserve(kEach);
      for (int i = 0; i < kEach; ++i) got[t].push_back(next_queue_id().value);
    });
  for (auto& th : threads) th.join();
  std::set<uint64_t> all;
  for (auto& v : got) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), size_t{kThreads} * kEach);
}

TEST(QueueId, FloorKeepsIdsIncreasing) {
  // As after a restart with a clock that stepped back: the stored maximum is ahead.
  uint64_t floor = next_queue_id().value + (uint64_t{5000} << 4);
  raise_queue_id_floor(floor);
  EXPECT_GT(next_queue_id().value, floor);
  // Lowering is a no-op.
  raise_queue_id_floor(1);
  EXPECT_GT(next_queue_id().value, floor);
}

TEST(QueueId, StateNames) {
  EXPECT_EQ(state_name(RcptState::queued), "queued");
  EXPECT_EQ(state_name(RcptState::inflight), "in-flight");
  EXPECT_EQ(state_name(RcptState::deferred), "deferred");
  EXPECT_EQ(state_name(RcptState::delivered), "delivered");
  EXPECT_EQ(state_name(RcptState::bounced), "bounced");
  EXPECT_EQ(state_name(RcptState::expired), "expired");
}

}  // namespace
}  // namespace ringmail::queue
