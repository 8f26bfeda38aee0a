// mta/store/mail_store.h (LmdbMailStore) on a temporary directory: UIDs per account,
// listing and reading back, quota, reopening, the map limit, concurrent delivery.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mta/store/mail_store.h"
#include "tests/support/temp_dir.h"

namespace ringmail::store {
namespace {

using TempDir = ringmail::testing::TempDir;

constexpr int64_t kNow = 1700000000;

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class LmdbMailStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open(uint64_t max_map = 64ULL << 30) {
    store_.reset();
    auto s = LmdbMailStore::open(dir(), max_map);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).value();
  }

  std::string dir() const { return tmp_.path() + "/mail"; }

  uint32_t deliver(std::string_view account, std::string_view msg, uint64_t quota = 0,
                   int64_t now = kNow) {
    auto r = store_->deliver(account, msg, quota, now);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? r.value() : 0;
  }

  std::vector<MessageInfo> list(std::string_view account) {
    auto r = store_->list(account);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? r.value() : std::vector<MessageInfo>{};
  }

  std::vector<uint32_t> uids(std::string_view account) {
    std::vector<uint32_t> out;
    for (const auto& m : list(account)) out.push_back(m.uid);
    return out;
  }

  std::string read(std::string_view account, uint32_t uid) {
    auto r = store_->read(account, uid);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? r.value() : "";
  }

  TempDir tmp_{"ringmail-mailstore"};
  std::unique_ptr<LmdbMailStore> store_;
};

TEST_F(LmdbMailStoreTest, UidsIncreaseFromOne) {
  for (uint32_t i = 1; i <= 5; ++i) EXPECT_EQ(deliver("bob", "msg " + std::to_string(i)), i);
  EXPECT_EQ(uids("bob"), (std::vector<uint32_t>{1, 2, 3, 4, 5}));
}

