// Committer: the one writer of the queue (group commit), with an optional write-ahead
// log in front.
//
// Loop threads hand in WriteRequests (an accepted message, a delivery outcome) without
// taking a lock. Without a log, the commit thread takes everything waiting, writes it in
// one LMDB write transaction (each request in a child transaction, so a bad one fails
// alone) and commits with a full sync: one sync covers the whole batch, and only then is
// each request told, through its on_done().
//
// With a log (wal.h), accepted messages take a shorter path: a log thread frames
// everything waiting into one append and one fdatasync, tells each request (the 250),
// and passes the framed batch to the commit thread, which applies it to LMDB with the
// log's sequence number in the same transaction, committing without the meta-page sync
// (MDB_NOMETASYNC). The log keeps every record until LMDB has it durably: a segment is
// reused only after an explicit LMDB sync covers all it holds. Messages too big for the
// log, and delivery outcomes, go straight to the commit thread as before.
//
// on_done() runs on the committer's threads and must hand the result back to the
// request's own thread. After a failed sync (EIO) the committer refuses all writes until
// restart: a store whose last sync failed cannot say what is on disk.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "conf/mpsc.h"
#include "conf/result.h"
#include "queue/envelope.h"
#include "queue/store.h"
#include "queue/wal.h"

namespace ringmail::queue {

// One unit of work for a write transaction. Accepted messages and delivery outcomes share
// the committer, so one sync covers both (two writers would each pay their own).
class WriteRequest : public MpscNode {
 public:
  // Set before on_done(): ok, or an error whose code is an SMTP class: 451 (local error,
  // try again) or 452 (queue full).
  Status status = ok_status();

  // Committer thread, inside a child transaction: an LMDB error code, 0 for success.
  virtual int apply(Store& store, MDB_txn* txn) = 0;
  // Committer thread, after the commit: JSON lines for the delivery log file.
  virtual void log_lines(std::string& out) const = 0;
  // What this request adds to the transaction (batch bounds).
  virtual size_t bytes() const = 0;
  // Counted as a message in CommitStats (accepted mail; outcomes are counted apart).
  virtual bool is_message() const { return false; }
  // Accepted mail must be durable before on_done(). With a log, the commit thread skips
  // the meta-page sync unless a request in the batch says so.
  virtual bool needs_sync() const { return is_message(); }
  // The record for the write-ahead log (record.h encode_message_op), appended to `out`;
  // false for requests that are never logged.
  virtual bool wal_payload(std::string& /*out*/) const { return false; }
  // Committer thread. The request must stay alive until this runs.
  virtual void on_done() = 0;

 protected:
  ~WriteRequest() = default;
};

class EnqueueRequest : public WriteRequest {
 public:
  QueueId id;
  Envelope envelope;
  std::string body;  // the whole message as stored (Received: already prepended)

  int apply(Store& store, MDB_txn* txn) override {
    return store.put_message(txn, id, envelope, body);
  }
  void log_lines(std::string& out) const override;
  size_t bytes() const override { return body.size(); }
  bool is_message() const override { return true; }
  bool wal_payload(std::string& out) const override;

 protected:
  ~EnqueueRequest() = default;
};

struct CommitStats {
  uint64_t batches = 0;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t max_batch = 0;
  uint64_t failed = 0;
  uint64_t updates = 0;       // other writes (delivery outcomes) committed
  uint64_t lmdb_commits = 0;  // LMDB transactions (with a log: the applier's, off the 250 path)
  // histogram of batch sizes: [1], [2-3], [4-7], ... [>=512]
  uint64_t hist[11] = {};
  // "batches=.. messages=.. avg=.. max=.. failed=.. hist=1:..,2-3:.. lmdb_commits=..":
  // a batch is one sync before the 250s (a log append, or an LMDB commit without a log).
  std::string summary() const;
};

class Committer {
 public:
  // Bounds on one transaction: a burst commits in steps, and the first message of it is
  // not kept waiting for the last.
  struct Limits {
    size_t max_batch_count = 4096;
    size_t max_batch_bytes = 64u << 20;
    // Threads appending to the log: with more than one, a batch can sync while the next
    // is written. On this machine's virtio disk one and two measured the same (two syncs
    // in flight give ~1.4x the syncs, in batches that much smaller), so one by default.
    unsigned log_threads = 1;
    // Bigger messages skip the log: for them the second write of every byte costs more
    // than the sync it saves (measured with 10 lock-step clients: 8 KiB 1.3-2x faster
    // through the log, 32 KiB and 100 KiB 15-50% slower).
    size_t log_max_message = 16384;
  };
  explicit Committer(Store& store) : Committer(store, Limits{}) {}
  // `wal`, when given, must already have been replayed (replay_wal) and outlive this.
  Committer(Store& store, Limits limits, Wal* wal = nullptr);
  ~Committer();
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // Any thread. Never blocks.
  void submit(WriteRequest* r);
  // The log's highest sequence number applied to LMDB and synced (tests, diagnostics).
  uint64_t durable_seq() const { return durable_seq_.load(std::memory_order_acquire); }
  // Finishes everything submitted so far, then joins the thread.
  void stop();
  CommitStats stats() const;
  // Appends each committed request's JSON lines (DESIGN's delivery log: "received" per
  // recipient, delivery events) to `fd` after each commit, from the committer thread.
  // Call before submitting.
  void set_event_log(int fd) { log_fd_ = fd; }
  // Runs on the committer thread after each commit that wrote something (the delivery
  // scheduler's wake-up: new mail is due at once). Call before submitting.
  void set_on_commit(std::function<void()> fn) { on_commit_ = std::move(fn); }

