#include "queue/committer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "conf/thread_name.h"
#include "queue/record.h"

namespace ringmail::queue {

namespace {
// One transaction holds at most this much, so a burst of large messages still commits
// in bounded steps and the first of them is not kept waiting for the last.

MpscNode g_stop_marker;

// How often, at most, the commit thread applies the log to LMDB under load.
constexpr std::chrono::milliseconds kApplyInterval{20};

// Moves one logged message into LMDB. A record that does not decode cannot be retried
// into shape: it is reported and skipped rather than blocking every record behind it.
int apply_record(Store& store, MDB_txn* txn, const Wal::Record& r) {
  MessageOp op;
  Status s = r.type == Wal::kTypeMessage ? decode_message_op(r.payload, op)
                                         : Status(Error{0, "unknown record type"});
  if (!s) {
    std::fprintf(stderr, "queue: write-ahead log record %llu skipped: %s\n",
                 static_cast<unsigned long long>(r.seq), s.error().message.c_str());
    return 0;
  }
  // put_message's first write refuses an existing id before it writes anything, so a
  // record applied before (replay after a crash that followed the commit) is a no-op.
  int rc = store.put_message(txn, op.id, op.envelope, op.body);
  return rc == MDB_KEYEXIST ? 0 : rc;
}

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
  s += " lmdb_commits=" + std::to_string(lmdb_commits);
  return s;
}

// A batch the log thread appended, on its way into LMDB. The commit thread owns it:
// freed once applied, kept (in order) while LMDB has no room.
class Committer::WalBatch final : public WriteRequest {
 public:
  std::string records;  // framed, exactly as appended
  uint64_t last = 0;
  Wal::Position end;  // where the last record ends in the log

  int apply(Store& store, MDB_txn* txn) override {
    int rc = 0;
    Wal::parse(records, [&](const Wal::Record& r) {
      rc = apply_record(store, txn, r);
      return rc == 0;
    });
    return rc ? rc : store.put_wal_applied(txn, last, end.segment, end.offset);
  }
  // The "received" lines went out with the 250s (finish_chunk).
  void log_lines(std::string&) const override {}
  size_t bytes() const override { return records.size(); }
  bool needs_sync() const override { return false; }
  void on_done() override {}
};

// Wakes the commit thread to retry held batches or to sync LMDB (sync_wanted_).
class Committer::Kick final : public WriteRequest {
 public:
  int apply(Store&, MDB_txn*) override { return 0; }
  void log_lines(std::string&) const override {}
  size_t bytes() const override { return 0; }
  bool needs_sync() const override { return false; }
  void on_done() override {}
};

Committer::Committer(Store& store, Limits limits, Wal* wal)
    : store_(store), limits_(limits), wal_(wal) {
  if (wal_) {
    // A record never takes more than a quarter of a segment, and a batch at most half,
    // so switching segments always leaves room for the batch that caused it.
    wal_max_record_ = std::min(static_cast<size_t>(wal_->capacity() / 4), limits_.log_max_message);
    applied_seq_ = wal_->last_seq();
    durable_seq_.store(applied_seq_);
    kick_ = std::make_unique<Kick>();
    store_.set_meta_sync(false);
    for (unsigned i = 0; i < limits_.log_threads; ++i)
      wal_threads_.emplace_back([this, i] {
        name_this_thread("rm-wal" + std::to_string(i));
        run_wal();
      });
  }
  thread_ = std::thread([this] {
    name_this_thread("rm-commit");
    run();
  });
}

Committer::~Committer() {
  stop();
}

void Committer::submit(WriteRequest* r) {
  if (wal_ && r->is_message() && r->bytes() <= wal_max_record_) {
    if (wal_inbox_.push(r)) wal_inbox_.head().notify_one();
    return;
  }
  // Read before the push: once pushed, the request may be done and freed at any moment.
  bool urgent = wal_ && r->needs_sync();
  if (inbox_.push(r)) inbox_.head().notify_one();
  if (urgent) wake_urgent();
}

void Committer::wake_urgent() {
  urgent_.store(true);
  std::lock_guard lock(delay_mu_);
  delay_cv_.notify_one();
}

void Committer::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true, std::memory_order_release);
  // The log thread first: what it still appends goes on to the commit thread.
  if (!wal_threads_.empty()) {
    if (wal_inbox_.push(&g_stop_marker)) wal_inbox_.head().notify_one();
    for (auto& t : wal_threads_) t.join();
    wal_threads_.clear();
  }
  if (inbox_.push(&g_stop_marker)) inbox_.head().notify_one();
  thread_.join();
  if (wal_) {
    // Everything applied is made durable, so the next start replays nothing it need not.
    // Batches held for want of room stay in the log: the next start replays them.
    if (int rc = store_.sync(); rc != 0)
      std::fprintf(stderr, "queue: final sync failed: %s\n", lmdb_error(rc).c_str());
    else
      durable_seq_.store(applied_seq_);
  }
}

