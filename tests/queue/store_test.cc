// queue/store.h on a temporary directory: writes through begin_write/put_message/commit,
// then every read path, removal, crash recovery of in-flight recipients, map growth.
#include "queue/store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "queue/record.h"
#include "tests/support/temp_dir.h"

namespace ringmail::queue {
namespace {

using TempDir = ringmail::testing::TempDir;

Envelope envelope(std::string sender, std::vector<std::string> rcpts, int64_t arrival_us) {
  Envelope e;
  e.sender = std::move(sender);
  e.declared_size = 2048;
  e.body = BodyType::eight_bit_mime;
  e.ret = Ret::full;
  e.envid = "ENV1";
  e.client_address = "192.0.2.1";
  e.helo = "client.example";
  e.message_id = "<m@example>";
  e.arrival_us = arrival_us;
  for (auto& r : rcpts) {
    Recipient rc;
    rc.address = r;
    rc.orcpt = "rfc822;" + r;
    rc.notify = kNotifyFailure;
    e.recipients.push_back(std::move(rc));
  }
  return e;
}

std::string pattern_body(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open(uint64_t initial = 1ULL << 26, uint64_t max = 1ULL << 30,
            const std::string& sub = "queue") {
    store_.reset();
    Store::Options o;
    o.dir = dir_.path() + "/" + sub;
    o.initial_map_size = initial;
    o.max_map_size = max;
    auto s = Store::open(o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).value();
  }

  // One message in its own committed transaction. Returns the LMDB code.
  int put(QueueId id, const Envelope& env, std::string_view body) {
    MDB_txn* txn = nullptr;
    int rc = store_->begin_write(&txn);
    if (rc) return rc;
    Envelope e = env;
    e.body_size = body.size();
    rc = store_->put_message(txn, id, e, body);
    if (rc) {
      mdb_txn_abort(txn);
      return rc;
    }
    return mdb_txn_commit(txn);
  }

  std::string body_of(QueueId id, size_t* chunks = nullptr) {
    std::string out;
    size_t n = 0;
    auto s = store_->read_body(id, [&](std::string_view part) {
      out.append(part);
      ++n;
    });
    EXPECT_TRUE(s.ok());
    if (chunks) *chunks = n;
    return out;
  }

  std::vector<uint64_t> ids() {
    std::vector<uint64_t> v;
    auto s = store_->for_each([&](QueueId id, const Envelope&) {
      v.push_back(id.value);
      return true;
    });
    EXPECT_TRUE(s.ok());
    return v;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, EmptyStore) {
  EXPECT_EQ(store_->max_id(), 0u);
  EXPECT_TRUE(ids().empty());
  auto l = store_->load(QueueId{1});
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, ENOENT);
  auto r = store_->remove(QueueId{1});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(body_of(QueueId{1}), "");
  auto n = store_->requeue_inflight();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
}

TEST_F(StoreTest, PutAndLoad) {
  const int64_t arrival = 1700000000123456;
  Envelope e = envelope("alice@example.org", {"bob@example.test", "carol@example.test"}, arrival);
  std::string body = "Received: x\r\nSubject: hi\r\n\r\nhello\r\n";
  ASSERT_EQ(put(QueueId{100}, e, body), 0);

  auto l = store_->load(QueueId{100});
  ASSERT_TRUE(l.ok()) << l.error().message;
  EXPECT_EQ(l->sender, "alice@example.org");
  EXPECT_EQ(l->declared_size, 2048u);
  EXPECT_EQ(l->body, BodyType::eight_bit_mime);
  EXPECT_EQ(l->ret, Ret::full);
  EXPECT_EQ(l->envid, "ENV1");
  EXPECT_EQ(l->client_address, "192.0.2.1");
  EXPECT_EQ(l->helo, "client.example");
  EXPECT_EQ(l->message_id, "<m@example>");
  EXPECT_EQ(l->arrival_us, arrival);
  EXPECT_EQ(l->body_size, body.size());
  ASSERT_EQ(l->recipients.size(), 2u);
  EXPECT_EQ(l->recipients[0].address, "bob@example.test");
  EXPECT_EQ(l->recipients[1].address, "carol@example.test");
  EXPECT_EQ(l->recipients[1].orcpt, "rfc822;carol@example.test");
  EXPECT_EQ(l->recipients[0].notify, kNotifyFailure);
  EXPECT_EQ(l->recipients[0].state, RcptState::queued);
  // Due at arrival (whole seconds).
  EXPECT_EQ(l->recipients[0].next_attempt, arrival / 1000000);
  EXPECT_EQ(body_of(QueueId{100}), body);
  EXPECT_EQ(store_->max_id(), 100u);
}

TEST_F(StoreTest, NullSenderAndNoRecipients) {
  Envelope e = envelope("", {}, 1000000);
  ASSERT_EQ(put(QueueId{5}, e, "x"), 0);
  auto l = store_->load(QueueId{5});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->sender, "");
  EXPECT_TRUE(l->recipients.empty());
}

TEST_F(StoreTest, DuplicateIdIsRefused) {
  Envelope e = envelope("a@b", {"c@d"}, 1000000);
  ASSERT_EQ(put(QueueId{9}, e, "one"), 0);
  EXPECT_EQ(put(QueueId{9}, e, "two"), MDB_KEYEXIST);
  EXPECT_EQ(body_of(QueueId{9}), "one");
}

TEST_F(StoreTest, BodiesAreByteExactAcrossChunks) {
  const size_t kChunk = 64 * 1024;
  struct Case {
    uint64_t id;
    size_t size;
    size_t chunks;
  } cases[] = {
      {1, 0, 1},          {2, 1, 1},          {3, kChunk - 1, 1},      {4, kChunk, 1},
      {5, kChunk + 1, 2}, {6, 3 * kChunk, 3}, {7, 3 * kChunk + 17, 4}, {8, 1000000, 16},
  };
  for (const auto& c : cases) {
    Envelope e = envelope("s@x", {"r@y"}, 2000000);
    ASSERT_EQ(put(QueueId{c.id}, e, pattern_body(c.size, static_cast<uint32_t>(c.id))), 0) << c.id;
  }
  for (const auto& c : cases) {
    size_t chunks = 0;
    std::string got = body_of(QueueId{c.id}, &chunks);
    EXPECT_EQ(got.size(), c.size) << c.id;
    EXPECT_TRUE(got == pattern_body(c.size, static_cast<uint32_t>(c.id))) << c.id;
    EXPECT_EQ(chunks, c.chunks) << c.id;
  }
}

TEST_F(StoreTest, ReadBodyDoesNotRunIntoTheNextMessage) {
  // Adjacent ids, the first one's chunks right before the second's in key order.
  Envelope e = envelope("s@x", {"r@y"}, 2000000);
  std::string a = pattern_body(150000, 1), b = pattern_body(10, 2);
  ASSERT_EQ(put(QueueId{1000}, e, a), 0);
  ASSERT_EQ(put(QueueId{1001}, e, b), 0);
  ASSERT_EQ(put(QueueId{999}, e, "zz"), 0);
  EXPECT_TRUE(body_of(QueueId{1000}) == a);
  EXPECT_EQ(body_of(QueueId{1001}), b);
  EXPECT_EQ(body_of(QueueId{999}), "zz");
  EXPECT_EQ(body_of(QueueId{998}), "");
  EXPECT_EQ(body_of(QueueId{1002}), "");
}

TEST_F(StoreTest, SeveralMessagesInOneTransaction) {
  MDB_txn* txn = nullptr;
  ASSERT_EQ(store_->begin_write(&txn), 0);
  for (uint64_t id = 1; id <= 50; ++id) {
    Envelope e = envelope("s@x", {"r" + std::to_string(id) + "@y"}, 3000000);
    ASSERT_EQ(store_->put_message(txn, QueueId{id}, e, "body " + std::to_string(id)), 0);
  }
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  EXPECT_EQ(ids().size(), 50u);
  EXPECT_EQ(body_of(QueueId{37}), "body 37");
  EXPECT_EQ(store_->load(QueueId{37})->recipients[0].address, "r37@y");
}

TEST_F(StoreTest, AbortedTransactionLeavesNothing) {
  MDB_txn* txn = nullptr;
  ASSERT_EQ(store_->begin_write(&txn), 0);
  ASSERT_EQ(store_->put_message(txn, QueueId{77}, envelope("s@x", {"r@y"}, 1), "b"), 0);
  mdb_txn_abort(txn);
  EXPECT_FALSE(store_->load(QueueId{77}).ok());
  EXPECT_EQ(store_->max_id(), 0u);
  EXPECT_EQ(body_of(QueueId{77}), "");
}

TEST_F(StoreTest, ForEachIsInIdOrderAndCanStop) {
  std::vector<uint64_t> order = {500, 3, 70000, 1ULL << 40, 256, 255, 1, (1ULL << 63) + 5};
  for (uint64_t id : order)
    ASSERT_EQ(put(QueueId{id}, envelope("s@x", {"r@y", "q@y"}, 1000000), "b"), 0);
  std::vector<uint64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(ids(), sorted);
  EXPECT_EQ(store_->max_id(), (1ULL << 63) + 5);

  std::vector<uint64_t> first3;
  auto s = store_->for_each([&](QueueId id, const Envelope& env) {
    EXPECT_EQ(env.recipients.size(), 2u);
    EXPECT_EQ(env.recipients[1].address, "q@y");
    first3.push_back(id.value);
    return first3.size() < 3;
  });
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(first3, std::vector<uint64_t>(sorted.begin(), sorted.begin() + 3));
}

TEST_F(StoreTest, Remove) {
  for (uint64_t id : {10, 11, 12})
    ASSERT_EQ(put(QueueId{id}, envelope("s@x", {"a@y", "b@y"}, 1000000), pattern_body(200000, 3)),
              0);
  auto r = store_->remove(QueueId{11});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(*r);
  EXPECT_EQ(ids(), (std::vector<uint64_t>{10, 12}));
  EXPECT_FALSE(store_->load(QueueId{11}).ok());
  EXPECT_EQ(body_of(QueueId{11}), "");
  // Neighbours untouched.
  EXPECT_TRUE(body_of(QueueId{10}) == pattern_body(200000, 3));
  EXPECT_EQ(store_->load(QueueId{12})->recipients.size(), 2u);
  // Twice: not there any more.
  auto again = store_->remove(QueueId{11});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  // The last one: max_id follows.
  ASSERT_TRUE(store_->remove(QueueId{12}).ok());
  EXPECT_EQ(store_->max_id(), 10u);
  // Same id can be stored again after removal.
  EXPECT_EQ(put(QueueId{11}, envelope("s@x", {"c@y"}, 1000000), "new"), 0);
  EXPECT_EQ(body_of(QueueId{11}), "new");
  EXPECT_EQ(store_->load(QueueId{11})->recipients.size(), 1u);
}

TEST_F(StoreTest, RequeueInflight) {
  Envelope e = envelope("s@x", {"a@y", "b@y", "c@y"}, 1000000);
  e.recipients[0].state = RcptState::inflight;
  e.recipients[1].state = RcptState::delivered;
  e.recipients[2].state = RcptState::inflight;
  ASSERT_EQ(put(QueueId{1}, e, "b"), 0);
  Envelope e2 = envelope("s@x", {"d@y"}, 1000000);
  e2.recipients[0].state = RcptState::deferred;
  ASSERT_EQ(put(QueueId{2}, e2, "b"), 0);

  int64_t before = static_cast<int64_t>(std::time(nullptr));
  auto n = store_->requeue_inflight();
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(*n, 2u);
  auto l = store_->load(QueueId{1});
  ASSERT_TRUE(l.ok()) << l.error().message;
  EXPECT_EQ(l->recipients[0].state, RcptState::queued);
  EXPECT_EQ(l->recipients[1].state, RcptState::delivered);
  EXPECT_EQ(l->recipients[2].state, RcptState::queued);
  EXPECT_GE(l->recipients[0].next_attempt, before);
  EXPECT_EQ(l->recipients[1].next_attempt, 1);
  EXPECT_EQ(store_->load(QueueId{2})->recipients[0].state, RcptState::deferred);
  // Nothing left in flight.
  auto again = store_->requeue_inflight();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);
}

