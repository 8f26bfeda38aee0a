#include "bench/ringbench/options.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <thread>

namespace ringbench {

using ringmail::Error;
using ringmail::Result;

namespace {

// A whole-string unsigned number within [lo, hi].
template <class T>
bool to_number(std::string_view s, T lo, T hi, T& out) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return false;
  if (v < static_cast<uint64_t>(lo) || v > static_cast<uint64_t>(hi)) return false;
  out = static_cast<T>(v);
  return true;
}

// Walks "--name value" and "--flag" arguments.
class Args {
 public:
  Args(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool next() {
    if (i_ >= argc_) return false;
    flag_ = argv_[i_++];
    return true;
  }
  std::string_view flag() const { return flag_; }
  // The value after the current flag, or an error naming the flag.
  bool value(std::string_view& v) {
    if (i_ >= argc_) return false;
    v = argv_[i_++];
    return true;
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string_view flag_;
};

Error bad(std::string_view flag, std::string_view why) {
  return Error{2, std::string(flag) + ": " + std::string(why)};
}

unsigned cores() {
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

Result<ClientOptions> parse_client_options(int argc, char** argv) {
  ClientOptions o;
  Args a(argc, argv);
  while (a.next()) {
    std::string_view f = a.flag();
    std::string_view v;
    if (f == "--pipelining") {
      o.pipelining = true;
      continue;
    }
    if (f == "--bdat") {
      o.bdat = true;
      continue;
    }
    if (f == "--starttls") {
      o.starttls = true;
      continue;
    }
    if (f == "--tls-on-connect") {
      o.tls_on_connect = true;
      continue;
    }
    if (!f.starts_with("--")) return bad(f, "unexpected argument");
    if (!a.value(v)) return bad(f, "needs a value");
    bool ok = true;
    if (f == "--host")
      o.host = std::string(v);
    else if (f == "--port")
      ok = to_number<uint16_t>(v, 1, 65535, o.port);
    else if (f == "--messages")
      ok = to_number<uint64_t>(v, 1, 1000000000, o.messages);
    else if (f == "--connections")
      ok = to_number<unsigned>(v, 1, 100000, o.connections);
    else if (f == "--size")
      ok = to_number<size_t>(v, 1, size_t{1} << 30, o.size);
    else if (f == "--per-connection")
      ok = to_number<uint64_t>(v, 0, UINT64_MAX, o.per_connection);
    else if (f == "--from")
      o.from = std::string(v);
    else if (f == "--to")
      o.to = std::string(v);
    else if (f == "--helo")
      o.helo = std::string(v);
    else if (f == "--threads")
      ok = to_number<unsigned>(v, 1, 256, o.threads);
    else if (f == "--timeout-seconds")
      ok = to_number<unsigned>(v, 1, 86400, o.timeout_seconds);
    else if (f == "--io-timeout-seconds")
      ok = to_number<unsigned>(v, 1, 86400, o.io_timeout_seconds);
    else if (f == "--retries")
      ok = to_number<unsigned>(v, 0, 1000, o.max_retries);
    else if (f == "--auth") {
      size_t colon = v.find(':');
      ok = colon != std::string_view::npos && colon > 0 &&
           v.find_first_of("\r\n", 0) == std::string_view::npos;
      if (ok) {
        o.auth_user = std::string(v.substr(0, colon));
        o.auth_password = std::string(v.substr(colon + 1));
      }
      if (!ok) return bad(f, "USER:PASSWORD (a non-empty user, no line breaks)");
    } else
      return bad(f, "unknown option");
    if (!ok) return bad(f, "bad value '" + std::string(v) + "'");
  }
  if (o.port == 0) return bad("--port", "is required");
  if (o.from.find_first_of("<> \r\n") != std::string::npos || o.to.empty() ||
      o.to.find_first_of("<> \r\n") != std::string::npos)
    return bad("--from/--to", "a bare address without <>, spaces or line breaks");
  if (o.starttls && o.tls_on_connect)
    return bad("--starttls/--tls-on-connect", "one or the other, not both");
  if (o.threads == 0) {
    // One loop keeps up with a handful of connections; beyond that a second core helps,
    // but the client shares the machine with the server under test, so at most two.
    o.threads = o.connections < 8 ? 1 : std::min(2u, cores());
  }
  o.threads = std::min(o.threads, o.connections);
  return o;
}

Result<SinkOptions> parse_sink_options(int argc, char** argv) {
  SinkOptions o;
  Args a(argc, argv);
  while (a.next()) {
    std::string_view f = a.flag();
    std::string_view v;
    if (f == "--fsync") {
      o.fsync = true;
      continue;
    }
    if (f == "--group-commit") {
      o.fsync = o.group_commit = true;
      continue;
    }
    if (!f.starts_with("--")) return bad(f, "unexpected argument");
    if (!a.value(v)) return bad(f, "needs a value");
    bool ok = true;
    if (f == "--port")
      ok = to_number<uint16_t>(v, 1, 65535, o.port);
    else if (f == "--address")
      o.address = std::string(v);
    else if (f == "--threads")
      ok = to_number<unsigned>(v, 1, 256, o.threads);
    else if (f == "--fsync-dir")
      o.fsync_dir = std::string(v);
    else if (f == "--buffers")
      ok = to_number<unsigned>(v, 16, 32768, o.buffers) && (o.buffers & (o.buffers - 1)) == 0;
    else if (f == "--buffer-size")
      ok = to_number<unsigned>(v, 1024, 1u << 20, o.buffer_size);
    else if (f == "--expect")
      ok = to_number<uint64_t>(v, 1, UINT64_MAX, o.expect);
    else if (f == "--expect-seconds")
      ok = to_number<unsigned>(v, 1, 86400, o.expect_seconds);
    else
      return bad(f, "unknown option");
    if (!ok) return bad(f, "bad value '" + std::string(v) + "'");
  }
  if (o.port == 0) return bad("--port", "is required");
  if (o.threads == 0) o.threads = cores();
  if (o.fsync_dir.empty()) {
    const char* t = std::getenv("TMPDIR");
    o.fsync_dir = t && *t ? t : "/tmp";
  }
  return o;
}

void print_usage() {
  std::fprintf(
      stderr,
      "usage:\n"
      "  ringbench [--host 127.0.0.1] --port P [--messages N] [--connections C] [--size BYTES]\n"
      "            [--per-connection M] [--pipelining] [--bdat] [--from a@bench.test]\n"
      "            [--to rcpt@bench.test] [--threads T] [--timeout-seconds S]\n"
      "            [--io-timeout-seconds S] [--retries R] [--helo NAME]\n"
      "            [--starttls | --tls-on-connect] [--auth USER:PASSWORD]\n"
      "  ringbench sink --port P [--address 127.0.0.1] [--threads T] [--fsync [--group-commit]]\n"
      "                 [--fsync-dir D] [--buffers N] [--buffer-size BYTES] [--expect N "
      "[--expect-seconds S]]\n"
      "\n"
      "load generator: N messages (default 1000) over C connections (default 10), BYTES of\n"
      "content each (default 1024), M per connection before QUIT and reconnect (0 = all).\n"
      "--starttls / --tls-on-connect: every connection does a full TLS handshake (no\n"
      "resumption, no certificate check); --auth: AUTH PLAIN on every connection.\n"
      "Last line: RESULT messages= errors= seconds= msgs_per_sec= mb_per_sec= p50_ms= p99_ms=\n"
      "sink: accepts and discards mail; SIGTERM/SIGINT print 'SINK messages=N' and exit 0.\n"
      "--expect N: exit once N messages arrived, printing 'SINK messages=N connections=C\n"
      "reached_at=EPOCH' (unix seconds, ns precision); exit 1 if S seconds pass first.\n"
      "--fsync: messages go to a preallocated file, fdatasync'd before the 250 (with\n"
      "--group-commit one sync per group); the SINK line adds ' syncs=S'.\n");
}

}  // namespace ringbench
