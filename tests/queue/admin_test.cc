// queue/admin.h on a temporary store: flush reschedules only what it should, status finds
// messages by queue id, Message-ID and address (also after they left the queue), stats
// counts, the event JSON reader decodes what event_json writes. Also pins the Store
// behaviour admin relies on: update_recipients re-derives the schedule and deletes a
// message with nothing pending while keeping its events.
#include "queue/admin.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "queue/record.h"
#include "queue/store.h"
#include "tests/support/temp_dir.h"

namespace ringmail::queue {
namespace {

using TempDir = ringmail::testing::TempDir;

constexpr int64_t kNow = 1800000000;  // 2027-01-15T08:00:00Z, unix seconds

Envelope envelope(std::string sender, std::string message_id, std::vector<std::string> rcpts,
                  int64_t arrival_us) {
  Envelope e;
  e.sender = std::move(sender);
  e.client_address = "192.0.2.1";
  e.helo = "client.example";
  e.message_id = std::move(message_id);
  e.arrival_us = arrival_us;
  for (auto& r : rcpts) {
    Recipient rc;
    rc.address = r;
    e.recipients.push_back(std::move(rc));
  }
  return e;
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Store::Options o;
    o.dir = dir_.path() + "/queue";
    o.initial_map_size = 1ULL << 24;
    o.max_map_size = 1ULL << 28;
    auto s = Store::open(o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).value();
  }

