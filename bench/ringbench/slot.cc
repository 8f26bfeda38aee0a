#include "bench/ringbench/slot.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "bench/ringbench/send_all.h"
#include "mta/runtime/listener.h"
#include "mta/runtime/ops.h"

namespace ringbench {

namespace rt = ringmail::rt;
using namespace std::chrono_literals;

namespace {

constexpr int kEof = -1000000;  // the server closed the connection
constexpr int kGarbled = 1;     // a reply line that is not "ddd[ -]text"
constexpr size_t kMaxReply = 65536;
constexpr unsigned kMaxReports = 10;

bool ascii_iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
    if (x != y) return false;
  }
  return true;
}

bool expected(int code, int cls) {
  return code / 100 == cls;
}

const char* describe(int r) {
  if (r == kEof) return "connection closed by server";
  if (r == -ETIME) return "timed out";
  return std::strerror(-r);
}

}  // namespace

Slot::Slot(Run& run, Counters& counters, rt::Loop& loop, unsigned id)
    : run_(run), c_(counters), loop_(loop), id_(id) {}

bool Slot::claim(uint64_t& seq) {
  if (run_.abort.load(std::memory_order_relaxed)) return false;
  uint64_t s = run_.next.fetch_add(1, std::memory_order_relaxed);
  if (s >= run_.opt.messages) return false;
  seq = s;
  return true;
}

bool Slot::expired() const {
  return rt::Clock::now() >= run_.deadline;
}

// Each read or write gets the I/O timeout, but never past the end of the run.
rt::Duration Slot::timeout() const {
  rt::Duration left = run_.deadline - rt::Clock::now();
  rt::Duration io = std::chrono::seconds(run_.opt.io_timeout_seconds);
  return std::max<rt::Duration>(std::min(left, io), 1ms);
}

void Slot::report(const char* what, int code) {
  if (run_.reported.fetch_add(1, std::memory_order_relaxed) >= kMaxReports) return;
  if (code >= 100) {
    std::fprintf(stderr, "ringbench: connection %u: %s: %.*s\n", id_, what,
                 static_cast<int>(last_len_), last_);
  } else if (code == kGarbled) {
    std::fprintf(stderr, "ringbench: connection %u: %s: malformed reply: %.*s\n", id_, what,
                 static_cast<int>(last_len_), last_);
  } else {
    std::fprintf(stderr, "ringbench: connection %u: %s: %s\n", id_, what, describe(code));
  }
}

int Slot::parse_replies(int* codes, int n, Caps* caps) {
  std::string_view in = stream_->input();
  size_t used = 0;
  int got = 0;
  while (got < n) {
    size_t lf = in.find('\n', used);
    if (lf == std::string_view::npos) break;
    std::string_view line = in.substr(used, lf - used);
    used = lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    last_len_ = std::min(line.size(), sizeof last_);
    std::memcpy(last_, line.data(), last_len_);
    bool digits = line.size() >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' &&
                  line[1] <= '9' && line[2] >= '0' && line[2] <= '9';
    char sep = line.size() > 3 ? line[3] : ' ';
    if (!digits || (sep != ' ' && sep != '-')) {
      codes[got++] = kGarbled;
      continue;
    }
    if (caps && line.size() > 4) {
      // EHLO keywords (RFC 5321 4.1.1.1): the first word after "250-" / "250 ".
      std::string_view kw = line.substr(4);
      kw = kw.substr(0, kw.find(' '));
      if (ascii_iequal(kw, "PIPELINING"))
        caps->pipelining = true;
      else if (ascii_iequal(kw, "CHUNKING"))
        caps->chunking = true;
      else if (ascii_iequal(kw, "SIZE"))
        caps->size = true;
      else if (ascii_iequal(kw, "STARTTLS"))
        caps->starttls = true;
      else if (ascii_iequal(kw, "AUTH")) {
        // RFC 4954: "AUTH" then the mechanisms, space separated.
        std::string_view mechs = line.substr(4 + kw.size());
        while (!mechs.empty()) {
          size_t sp = mechs.find(' ');
          std::string_view m = mechs.substr(0, sp);
          if (ascii_iequal(m, "PLAIN")) caps->auth_plain = true;
          if (sp == std::string_view::npos) break;
          mechs.remove_prefix(sp + 1);
        }
      }
    }
    if (sep == ' ') codes[got++] = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  }
  stream_->consume(used);
  return got;
}