TEST_F(StoreTest, SurvivesReopen) {
  ASSERT_EQ(put(QueueId{42}, envelope("s@x", {"r@y"}, 5000000), pattern_body(70000, 9)), 0);
  open();
  EXPECT_EQ(store_->max_id(), 42u);
  EXPECT_TRUE(body_of(QueueId{42}) == pattern_body(70000, 9));
}

TEST_F(StoreTest, Events) {
  ASSERT_EQ(put(QueueId{7}, envelope("s@x", {"a@y", "b@y"}, 1700000000000001), "b"), 0);
  ASSERT_EQ(put(QueueId{8}, envelope("s@x", {"c@y"}, 1700000000000002), "b"), 0);
  std::vector<std::string> all, seven;
  ASSERT_TRUE(store_->for_each_event(0, [&](std::string_view j) { all.emplace_back(j); }).ok());
  ASSERT_TRUE(store_->for_each_event(7, [&](std::string_view j) { seven.emplace_back(j); }).ok());
  ASSERT_EQ(all.size(), 3u);
  ASSERT_EQ(seven.size(), 2u);
  EXPECT_NE(seven[0].find("\"event\":\"received\""), std::string::npos) << seven[0];
  EXPECT_NE(seven[0].find("\"recipient\":\"a@y\""), std::string::npos) << seven[0];
  EXPECT_NE(seven[1].find("\"recipient\":\"b@y\""), std::string::npos) << seven[1];
  EXPECT_NE(seven[0].find("\"queue_id\":\"" + QueueId{7}.str() + "\""), std::string::npos);
  EXPECT_NE(all[2].find("\"recipient\":\"c@y\""), std::string::npos);
  EXPECT_NE(all[0].find("\"time\":\"2023-11-14T22:13:20.000001Z\""), std::string::npos) << all[0];
}

