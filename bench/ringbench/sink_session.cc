#include "bench/ringbench/sink_session.h"

#include <liburing.h>
#include <string.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "mta/runtime/listener.h"
#include "mta/runtime/ops.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace ringbench {

namespace rt = ringmail::rt;
using namespace std::chrono_literals;

namespace {

constexpr size_t kMaxLine = 4096;  // a command line, CRLF included
constexpr rt::Duration kIdleTimeout = 300s;
constexpr rt::Duration kSendTimeout = 30s;
constexpr rt::Duration kByeTimeout = 1s;       // the 421 at shutdown
constexpr size_t kKeepBody = size_t{1} << 20;  // --fsync: body buffer kept between messages

constexpr std::string_view kGreeting = "220 sink.bench.test ESMTP ringbench sink\r\n";
constexpr std::string_view kEhlo =
    "250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1073741824\r\n"
    "250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n";

// The verb: four letters, then the end of the line or a space.
uint32_t verb(std::string_view line) {
  if (line.size() < 4 || (line.size() > 4 && line[4] != ' ')) return 0;
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = v << 8 | static_cast<uint8_t>(line[i] & ~0x20);  // upper case
  return v;
}
constexpr uint32_t word(const char (&s)[5]) {
  return static_cast<uint32_t>(s[0]) << 24 | static_cast<uint32_t>(s[1]) << 16 |
         static_cast<uint32_t>(s[2]) << 8 | static_cast<uint32_t>(s[3]);
}

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// File writes for --fsync, on the ring like everything else.
class FileWrite final : public rt::OpBase {
 public:
  FileWrite(rt::Loop& loop, int fd, const char* p, size_t n, uint64_t off)
      : OpBase(loop),
        fd_(fd),
        p_(p),
        n_(static_cast<unsigned>(std::min<size_t>(n, 1u << 30))),
        off_(off) {}
  void await_suspend(std::coroutine_handle<> h) {
    io_uring_prep_write(begin(h), fd_, p_, n_, off_);
  }
  int await_resume() const { return result(); }

 private:
  int fd_;
  const char* p_;
  unsigned n_;
  uint64_t off_;
};

class DataSync final : public rt::OpBase {
 public:
  DataSync(rt::Loop& loop, int fd) : OpBase(loop), fd_(fd) {}
  void await_suspend(std::coroutine_handle<> h) {
    io_uring_prep_fsync(begin(h), fd_, IORING_FSYNC_DATASYNC);
  }
  int await_resume() const { return result(); }

 private:
  int fd_;
};

// The first "\r\n.\r\n" in [p, p + n), or nullptr. The content of a message is almost
// all of a sink's input, so this is its inner loop: SSE2 looks for "\n." 16 positions
// at a time (in text it is rare: only dot-stuffed lines and the terminator have it),
// and glibc's memmem takes the last few bytes. memmem alone was the sink's top symbol.
const char* find_terminator(const char* p, size_t n) {
  size_t i = 0;
#ifdef __SSE2__
  const __m128i nl = _mm_set1_epi8('\n');
  const __m128i dot = _mm_set1_epi8('.');
  for (; i + 17 <= n; i += 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 1));
    unsigned m = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(a, nl), _mm_cmpeq_epi8(b, dot))));
    while (m) {
      size_t at = i + static_cast<size_t>(__builtin_ctz(m));  // p[at] == '\n', p[at+1] == '.'
      m &= m - 1;
      if (at >= 1 && at + 3 < n && p[at - 1] == '\r' && p[at + 2] == '\r' && p[at + 3] == '\n')
        return p + at - 1;
    }
  }
  // A terminator starting before i - 4 was seen above; one may still start from there.
  i = i >= 4 ? i - 4 : 0;
#endif
  return static_cast<const char*>(memmem(p + i, n - i, "\r\n.\r\n", 5));
}

}  // namespace

// A session whose message waits for the thread's next group sync.
struct GroupWaiter {
  SinkThread& t;
  rt::Loop& loop;
  std::coroutine_handle<> h;
  bool ok = false;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> hh);
  bool await_resume() const noexcept { return ok; }
};

