// queue/committer.h: group commit from many threads; every request is answered exactly
// once; a queue that cannot grow answers 452 and keeps working.
#include "queue/committer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/latch.h"
#include "tests/support/temp_dir.h"

namespace ringmail::queue {
namespace {

using TempDir = ringmail::testing::TempDir;

using Latch = ringmail::testing::Latch;

class Request final : public EnqueueRequest {
 public:
  Request(Latch& latch, uint64_t id, size_t body_size) : latch_(latch) {
    this->id = QueueId{id};
    envelope.sender = "sender@example.org";
    envelope.arrival_us = 1700000000000000 + static_cast<int64_t>(id);
    envelope.body_size = body_size;
    Recipient r;
    r.address = "rcpt" + std::to_string(id) + "@example.test";
    envelope.recipients.push_back(r);
    body.assign(body_size, static_cast<char>('a' + id % 26));
  }
  ~Request() = default;
  void on_done() override {
    calls.fetch_add(1);
    thread = std::this_thread::get_id();
    latch_.add();
  }
  std::atomic<int> calls{0};
  std::thread::id thread;

 private:
  Latch& latch_;
};

std::unique_ptr<Store> open_store(const std::string& dir, uint64_t initial, uint64_t max) {
  Store::Options o;
  o.dir = dir;
  o.initial_map_size = initial;
  o.max_map_size = max;
  auto s = Store::open(o);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return s.ok() ? std::move(s).value() : nullptr;
}

size_t stored_count(Store& store) {
  size_t n = 0;
  EXPECT_TRUE(store.for_each([&](QueueId, const Envelope&) { return ++n, true; }).ok());
  return n;
}

TEST(Committer, ManyThreadsEveryRequestAnsweredOnceAndStored) {
  TempDir dir;
  auto store = open_store(dir.path() + "/queue", 64ULL << 20, 1ULL << 30);
  ASSERT_TRUE(store);
  constexpr int kThreads = 8, kEach = 150;
  constexpr int kTotal = kThreads * kEach;
  Latch latch;
  std::vector<std::unique_ptr<Request>> reqs;
  for (int i = 0; i < kTotal; ++i)
    reqs.push_back(std::make_unique<Request>(latch, 1000 + static_cast<uint64_t>(i), 1024));
  {
    Committer committer(*store);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i)
          committer.submit(reqs[static_cast<size_t>(t * kEach + i)].get());
      });
    for (auto& th : threads) th.join();
    ASSERT_TRUE(latch.wait_for(kTotal, std::chrono::seconds(120)))
        << "only " << latch.count() << " of " << kTotal << " answered";

    CommitStats st = committer.stats();
    EXPECT_EQ(st.messages, uint64_t{kTotal});
    EXPECT_EQ(st.bytes, uint64_t{kTotal} * 1024);
    EXPECT_EQ(st.failed, 0u);
    EXPECT_GE(st.batches, 1u);
    EXPECT_LE(st.batches, uint64_t{kTotal});
    EXPECT_GE(st.max_batch, 1u);
    EXPECT_LE(st.max_batch, uint64_t{kTotal});
    uint64_t hist_total = 0;
    for (uint64_t h : st.hist) hist_total += h;
    EXPECT_EQ(hist_total, st.batches);
    std::string sum = st.summary();
    EXPECT_NE(sum.find("messages=" + std::to_string(kTotal)), std::string::npos) << sum;
    EXPECT_NE(sum.find("failed=0"), std::string::npos) << sum;
    committer.stop();
  }
  std::thread::id committer_thread = reqs[0]->thread;
  for (auto& r : reqs) {
    EXPECT_EQ(r->calls.load(), 1) << r->id.str();
    EXPECT_TRUE(r->status.ok()) << r->id.str() << ": " << r->status.error().message;
    EXPECT_EQ(r->thread, committer_thread);
  }
  EXPECT_NE(committer_thread, std::this_thread::get_id());
  EXPECT_EQ(stored_count(*store), size_t{kTotal});
  for (size_t i : {size_t{0}, size_t{517}, size_t{kTotal - 1}}) {
    auto l = store->load(reqs[i]->id);
    ASSERT_TRUE(l.ok());
    EXPECT_EQ(l->recipients.at(0).address, reqs[i]->envelope.recipients[0].address);
    std::string body;
    ASSERT_TRUE(store->read_body(reqs[i]->id, [&](std::string_view p) { body.append(p); }).ok());
    EXPECT_EQ(body, reqs[i]->body);
  }
}

TEST(Committer, StopFinishesEverythingSubmitted) {
  TempDir dir;
  auto store = open_store(dir.path() + "/queue", 64ULL << 20, 1ULL << 30);
  ASSERT_TRUE(store);
  Latch latch;
  std::vector<std::unique_ptr<Request>> reqs;
  for (int i = 0; i < 300; ++i)
    reqs.push_back(std::make_unique<Request>(latch, 1 + static_cast<uint64_t>(i), 100));
  Committer committer(*store);
  for (auto& r : reqs) committer.submit(r.get());
  committer.stop();
  EXPECT_EQ(latch.count(), 300);
  for (auto& r : reqs) {
    EXPECT_EQ(r->calls.load(), 1);
    EXPECT_TRUE(r->status.ok());
  }
  EXPECT_EQ(committer.stats().messages, 300u);
  committer.stop();  // twice is harmless
  EXPECT_EQ(stored_count(*store), 300u);
}