TEST_F(StoreTest, PruneEventsDeletesOnlyOlderOnesInBoundedSteps) {
  // Ten messages, one event each, a second apart.
  for (uint64_t i = 0; i < 10; ++i)
    ASSERT_EQ(put(QueueId{100 + i}, envelope("s@x", {"a@y"}, 1700000000000000 + i * 1000000), "b"),
              0);
  auto prune = [&](int64_t before_us, size_t max) {
    MDB_txn* txn = nullptr;
    EXPECT_EQ(store_->begin_write(&txn), 0);
    int64_t n = store_->prune_events(txn, before_us, max);
    EXPECT_EQ(mdb_txn_commit(txn), 0);
    return n;
  };
  auto count = [&] {
    size_t n = 0;
    EXPECT_TRUE(store_->for_each_event(0, [&](std::string_view) { ++n; }).ok());
    return n;
  };
  // Older than the 4th event: three of them, but at most two per step.
  EXPECT_EQ(prune(1700000003000000, 2), 2);
  EXPECT_EQ(count(), 8u);
  EXPECT_EQ(prune(1700000003000000, 2), 1);
  EXPECT_EQ(count(), 7u);
  EXPECT_EQ(prune(1700000003000000, 2), 0);
  // The remaining ones are the newest, and the messages themselves are untouched.
  std::vector<std::string> left;
  ASSERT_TRUE(store_->for_each_event(0, [&](std::string_view j) { left.emplace_back(j); }).ok());
  EXPECT_NE(left.front().find(QueueId{103}.str()), std::string::npos) << left.front();
  EXPECT_EQ(ids().size(), 10u);
  EXPECT_EQ(prune(INT64_MAX / 2, 100), 7);
  EXPECT_EQ(count(), 0u);
}