  void put(QueueId id, Envelope e, std::string_view body = "Subject: x\r\n\r\nhi\r\n") {
    e.body_size = body.size();
    envs_[id.value] = e;
    MDB_txn* txn = nullptr;
    ASSERT_EQ(store_->begin_write(&txn), 0);
    ASSERT_EQ(store_->put_message(txn, id, e, body), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
  }

  // What a delivery attempt would write: new recipient records plus events.
  int update(QueueId id, const std::vector<std::pair<uint32_t, Recipient>>& changes,
             const std::vector<Store::Event>& events = {}) {
    MDB_txn* txn = nullptr;
    int rc = store_->begin_write(&txn);
    if (rc) return rc;
    rc = store_->update_recipients(txn, id, changes, events);
    if (rc) {
      mdb_txn_abort(txn);
      return rc;
    }
    return mdb_txn_commit(txn);
  }

  // A recipient record with a state and next attempt, as the scheduler would leave it.
  Recipient rcpt(QueueId id, uint32_t index, RcptState state, int64_t next, uint32_t attempts = 1) {
    auto env = store_->load(id);
    EXPECT_TRUE(env.ok());
    Recipient r = env->recipients.at(index);
    r.state = state;
    r.next_attempt = next;
    r.attempts = attempts;
    r.last_response = "451 4.3.0 try later";
    r.last_status = "4.3.0";
    r.last_mx = "mx.example.net";
    return r;
  }

  Store::Event event(QueueId id, uint32_t index, std::string_view name, int64_t time_us,
                     const EventDetail* d) {
    const Envelope& e = envs_.at(id.value);
    return {time_us, index, event_json(name, time_us, id, e, &e.recipients.at(index), d)};
  }

  std::vector<std::pair<int64_t, uint64_t>> due(int64_t now) {
    std::vector<std::pair<int64_t, uint64_t>> out;
    auto s = store_->for_each_due(now, [&](int64_t t, QueueId id) {
      out.emplace_back(t, id.value);
      return true;
    });
    EXPECT_TRUE(s.ok());
    return out;
  }

  size_t event_count(uint64_t id) {
    size_t n = 0;
    EXPECT_TRUE(store_->for_each_event(id, [&](std::string_view) { ++n; }).ok());
    return n;
  }

  // Writes a raw row into the events sub-database (a damaged or foreign record).
  void raw_event(int64_t time_us, uint64_t id, uint32_t index, std::string_view json) {
    MDB_txn* txn = nullptr;
    ASSERT_EQ(store_->begin_write(&txn), 0);
    std::string k = key_time_id(time_us, id) + key_id_index(0, index).substr(8);
    MDB_val key{k.size(), k.data()}, v{json.size(), const_cast<char*>(json.data())};
    ASSERT_EQ(mdb_put(txn, store_->dbis().events, &key, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::map<uint64_t, Envelope> envs_;
};

// --- the Store behaviour flush and status rely on ------------------------------------

TEST_F(AdminTest, StoreUpdateRecipientsRederivesTheSchedule) {
  const QueueId id{100};
  put(id, envelope("s@x.test", "<m@x>", {"a@y.test", "b@y.test"}, kNow * 1000000));
  EXPECT_EQ(due(kNow), (std::vector<std::pair<int64_t, uint64_t>>{{kNow, 100}}));

  ASSERT_EQ(update(id, {{0, rcpt(id, 0, RcptState::deferred, kNow + 100)},
                        {1, rcpt(id, 1, RcptState::deferred, kNow + 200)}}),
            0);
  EXPECT_TRUE(due(kNow + 99).empty()) << "the arrival entry must be gone";
  EXPECT_EQ(due(kNow + 100), (std::vector<std::pair<int64_t, uint64_t>>{{kNow + 100, 100}}));
  EXPECT_EQ(due(kNow + 200).size(), 2u);
  EXPECT_EQ(store_->next_due(), kNow + 100);

  // Both to the same time: one entry, not two, and none left at the old times.
  ASSERT_EQ(update(id, {{0, rcpt(id, 0, RcptState::deferred, kNow + 50)},
                        {1, rcpt(id, 1, RcptState::deferred, kNow + 50)}}),
            0);
  EXPECT_EQ(due(kNow + 1000), (std::vector<std::pair<int64_t, uint64_t>>{{kNow + 50, 100}}));
}

TEST_F(AdminTest, StoreDeletesAMessageWithNothingPendingButKeepsItsEvents) {
  const QueueId id{101};
  put(id, envelope("s@x.test", "<m@x>", {"a@y.test", "b@y.test"}, kNow * 1000000));
  EventDetail d{1, "mx.y.test", "192.0.2.9", 250, "2.0.0", "250 2.0.0 ok", 0, ""};
  ASSERT_EQ(update(id, {{0, rcpt(id, 0, RcptState::delivered, kNow)}},
                   {event(id, 0, "delivered", (kNow + 1) * 1000000, &d)}),
            0);
  EXPECT_TRUE(store_->load(id).ok()) << "b is still pending";
  ASSERT_EQ(update(id, {{1, rcpt(id, 1, RcptState::bounced, kNow)}},
                   {event(id, 1, "bounced", (kNow + 2) * 1000000, &d)}),
            0);
  auto gone = store_->load(id);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ENOENT);
  EXPECT_EQ(store_->next_due(), std::nullopt);
  EXPECT_EQ(event_count(id.value), 4u);                     // 2 received + delivered + bounced
  EXPECT_EQ(update(id, {{0, Recipient{}}}), MDB_NOTFOUND);  // gone: outcome dropped
}

// --- flush ----------------------------------------------------------------------------

TEST_F(AdminTest, FlushMovesFutureRecipientsToNowAndLeavesTheRestAlone) {
  const QueueId id{200};
  put(id, envelope("s@x.test", "<m@x>",
                   {"deferred@y.test", "earlier@y.test", "done@y.test", "busy@y.test",
                    "later@y.test", "queued-future@y.test"},
                   (kNow - 3600) * 1000000));
  ASSERT_EQ(update(id, {{0, rcpt(id, 0, RcptState::deferred, kNow + 600, 2)},
                        {1, rcpt(id, 1, RcptState::deferred, kNow - 10)},
                        {2, rcpt(id, 2, RcptState::delivered, kNow + 600)},
                        {3, rcpt(id, 3, RcptState::inflight, kNow + 600)},
                        {4, rcpt(id, 4, RcptState::deferred, kNow + 7200)},
                        {5, rcpt(id, 5, RcptState::queued, kNow + 30)}}),
            0);
  const size_t events_before = event_count(id.value);
  auto before = store_->load(id);
  ASSERT_TRUE(before.ok());

  auto r = flush(*store_, std::nullopt, kNow);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->recipients, 3u);
  EXPECT_EQ(r->messages, 1u);

  auto after = store_->load(id);
  ASSERT_TRUE(after.ok());
  const auto& a = after->recipients;
  EXPECT_EQ(a[0].next_attempt, kNow);
  EXPECT_EQ(a[0].state, RcptState::deferred);
  EXPECT_EQ(a[0].attempts, 2u);
  EXPECT_EQ(a[0].last_response, "451 4.3.0 try later");
  EXPECT_EQ(a[1].next_attempt, kNow - 10) << "already due: left alone";
  EXPECT_EQ(a[2].next_attempt, kNow + 600) << "final: left alone";
  EXPECT_EQ(a[2].state, RcptState::delivered);
  EXPECT_EQ(a[3].next_attempt, kNow + 600) << "in flight: left alone";
  EXPECT_EQ(a[4].next_attempt, kNow);
  EXPECT_EQ(a[5].next_attempt, kNow);
  EXPECT_EQ(a[5].state, RcptState::queued);

  // The schedule follows: everything pending is due by now, nothing later but in-flight.
  auto d = due(kNow);
  EXPECT_EQ(d, (std::vector<std::pair<int64_t, uint64_t>>{{kNow - 10, 200}, {kNow, 200}}));
  EXPECT_EQ(due(kNow + 100000).size(), 3u);  // + the in-flight one at kNow + 600
  EXPECT_EQ(event_count(id.value), events_before) << "flush adds no events";

  // A second flush finds nothing to do.
  auto again = flush(*store_, std::nullopt, kNow);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->recipients, 0u);
  EXPECT_EQ(again->messages, 0u);
}

TEST_F(AdminTest, FlushOfOneIdOnlyTouchesThatMessage) {
  const QueueId one{300}, two{301}, three{302};
  for (QueueId id : {one, two, three}) {
    put(id, envelope("s@x.test", "<m@x>", {"a@y.test", "b@y.test"}, kNow * 1000000));
    ASSERT_EQ(update(id, {{0, rcpt(id, 0, RcptState::deferred, kNow + 600)},
                          {1, rcpt(id, 1, RcptState::deferred, kNow + 900)}}),
              0);
  }
  auto r = flush(*store_, two, kNow + 1);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->recipients, 2u);
  EXPECT_EQ(r->messages, 1u);
  EXPECT_EQ(store_->load(two)->recipients[0].next_attempt, kNow + 1);
  EXPECT_EQ(store_->load(two)->recipients[1].next_attempt, kNow + 1);
  for (QueueId id : {one, three}) {
    EXPECT_EQ(store_->load(id)->recipients[0].next_attempt, kNow + 600);
    EXPECT_EQ(store_->load(id)->recipients[1].next_attempt, kNow + 900);
  }
  EXPECT_EQ(due(kNow + 1), (std::vector<std::pair<int64_t, uint64_t>>{{kNow + 1, 301}}));

