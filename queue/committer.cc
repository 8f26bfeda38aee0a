#include "queue/committer.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace ringmail::queue {

namespace {
// One transaction holds at most this much, so a burst of large messages still commits
// in bounded steps and the first of them is not kept waiting for the last.

MpscNode g_stop_marker;

int bucket(size_t n) {
  int b = 0;
  while (n > 1 && b < 10) {
    n >>= 1;
    ++b;
  }
  return b;
}
}  // namespace

std::string CommitStats::summary() const {
  char buf[128];
  std::snprintf(buf, sizeof buf, "batches=%llu messages=%llu avg=%.1f max=%llu failed=%llu",
                static_cast<unsigned long long>(batches), static_cast<unsigned long long>(messages),
                batches ? static_cast<double>(messages) / static_cast<double>(batches) : 0.0,
                static_cast<unsigned long long>(max_batch),
                static_cast<unsigned long long>(failed));
  std::string s = buf;
  s += " hist=";
  static const char* names[] = {"1",      "2-3",     "4-7",     "8-15",     "16-31", "32-63",
                                "64-127", "128-255", "256-511", "512-1023", "1024+"};
  bool first = true;
  for (int i = 0; i < 11; ++i) {
    if (!hist[i]) continue;
    if (!first) s += ",";
    first = false;
    s += names[i];
    s += ":" + std::to_string(hist[i]);
  }
  if (first) s += "none";
  return s;
}

Committer::Committer(Store& store, Limits limits)
    : store_(store), limits_(limits), thread_([this] { run(); }) {}

Committer::~Committer() {
  stop();
}

void Committer::submit(WriteRequest* r) {
  if (inbox_.push(r)) inbox_.head().notify_one();
}

void Committer::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true, std::memory_order_release);
  if (inbox_.push(&g_stop_marker)) inbox_.head().notify_one();
  thread_.join();
}

CommitStats Committer::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void Committer::run() {
  std::vector<WriteRequest*> batch;
  size_t batch_bytes = 0;
  for (;;) {
    inbox_.head().wait(nullptr, std::memory_order_acquire);
    bool stop_seen = false;
    for (MpscNode* n = inbox_.take_all(); n;) {
      MpscNode* next = n->mpsc_next;
      if (n == &g_stop_marker) {
        stop_seen = true;
      } else {
        auto* r = static_cast<WriteRequest*>(n);
        batch.push_back(r);
        batch_bytes += r->bytes();
        if (batch.size() >= limits_.max_batch_count || batch_bytes >= limits_.max_batch_bytes) {
          commit_batch(batch);
          batch_bytes = 0;
        }
      }
      n = next;
    }
    if (!batch.empty()) commit_batch(batch);
    batch_bytes = 0;
    if (stop_seen && inbox_.empty()) return;
  }
}

void EnqueueRequest::log_lines(std::string& out) const {
  for (const auto& rcpt : envelope.recipients) {
    out += event_json("received", envelope.arrival_us, id, envelope, &rcpt);
    out += '\n';
  }
}

void Committer::log_committed(const std::vector<WriteRequest*>& committed) {
  if (log_fd_ < 0 || committed.empty()) return;
  std::string lines;
  for (const auto* r : committed) r->log_lines(lines);
  // O_APPEND: each write lands whole at the end, so lines from one batch stay together.
  size_t off = 0;
  while (off < lines.size()) {
    ssize_t n = ::write(log_fd_, lines.data() + off, lines.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!log_failed_)
        std::fprintf(stderr, "queue: delivery log write failed: %s (events stay in the queue)\n",
                     std::strerror(errno));
      log_failed_ = true;
      return;
    }
    off += static_cast<size_t>(n);
  }
}

void Committer::commit_batch(std::vector<WriteRequest*>& batch) {
  // Pessimistic until its transaction is on disk.
  for (auto* r : batch) r->status = Error{451, "4.3.0 message not committed"};
  std::vector<WriteRequest*> pending = batch;
  std::vector<WriteRequest*> retry;  // hit MAP_FULL: try again after growing the map
  size_t committed = 0, updates = 0;
  uint64_t bytes = 0;
  for (int round = 0; round < 8 && !pending.empty(); ++round) {
    MDB_txn* txn = nullptr;
    int rc = broken_ ? EIO : store_.begin_write(&txn);
    if (rc) {
      for (auto* r : pending) r->status = Error{451, "4.3.0 queue unavailable: " + lmdb_error(rc)};
      break;
    }
    std::vector<WriteRequest*> ok;
    for (auto* r : pending) {
      MDB_txn* child = nullptr;
      int crc = store_.begin_write(&child, txn);
      if (crc == 0) crc = r->apply(store_, child);
      if (crc == 0)
        crc = mdb_txn_commit(child);
      else if (child)
        mdb_txn_abort(child);
      if (crc == 0) {
        ok.push_back(r);
      } else if (crc == MDB_MAP_FULL) {
        retry.push_back(r);
      } else {
        r->status = Error{451, "4.3.0 queue write failed: " + lmdb_error(crc)};
      }
    }
    rc = mdb_txn_commit(txn);
    if (rc == MDB_MAP_FULL) {
      // Full at commit time (freelist, B-tree splits): nothing was written. Retry all of
      // it in a bigger map; the store is not damaged.
      ok.insert(ok.end(), retry.begin(), retry.end());
      retry.swap(ok);
      ok.clear();
      rc = 0;
    } else if (rc) {
      // The sync failed: nothing of this batch is known to be on disk.
      broken_ = true;
      broken_reason_ = lmdb_error(rc);
      std::fprintf(stderr, "queue: commit failed, refusing writes until restart: %s\n",
                   broken_reason_.c_str());
      for (auto* r : ok) r->status = Error{451, "4.3.0 queue commit failed: " + broken_reason_};
      for (auto* r : retry) r->status = Error{451, "4.3.0 queue commit failed: " + broken_reason_};
      retry.clear();
      break;
    }
    for (auto* r : ok) {
      r->status = ok_status();
      bytes += r->bytes();
      if (r->is_message())
        ++committed;
      else
        ++updates;
    }
    log_committed(ok);
    if (retry.empty()) break;
    if (!store_.grow_map()) {
      for (auto* r : retry) r->status = Error{452, "4.3.1 queue is full"};
      retry.clear();
      break;
    }
    std::fprintf(stderr, "queue: map grown to %llu MiB\n",
                 static_cast<unsigned long long>(store_.map_size() >> 20));
    pending.swap(retry);
    retry.clear();
  }
  for (auto* r : retry) r->status = Error{452, "4.3.1 queue is full"};
  {
    std::lock_guard lock(stats_mu_);
    if (committed) {
      stats_.batches++;
      stats_.messages += committed;
      stats_.bytes += bytes;
      if (committed > stats_.max_batch) stats_.max_batch = committed;
      stats_.hist[bucket(committed)]++;
    }
    stats_.updates += updates;
    for (auto* r : batch)
      if (!r->status) stats_.failed++;
  }
  if ((committed || updates) && on_commit_) on_commit_();
  // Last: on_done() may free the request.
  for (auto* r : batch) r->on_done();
  batch.clear();
}

}  // namespace ringmail::queue