rt::Task<int> Slot::replies(int* codes, int n, Caps* caps) {
  int got = 0;
  for (;;) {
    got += parse_replies(codes + got, n - got, caps);
    if (got == n) co_return 0;
    int r = co_await stream_->fill(timeout(), kMaxReply);
    if (r == 0) co_return kEof;
    if (r == -ENOBUFS) co_return -EMSGSIZE;  // a reply line over 64 KiB
    if (r < 0) co_return r;
  }
}

// The writes and replies of one message, for this connection's mode.
void Slot::plan() {
  const Wire& w = *wire_;
  nsteps_ = 0;
  auto add = [this](std::string_view bytes) -> Exchange& {
    Exchange& e = steps_[nsteps_++];
    e = Exchange{};
    e.bytes = bytes;
    return e;
  };
  if (pipelined_ && run_.opt.bdat) {
    // RFC 3030 + 2920: BDAT needs no go-ahead, so the whole message is one write.
    Exchange& e = add(w.payload());
    e.replies = 3;
    e.what[0] = "MAIL", e.what[1] = "RCPT", e.what[2] = "BDAT";
    return;
  }
  if (pipelined_) {
    Exchange& e = add(w.pipelined());
    e.replies = 3;
    e.expect[2] = 3;
    e.what[0] = "MAIL", e.what[1] = "RCPT", e.what[2] = "DATA";
  } else {
    Exchange& m = add(w.mail());
    m.replies = 1;
    m.what[0] = "MAIL";
    Exchange& r = add(w.rcpt());
    r.replies = 1;
    r.what[0] = "RCPT";
    if (run_.opt.bdat) {
      Exchange& b = add(w.payload().substr(w.mail().size() + w.rcpt().size()));
      b.replies = 1;
      b.what[0] = "BDAT";
      return;
    }
    Exchange& d = add(w.data());
    d.replies = 1;
    d.expect[0] = 3;
    d.what[0] = "DATA";
  }
  Exchange& body = add(w.payload());
  body.replies = 1;
  body.what[0] = "end of data";
}

rt::Task<int> Slot::send(std::string_view bytes) {
  if (stream_->tls()) {
    // In pieces, so the server decrypts one while we encrypt the next (one flush of a
    // 2 MB message would encrypt all of it before the first byte leaves).
    constexpr size_t kPiece = 64 * 1024;
    for (size_t off = 0; off < bytes.size(); off += kPiece) {
      stream_->write(bytes.substr(off, kPiece));
      int r = co_await stream_->flush(timeout());
      if (r < 0) co_return r;
    }
    co_return 0;
  }
  SendAll op(loop_, fd(), bytes, timeout());
  co_return co_await op;
}

rt::Task<int> Slot::command(std::string_view bytes, int& code, Caps* caps) {
  int r = co_await send(bytes);
  if (r == 0) r = co_await replies(&code, 1, caps);
  co_return r;
}

void Slot::abort_run(const char* why) {
  if (!run_.abort.exchange(true)) std::fprintf(stderr, "ringbench: %s\n", why);
}

// A full TLS handshake as client (no session resumption: the context keeps no client
// sessions), timed from the first ClientHello byte to the handshake's end.
rt::Task<bool> Slot::handshake() {
  const auto t0 = rt::Clock::now();
  int r = co_await stream_->start_tls(run_.tls.get(), false, timeout());
  if (r < 0) {
    if (run_.reported.fetch_add(1, std::memory_order_relaxed) < kMaxReports) {
      const rt::TlsConn* t = stream_->tls();
      std::fprintf(stderr, "ringbench: connection %u: TLS handshake: %s%s%s\n", id_, describe(r),
                   t && !t->error().empty() ? ": " : "", t ? t->error().c_str() : "");
    }
    co_return false;
  }
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(rt::Clock::now() - t0).count();
  c_.handshake_us.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
  if (c_.tls_params.empty()) {
    const rt::TlsConn* t = stream_->tls();
    SSL* ssl = t->ssl();
    const char* group = SSL_get_curve_name(SSL_get_curve_id(ssl));
    uint16_t sig = SSL_get_peer_signature_algorithm(ssl);
    const char* sig_name = sig ? SSL_get_signature_algorithm_name(sig, 1) : nullptr;
    c_.tls_params = std::string(t->version()) + " " + std::string(t->cipher()) + ", key exchange " +
                    (group ? group : "?") + ", server signature " + (sig_name ? sig_name : "?") +
                    (SSL_session_reused(ssl) ? ", resumed" : ", full handshake");
  }
  co_return true;
}