// Entries of one sub-database that belong to `id` (keys start with the id, or for
// "sched" carry it after the time).
size_t entries_for(Store& store, const char* db, uint64_t id) {
  MDB_txn* txn = nullptr;
  EXPECT_EQ(mdb_txn_begin(store.env(), nullptr, MDB_RDONLY, &txn), 0);
  MDB_dbi dbi;
  EXPECT_EQ(mdb_dbi_open(txn, db, 0, &dbi), 0);
  MDB_cursor* c = nullptr;
  EXPECT_EQ(mdb_cursor_open(txn, dbi, &c), 0);
  size_t n = 0;
  MDB_val k, v;
  bool sched = std::string_view(db) == "sched";
  for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    std::string_view key(static_cast<const char*>(k.mv_data), k.mv_size);
    if (read_be64(key, sched ? 8 : 0) == id) ++n;
  }
  mdb_cursor_close(c);
  mdb_txn_abort(txn);
  return n;
}

TEST_F(StoreTest, ScheduleIndexFollowsPutRequeueAndRemove) {
  Envelope e = envelope("s@x", {"a@y", "b@y", "c@y"}, 1000000);
  e.recipients[0].state = RcptState::inflight;
  e.recipients[2].state = RcptState::inflight;
  ASSERT_EQ(put(QueueId{31}, e, pattern_body(140000, 4)), 0);
  EXPECT_EQ(entries_for(*store_, "sched", 31), 1u);
  EXPECT_EQ(entries_for(*store_, "rcpt", 31), 3u);
  EXPECT_EQ(entries_for(*store_, "body", 31), 3u);
  auto n = store_->requeue_inflight();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(entries_for(*store_, "rcpt", 31), 3u);
  // The requeued recipients are due now; the one left alone still has its own time.
  EXPECT_GE(entries_for(*store_, "sched", 31), 1u);
  auto r = store_->remove(QueueId{31});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  EXPECT_EQ(entries_for(*store_, "sched", 31), 0u);
  EXPECT_EQ(entries_for(*store_, "rcpt", 31), 0u);
  EXPECT_EQ(entries_for(*store_, "body", 31), 0u);
  EXPECT_EQ(entries_for(*store_, "msg", 31), 0u);
}

