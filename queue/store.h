// queue: the durable LMDB queue of accepted messages.
//
// Owns the environment under <data_dir>/queue and its sub-databases, with big-endian keys
// so byte order is numeric order:
//   msg    id                -> envelope record (record.h)
//   body   id, chunk#        -> up to 64 KiB of the message (large values fragment
//                               LMDB's freelist, so bodies are chunked)
//   rcpt   id, index         -> recipient record with its state
//   sched  next attempt, id  -> "" (what is due, in time order)
//   events time_us, id, idx  -> one JSON delivery event (received, delivered, ...)
//   meta   "schema"          -> "1"
//          "wal_applied"     -> the write-ahead log's last applied seq and where it ends
//                               (wal.h; written in the transaction that applies it)
// It never talks to the network and never decides policy; writes from the daemon go
// through the one Committer thread (committer.h), ringctl writes through its own
// transactions (LMDB serialises writers across processes).
#pragma once

#include <lmdb.h>

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "conf/result.h"
#include "queue/envelope.h"

namespace ringmail::queue {

class Store {
 public:
  struct Options {
    std::string dir;                         // <data_dir>/queue, created if missing
    uint64_t initial_map_size = 1ULL << 30;  // grows on demand up to max_map_size
    uint64_t max_map_size = 16ULL << 30;
  };

  static Result<std::unique_ptr<Store>> open(const Options& o);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // --- writing (inside a caller's write transaction) --------------------------------
  // REQUIRES: txn is a write transaction of this store.
  int put_message(MDB_txn* txn, QueueId id, const Envelope& env, std::string_view body);
  // Starts a write transaction, following a map another process has grown.
  int begin_write(MDB_txn** txn, MDB_txn* parent = nullptr);
  // Grows the map after MDB_MAP_FULL. false when already at max_map_size.
  // REQUIRES: no transaction of this process is open.
  bool grow_map();

  // --- write-ahead log (wal.h) -----------------------------------------------------
  // The log's last applied sequence number, in `meta` so that it commits together with
  // the records it covers: replay starts after it.
  // REQUIRES: txn is a write transaction of this store.
  // `end`: where that record ends in the log (Wal::Position), so that a reader can look
  // for what follows it (ringctl waits for records the daemon has not applied yet).
  int put_wal_applied(MDB_txn* txn, uint64_t seq, int end_segment, uint64_t end_offset);
  uint64_t wal_applied();  // 0 when nothing was ever applied from a log
  // The applied seq and where it ends (segment -1 when not known).
  struct WalMark {
    uint64_t seq = 0;
    int segment = -1;
    uint64_t offset = 0;
  };
  WalMark wal_mark();
  // With a write-ahead log the log is what makes a message durable, and a commit may skip
  // the meta-page sync (MDB_NOMETASYNC: one fdatasync instead of two; the database stays
  // consistent, and a system crash can undo only the last commit, which the log still
  // holds). sync() makes everything committed so far durable.
  void set_meta_sync(bool on);
  int sync();

  // --- delivery -------------------------------------------------------------------
  // One entry of the delivery-event log: JSON (event_json) keyed by time and recipient.
  struct Event {
    int64_t time_us = 0;
    uint32_t rcpt_index = 0;
    std::string json;
  };
  // Writes what a delivery attempt (or `ringctl queue flush`) decided: each (index,
  // record) pair replaces that recipient, the message's schedule entries are derived
  // again from every recipient still pending (so concurrent writers never orphan or
  // duplicate one), the events are appended, and once no recipient is pending the message
  // is deleted (its events stay: `ringctl status` reads them). MDB_NOTFOUND when the
  // message is gone (deleted by ringctl meanwhile): the caller drops the outcome.
  // REQUIRES: txn is a write transaction of this store.
  int update_recipients(MDB_txn* txn, QueueId id,
                        std::span<const std::pair<uint32_t, Recipient>> changes,
                        std::span<const Event> events);
  // Deletes up to `max` delivery events older than `before_us` (oldest first): the event
  // table is the recent history `ringctl status` reads, the JSON Lines log the lasting
  // record. Returns how many were deleted, or an LMDB error as a negative number.
  // REQUIRES: txn is a write transaction of this store.
  int64_t prune_events(MDB_txn* txn, int64_t before_us, size_t max);
  // Schedule entries due at or before `now` (unix seconds), in time order, until fn
  // returns false. The same message may come once per distinct due time.
  Status for_each_due(int64_t now, const std::function<bool(int64_t, QueueId)>& fn);
  // The earliest schedule time, or nullopt when nothing is scheduled.
  std::optional<int64_t> next_due();