rt::Task<bool> Slot::open() {
  const auto t_start = rt::Clock::now();
  int fd = ::socket(run_.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    report("socket", -errno);
    co_return false;
  }
  rt::set_nodelay(fd);
  rt::Connect conn(loop_, fd, reinterpret_cast<const sockaddr*>(&run_.addr), run_.addr_len,
                   timeout());
  int r = co_await conn;
  if (r < 0) {
    ::close(fd);
    report("connect", r);
    co_return false;
  }
  stream_.emplace(loop_, fd);
  if (run_.opt.tls_on_connect && !co_await handshake()) {
    stream_.reset();
    co_return false;
  }
  int code = 0;
  r = co_await replies(&code, 1, nullptr);
  if (r < 0 || code != 220) {
    report("greeting", r < 0 ? r : code);
    stream_.reset();
    co_return false;
  }
  Caps caps;
  r = co_await command(run_.ehlo, code, &caps);
  if (r < 0 || !expected(code, 2)) {
    report("EHLO", r < 0 ? r : code);
    stream_.reset();
    co_return false;
  }
  if (run_.opt.starttls) {
    // RFC 3207: STARTTLS, 220, handshake, and EHLO again (what was said before is void).
    if (!caps.starttls) {
      abort_run("--starttls, but the server does not offer STARTTLS");
      stream_.reset();
      co_return false;
    }
    r = co_await command("STARTTLS\r\n", code, nullptr);
    if (r < 0 || code != 220) {
      report("STARTTLS", r < 0 ? r : code);
      stream_.reset();
      co_return false;
    }
    if (!co_await handshake()) {
      stream_.reset();
      co_return false;
    }
    caps = Caps{};
    r = co_await command(run_.ehlo, code, &caps);
    if (r < 0 || !expected(code, 2)) {
      report("EHLO after STARTTLS", r < 0 ? r : code);
      stream_.reset();
      co_return false;
    }
  }
  if (run_.opt.auth()) {
    // RFC 4954 with the initial response (RFC 4616 PLAIN): one round trip.
    if (!caps.auth_plain) {
      abort_run(stream_->tls() ? "--auth, but the server does not offer AUTH PLAIN"
                               : "--auth, but the server does not offer AUTH PLAIN without TLS "
                                 "(add --starttls or --tls-on-connect)");
      stream_.reset();
      co_return false;
    }
    const auto t0 = rt::Clock::now();
    r = co_await command(run_.auth, code, nullptr);
    if (r < 0) {
      report("AUTH", r);
      stream_.reset();
      co_return false;
    }
    if (code != 235) {
      // Wrong credentials do not get better by retrying (and servers throttle repeated
      // failures): the run stops here.
      report("AUTH", code);
      abort_run(code / 100 == 5 ? "AUTH refused: check --auth USER:PASSWORD (run stopped)"
                                : "AUTH failed (run stopped)");
      stream_.reset();
      co_return false;
    }
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(rt::Clock::now() - t0).count();
    c_.auth_us.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
  }
  if (run_.opt.bdat && !caps.chunking) {
    abort_run("--bdat, but the server does not offer CHUNKING");
    stream_.reset();
    co_return false;
  }
  bool pipelined = (run_.opt.pipelining || run_.opt.bdat) && caps.pipelining;
  if ((run_.opt.pipelining || run_.opt.bdat) && !caps.pipelining && id_ == 0 && c_.connects == 0)
    std::fprintf(stderr,
                 "ringbench: the server does not offer PIPELINING: one command per round trip\n");
  if (!wire_ || wire_size_param_ != caps.size) {
    wire_.emplace(run_.content, run_.spec, run_.opt.bdat, caps.size);
    wire_size_param_ = caps.size;
    nsteps_ = 0;
  }
  if (nsteps_ == 0 || pipelined != pipelined_) {
    pipelined_ = pipelined;
    plan();
  }
  caps_ = caps;
  ++c_.connects;
  auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(rt::Clock::now() - t_start).count();
  c_.setup_us.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
  co_return true;
}

// The message in hand failed with the connection; the next one is claimed unless the
// run is out of time.
Slot::Outcome Slot::lost(int r, const char* what, uint64_t& seq, bool& have) {
  ++c_.failed;
  report(what, r);
  if (r == -ETIME) {
    ++c_.timeouts;
    if (expired()) {
      have = false;
      return Outcome::out_of_time;
    }
  } else {
    ++c_.lost;
  }
  have = claim(seq);
  return Outcome::lost;
}