TEST_F(LmdbMailStoreTest, AccountsAreSeparate) {
  EXPECT_EQ(deliver("bob", "to bob 1"), 1u);
  EXPECT_EQ(deliver("bob", "to bob 2"), 2u);
  EXPECT_EQ(deliver("bobby", "to bobby 1"), 1u);  // a longer name with the same start
  EXPECT_EQ(deliver("bo", "to bo 1"), 1u);
  EXPECT_EQ(deliver("alice", "to alice 1"), 1u);
  // Same length and adjacent in key order: a listing must stop at its own prefix.
  EXPECT_EQ(deliver("boc", "to boc 1"), 1u);
  EXPECT_EQ(deliver("bod", "to bod 1"), 1u);
  EXPECT_EQ(deliver("bob", "to bob 3"), 3u);
  EXPECT_EQ(uids("bob"), (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(uids("bobby"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(uids("bo"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(uids("alice"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(uids("boc"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(uids("bod"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(read("bob", 1), "to bob 1");
  EXPECT_EQ(read("boc", 1), "to boc 1");
  EXPECT_EQ(read("bobby", 1), "to bobby 1");
  EXPECT_EQ(read("bo", 1), "to bo 1");
  EXPECT_EQ(read("alice", 1), "to alice 1");
  auto r = store_->read("alice", 2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 404);
  EXPECT_TRUE(list("carol").empty());
}

TEST_F(LmdbMailStoreTest, ListGivesUidSizeAndDateInUidOrder) {
  // More than 256 messages: UIDs past one byte still list in numeric order.
  std::vector<std::string> msgs;
  for (uint32_t i = 1; i <= 257; ++i) {
    msgs.push_back(std::string(i % 17 + 1, 'x') + std::to_string(i));
    ASSERT_EQ(deliver("bob", msgs.back(), 0, kNow + i * 10), i);
  }
  auto l = list("bob");
  ASSERT_EQ(l.size(), 257u);
  for (uint32_t i = 1; i <= 257; ++i) {
    EXPECT_EQ(l[i - 1].uid, i);
    EXPECT_EQ(l[i - 1].size, msgs[i - 1].size()) << i;
    EXPECT_EQ(l[i - 1].internal_date, kNow + i * 10) << i;
  }
}

TEST_F(LmdbMailStoreTest, ReadReturnsTheExactBytes) {
  std::string every_byte;
  for (int c = 0; c < 256; ++c) every_byte.push_back(static_cast<char>(c));
  const std::string bin = random_bytes(100000, 7);
  const std::string crlf = "Subject: x\r\n\r\nbody\r\n.\r\n";
  EXPECT_EQ(deliver("bob", every_byte), 1u);
  EXPECT_EQ(deliver("bob", ""), 2u);
  EXPECT_EQ(deliver("bob", bin), 3u);
  EXPECT_EQ(deliver("bob", crlf), 4u);
  EXPECT_EQ(deliver("bob", std::string(1, '\0')), 5u);
  EXPECT_EQ(read("bob", 1), every_byte);
  auto empty = store_->read("bob", 2);
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_EQ(empty.value(), "");
  EXPECT_EQ(read("bob", 3), bin);
  EXPECT_EQ(read("bob", 4), crlf);
  EXPECT_EQ(read("bob", 5), std::string(1, '\0'));
  auto l = list("bob");
  ASSERT_EQ(l.size(), 5u);
  EXPECT_EQ(l[0].size, 256u);
  EXPECT_EQ(l[1].size, 0u);
  EXPECT_EQ(l[2].size, bin.size());
  EXPECT_EQ(l[4].size, 1u);
}

TEST_F(LmdbMailStoreTest, UnknownUidIs404) {
  EXPECT_EQ(deliver("bob", "one"), 1u);
  for (uint32_t uid : {0u, 2u, 256u, UINT32_MAX}) {
    auto r = store_->read("bob", uid);
    ASSERT_FALSE(r.ok()) << uid;
    EXPECT_EQ(r.error().code, 404) << uid;
  }
  auto r = store_->read("nobody", 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 404);
}

TEST_F(LmdbMailStoreTest, OverQuotaIs452AndChangesNothing) {
  EXPECT_EQ(deliver("bob", std::string(60, 'a'), 100), 1u);
  auto r = store_->deliver("bob", std::string(41, 'b'), 100, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 452);
  EXPECT_EQ(uids("bob"), (std::vector<uint32_t>{1}));
  // The refused message took no UID and no bytes: exactly up to the quota still fits.
  EXPECT_EQ(deliver("bob", std::string(40, 'c'), 100), 2u);
  EXPECT_EQ(uids("bob"), (std::vector<uint32_t>{1, 2}));
  r = store_->deliver("bob", "d", 100, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 452);
  // Quota is per account.
  EXPECT_EQ(deliver("alice", std::string(100, 'e'), 100), 1u);
  // A message alone bigger than the quota, into an empty mailbox.
  r = store_->deliver("carol", std::string(101, 'f'), 100, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 452);
  EXPECT_TRUE(list("carol").empty());
  EXPECT_EQ(deliver("carol", "g", 100), 1u);  // its first UID is still 1
}

TEST_F(LmdbMailStoreTest, QuotaZeroIsUnlimited) {
  for (uint32_t i = 1; i <= 5; ++i) EXPECT_EQ(deliver("bob", std::string(10000, 'z'), 0), i);
  // A quota given later counts what is already there.
  auto r = store_->deliver("bob", "x", 50000, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 452);
  EXPECT_EQ(deliver("bob", "x", 0), 6u);
}

TEST_F(LmdbMailStoreTest, ReopenKeepsUidsAndContinues) {
  EXPECT_EQ(deliver("bob", "one"), 1u);
  EXPECT_EQ(deliver("bob", "two"), 2u);
  EXPECT_EQ(deliver("alice", "a-one"), 1u);
  store_.reset();
  open();
  EXPECT_EQ(uids("bob"), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(read("bob", 2), "two");
  EXPECT_EQ(deliver("bob", "three"), 3u);
  EXPECT_EQ(deliver("alice", "a-two"), 2u);
  EXPECT_EQ(read("bob", 3), "three");
  EXPECT_EQ(uids("alice"), (std::vector<uint32_t>{1, 2}));
}

TEST_F(LmdbMailStoreTest, QuotaSurvivesReopen) {
  EXPECT_EQ(deliver("bob", std::string(90, 'a'), 100), 1u);
  open();
  auto r = store_->deliver("bob", std::string(11, 'b'), 100, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 452);
}

TEST_F(LmdbMailStoreTest, MessageLargerThanTheMapLimitFailsCleanly) {
  open(2 << 20);
  EXPECT_EQ(deliver("bob", "small"), 1u);
  auto r = store_->deliver("bob", random_bytes(4 << 20, 3), 0, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().code, 452);  // a local failure, not the user's quota
  EXPECT_NE(r.error().code, 0);
  // The store is still usable and the failed message left no trace.
  EXPECT_EQ(uids("bob"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(deliver("bob", "after"), 2u);
  EXPECT_EQ(read("bob", 1), "small");
  EXPECT_EQ(read("bob", 2), "after");
}

TEST_F(LmdbMailStoreTest, ConcurrentDeliveriesGetDistinctUids) {
  constexpr int kThreads = 4, kPer = 50;
  std::vector<std::vector<uint32_t>> got(kThreads);
  std::vector<std::vector<std::string>> bodies(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        std::string body = "thread " + std::to_string(t) + " message " + std::to_string(i);
        auto r = store_->deliver("shared", body, 0, kNow);
        if (r.ok()) {
          got[t].push_back(r.value());
          bodies[t].push_back(body);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint32_t> all;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(got[t].size(), static_cast<size_t>(kPer)) << "thread " << t;
    // One thread's deliveries come in order, so its UIDs increase.
    EXPECT_TRUE(std::is_sorted(got[t].begin(), got[t].end()));
    all.insert(got[t].begin(), got[t].end());
  }
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kPer));
  EXPECT_EQ(*all.begin(), 1u);
  EXPECT_EQ(*all.rbegin(), static_cast<uint32_t>(kThreads * kPer));
  EXPECT_EQ(list("shared").size(), static_cast<size_t>(kThreads * kPer));
  // Each UID holds the message its delivery reported.
  for (int t = 0; t < kThreads; ++t)
    for (size_t i = 0; i < got[t].size(); ++i) EXPECT_EQ(read("shared", got[t][i]), bodies[t][i]);
}

}  // namespace
}  // namespace ringmail::store