TEST(EventJson, EscapesStrings) {
  Envelope e;
  e.sender = "a\"b\\c\n\x01";
  e.message_id = "<x@y>";
  e.body_size = 12;
  std::string j = event_json("delivered", 1700000000000000, QueueId{1}, e, nullptr);
  EXPECT_EQ(j,
            "{\"time\":\"2023-11-14T22:13:20.000000Z\",\"event\":\"delivered\",\"queue_id\":"
            "\"0000000000001\",\"message_id\":\"<x@y>\",\"sender\":\"a\\\"b\\\\c\\n\\u0001\","
            "\"client\":\"\",\"size\":12}");
}

TEST_F(StoreTest, MapGrowsOnDemand) {
  // A map too small for one 1 MiB body: the write fails with MDB_MAP_FULL, and after
  // grow_map() (no transaction open) the same write fits.
  open(/*initial=*/256 * 1024, /*max=*/64ULL << 20, "small");
  uint64_t start = store_->map_size();
  EXPECT_LE(start, 256u * 1024);
  std::string body = pattern_body(1 << 20, 5);
  Envelope e = envelope("s@x", {"r@y"}, 1000000);
  int rc = put(QueueId{1}, e, body);
  EXPECT_EQ(rc, MDB_MAP_FULL);
  int grows = 0;
  while (rc == MDB_MAP_FULL && grows < 20) {
    ASSERT_TRUE(store_->grow_map());
    ++grows;
    rc = put(QueueId{1}, e, body);
  }
  ASSERT_EQ(rc, 0) << lmdb_error(rc);
  EXPECT_GT(grows, 0);
  EXPECT_GT(store_->map_size(), start);
  EXPECT_EQ(store_->map_size(), start << grows);
  EXPECT_TRUE(body_of(QueueId{1}) == body);
}

TEST_F(StoreTest, MapStopsGrowingAtMax) {
  open(/*initial=*/128 * 1024, /*max=*/512 * 1024, "tiny");
  int n = 0;
  while (store_->grow_map()) ++n;
  EXPECT_EQ(n, 2);
  EXPECT_EQ(store_->map_size(), 512u * 1024);
  EXPECT_FALSE(store_->grow_map());
  // A body bigger than the largest map never fits; small ones still do.
  EXPECT_EQ(put(QueueId{1}, envelope("s@x", {"r@y"}, 1), pattern_body(1 << 20, 1)), MDB_MAP_FULL);
  EXPECT_EQ(put(QueueId{2}, envelope("s@x", {"r@y"}, 1), "small"), 0);
  EXPECT_EQ(body_of(QueueId{2}), "small");
}

TEST_F(StoreTest, AFullQueueCanStillBeEmptied) {
  // Filled until nothing more fits at the maximum map: deleting must still work (it needs
  // a few fresh pages for its copy-on-write, and a full map has none), or a full queue
  // could never drain: neither delivery nor `ringctl queue delete` could free space.
  open(/*initial=*/1 << 20, /*max=*/1 << 20, "full");
  std::vector<QueueId> ids;
  uint64_t next = 1;
  size_t big = 0;
  // 3000-byte messages until one does not fit, then ever smaller ones: every last page.
  for (size_t size : {3000, 300, 30, 1}) {
    for (int n = 0; n < 5000; ++n, ++next) {
      int rc = put(QueueId{next}, envelope("s@x", {"r@y"}, static_cast<int64_t>(next)),
                   pattern_body(size, static_cast<uint32_t>(next)));
      if (rc == MDB_MAP_FULL) break;
      ASSERT_EQ(rc, 0) << lmdb_error(rc);
      ids.push_back(QueueId{next});
      if (size == 3000) ++big;
    }
  }
  ASSERT_GT(big, 10u);
  ASSERT_LT(ids.size(), 15000u) << "never filled";
  for (auto id : ids) {
    auto r = store_->remove(id);
    ASSERT_TRUE(r.ok()) << "message " << id.value << " of " << ids.size() << ": "
                        << r.error().message;
    EXPECT_TRUE(*r);
  }
  size_t left = 0;
  ASSERT_TRUE(store_->for_each([&](QueueId, const Envelope&) { return ++left, true; }).ok());
  EXPECT_EQ(left, 0u);
  // The space is used again (not all of it: LMDB's freelist keeps some pages).
  size_t again = 0;
  for (uint64_t i = 100000; i < 100000 + big; ++i, ++again)
    if (put(QueueId{i}, envelope("s@x", {"r@y"}, 1), pattern_body(3000, 1)) != 0) break;
  EXPECT_GE(again * 10, big * 8) << again << " of " << big;
}

TEST_F(StoreTest, OpenFailsCleanlyOnABadDirectory) {
  Store::Options o;
  o.dir = dir_.path() + "/file";
  {
    FILE* f = fopen(o.dir.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
  }
  auto s = Store::open(o);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace ringmail::queue