  auto all = flush(*store_, std::nullopt, kNow + 2);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->recipients, 4u);
  EXPECT_EQ(all->messages, 2u);
}

TEST_F(AdminTest, FlushOfAnUnknownIdIsENOENT) {
  const QueueId id{400};
  put(id, envelope("s@x.test", "<m@x>", {"a@y.test"}, kNow * 1000000));
  ASSERT_EQ(update(id, {{0, rcpt(id, 0, RcptState::deferred, kNow + 600)}}), 0);
  auto r = flush(*store_, QueueId{401}, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOENT);
  EXPECT_NE(r.error().message.find(QueueId{401}.str()), std::string::npos) << r.error().message;
  EXPECT_EQ(store_->load(id)->recipients[0].next_attempt, kNow + 600);
}

TEST_F(AdminTest, FlushOfAnEmptyQueue) {
  auto r = flush(*store_, std::nullopt, kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->recipients, 0u);
  EXPECT_EQ(r->messages, 0u);
}

// --- status ---------------------------------------------------------------------------

class AdminStatusTest : public AdminTest {
 protected:
  void SetUp() override {
    AdminTest::SetUp();
    put(a_, envelope("Alice@Sender.Test", "<m1@sender.test>",
                     {"bob@example.test", "carol@example.test"}, (kNow - 100) * 1000000));
    put(b_, envelope("dave@sender.test", "m2@sender.test", {"BOB@Example.TEST"},
                     (kNow - 50) * 1000000));
    put(c_, envelope("", "<m3@dsn.test>", {"alice@sender.test"}, (kNow - 10) * 1000000));
    EventDetail d{1,       "mx.example.test",    "192.0.2.7", 451,
                  "4.3.0", "451 4.3.0 \"busy\"", kNow + 300,  ""};
    ASSERT_EQ(update(a_, {{0, rcpt(a_, 0, RcptState::deferred, kNow + 300)}},
                     {event(a_, 0, "deferred", (kNow - 90) * 1000000, &d)}),
              0);
  }
  const QueueId a_{0xA0000}, b_{0xB0000}, c_{0xC0000};  // "000000000M000"...
};

