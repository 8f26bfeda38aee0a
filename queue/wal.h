// Wal: the write-ahead log in front of the LMDB queue.
//
// Why it exists: an LMDB commit costs two syncs (the data pages, then the meta page) and
// B-tree page writes; one append to a preallocated, zero-filled file costs a single
// fdatasync that changes no file metadata (measured here: ~0.3-0.4 ms against ~1.3 ms).
// The committer (committer.h) answers 250 once a batch's records are in the log and moves
// them into LMDB afterwards, storing the last applied sequence number in the same LMDB
// transaction; at start the records past it are applied again (replay).
//
// Layout: two segment files, <dir>/wal.0 and <dir>/wal.1, zero-filled when created and
// written in turn. A segment holds records back to back from offset 0:
//   magic u32 | crc32c u32 | seq u64 | epoch u64 | len u32 | type u8 | pad 3 | payload | pad to 8
// (little-endian; the CRC covers everything after itself, payload included). A chain is
// valid while records carry the magic and a matching CRC, each seq is one more than the
// last and no epoch is lower than the last; the first record that breaks it ends the log:
// a torn write, or the older contents of a segment being reused. Every open takes a new
// epoch, so records written after a crash never join up with leftovers of the batch the
// crash tore.
//
// Owns the two files. It never touches LMDB and takes no locks: one thread appends, and
// whether a segment may be reused (everything in it applied and synced in LMDB) is the
// caller's decision.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "conf/result.h"

namespace ringmail::queue {

class Wal {
 public:
  static constexpr size_t kHeaderSize = 32;
  static constexpr uint8_t kTypeMessage = 1;  // payload: encode_message_op (record.h)

  // Where a record ends: the segment (0 or 1) and the offset just past it. Stored with
  // the applied sequence number, so a reader can find what follows without a full scan.
  struct Position {
    int segment = -1;
    uint64_t offset = 0;
  };

  struct Options {
    std::string dir;                      // the queue directory
    uint64_t segment_size = 64ULL << 20;  // for segments created now
    bool create = true;                   // false: read what exists (ringctl), never write
  };
  struct Record {
    uint64_t seq = 0;
    uint8_t type = 0;
    std::string_view payload;  // valid during the scan callback only
    Position end;              // just past this record (parse(): segment -1)
  };

  // Opens (and with `create`, makes) both segments and finds the end of the log. New
  // records continue after the last valid one, and never at or below `floor` (the
  // sequence LMDB has applied: a log that was lost or replaced must not reuse numbers
  // replay would skip).
  static Result<std::unique_ptr<Wal>> open(const Options& o, uint64_t floor);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Calls fn for every valid record with seq > after, in sequence order. Stops at fn's
  // first error and returns it.
  Status scan(uint64_t after, const std::function<Status(const Record&)>& fn) const;
  // The highest valid seq found at open or appended since (0 when the log is empty).
  uint64_t last_seq() const { return next_seq_ - 1; }

  // Calls fn for each record of a framed batch (what append() wrote) until it returns
  // false; the same checks as a scan.
  static void parse(std::string_view framed, const std::function<bool(const Record&)>& fn);

  // --- appending (one thread) -----------------------------------------------------
  // Frames records in a caller's buffer: begin_record reserves the header, the caller
  // appends the payload, end_record fills the header, pads, and returns the record's seq.
  static size_t begin_record(std::string& buf);
  uint64_t end_record(std::string& buf, size_t start, uint8_t type);
  // Forgets the records framed since the last append (they were not written): the next
  // record gets `first_seq` again.
  void discard(uint64_t first_seq) { next_seq_ = first_seq; }

  // Bytes left in the current segment, and the largest batch that can ever fit.
  uint64_t room() const { return seg_size_[cur_] - tail_; }
  uint64_t capacity() const;
  // The highest seq the other segment holds (0 when none): before switch_segment() reuses
  // it, everything up to this seq must be applied and durable in LMDB.
  uint64_t other_max_seq() const { return seg_last_[cur_ ^ 1]; }
  void switch_segment();
  // Writes framed records at the tail and waits for fdatasync. An error leaves the log's
  // state unknown: the caller must stop writing (the next open finds what is valid).
  Status append(std::string_view framed);
  // append() in two steps, so that several batches can be syncing at once: reserve()
  // takes the room at the tail (REQUIRES: framed.size() <= room(); same thread as the
  // framing), write() puts the bytes there and waits for fdatasync (any thread). A batch
  // is durable in the log's sense only when every batch reserved before it is too: the
  // caller acknowledges in reservation order.
  struct Slot {
    int fd = -1;
    int segment = 0;
    uint64_t offset = 0;
  };
  Slot reserve(std::string_view framed);
  static Status write(Slot slot, std::string_view framed);

  // Read-only, for tools running next to the daemon: the highest seq of the valid chain
  // that continues after record `seq`, which ends at `at` (seq itself when nothing
  // follows). Reads only the records after it.
  static uint64_t last_after(const std::string& dir, uint64_t seq, Position at);

  // Recreates both segments at Options::segment_size when they have another size. Only
  // after everything in them has been applied and synced (start-up, after replay).
  Status resize_if_needed();

 private:
  Wal() = default;
  Status create_segment(int i);

  Options opts_;
  int fd_[2] = {-1, -1};
  uint64_t seg_size_[2] = {0, 0};
  uint64_t seg_first_[2] = {0, 0};  // first seq of the segment's valid chain (0: none)
  uint64_t seg_last_[2] = {0, 0};   // last seq of it
  int cur_ = 0;
  uint64_t tail_ = 0;  // write offset in the current segment
  uint64_t next_seq_ = 1;
  uint64_t epoch_ = 1;
};

}  // namespace ringmail::queue