// The messages of one connection. Written as one coroutine so that a message costs no
// coroutine frame of ours: sends are SendAll awaiters and replies are parsed in place;
// only the runtime's Stream::fill() frames remain.
rt::Task<Slot::Outcome> Slot::deliver(uint64_t& seq, bool& have) {
  uint64_t sent = 0;
  int codes[3];
  while (have) {
    wire_->set_seq(seq);
    const auto t0 = rt::Clock::now();
    bool ok = true;
    for (int i = 0; i < nsteps_ && ok; ++i) {
      const Exchange& e = steps_[i];
      int r;
      if (stream_->tls()) {
        r = co_await send(e.bytes);  // encrypted: through the Stream, in 64 KiB pieces
      } else {
        SendAll op(loop_, fd(), e.bytes, timeout());
        r = co_await op;
      }
      int got = 0;
      while (r == 0) {
        got += parse_replies(codes + got, e.replies - got, nullptr);
        if (got == e.replies) break;
        int n = co_await stream_->fill(timeout(), kMaxReply);
        if (n <= 0) r = n == 0 ? kEof : n == -ENOBUFS ? -EMSGSIZE : n;
      }
      if (r < 0) co_return lost(r, e.what[std::min(got, e.replies - 1)], seq, have);
      bool go_ahead = false;  // a 354 was given: the content must follow, whatever else failed
      for (int k = 0; k < e.replies; ++k) {
        if (codes[k] < 100 || codes[k] == 421) {
          // Out of step with the server, or it is closing (421): start afresh.
          co_return lost(codes[k], e.what[k], seq, have);
        }
        if (codes[k] == 354) go_ahead = true;
        if (!expected(codes[k], e.expect[k])) {
          if (ok) report(e.what[k], codes[k]);
          ok = false;
        }
      }
      if (!ok && go_ahead) {
        // Send the content anyway (the server waits for it), then fail the message.
        r = co_await send(steps_[nsteps_ - 1].bytes);
        if (r == 0) r = co_await replies(codes, 1, nullptr);
        if (r < 0) co_return lost(r, "end of data", seq, have);
      }
    }
    ++sent;
    if (ok) {
      auto us =
          std::chrono::duration_cast<std::chrono::microseconds>(rt::Clock::now() - t0).count();
      c_.latency_us.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
      ++c_.accepted;
    } else {
      ++c_.failed;
      ++c_.rejected;
      // Whatever part of the transaction the server still holds, start the next one clean.
      int r = co_await send("RSET\r\n");
      if (r == 0) r = co_await replies(codes, 1, nullptr);
      if (r < 0 || codes[0] < 100) {
        have = claim(seq);
        co_return Outcome::lost;
      }
    }
    have = claim(seq);
    if (run_.opt.per_connection && sent >= run_.opt.per_connection) break;
  }
  co_return Outcome::done;
}

rt::Task<void> Slot::quit() {
  int r = co_await send("QUIT\r\n");
  int code = 0;
  if (r == 0) r = co_await replies(&code, 1, nullptr);
  // The 221 (or its absence) says nothing about the messages: not counted.
}

rt::Task<void> Slot::run() {
  uint64_t seq = 0;
  bool have = claim(seq);
  unsigned failures = 0;  // consecutive connections that carried no message through
  while (have) {
    if (expired()) {
      ++c_.failed;  // the claimed message
      ++c_.timeouts;
      break;
    }
    if (failures > 0) {
      // Back off a little before trying again: 10 ms doubling to 1 s.
      rt::Duration pause = std::min<rt::Duration>(10ms * (1u << std::min(failures - 1, 7u)), 1s);
      pause = std::min(pause, rt::Duration(run_.deadline - rt::Clock::now()));
      rt::Sleep nap(loop_, std::max<rt::Duration>(pause, 1ms));
      co_await nap;
    }
    bool up = co_await open();
    if (!up) {
      ++c_.connect_failures;
      if (++failures > run_.opt.max_retries || run_.abort.load(std::memory_order_relaxed)) {
        ++c_.failed;
        ++c_.gave_up;
        break;
      }
      continue;
    }
    const uint64_t accepted_before = c_.accepted;
    Outcome o = co_await deliver(seq, have);
    if (c_.accepted > accepted_before) failures = 0;
    if (o != Outcome::lost && o != Outcome::out_of_time) co_await quit();
    stream_.reset();
    if (o == Outcome::lost && ++failures > run_.opt.max_retries) {
      if (have) {
        ++c_.failed;
        ++c_.gave_up;
      }
      break;
    }
  }
  if (--c_.live == 0) loop_.stop();
}

}  // namespace ringbench