std::vector<std::string> event_names(const RecipientHistory& r) {
  std::vector<std::string> v;
  for (const auto& e : r.events) v.push_back(e.fields.event);
  return v;
}

std::vector<uint64_t> ids_of(const StatusResult& r) {
  std::vector<uint64_t> v;
  for (const auto& m : r.messages) v.push_back(m.id.value);
  return v;
}

TEST_F(AdminStatusTest, ByQueueId) {
  ASSERT_EQ(a_.str(), "000000000M000");
  for (std::string key : {a_.str(), std::string("000000000m000")}) {
    // Crockford base32 is case-insensitive: the lower-case form finds the same message.
    auto r = find_status(*store_, key);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->kind, MatchKind::queue_id) << key;
    ASSERT_EQ(ids_of(*r), std::vector<uint64_t>{a_.value}) << key;
  }
  auto r = find_status(*store_, a_.str());
  const MessageHistory& m = r->messages[0];
  EXPECT_TRUE(m.in_queue);
  EXPECT_EQ(m.sender, "Alice@Sender.Test");
  EXPECT_EQ(m.message_id, "<m1@sender.test>");
  EXPECT_EQ(m.client, "192.0.2.1");
  EXPECT_EQ(m.arrival, "2027-01-15T07:58:20.000000Z");
  ASSERT_EQ(m.recipients.size(), 2u);
  EXPECT_EQ(m.recipients[0].address, "bob@example.test");
  EXPECT_EQ(event_names(m.recipients[0]), (std::vector<std::string>{"received", "deferred"}));
  ASSERT_TRUE(m.recipients[0].current.has_value());
  EXPECT_EQ(m.recipients[0].current->state, RcptState::deferred);
  EXPECT_EQ(m.recipients[0].current->next_attempt, kNow + 300);
  const EventFields& f = m.recipients[0].events[1].fields;
  EXPECT_EQ(f.attempt, 1);
  EXPECT_TRUE(f.has_attempt);
  EXPECT_EQ(f.mx, "mx.example.test");
  EXPECT_EQ(f.address, "192.0.2.7");
  EXPECT_EQ(f.code, 451);
  EXPECT_EQ(f.status, "4.3.0");
  EXPECT_EQ(f.response, "451 4.3.0 \"busy\"");
  EXPECT_EQ(f.next_attempt, "2027-01-15T08:05:00Z");
  EXPECT_FALSE(m.recipients[0].events[0].fields.has_attempt);
  EXPECT_EQ(m.recipients[1].address, "carol@example.test");
  EXPECT_EQ(event_names(m.recipients[1]), std::vector<std::string>{"received"});

  // All events of the message in time order, across recipients (what --json prints).
  auto all = m.events();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].rcpt_index, 0u);
  EXPECT_EQ(all[1].rcpt_index, 1u);
  EXPECT_EQ(all[2].fields.event, "deferred");
}