namespace {

// Appends `data` at the thread's file offset and syncs it: true when all of it is on disk.
rt::Task<bool> write_and_sync(SinkThread& t, rt::Loop& loop, const std::string& data) {
  if (t.file_off + data.size() > t.file_size) t.file_off = 0;
  uint64_t off = t.file_off;
  t.file_off += data.size();
  size_t done = 0;
  int r = 0;
  while (done < data.size()) {
    FileWrite w(loop, t.file_fd, data.data() + done, data.size() - done, off + done);
    r = co_await w;
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  if (done == data.size()) {
    DataSync sync(loop, t.file_fd);
    r = co_await sync;
    ++t.syncs;
  }
  if (r < 0 && !t.file_error_reported) {
    t.file_error_reported = true;
    std::fprintf(stderr, "sink: --fsync: %s\n", std::strerror(-r));
  }
  co_return r >= 0 && done == data.size();
}

// Syncs groups until no session waits: each takes everything that arrived during the
// previous one (classic group commit, one sync in flight per thread).
rt::Task<void> sync_groups(SinkThread& t, rt::Loop& loop) {
  std::string data;
  std::vector<GroupWaiter*> group;
  while (!t.waiters.empty()) {
    group.swap(t.waiters);
    data.swap(t.group);
    t.group.clear();
    bool ok = co_await write_and_sync(t, loop, data);
    data.clear();
    if (data.capacity() > kKeepBody) std::string().swap(data);
    // In arrival order; a resumed session may already join the next group (t.waiters).
    for (GroupWaiter* w : group) {
      w->ok = ok;
      w->h.resume();  // may end the session, and with it *w: not touched after this
    }
    group.clear();
  }
  t.group_syncing = false;
}

}  // namespace

void GroupWaiter::await_suspend(std::coroutine_handle<> hh) {
  h = hh;
  t.waiters.push_back(this);
  if (!t.group_syncing) {
    t.group_syncing = true;
    loop.spawn(sync_groups(t, loop));
  }
}

SinkSession::SinkSession(SinkThread& t, rt::Loop& loop, int fd)
    : t_(t), loop_(loop), stream_(loop, fd) {
  next_ = t_.sessions;
  if (next_) next_->prev_ = this;
  t_.sessions = this;
}

SinkSession::~SinkSession() {
  if (prev_)
    prev_->next_ = next_;
  else
    t_.sessions = next_;
  if (next_) next_->prev_ = prev_;
}

bool SinkSession::command(std::string_view line) {
  switch (verb(line)) {
    case word("EHLO"):
      mail_ = rcpt_ = false;
      stream_.write(kEhlo);
      return true;
    case word("HELO"):
      mail_ = rcpt_ = false;
      stream_.write("250 sink.bench.test\r\n");
      return true;
    case word("MAIL"):
      mail_ = true;
      rcpt_ = false;
      stream_.write("250 2.1.0 Ok\r\n");
      return true;
    case word("RCPT"):
      if (!mail_) {
        stream_.write("503 5.5.1 Error: need MAIL command\r\n");
        return true;
      }
      rcpt_ = true;
      stream_.write("250 2.1.5 Ok\r\n");
      return true;
    case word("DATA"):
      if (!rcpt_) {
        stream_.write("503 5.5.1 Error: need RCPT command\r\n");
        return true;
      }
      stream_.write("354 End data with <CR><LF>.<CR><LF>\r\n");
      mode_ = Mode::data;
      match_ = 2;  // the DATA line's CRLF: an immediate ".\r\n" ends an empty message
      return true;
    case word("BDAT"): {
      // RFC 3030 2: BDAT SP chunk-size [SP "LAST"]
      std::string_view arg = line.size() > 5 ? line.substr(5) : std::string_view();
      size_t sp = arg.find(' ');
      std::string_view num = arg.substr(0, sp);
      std::string_view rest =
          sp == std::string_view::npos ? std::string_view() : arg.substr(sp + 1);
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
      if (num.empty() || ec != std::errc() || p != num.data() + num.size() ||
          !(rest.empty() || iequal(rest, "LAST"))) {
        // Without a size the chunk's end is unknown: the session cannot go on.
        stream_.write("501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n");
        return false;
      }
      mode_ = Mode::bdat;
      chunk_left_ = n;
      chunk_last_ = !rest.empty();
      chunk_ok_ = rcpt_;
      return true;
    }
    case word("RSET"):
      mail_ = rcpt_ = false;
      stream_.write("250 2.0.0 Ok\r\n");
      return true;
    case word("NOOP"):
      stream_.write("250 2.0.0 Ok\r\n");
      return true;
    case word("QUIT"):
      stream_.write("221 2.0.0 Bye\r\n");
      return false;
    default:
      stream_.write("500 5.5.2 Error: command not recognized\r\n");
      return true;
  }
}

// Feeds `in` to the matcher for "\r\n.\r\n"; match_ is the length of the pattern's prefix
// the content ends with. find_terminator() finds a whole terminator inside one receive;
// only the edges of a receive go through the matcher byte by byte.
size_t SinkSession::scan_data(std::string_view in, bool& end) {
  static constexpr char kEnd[] = "\r\n.\r\n";
  auto step = [this](char c) {
    if (c == kEnd[match_])
      ++match_;
    else
      match_ = c == '\r' ? 1 : 0;
  };
  end = false;
  size_t i = 0;
  const size_t n = in.size();
  while (i < n && match_ != 0) {
    step(in[i++]);
    if (match_ == 5) {
      end = true;
      return i;
    }
  }
  if (i == n) return n;
  if (const char* hit = find_terminator(in.data() + i, n - i)) {
    end = true;
    return static_cast<size_t>(hit - in.data()) + 5;
  }
  // No terminator: the state is what the last four bytes say (a match is at most 4 long).
  match_ = 0;
  for (size_t j = n - std::min<size_t>(4, n - i); j < n; ++j) step(in[j]);
  return n;
}

size_t SinkSession::take_chunk(std::string_view in, bool& end) {
  size_t take = static_cast<size_t>(std::min<uint64_t>(chunk_left_, in.size()));
  chunk_left_ -= take;
  end = chunk_left_ == 0;
  return take;
}

void SinkSession::message_done(bool stored) {
  mode_ = Mode::command;
  if (!stored) {
    stream_.write("451 4.3.0 Error: could not store the message\r\n");
  } else {
    t_.count.store(++t_.local_count, std::memory_order_relaxed);
    stream_.write("250 2.0.0 Ok: queued\r\n");
  }
  mail_ = rcpt_ = false;
}

rt::Task<bool> SinkSession::store() {
  bool ok;
  if (t_.group_commit) {
    t_.group.append(body_);
    GroupWaiter w{t_, loop_};
    ok = co_await w;
  } else {
    ok = co_await write_and_sync(t_, loop_, body_);
  }
  body_.clear();
  if (body_.capacity() > kKeepBody) std::string().swap(body_);
  co_return ok;
}

rt::Task<void> SinkSession::run() {
  stream_.write(kGreeting);
  bool open = true;
  while (open) {
    // Answer everything complete in the buffer; the replies leave together below.
    for (;;) {
      std::string_view in = stream_.input();
      if (mode_ != Mode::command) {
        // Content. A BDAT chunk may be empty ("BDAT 0 LAST"), so no input is needed to
        // finish one.
        if (mode_ == Mode::data && in.empty()) break;
        bool end = false;
        size_t used = mode_ == Mode::data ? scan_data(in, end) : take_chunk(in, end);
        if (t_.fsync && used && (mode_ == Mode::data || chunk_ok_)) body_.append(in.data(), used);
        if (used) stream_.consume(used);
        if (!end) break;
        if (mode_ == Mode::bdat && !chunk_ok_) {
          mode_ = Mode::command;
          mail_ = rcpt_ = false;
          stream_.write("503 5.5.1 Error: need MAIL and RCPT before BDAT\r\n");
        } else if (mode_ == Mode::bdat && !chunk_last_) {
          mode_ = Mode::command;
          stream_.write("250 2.0.0 Ok: chunk received\r\n");
        } else {
          bool stored = true;
          if (t_.fsync) stored = co_await store();
          message_done(stored);
        }
        continue;
      }
      size_t lf = in.find('\n');
      if (lf == std::string_view::npos) break;
      std::string_view line = in.substr(0, lf);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      open = command(line);
      stream_.consume(lf + 1);
      if (!open) break;
    }
    if (stream_.pending_output()) {
      int r = co_await stream_.flush(kSendTimeout);
      if (r < 0) co_return;
    }
    if (!open) co_return;
    if (loop_.stopping()) break;
    int n = co_await stream_.fill(kIdleTimeout, mode_ == Mode::command ? kMaxLine : 1);
    if (n == -ENOBUFS) {
      stream_.write("500 5.5.2 Error: line too long\r\n");
      break;
    }
    if (n == -ECANCELED || n == -ETIME) break;
    if (n <= 0) co_return;  // the client went away
  }
  stream_.write(loop_.stopping() ? "421 4.3.2 sink shutting down\r\n"
                                 : "421 4.4.2 sink closing connection\r\n");
  co_await stream_.flush(kByeTimeout);
}

rt::Task<void> serve_sink(SinkThread& t, rt::Loop& loop, int fd) {
  rt::set_nodelay(fd);
  t.connections.fetch_add(1, std::memory_order_relaxed);
  SinkSession s(t, loop, fd);
  co_await s.run();
}

}  // namespace ringbench