TEST(Committer, DuplicateIdFailsAloneWith451) {
  TempDir dir;
  auto store = open_store(dir.path() + "/queue", 64ULL << 20, 1ULL << 30);
  ASSERT_TRUE(store);
  Latch latch;
  Request a(latch, 5, 10), dup(latch, 5, 10), b(latch, 6, 10);
  Committer committer(*store);
  committer.submit(&a);
  committer.submit(&dup);
  committer.submit(&b);
  committer.stop();
  EXPECT_TRUE(a.status.ok());
  EXPECT_TRUE(b.status.ok());
  ASSERT_FALSE(dup.status.ok());
  EXPECT_EQ(dup.status.error().code, 451);
  EXPECT_EQ(a.calls.load() + dup.calls.load() + b.calls.load(), 3);
  EXPECT_EQ(committer.stats().failed, 1u);
  EXPECT_EQ(committer.stats().messages, 2u);
  EXPECT_EQ(stored_count(*store), 2u);
}

TEST(Committer, GrowsTheMapWhenNeeded) {
  TempDir dir;
  auto store = open_store(dir.path() + "/queue", 256 * 1024, 256ULL << 20);
  ASSERT_TRUE(store);
  uint64_t start = store->map_size();
  Latch latch;
  std::vector<std::unique_ptr<Request>> reqs;
  for (int i = 0; i < 40; ++i)
    reqs.push_back(std::make_unique<Request>(latch, 1 + static_cast<uint64_t>(i), 100 * 1024));
  Committer committer(*store);
  for (auto& r : reqs) committer.submit(r.get());
  ASSERT_TRUE(latch.wait_for(40, std::chrono::seconds(60)));
  committer.stop();
  for (auto& r : reqs) {
    EXPECT_EQ(r->calls.load(), 1);
    EXPECT_TRUE(r->status.ok()) << r->status.error().message;
  }
  EXPECT_GT(store->map_size(), start);
  EXPECT_EQ(stored_count(*store), 40u);
}

TEST(Committer, MapThatCannotGrowAnswers452) {
  TempDir dir;
  auto store = open_store(dir.path() + "/queue", 256 * 1024, 256 * 1024);
  ASSERT_TRUE(store);
  Latch latch;
  Request big(latch, 1, 1 << 20);  // can never fit
  Request small(latch, 2, 1000);
  Committer committer(*store);
  committer.submit(&big);
  ASSERT_TRUE(latch.wait_for(1, std::chrono::seconds(30)));
  EXPECT_EQ(big.calls.load(), 1);
  ASSERT_FALSE(big.status.ok());
  EXPECT_EQ(big.status.error().code, 452);
  EXPECT_EQ(big.status.error().message.substr(0, 6), "4.3.1 ");
  // The queue still works for what fits.
  committer.submit(&small);
  ASSERT_TRUE(latch.wait_for(2, std::chrono::seconds(30)));
  EXPECT_TRUE(small.status.ok()) << small.status.error().message;

  // Big and small in one batch: the big one fails alone.
  Request big2(latch, 3, 1 << 20), small2(latch, 4, 500), small3(latch, 5, 500);
  committer.submit(&small2);
  committer.submit(&big2);
  committer.submit(&small3);
  committer.stop();
  EXPECT_EQ(latch.count(), 5);
  ASSERT_FALSE(big2.status.ok());
  EXPECT_EQ(big2.status.error().code, 452);
  EXPECT_TRUE(small2.status.ok()) << small2.status.error().message;
  EXPECT_TRUE(small3.status.ok()) << small3.status.error().message;
  for (Request* r : {&big, &small, &big2, &small2, &small3}) EXPECT_EQ(r->calls.load(), 1);
  CommitStats st = committer.stats();
  EXPECT_EQ(st.failed, 2u);
  EXPECT_EQ(st.messages, 3u);
  EXPECT_FALSE(store->load(QueueId{1}).ok());
  EXPECT_FALSE(store->load(QueueId{3}).ok());
  EXPECT_TRUE(store->load(QueueId{4}).ok());
  EXPECT_EQ(stored_count(*store), 3u);
}

TEST(Committer, BigBurstIsSplitIntoBoundedBatches) {
  TempDir dir;
  auto store = open_store(dir.path() + "/queue", 256ULL << 20, 1ULL << 30);
  ASSERT_TRUE(store);
  // Small bounds keep this quick under ASan, where every LMDB child transaction costs a
  // 2 MiB allocation the sanitizer maps and unmaps (6,000 of them took minutes).
  constexpr int kTotal = 300;
  Latch latch;
  std::vector<std::unique_ptr<Request>> reqs;
  for (int i = 0; i < kTotal; ++i)
    reqs.push_back(std::make_unique<Request>(latch, 1 + static_cast<uint64_t>(i), 64));
  Committer committer(*store, Committer::Limits{64, 64u << 20});
  for (auto& r : reqs) committer.submit(r.get());
  ASSERT_TRUE(latch.wait_for(kTotal, std::chrono::seconds(120)));
  committer.stop();
  CommitStats st = committer.stats();
  EXPECT_EQ(st.messages, uint64_t{kTotal});
  EXPECT_LE(st.max_batch, 64u);
  EXPECT_GE(st.batches, 5u);
  for (auto& r : reqs) EXPECT_EQ(r->calls.load(), 1);
  EXPECT_EQ(stored_count(*store), size_t{kTotal});
}

TEST(CommitStats, Summary) {
  CommitStats s;
  EXPECT_EQ(s.summary(), "batches=0 messages=0 avg=0.0 max=0 failed=0 hist=none lmdb_commits=0");
  s.batches = 4;
  s.messages = 10;
  s.max_batch = 5;
  s.hist[0] = 1;
  s.hist[1] = 2;
  s.hist[2] = 1;
  s.lmdb_commits = 3;
  EXPECT_EQ(s.summary(),
            "batches=4 messages=10 avg=2.5 max=5 failed=0 hist=1:1,2-3:2,4-7:1 lmdb_commits=3");
}

}  // namespace
}  // namespace ringmail::queue
