// Committer: the one thread that writes to the queue (group commit).
//
// Loop threads hand in WriteRequests (an accepted message, a delivery outcome) without
// taking a lock; the committer takes
// everything waiting, writes it in one LMDB write transaction (each request in a child
// transaction, so a bad one fails alone) and commits with a full sync: one fsync covers
// the whole batch. Only then is each request told, through its on_done(), which runs on
// the committer thread and must hand the result back to the request's own thread.
// After a failed commit (EIO, disk full) the committer refuses all writes until restart:
// a store whose last sync failed cannot say what is on disk.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "conf/mpsc.h"
#include "conf/result.h"
#include "queue/envelope.h"
#include "queue/store.h"

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

 protected:
  ~EnqueueRequest() = default;
};

struct CommitStats {
  uint64_t batches = 0;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t max_batch = 0;
  uint64_t failed = 0;
  uint64_t updates = 0;  // other writes (delivery outcomes) committed
  // histogram of batch sizes: [1], [2-3], [4-7], ... [>=512]
  uint64_t hist[11] = {};
  std::string summary() const;  // "batches=.. messages=.. avg=.. max=.. hist=1:..,2-3:.."
};

class Committer {
 public:
  // Bounds on one transaction: a burst commits in steps, and the first message of it is
  // not kept waiting for the last.
  struct Limits {
    size_t max_batch_count = 4096;
    size_t max_batch_bytes = 64u << 20;
  };
  explicit Committer(Store& store) : Committer(store, Limits{}) {}
  Committer(Store& store, Limits limits);
  ~Committer();
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // Any thread. Never blocks.
  void submit(WriteRequest* r);
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
  void run();
  void commit_batch(std::vector<WriteRequest*>& batch);
  void log_committed(const std::vector<WriteRequest*>& committed);

  Store& store_;
  Limits limits_;
  MpscStack inbox_;
  std::atomic<bool> stopping_{false};
  bool broken_ = false;  // a commit failed: refuse writes
  std::string broken_reason_;
  mutable std::mutex stats_mu_;  // stats() readers only; never on the enqueue path
  CommitStats stats_;
  int log_fd_ = -1;
  std::function<void()> on_commit_;
  bool log_failed_ = false;  // warned once; the LMDB events table still has every event
  std::thread thread_;
};

}  // namespace ringmail::queue