TEST_F(AdminStatusTest, ByMessageIdWithAndWithoutBrackets) {
  for (std::string key : {"<m1@sender.test>", "m1@sender.test"}) {
    auto r = find_status(*store_, key);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->kind, MatchKind::message_id) << key;
    ASSERT_EQ(ids_of(*r), std::vector<uint64_t>{a_.value}) << key;
    EXPECT_EQ(r->messages[0].recipients.size(), 2u);
  }
  // Stored without brackets: found both ways too.
  for (std::string key : {"<m2@sender.test>", "m2@sender.test"}) {
    auto r = find_status(*store_, key);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->kind, MatchKind::message_id) << key;
    EXPECT_EQ(ids_of(*r), std::vector<uint64_t>{b_.value}) << key;
  }
  // Exact otherwise: case, extra brackets and partial ids do not match.
  for (std::string key :
       {"<M1@sender.test>", "<<m1@sender.test>>", "m1@sender", "<m1@sender.test", "", "<>"}) {
    auto r = find_status(*store_, key);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->kind, MatchKind::none) << key;
    EXPECT_TRUE(r->messages.empty()) << key;
  }
}

TEST_F(AdminStatusTest, ByAddressIgnoringCase) {
  // bob is a recipient of a_ (as bob@example.test) and b_ (as BOB@Example.TEST).
  for (std::string key : {"bob@example.test", "Bob@EXAMPLE.test", "<bob@example.test>"}) {
    auto r = find_status(*store_, key);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->kind, MatchKind::address) << key;
    ASSERT_EQ(ids_of(*r), (std::vector<uint64_t>{a_.value, b_.value})) << key;
    // Matched by a recipient: only that recipient, not carol.
    ASSERT_EQ(r->messages[0].recipients.size(), 1u) << key;
    EXPECT_EQ(r->messages[0].recipients[0].address, "bob@example.test");
    EXPECT_EQ(event_names(r->messages[0].recipients[0]),
              (std::vector<std::string>{"received", "deferred"}));
    ASSERT_EQ(r->messages[1].recipients.size(), 1u);
    EXPECT_EQ(r->messages[1].recipients[0].address, "BOB@Example.TEST");
  }
  // alice sent a_ (all its recipients shown) and receives c_ (the DSN-like message).
  auto r = find_status(*store_, "ALICE@sender.test");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, MatchKind::address);
  ASSERT_EQ(ids_of(*r), (std::vector<uint64_t>{a_.value, c_.value}));
  EXPECT_EQ(r->messages[0].recipients.size(), 2u);
  EXPECT_EQ(r->messages[1].sender, "");

  auto none = find_status(*store_, "nobody@example.test");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->kind, MatchKind::none);
  EXPECT_TRUE(none->messages.empty());
  // Part of an address is not the address.
  EXPECT_TRUE(find_status(*store_, "bob@example")->messages.empty());
  EXPECT_TRUE(find_status(*store_, "example.test")->messages.empty());
}

TEST_F(AdminStatusTest, KeysWithBytesThatJsonEscapesOrNonAscii) {
  // A quoted local part and a Message-ID with a quote and a backslash are escaped in the
  // stored JSON; UTF-8 is stored as is.
  const QueueId q{0xE0000}, u{0xF0000};
  put(q, envelope("\"a b\"@x.test", "<q\"uo\\te@x>", {"\"Tab\there\"@y.test"}, kNow * 1000000));
  put(u, envelope("s@x.test", "<u@x>",
                  {"J\xc3\xb6rg@B\xc3\xbc"
                   "cher.test"},
                  kNow * 1000000));
  for (std::string key :
       {"\"A B\"@X.test", "<q\"uo\\te@x>", "q\"uo\\te@x", "\"tab\there\"@Y.TEST"}) {
    auto r = find_status(*store_, key);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(ids_of(*r), std::vector<uint64_t>{q.value}) << key;
  }
  // ASCII case folding only: the UTF-8 bytes must be equal.
  auto r = find_status(*store_,
                       "j\xc3\xb6rg@b\xc3\xbc"
                       "cher.TEST");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ids_of(*r), std::vector<uint64_t>{u.value});
  EXPECT_TRUE(find_status(*store_,
                          "J\xc3\x96rg@B\xc3\xbc"
                          "cher.test")
                  ->messages.empty());
}