 private:
  class WalBatch;
  class Kick;

  void run();
  void commit_batch(std::vector<WriteRequest*>& batch);
  void log_committed(const std::vector<WriteRequest*>& committed);
  void write_log(const std::string& lines);
  struct Chunk;
  void run_wal();
  // Frames a prefix of `taken` into reserved chunks (or fails it); returns its length.
  size_t frame_chunks(std::vector<WriteRequest*>& taken, std::vector<Chunk>& chunks,
                      std::vector<std::pair<WriteRequest*, Error>>& failed);
  void finish_chunk(Chunk& c, const Status& written);
  bool wait_durable(uint64_t seq);
  void kick_applier();
  void wake_urgent();

  Store& store_;
  Limits limits_;
  MpscStack inbox_;

  // The log path (null wal_: none), Limits::log_threads threads. wal_mu_ covers taking
  // from wal_inbox_, framing and reserving; acknowledgements go in reservation order
  // (ack_mu_), because replay stops at the first record that is not on disk. The commit
  // thread reports its progress through durable_seq_ and the flags.
  Wal* wal_ = nullptr;
  size_t wal_max_record_ = 0;  // bigger messages bypass the log
  MpscStack wal_inbox_;
  std::vector<std::thread> wal_threads_;
  std::mutex wal_mu_;
  uint64_t next_ticket_ = 1;  // wal_mu_
  std::mutex ack_mu_;
  std::condition_variable ack_cv_;
  uint64_t acked_ticket_ = 0;  // ack_mu_
  std::atomic<uint64_t> durable_seq_{0};
  std::atomic<uint64_t> sync_wanted_{0};  // the log thread asks for an LMDB sync up to here
  std::atomic<bool> kick_queued_{false};
  std::unique_ptr<Kick> kick_;
  std::atomic<bool> apply_stalled_{false};  // LMDB cannot take the log's records (full)
  std::atomic<bool> apply_broken_{false};   // an LMDB commit failed
  std::atomic<bool> wal_broken_{false};     // a log write failed
  std::mutex durable_mu_;
  std::condition_variable durable_cv_;
  // The commit thread's wait between applies, cut short by requests that wait for their
  // answer (messages too big for the log, the log thread's sync requests). Never taken on
  // the path of a logged message.
  std::mutex delay_mu_;
  std::condition_variable delay_cv_;
  std::atomic<bool> urgent_{false};
  std::vector<WriteRequest*> held_;  // commit thread: log batches waiting for room, in order
  uint64_t applied_seq_ = 0;         // commit thread: highest seq applied (maybe not synced)
  std::atomic<bool> stopping_{false};
  bool broken_ = false;  // a commit failed: refuse writes
  std::string broken_reason_;
  mutable std::mutex stats_mu_;  // stats() readers only; never on the enqueue path
  CommitStats stats_;
  int log_fd_ = -1;
  std::function<void()> on_commit_;
  std::atomic<bool> log_failed_{false};  // warned once; the LMDB events table still has every event
  std::thread thread_;
};

// Applies every record of `wal` past the sequence LMDB has applied, in bounded
// transactions, then syncs LMDB: what a crash left in the log only. Before the Committer
// starts (and from ringctl while no daemon runs). Returns how many records were applied.
// Their "received" events were logged when they were acknowledged, so none are written.
Result<size_t> replay_wal(Store& store, const Wal& wal);

// For tools that read the queue next to the daemon (ringctl): a message answered 250
// may still be only in the log for a few milliseconds. Waits, up to `limit`, until LMDB
// holds every record the log held when called. When no daemon holds `lock_path` (its
// flock), replays the log instead, so the queue is complete after a crash too.
Status catch_up_with_log(Store& store, const std::string& queue_dir, const std::string& lock_path,
                         std::chrono::milliseconds limit);

}  // namespace ringmail::queue