CommitStats Committer::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void Committer::run() {
  std::vector<WriteRequest*> batch;
  bool stop_seen = false;
  auto take = [&] {
    for (MpscNode* n = inbox_.take_all(); n;) {
      MpscNode* next = n->mpsc_next;
      if (n == &g_stop_marker)
        stop_seen = true;
      else
        batch.push_back(static_cast<WriteRequest*>(n));
      n = next;
    }
  };
  auto last_commit = std::chrono::steady_clock::now() - kApplyInterval;
  for (;;) {
    inbox_.head().wait(nullptr, std::memory_order_acquire);
    take();
    // With a log, nothing here waits for an answer except messages too big for the log
    // and the log thread's sync requests; the rest (log batches, delivery outcomes) is
    // gathered for up to kApplyInterval, so that the LMDB syncs stay few and do not
    // queue up behind the log's own (measured: ~2,500 applier commits/s cost the log a
    // third of its rate; 50/s cost nothing visible).
    if (wal_ && !stop_seen) {
      bool urgent = std::any_of(batch.begin(), batch.end(), [&](WriteRequest* r) {
        return r == kick_.get() || r->needs_sync();
      });
      auto due = last_commit + kApplyInterval;
      if (!urgent && std::chrono::steady_clock::now() < due) {
        // Woken early by anything that waits for its answer (wake_urgent).
        std::unique_lock lock(delay_mu_);
        delay_cv_.wait_until(lock, due, [&] { return urgent_.load(); });
        urgent_.store(false);
        lock.unlock();
        take();
      }
    }
    last_commit = std::chrono::steady_clock::now();
    std::vector<WriteRequest*> part;
    size_t part_bytes = 0;
    for (auto* r : batch) {
      part.push_back(r);
      part_bytes += r->bytes();
      if (part.size() >= limits_.max_batch_count || part_bytes >= limits_.max_batch_bytes) {
        commit_batch(part);
        part_bytes = 0;
      }
    }
    if (!part.empty()) commit_batch(part);
    batch.clear();
    if (stop_seen && inbox_.empty()) {
      // Batches LMDB had no room for stay in the log; the next start replays them.
      for (auto* r : held_) delete static_cast<WalBatch*>(r);
      held_.clear();
      return;
    }
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
  write_log(lines);
}

void Committer::write_log(const std::string& lines) {
  // O_APPEND: each write lands whole at the end, so lines from one batch stay together.
  size_t off = 0;
  while (log_fd_ >= 0 && off < lines.size()) {
    ssize_t n = ::write(log_fd_, lines.data() + off, lines.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!log_failed_.exchange(true))
        std::fprintf(stderr, "queue: delivery log write failed: %s (events stay in the queue)\n",
                     std::strerror(errno));
      return;
    }
    off += static_cast<size_t>(n);
  }
}