TEST_F(AdminStatusTest, AQueueIdWithoutAMessageFallsThrough) {
  auto r = find_status(*store_, QueueId{0xD0000}.str());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, MatchKind::none);
  EXPECT_TRUE(r->messages.empty());
}

TEST_F(AdminStatusTest, AMessageThatLeftTheQueueIsStillFoundByItsEvents) {
  EventDetail ok{2, "mx.example.test", "192.0.2.7", 250, "2.0.0", "250 2.0.0 queued", 0, ""};
  EventDetail bad{1,       "mx.example.test",        "192.0.2.7", 550,
                  "5.1.1", "550 5.1.1 no such user", 0,           "0000000000ZZZ"};
  ASSERT_EQ(update(a_,
                   {{0, rcpt(a_, 0, RcptState::delivered, kNow, 2)},
                    {1, rcpt(a_, 1, RcptState::bounced, kNow)}},
                   {event(a_, 0, "delivered", (kNow - 5) * 1000000, &ok),
                    event(a_, 1, "bounced", (kNow - 5) * 1000000, &bad)}),
            0);
  ASSERT_FALSE(store_->load(a_).ok());
  for (std::string key :
       {a_.str(), std::string("<m1@sender.test>"), std::string("carol@example.test")}) {
    auto r = find_status(*store_, key);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(ids_of(*r), std::vector<uint64_t>{a_.value}) << key;
    const MessageHistory& m = r->messages[0];
    EXPECT_FALSE(m.in_queue);
    EXPECT_EQ(m.sender, "Alice@Sender.Test");
    EXPECT_EQ(m.message_id, "<m1@sender.test>");
    EXPECT_EQ(m.arrival, "2027-01-15T07:58:20.000000Z");
    EXPECT_EQ(m.size, envs_.at(a_.value).body_size);
    for (const auto& rc : m.recipients) EXPECT_FALSE(rc.current.has_value());
  }
  auto r = find_status(*store_, a_.str());
  ASSERT_EQ(r->messages[0].recipients.size(), 2u);
  EXPECT_EQ(event_names(r->messages[0].recipients[0]),
            (std::vector<std::string>{"received", "deferred", "delivered"}));
  EXPECT_EQ(event_names(r->messages[0].recipients[1]),
            (std::vector<std::string>{"received", "bounced"}));
  EXPECT_EQ(r->messages[0].recipients[1].events[1].fields.dsn_queue_id, "0000000000ZZZ");
}

TEST_F(AdminStatusTest, ADamagedEventIsShownByQueueIdAndCountedByStats) {
  raw_event((kNow - 1) * 1000000, a_.value, 1, "{\"event\":\"delivered\",");
  auto r = find_status(*store_, a_.str());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& evs = r->messages[0].recipients[1].events;
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_FALSE(evs[1].parsed);
  EXPECT_EQ(evs[1].json, "{\"event\":\"delivered\",");
  auto st = queue_stats(*store_, kNow);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->events_all.at("unreadable"), 1u);
  EXPECT_EQ(st->events_all.count("delivered"), 0u);
}

// --- stats ----------------------------------------------------------------------------

