// One sink connection: the SMTP dialogue, as a coroutine over an rt::Stream.
//
// Every complete command in the buffer is answered before the replies are flushed in one
// send (RFC 2920). DATA ends at CRLF.CRLF (RFC 5321 4.1.1.4), found by a five-state
// matcher that survives any split between receives, so content is consumed as it comes
// and never buffered; BDAT chunks (RFC 3030) are skipped by count. With --fsync the
// content is also collected and written to the thread's file, and fdatasync'd before
// the 250; with --group-commit too, one write + fdatasync covers every message of the
// thread that ended while the previous one ran (a durable server with no queue at all:
// the bound for any server that syncs before its 250).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mta/runtime/loop.h"
#include "mta/runtime/stream.h"
#include "mta/runtime/task.h"

namespace ringbench {

class SinkSession;
struct GroupWaiter;

// What a sink thread's sessions share. Touched only on that thread, except `count`,
// which the main thread reads.
struct alignas(64) SinkThread {
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> connections{0};
  uint64_t local_count = 0;
  SinkSession* sessions = nullptr;  // intrusive list, for shutdown
  bool fsync = false;
  int file_fd = -1;  // --fsync: where message content goes
  uint64_t file_off = 0;
  uint64_t file_size = 0;  // zero-filled up front; writes wrap to offset 0 at its end
  bool file_error_reported = false;
  bool group_commit = false;
  std::string group;                  // content waiting for the next sync
  std::vector<GroupWaiter*> waiters;  // its sessions, in arrival order
  bool group_syncing = false;         // a group's write + sync is in flight
  uint64_t syncs = 0;                 // fdatasyncs done (the SINK line reports them)
};

class SinkSession {
 public:
  SinkSession(SinkThread& t, ringmail::rt::Loop& loop, int fd);
  ~SinkSession();
  SinkSession(const SinkSession&) = delete;
  SinkSession& operator=(const SinkSession&) = delete;

  ringmail::rt::Task<void> run();
  // Shutdown: a read in progress returns at once.
  void interrupt() { stream_.cancel_read(); }
  SinkSession* next() const { return next_; }

 private:
  enum class Mode { command, data, bdat };

  // Answers one command line (without CRLF). False: close the connection.
  bool command(std::string_view line);
  // Consumes content from the front of `in`; sets `end` at the end of the message.
  size_t scan_data(std::string_view in, bool& end);
  size_t take_chunk(std::string_view in, bool& end);
  void message_done(bool stored);
  ringmail::rt::Task<bool> store();

  SinkThread& t_;
  ringmail::rt::Loop& loop_;
  ringmail::rt::Stream stream_;
  SinkSession* prev_ = nullptr;
  SinkSession* next_ = nullptr;
  Mode mode_ = Mode::command;
  bool mail_ = false;
  bool rcpt_ = false;
  unsigned match_ = 0;       // DATA: how much of "\r\n.\r\n" the content ends with
  uint64_t chunk_left_ = 0;  // BDAT: bytes of this chunk still to come
  bool chunk_last_ = false;
  bool chunk_ok_ = false;  // BDAT: the chunk belongs to a valid transaction
  std::string body_;       // --fsync only
};

// The session coroutine for an accepted fd (free function: no capturing lambda).
ringmail::rt::Task<void> serve_sink(SinkThread& t, ringmail::rt::Loop& loop, int fd);

}  // namespace ringbench