void Committer::commit_batch(std::vector<WriteRequest*>& batch) {
  // Log batches that found no room before go first: their order is the log's order, and
  // the applied sequence number must never pass one that is not in LMDB.
  if (!held_.empty()) {
    batch.insert(batch.begin(), held_.begin(), held_.end());
    held_.clear();
  }
  for (auto* r : batch)
    if (r == kick_.get()) kick_queued_.store(false, std::memory_order_release);
  // Pessimistic until its transaction is on disk.
  for (auto* r : batch) r->status = Error{451, "4.3.0 message not committed"};
  std::vector<WriteRequest*> pending = batch;
  std::vector<WriteRequest*> retry;  // hit MAP_FULL: try again after growing the map
  size_t committed = 0, updates = 0, applied_batches = 0;
  uint64_t bytes = 0;
  bool any_commit = false;
  for (int round = 0; round < 8 && !pending.empty(); ++round) {
    MDB_txn* txn = nullptr;
    int rc = broken_ ? EIO : store_.begin_write(&txn);
    if (rc) {
      for (auto* r : pending) r->status = Error{451, "4.3.0 queue unavailable: " + lmdb_error(rc)};
      break;
    }
    std::vector<WriteRequest*> ok;
    bool log_blocked = false;  // a log batch is waiting: every later one waits behind it
    for (auto* r : pending) {
      auto* wb = dynamic_cast<WalBatch*>(r);
      if (wb && log_blocked) {
        retry.push_back(r);
        continue;
      }
      MDB_txn* child = nullptr;
      int crc = store_.begin_write(&child, txn);
      if (crc == 0) crc = r->apply(store_, child);
      if (crc == 0)
        crc = mdb_txn_commit(child);
      else if (child)
        mdb_txn_abort(child);
      if (crc == 0) {
        ok.push_back(r);
      } else if (crc == MDB_MAP_FULL || wb) {
        // A logged message was already answered 250: it can wait, never fail.
        if (wb) log_blocked = true;
        if (wb && crc != MDB_MAP_FULL)
          std::fprintf(stderr, "queue: applying the write-ahead log failed: %s (kept in the log)\n",
                       lmdb_error(crc).c_str());
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
      apply_broken_.store(true);
      broken_reason_ = lmdb_error(rc);
      std::fprintf(stderr, "queue: commit failed, refusing writes until restart: %s\n",
                   broken_reason_.c_str());
      for (auto* r : ok) r->status = Error{451, "4.3.0 queue commit failed: " + broken_reason_};
      for (auto* r : retry) r->status = Error{451, "4.3.0 queue commit failed: " + broken_reason_};
      retry.clear();
      break;
    }
    any_commit = any_commit || !ok.empty();
    for (auto* r : ok) {
      r->status = ok_status();
      if (auto* wb = dynamic_cast<WalBatch*>(r)) {
        applied_seq_ = std::max(applied_seq_, wb->last);
        ++applied_batches;
        continue;
      }
      if (r == kick_.get()) continue;
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

  if (wal_ && !broken_) {
    // Without the meta-page sync a commit is consistent but not yet durable. Sync when a
    // request needs it before its answer (a message too big for the log) or the log
    // thread wants a segment back.
    bool want = sync_wanted_.load(std::memory_order_acquire) > durable_seq_.load();
    for (auto* r : batch)
      if (r->status && r->needs_sync()) want = true;
    if (want) {
      if (int rc = store_.sync(); rc != 0) {
        broken_ = true;
        apply_broken_.store(true);
        broken_reason_ = lmdb_error(rc);
        std::fprintf(stderr, "queue: sync failed, refusing writes until restart: %s\n",
                     broken_reason_.c_str());
        for (auto* r : batch)
          if (r->status && r->needs_sync())
            r->status = Error{451, "4.3.0 queue commit failed: " + broken_reason_};
      } else {
        std::lock_guard lock(durable_mu_);
        durable_seq_.store(applied_seq_, std::memory_order_release);
      }
      durable_cv_.notify_all();
    }
  }

  // Log batches that could not be applied stay, in order, for the next round.
  bool stalled = false;
  for (auto* r : batch)
    if (auto* wb = dynamic_cast<WalBatch*>(r); wb && !r->status) {
      held_.push_back(r);
      stalled = true;
    }
  if (stalled != apply_stalled_.load()) {
    apply_stalled_.store(stalled);
    if (stalled)
      std::fprintf(stderr,
                   "queue: no room to apply the write-ahead log; refusing new mail (452) "
                   "until delivery frees space\n");
    durable_cv_.notify_all();
  }

  {
    std::lock_guard lock(stats_mu_);
    if (committed) {
      stats_.batches++;
      stats_.messages += committed;
      if (committed > stats_.max_batch) stats_.max_batch = committed;
      stats_.hist[bucket(committed)]++;
    }
    stats_.bytes += bytes;
    stats_.updates += updates;
    if (any_commit) stats_.lmdb_commits++;
    for (auto* r : batch)
      if (!r->status && r != kick_.get() && !dynamic_cast<WalBatch*>(r)) stats_.failed++;
  }
  if ((committed || updates || applied_batches) && on_commit_) on_commit_();
  // Last: on_done() may free the request. Applied log batches are ours to free.
  for (auto* r : batch) {
    if (r == kick_.get()) continue;
    if (auto* wb = dynamic_cast<WalBatch*>(r)) {
      if (r->status) delete wb;
      continue;
    }
    r->on_done();
  }
  batch.clear();
}

void Committer::kick_applier() {
  if (!kick_queued_.exchange(true, std::memory_order_acq_rel)) {
    if (inbox_.push(kick_.get())) inbox_.head().notify_one();
    wake_urgent();
  }
}

bool Committer::wait_durable(uint64_t seq) {
  for (;;) {
    if (durable_seq_.load(std::memory_order_acquire) >= seq) return true;
    if (apply_broken_.load() || apply_stalled_.load()) return false;
    uint64_t want = sync_wanted_.load();
    while (want < seq && !sync_wanted_.compare_exchange_weak(want, seq)) {
    }
    kick_applier();
    std::unique_lock lock(durable_mu_);
    durable_cv_.wait_for(lock, std::chrono::milliseconds(50), [&] {
      return durable_seq_.load() >= seq || apply_broken_.load() || apply_stalled_.load();
    });
  }
}

// One batch on its way through the log: framed and reserved under wal_mu_, written and
// synced outside it, acknowledged in ticket order.
struct Committer::Chunk {
  std::unique_ptr<WalBatch> node;
  std::vector<WriteRequest*> reqs;
  Wal::Slot slot;
  uint64_t ticket = 0;
};

void Committer::run_wal() {
  std::vector<WriteRequest*> taken;
  std::vector<Chunk> chunks;
  std::vector<std::pair<WriteRequest*, Error>> failed;
  bool stop_seen = false;
  for (;;) {
    // Requests left from the last round (see frame_chunks) are framed before waiting.
    if (taken.empty()) wal_inbox_.head().wait(nullptr, std::memory_order_acquire);
    {
      std::lock_guard lock(wal_mu_);
      for (MpscNode* n = wal_inbox_.take_all(); n;) {
        MpscNode* next = n->mpsc_next;
        if (n == &g_stop_marker)
          stop_seen = true;
        else
          taken.push_back(static_cast<WriteRequest*>(n));
        n = next;
      }
      size_t used = taken.empty() ? 0 : frame_chunks(taken, chunks, failed);
      taken.erase(taken.begin(), taken.begin() + static_cast<std::ptrdiff_t>(used));
    }
    for (auto& [r, e] : failed) r->status = e;
    if (!failed.empty()) {
      std::lock_guard lock(stats_mu_);
      stats_.failed += failed.size();
    }
    for (auto& [r, e] : failed) r->on_done();
    for (auto& c : chunks) finish_chunk(c, Wal::write(c.slot, c.node->records));
    chunks.clear();
    failed.clear();
    if (stop_seen && taken.empty()) {
      // Put the marker back for the other log thread; whatever was submitted before it
      // has been taken by now.
      if (wal_inbox_.push(&g_stop_marker)) wal_inbox_.head().notify_one();
      return;
    }
  }
}

size_t Committer::frame_chunks(std::vector<WriteRequest*>& taken, std::vector<Chunk>& chunks,
                               std::vector<std::pair<WriteRequest*, Error>>& failed) {
  if (wal_broken_.load() || apply_broken_.load()) {
    Error e{451, wal_broken_.load() ? "4.3.0 queue write failed (write-ahead log)"
                                    : "4.3.0 queue unavailable (commit failed)"};
    for (auto* r : taken) failed.emplace_back(r, e);
    return taken.size();
  }
  if (apply_stalled_.load()) {
    kick_applier();  // space may have been freed meanwhile (ringctl queue delete)
    for (auto* r : taken) failed.emplace_back(r, Error{452, "4.3.1 queue is full"});
    return taken.size();
  }
  // A batch stays within half a segment, so a fresh segment always has room for it.
  const size_t max_bytes = static_cast<size_t>(wal_->capacity() / 2);
  Chunk c;
  c.node = std::make_unique<WalBatch>();
  size_t used = 0;    // requests framed into chunks (or failed, or sent past the log)
  bool stop = false;  // the rest waits for the next round
  auto close = [&] {
    if (c.reqs.empty()) return true;
    uint64_t first = wal_->last_seq() - c.reqs.size() + 1;
    if (c.node->records.size() > wal_->room()) {
      if (!chunks.empty()) {
        // The segment to reuse may hold chunks of this very round, which reach LMDB only
        // after they are written: write those first, frame the rest next round.
        wal_->discard(first);
        return false;
      }
      if (!wait_durable(wal_->other_max_seq())) {
        wal_->discard(first);
        Error e = apply_broken_.load() ? Error{451, "4.3.0 queue unavailable (commit failed)"}
                                       : Error{452, "4.3.1 queue is full"};
        for (auto* r : c.reqs) failed.emplace_back(r, e);
        used += c.reqs.size();
        c.reqs.clear();
        c.node->records.clear();
        return true;
      }
      wal_->switch_segment();
    }
    c.node->last = wal_->last_seq();
    c.slot = wal_->reserve(c.node->records);
    c.node->end = {c.slot.segment, c.slot.offset + c.node->records.size()};
    c.ticket = next_ticket_++;
    // Ask early for the sync that frees the other segment, so the switch does not wait.
    if (wal_->room() < wal_->capacity() / 2 && wal_->other_max_seq() > durable_seq_.load()) {
      uint64_t want = sync_wanted_.load(), seq = wal_->other_max_seq();
      while (want < seq && !sync_wanted_.compare_exchange_weak(want, seq)) {
      }
      kick_applier();
    }
    used += c.reqs.size();
    chunks.push_back(std::move(c));
    c = Chunk{};
    c.node = std::make_unique<WalBatch>();
    return true;
  };
  // Requests go past the log (below) only when nothing before them waits, so `used`
  // always counts a prefix of `taken`.
  for (size_t i = 0; i < taken.size() && !stop; ++i) {
    WriteRequest* r = taken[i];
    size_t start = Wal::begin_record(c.node->records);
    r->wal_payload(c.node->records);
    if (c.node->records.size() - start > max_bytes) {
      c.node->records.resize(start);
      // Close the open chunk first, so the prefix rule holds.
      if (!c.reqs.empty() && !close()) {
        stop = true;
        break;
      }
      // A huge envelope: this one goes straight to LMDB with a full sync.
      if (inbox_.push(r)) inbox_.head().notify_one();
      wake_urgent();
      ++used;
      continue;
    }
    wal_->end_record(c.node->records, start, Wal::kTypeMessage);
    c.reqs.push_back(r);
    if (c.node->records.size() >= max_bytes || c.reqs.size() >= limits_.max_batch_count)
      stop = !close();
  }
  if (!stop) close();
  return used;
}

void Committer::finish_chunk(Chunk& c, const Status& written) {
  std::unique_lock lock(ack_mu_);
  ack_cv_.wait(lock, [&] { return acked_ticket_ + 1 == c.ticket; });
  if (!written && !wal_broken_.exchange(true))
    std::fprintf(stderr, "queue: write-ahead log failed, refusing writes until restart: %s\n",
                 written.error().message.c_str());
  if (wal_broken_.load()) {
    // This batch, or one before it, may not be on disk: replay would stop before it.
    for (auto* r : c.reqs) r->status = Error{451, "4.3.0 queue write failed (write-ahead log)"};
  } else {
    std::lock_guard stats_lock(stats_mu_);
    stats_.batches++;
    stats_.messages += c.reqs.size();
    if (c.reqs.size() > stats_.max_batch) stats_.max_batch = c.reqs.size();
    stats_.hist[bucket(c.reqs.size())]++;
    for (auto* r : c.reqs) {
      stats_.bytes += r->bytes();
      r->status = ok_status();
    }
  }
  bool ok = !wal_broken_.load();
  if (!ok) {
    std::lock_guard stats_lock(stats_mu_);
    stats_.failed += c.reqs.size();
  }
  if (ok && log_fd_ >= 0) {
    // The message is durable now: its "received" events are logged with the 250, not
    // when LMDB gets it a few milliseconds later.
    std::string lines;
    for (auto* r : c.reqs) r->log_lines(lines);
    write_log(lines);
  }
  for (auto* r : c.reqs) r->on_done();  // the 250s; on_done() may free the request
  // Still in ticket order: the commit thread applies batches in the order they arrive.
  if (ok && inbox_.push(c.node.release())) inbox_.head().notify_one();
  acked_ticket_ = c.ticket;
  lock.unlock();
  ack_cv_.notify_all();
}

Result<size_t> replay_wal(Store& store, const Wal& wal) {
  size_t applied = 0;
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint64_t from = store.wal_applied();
    if (wal.last_seq() <= from) break;
    MDB_txn* txn = nullptr;
    int rc = 0;
    uint64_t last = from, expect = from + 1;
    Wal::Position end;
    size_t n = 0, bytes = 0;
    auto commit = [&]() -> int {
      int crc = store.put_wal_applied(txn, last, end.segment, end.offset);
      if (crc == 0)
        crc = mdb_txn_commit(txn);
      else
        mdb_txn_abort(txn);
      txn = nullptr;
      if (crc == 0) applied += n;
      n = bytes = 0;
      return crc;
    };
    Status st = wal.scan(from, [&](const Wal::Record& r) -> Status {
      if (r.seq != expect)
        std::fprintf(stderr, "queue: write-ahead log has a gap: records %llu-%llu are missing\n",
                     static_cast<unsigned long long>(expect),
                     static_cast<unsigned long long>(r.seq - 1));
      expect = r.seq + 1;
      if (!txn && (rc = store.begin_write(&txn))) return Error{rc, lmdb_error(rc)};
      if ((rc = apply_record(store, txn, r))) return Error{rc, lmdb_error(rc)};
      last = r.seq;
      end = r.end;
      ++n;
      bytes += r.payload.size();
      if ((n >= 4096 || bytes >= (64u << 20)) && (rc = commit())) return Error{rc, lmdb_error(rc)};
      return ok_status();
    });
    if (st && txn && (rc = commit())) st = Error{rc, lmdb_error(rc)};
    if (txn) mdb_txn_abort(txn);
    if (st) break;
    if (rc == MDB_MAP_FULL && store.grow_map()) continue;
    return Error{
        rc, "cannot apply the write-ahead log to the queue: " + st.error().message +
                (rc == MDB_MAP_FULL ? " (the queue is full: raise limits.max_queue_size)" : "")};
  }
  if (int rc = store.sync(); rc != 0) return Error{rc, "queue sync: " + lmdb_error(rc)};
  return applied;
}

Status catch_up_with_log(Store& store, const std::string& queue_dir, const std::string& lock_path,
                         std::chrono::milliseconds limit) {
  // No lock file: no daemon ever ran here (ringmaild makes it before opening the queue).
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd >= 0 && ::flock(lock_fd, LOCK_EX | LOCK_NB) == 0) {
    // No daemon: apply what a crash left in the log (ringmaild would at its start).
    Status result = ok_status();
    Wal::Options o;
    o.dir = queue_dir;
    o.create = false;
    auto wal = Wal::open(o, store.wal_applied());
    if (!wal) {
      result = wal.error();
    } else if (auto n = replay_wal(store, **wal); !n) {
      result = n.error();
    }
    ::close(lock_fd);  // releases the lock
    return result;
  }
  if (lock_fd >= 0) ::close(lock_fd);
  Store::WalMark mark = store.wal_mark();
  uint64_t target = mark.seq;
  if (mark.segment >= 0) {
    target = Wal::last_after(queue_dir, mark.seq, Wal::Position{mark.segment, mark.offset});
  } else {
    Wal::Options o;
    o.dir = queue_dir;
    o.create = false;
    if (auto wal = Wal::open(o, mark.seq); wal) target = (*wal)->last_seq();
  }
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (store.wal_applied() < target) {
    if (std::chrono::steady_clock::now() >= deadline)
      return Error{ETIMEDOUT, "the daemon has not applied its write-ahead log yet"};
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return ok_status();
}

bool EnqueueRequest::wal_payload(std::string& out) const {
  encode_message_op(out, id, envelope, body);
  return true;
}

}  // namespace ringmail::queue
