#include "queue/wal.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#include "queue/crc32c.h"

namespace ringmail::queue {

namespace {
constexpr uint32_t kMagic = 0x314c5752;  // "RWL1"
constexpr uint64_t kMinSegment = 1ULL << 16;

void put_le(char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
size_t padded(size_t n) {
  return (n + 7) & ~size_t{7};
}

Error sys_error(const std::string& what) {
  return Error{errno, what + ": " + std::strerror(errno)};
}

std::string segment_path(const std::string& dir, int i) {
  return (std::filesystem::path(dir) / ("wal." + std::to_string(i))).string();
}

// A read-only view of one segment for scanning.
class Mapped {
 public:
  Mapped(int fd, uint64_t size) : size_(size) {
    if (fd >= 0 && size) {
      void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
      if (p != MAP_FAILED) data_ = static_cast<const char*>(p);
    }
  }
  ~Mapped() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  bool ok() const { return data_ != nullptr; }
  std::string_view view() const { return {data_, static_cast<size_t>(size_)}; }

 private:
  const char* data_ = nullptr;
  uint64_t size_;
};

struct Chain {
  uint64_t first = 0, last = 0, end = 0, max_epoch = 0;
};

// Walks the valid chain of records in `d` from `off` (segment `seg` of the log, -1 for a
// buffer); fn (may be null) sees each. `after`: the seq the chain must continue (0: any).
Chain walk(std::string_view d, const std::function<bool(const Wal::Record&)>& fn, int seg = -1,
           uint64_t off = 0, uint64_t after = 0) {
  Chain c;
  c.last = after;
  uint64_t prev_epoch = 0;
  while (off + Wal::kHeaderSize <= d.size()) {
    const char* h = d.data() + off;
    if (get_le(h, 4) != kMagic) break;
    uint64_t seq = get_le(h + 8, 8), epoch = get_le(h + 16, 8), len = get_le(h + 24, 4);
    if (len > d.size() - off - Wal::kHeaderSize) break;
    if (c.last != 0 && (seq != c.last + 1 || epoch < prev_epoch)) break;
    if (seq == 0) break;
    uint32_t want = static_cast<uint32_t>(get_le(h + 4, 4));
    if (crc32c(std::string_view(h + 8, Wal::kHeaderSize - 8 + len)) != want) break;
    if (c.first == 0) c.first = seq;
    c.last = seq;
    prev_epoch = epoch;
    if (epoch > c.max_epoch) c.max_epoch = epoch;
    off += padded(Wal::kHeaderSize + len);
    c.end = off;
    if (fn && !fn(Wal::Record{seq,
                              static_cast<uint8_t>(h[28]),
                              std::string_view(h + Wal::kHeaderSize, len),
                              {seg, off}}))
      break;
  }
  return c;
}

Status write_all(int fd, const char* p, size_t n, uint64_t off) {
  while (n) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return sys_error("write-ahead log write");
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return ok_status();
}

Status sync_dir(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return sys_error("open " + dir);
  int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return sys_error("fsync " + dir);
  return ok_status();
}
}  // namespace

Wal::~Wal() {
  for (int fd : fd_)
    if (fd >= 0) ::close(fd);
}

Status Wal::create_segment(int i) {
  // Written zeros, not fallocate: blocks fallocate reserves are "unwritten" extents, and
  // the first write to each would make fdatasync commit a journal transaction as well.
  std::string path = segment_path(opts_.dir, i), tmp = path + ".new";
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return sys_error("create " + tmp);
  std::vector<char> zeros(1 << 20, 0);
  for (uint64_t off = 0; off < opts_.segment_size; off += zeros.size()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), opts_.segment_size - off));
    if (Status s = write_all(fd, zeros.data(), n, off); !s) {
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (::fdatasync(fd) != 0) {
    Error e = sys_error("fdatasync " + tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = sys_error("rename " + tmp);
    ::close(fd);
    return e;
  }
  if (Status s = sync_dir(opts_.dir); !s) {
    ::close(fd);
    return s;
  }
  if (fd_[i] >= 0) ::close(fd_[i]);
  fd_[i] = fd;
  seg_size_[i] = opts_.segment_size;
  seg_first_[i] = seg_last_[i] = 0;
  return ok_status();
}

Result<std::unique_ptr<Wal>> Wal::open(const Options& o, uint64_t floor) {
  if (o.segment_size < kMinSegment)
    return Error{EINVAL, "write-ahead log segments must be at least 64 KiB"};
  std::unique_ptr<Wal> w(new Wal);
  w->opts_ = o;
  uint64_t max_epoch = 0;
  for (int i = 0; i < 2; ++i) {
    std::string path = segment_path(o.dir, i);
    int fd = ::open(path.c_str(), (o.create ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
      if (!o.create) continue;
      if (Status s = w->create_segment(i); !s) return s.error();
      continue;
    }
    if (fd < 0) return sys_error("open " + path);
    w->fd_[i] = fd;
    struct stat st;
    if (::fstat(fd, &st) != 0) return sys_error("stat " + path);
    w->seg_size_[i] = static_cast<uint64_t>(st.st_size);
    Mapped m(fd, w->seg_size_[i]);
    if (w->seg_size_[i] && !m.ok()) return sys_error("mmap " + path);
    Chain c = walk(m.view(), nullptr);
    w->seg_first_[i] = c.first;
    w->seg_last_[i] = c.last;
    if (c.max_epoch > max_epoch) max_epoch = c.max_epoch;
    if (c.first == 0) continue;
    // The segment written last is the one whose chain starts higher; appends continue
    // at the end of its chain.
    int other = i ^ 1;
    if (i == 1 && w->seg_first_[other] > c.first) continue;
    w->cur_ = i;
    w->tail_ = c.end;
    w->next_seq_ = c.last + 1;
  }
  if (w->seg_first_[0] == 0 && w->seg_first_[1] == 0) {
    w->cur_ = 0;
    w->tail_ = 0;
  }
  if (w->next_seq_ <= floor) {
    // Everything in the log is applied, and the numbers jump: a chain continued from the
    // old tail would break at the jump, so the new one starts the segment afresh.
    w->next_seq_ = floor + 1;
    w->tail_ = 0;
    w->seg_first_[w->cur_] = w->seg_last_[w->cur_] = 0;
  }
  // Above every epoch on disk, and above the clock too: an open whose records were all
  // torn left no epoch to go above, but its leftovers carry the earlier clock.
  uint64_t now_us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
  w->epoch_ = std::max(max_epoch + 1, now_us);
  return w;
}

uint64_t Wal::capacity() const {
  return std::min(seg_size_[0], seg_size_[1]);
}

Status Wal::scan(uint64_t after, const std::function<Status(const Record&)>& fn) const {
  int order[2] = {0, 1};
  if (seg_first_[1] != 0 && (seg_first_[0] == 0 || seg_first_[1] < seg_first_[0]))
    order[0] = 1, order[1] = 0;
  Status result = ok_status();
  for (int i : order) {
    if (fd_[i] < 0 || seg_first_[i] == 0 || seg_last_[i] <= after) continue;
    Mapped m(fd_[i], seg_size_[i]);
    if (!m.ok()) return sys_error("mmap write-ahead log");
    walk(
        m.view(),
        [&](const Record& r) {
          if (r.seq <= after) return true;
          result = fn(r);
          return static_cast<bool>(result);
        },
        i);
    if (!result) return result;
  }
  return result;
}

void Wal::parse(std::string_view framed, const std::function<bool(const Record&)>& fn) {
  walk(framed, fn);
}

size_t Wal::begin_record(std::string& buf) {
  size_t start = buf.size();
  buf.append(kHeaderSize, '\0');
  return start;
}

uint64_t Wal::end_record(std::string& buf, size_t start, uint8_t type) {
  uint64_t seq = next_seq_++;
  size_t len = buf.size() - start - kHeaderSize;
  char* h = buf.data() + start;
  put_le(h, kMagic, 4);
  put_le(h + 8, seq, 8);
  put_le(h + 16, epoch_, 8);
  put_le(h + 24, len, 4);
  h[28] = static_cast<char>(type);
  h[29] = h[30] = h[31] = 0;
  put_le(h + 4, crc32c(std::string_view(h + 8, kHeaderSize - 8 + len)), 4);
  buf.append(padded(kHeaderSize + len) - (kHeaderSize + len), '\0');
  return seq;
}

void Wal::switch_segment() {
  cur_ ^= 1;
  tail_ = 0;
  seg_first_[cur_] = seg_last_[cur_] = 0;
}

Wal::Slot Wal::reserve(std::string_view framed) {
  Slot slot{fd_[cur_], cur_, tail_};
  // The records run from the seq after the segment's last to next_seq_-1.
  if (seg_first_[cur_] == 0 && !framed.empty()) seg_first_[cur_] = get_le(framed.data() + 8, 8);
  seg_last_[cur_] = next_seq_ - 1;
  tail_ += framed.size();
  return slot;
}

Status Wal::write(Slot slot, std::string_view framed) {
  if (framed.empty()) return ok_status();
  if (Status s = write_all(slot.fd, framed.data(), framed.size(), slot.offset); !s) return s;
  if (::fdatasync(slot.fd) != 0) return sys_error("write-ahead log fdatasync");
  return ok_status();
}

Status Wal::append(std::string_view framed) {
  if (framed.empty()) return ok_status();
  if (framed.size() > room()) return Error{ENOSPC, "write-ahead log segment full"};
  return write(reserve(framed), framed);
}

uint64_t Wal::last_after(const std::string& dir, uint64_t seq, Position at) {
  uint64_t last = seq;
  for (int step = 0; step < 2; ++step) {
    int i = step == 0 ? at.segment : (at.segment ^ 1);
    if (i < 0 || i > 1) break;
    int fd = ::open(segment_path(dir, i).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    struct stat st;
    uint64_t size = ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    Chain c;
    {
      Mapped m(fd, size);
      uint64_t off = step == 0 ? at.offset : 0;
      if (m.ok() && off <= size) c = walk(m.view(), nullptr, i, off, last);
    }
    ::close(fd);
    // A chain that stops before the segment is full was the tail; one that fills it
    // (or finds nothing) may continue at the start of the other segment.
    if (c.first == 0 && step == 1) break;
    if (c.first != 0) last = c.last;
  }
  return last;
}

Status Wal::resize_if_needed() {
  if (!opts_.create) return ok_status();
  for (int i = 0; i < 2; ++i) {
    if (seg_size_[i] == opts_.segment_size) continue;
    if (Status s = create_segment(i); !s) return s;
    if (i == cur_) tail_ = 0;
  }
  return ok_status();
}

}  // namespace ringmail::queue
