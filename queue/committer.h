// Committer: the one thread that writes accepted messages to the queue (group commit).
//
// Loop threads hand in EnqueueRequests without taking a lock; the committer takes
// everything waiting, writes it in one LMDB write transaction (each request in a child
// transaction, so a bad one fails alone) and commits with a full sync: one fsync covers
// the whole batch. Only then is each request told, through its on_done(), which runs on
// the committer thread and must hand the result back to the request's own thread.
// After a failed commit (EIO, disk full) the committer refuses all writes until restart:
// a store whose last sync failed cannot say what is on disk.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "conf/mpsc.h"
#include "conf/result.h"
#include "queue/envelope.h"
#include "queue/store.h"

namespace ringmail::queue {

class EnqueueRequest : public MpscNode {
 public:
  QueueId id;
  Envelope envelope;
  std::string body;  // the whole message as stored (Received: already prepended)

  // Set before on_done(): ok, or an error whose code is an SMTP class: 451 (local error,
  // try again) or 452 (queue full).
  Status status = ok_status();

  // Committer thread. The request must stay alive until this runs.
  virtual void on_done() = 0;

 protected:
  ~EnqueueRequest() = default;
};

struct CommitStats {
  uint64_t batches = 0;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t max_batch = 0;
  uint64_t failed = 0;
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
  void submit(EnqueueRequest* r);
  // Finishes everything submitted so far, then joins the thread.
  void stop();
  CommitStats stats() const;
  // Appends one JSON line per committed recipient ("received" events, DESIGN's delivery
  // log) to `fd` after each commit, from the committer thread. Call before submitting.
  void set_event_log(int fd) { log_fd_ = fd; }

 private:
  void run();
  void commit_batch(std::vector<EnqueueRequest*>& batch);
  void log_received(const std::vector<EnqueueRequest*>& committed);

  Store& store_;
  Limits limits_;
  MpscStack inbox_;
  std::atomic<bool> stopping_{false};
  bool broken_ = false;  // a commit failed: refuse writes
  std::string broken_reason_;
  mutable std::mutex stats_mu_;  // stats() readers only; never on the enqueue path
  CommitStats stats_;
  int log_fd_ = -1;
  bool log_failed_ = false;  // warned once; the LMDB events table still has every event
  std::thread thread_;
};

}  // namespace ringmail::queue