  // --- reading (any thread: the env uses MDB_NOTLS) ---------------------------------
  // Calls fn for every message in id order until fn returns false. Recipients included.
  Status for_each(const std::function<bool(QueueId, const Envelope&)>& fn);
  Result<Envelope> load(QueueId id);
  // Streams the stored message in chunks.
  Status read_body(QueueId id, const std::function<void(std::string_view)>& fn);
  // Events in time order (JSON lines) for one message, or all when id is 0.
  Status for_each_event(uint64_t id, const std::function<void(std::string_view)>& fn);
  // The largest queue id stored (0 if empty).
  uint64_t max_id();

  // --- maintenance -----------------------------------------------------------------
  // Deletes a message and everything belonging to it. false if it was not there.
  Result<bool> remove(QueueId id);
  // After a crash: recipients left in-flight go back to queued. Returns how many.
  Result<size_t> requeue_inflight();

  MDB_env* env() { return env_; }
  // The sub-databases, for read-only tools (ringctl status/stats) that walk them with
  // their own read transactions and the codecs in record.h.
  struct Dbis {
    MDB_dbi msg, body, rcpt, sched, events, meta;
  };
  Dbis dbis() const { return {msg_, body_, rcpt_, sched_, events_, meta_}; }
  uint64_t map_size() const { return map_size_; }

 private:
  Store() = default;
  Status load_recipients(MDB_txn* txn, QueueId id, Envelope& env);
  // Deletes msg, body and recipient records and their schedule entries (not events).
  int remove_in(MDB_txn* txn, QueueId id, const Envelope& env);

  MDB_env* env_ = nullptr;
  MDB_dbi msg_ = 0, body_ = 0, rcpt_ = 0, sched_ = 0, events_ = 0, meta_ = 0;
  uint64_t map_size_ = 0;
  uint64_t max_map_size_ = 0;
};

std::string lmdb_error(int rc);

// Appends `s` as a JSON string (quotes, \" \\ \n \r \t, \u00XX for other controls).
void append_json_string(std::string& out, std::string_view s);

// What a delivery event adds to the common fields (DESIGN "Delivery log").
struct EventDetail {
  uint32_t attempt = 0;       // 1 for the first attempt
  std::string_view mx;        // host name that answered (or was tried), "" if none
  std::string_view address;   // its IP address
  int code = 0;               // SMTP reply code, 0 when no reply (timeout, DNS, local)
  std::string_view status;    // RFC 3463 enhanced status
  std::string_view response;  // the reply on one line, or our explanation
  int64_t next_attempt = 0;   // deferred: unix seconds of the next try (0: omitted)
  std::string_view dsn_id;    // bounced/expired/delayed: queue id of the DSN sent ("" none)
};

// A JSON object for the delivery-event log: {"time":...,"event":...,...}. Fields:
// time, event, queue_id, message_id, sender, recipient, client, size; with `detail`
// also attempt, mx, address, code, status, response, and next_attempt / dsn_queue_id
// when set.
std::string event_json(std::string_view event, int64_t time_us, QueueId id, const Envelope& env,
                       const Recipient* rcpt, const EventDetail* detail = nullptr);

}  // namespace ringmail::queue