TEST_F(AdminStatusTest, StatsCounts) {
  // An old message: its received events fall outside the last hour.
  const QueueId old{0x5000};
  put(old,
      envelope("s@x.test", "<old@x>", {"x@Other.Test", "y@weird@OTHER.test", "postmaster"},
               (kNow - 7200) * 1000000),
      std::string(1000, 'b'));
  ASSERT_EQ(update(old, {{0, rcpt(old, 0, RcptState::inflight, kNow)},
                         {2, rcpt(old, 2, RcptState::delivered, kNow)}}),
            0);
  auto st = queue_stats(*store_, kNow);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(st->messages, 4u);
  uint64_t bytes = 0;
  for (const auto& [id, e] : envs_) bytes += e.body_size;
  EXPECT_EQ(st->bytes, bytes);
  EXPECT_GE(st->bytes, 1000u);
  const auto& n = st->recipients.n;
  EXPECT_EQ(st->recipients.total(), 7u);
  EXPECT_EQ(n[static_cast<size_t>(RcptState::queued)], 4u);  // carol, BOB, alice, y@weird
  EXPECT_EQ(n[static_cast<size_t>(RcptState::deferred)], 1u);
  EXPECT_EQ(n[static_cast<size_t>(RcptState::inflight)], 1u);
  EXPECT_EQ(n[static_cast<size_t>(RcptState::delivered)], 1u);
  EXPECT_EQ(n[static_cast<size_t>(RcptState::bounced)], 0u);

  ASSERT_EQ(st->domains.size(), 4u);
  const auto& ex = st->domains.at("example.test");  // bob@example.test and BOB@Example.TEST
  EXPECT_EQ(ex.total(), 3u);
  EXPECT_EQ(ex.n[static_cast<size_t>(RcptState::deferred)], 1u);
  EXPECT_EQ(st->domains.at("sender.test").total(), 1u);
  const auto& other = st->domains.at("other.test");  // after the last '@'
  EXPECT_EQ(other.total(), 2u);
  EXPECT_EQ(other.n[static_cast<size_t>(RcptState::inflight)], 1u);
  EXPECT_EQ(st->domains.at("").total(), 1u);  // "postmaster"

  // 7 received (3 outside the last hour) and one deferred.
  EXPECT_EQ(st->events_all.at("received"), 7u);
  EXPECT_EQ(st->events_last_hour.at("received"), 4u);
  EXPECT_EQ(st->events_all.at("deferred"), 1u);
  EXPECT_EQ(st->events_last_hour.at("deferred"), 1u);
  EXPECT_EQ(st->events_all.count("delivered"), 0u);

  // An hour later nothing is recent.
  auto later = queue_stats(*store_, kNow + 3 * 3600);
  ASSERT_TRUE(later.ok());
  EXPECT_TRUE(later->events_last_hour.empty());
  EXPECT_EQ(later->events_all.at("received"), 7u);
}

TEST_F(AdminTest, StatsOfAnEmptyQueue) {
  auto st = queue_stats(*store_, kNow);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->messages, 0u);
  EXPECT_EQ(st->bytes, 0u);
  EXPECT_EQ(st->recipients.total(), 0u);
  EXPECT_TRUE(st->domains.empty());
  EXPECT_TRUE(st->events_all.empty());
}

// --- the event JSON reader ------------------------------------------------------------

TEST(AdminEventJson, ReadsBackWhatEventJsonWrites) {
  Envelope e;
  e.sender = "we\"ird\\na\tme\x01\x1f@x.test";
  e.message_id = "<id\r\n@x>";
  e.client_address = "2001:db8::1";
  e.body_size = 123456789012;
  Recipient r;
  r.address = "r\xc3\xa9@y.test";  // UTF-8 passes through unescaped
  EventDetail d{7,          "mx.y.test",    "192.0.2.1",
                421,        "4.4.2",        "421 4.4.2 \"closing\" \\ now",
                1800000300, "0123456789ABC"};
  std::string j = event_json("deferred", 1800000000123456, QueueId{42}, e, &r, &d);
  auto f = parse_event(j);
  ASSERT_TRUE(f.ok()) << f.error().message << " in " << j;
  EXPECT_EQ(f->time, "2027-01-15T08:00:00.123456Z");
  EXPECT_EQ(f->event, "deferred");
  EXPECT_EQ(f->queue_id, QueueId{42}.str());
  EXPECT_EQ(f->message_id, e.message_id);
  EXPECT_EQ(f->sender, e.sender);
  EXPECT_EQ(f->recipient, r.address);
  EXPECT_EQ(f->client, e.client_address);
  EXPECT_EQ(f->size, 123456789012u);
  EXPECT_TRUE(f->has_attempt);
  EXPECT_EQ(f->attempt, 7);
  EXPECT_EQ(f->mx, "mx.y.test");
  EXPECT_EQ(f->address, "192.0.2.1");
  EXPECT_EQ(f->code, 421);
  EXPECT_EQ(f->status, "4.4.2");
  EXPECT_EQ(f->response, "421 4.4.2 \"closing\" \\ now");
  EXPECT_EQ(f->next_attempt, "2027-01-15T08:05:00Z");
  EXPECT_EQ(f->dsn_queue_id, "0123456789ABC");

  auto received = parse_event(event_json("received", 1, QueueId{1}, e, &r));
  ASSERT_TRUE(received.ok());
  EXPECT_FALSE(received->has_attempt);
  EXPECT_EQ(received->code, 0);
  EXPECT_EQ(received->mx, "");
}

TEST(AdminEventJson, DecodesEscapes) {
  auto f =
      parse_event(R"({"sender":"a\"b\\c\/d\ne\rf\tg\b\f","recipient":"\u0041\u00e9\u0001\u20AC",)"
                  R"("response":"\ud83d\ude00|\ud800|\udc00x","message_id":"","code":-1})");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->sender, "a\"b\\c/d\ne\rf\tg\b\f");
  EXPECT_EQ(f->recipient, "A\xc3\xa9\x01\xe2\x82\xac");
  // A surrogate pair is one code point; a lone surrogate becomes U+FFFD.
  EXPECT_EQ(f->response, "\xf0\x9f\x98\x80|\xef\xbf\xbd|\xef\xbf\xbdx");
  EXPECT_EQ(f->message_id, "");
  EXPECT_EQ(f->code, -1);
}

TEST(AdminEventJson, ToleratesWhitespaceUnknownKeysAndNulls) {
  auto f = parse_event(" {\n \"event\" : \"delivered\" ,\"future\":[] } ");
  EXPECT_FALSE(f.ok()) << "nested values are refused even under unknown keys";
  f = parse_event(
      " {\n \"event\" : \"delivered\" , \"future\": 1.5e3, \"flag\": true, \"x\": false,"
      " \"mx\": null, \"big\": 123456789012345678901234567890, \"size\": 0 }\r\n");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->event, "delivered");
  EXPECT_EQ(f->mx, "");
  EXPECT_TRUE(parse_event("{}").ok());
  auto neg = parse_event(R"({"attempt":-9223372036854775808})");
  ASSERT_TRUE(neg.ok());
  EXPECT_EQ(neg->attempt, INT64_MIN);
}

TEST(AdminEventJson, RefusesMalformedInput) {
  const char* bad[] = {
      "",
      "{",
      "[]",
      "\"x\"",
      "{\"a\"}",
      "{\"a\":}",
      "{\"a\":1,}",
      "{,}",
      "{\"a\":1 \"b\":2}",
      "{\"a\":{\"b\":1}}",
      "{\"a\":\"x\"} {}",
      "{\"a\":\"unterminated}",
      "{\"a\":\"\\x\"}",
      "{\"a\":\"\\u12\"}",
      "{\"a\":\"\\u12g4\"}",
      "{\"a\":\"tab\there\"}",
      "{\"a\":\"nl\nhere\"}",
      "{\"a\":01}",
      "{\"a\":-}",
      "{\"a\":1.}",
      "{\"a\":1e}",
      "{\"a\":tru}",
      "{\"a\":nul}",
      "{a:1}",
      "{\"size\":\"12\"}",
      "{\"size\":-1}",
      "{\"size\":1.5}",
      "{\"code\":99999999999999999999}",
      "{\"attempt\":true}",
      "{\"event\":5}",
      "{\"event\":[\"x\"]}",
  };
  for (const char* j : bad) EXPECT_FALSE(parse_event(j).ok()) << "accepted: " << j;
  // A NUL byte inside a string is a control character too.
  EXPECT_FALSE(parse_event(std::string("{\"a\":\"x\0y\"}", 11)).ok());
}

}  // namespace
}  // namespace ringmail::queue
