// Command-line options of the two ringbench modes: the load generator and the sink.
//
// The flags are an interface: bench/compare-postfix and the README's commands use them.
// Parsing only checks and converts; it opens nothing.
#pragma once

#include <cstdint>
#include <string>

#include "conf/result.h"

namespace ringbench {

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  uint64_t messages = 1000;     // in total, over all connections
  unsigned connections = 10;    // concurrent
  size_t size = 1024;           // bytes of message content (headers + body)
  uint64_t per_connection = 0;  // messages before QUIT and reconnect; 0 = unlimited
  bool pipelining = false;      // MAIL+RCPT+DATA in one write (RFC 2920)
  bool bdat = false;            // BDAT <n> LAST (RFC 3030), pipelined with MAIL/RCPT
  std::string from = "a@bench.test";
  std::string to = "rcpt@bench.test";
  std::string helo = "client.bench.test";
  unsigned threads = 0;              // 0 = chosen from connections and cores
  unsigned timeout_seconds = 300;    // the whole run
  unsigned io_timeout_seconds = 60;  // one read or write
  unsigned max_retries = 10;         // consecutive connection failures per connection slot
  bool starttls = false;             // EHLO, STARTTLS, handshake, EHLO again (RFC 3207)
  bool tls_on_connect = false;       // implicit TLS from the first byte (RFC 8314, port 465)
  std::string auth_user;             // --auth USER:PASSWORD: AUTH PLAIN (RFC 4954, 4616)
  std::string auth_password;         //   on every connection, before the first MAIL
  bool auth() const { return !auth_user.empty(); }
  bool tls() const { return starttls || tls_on_connect; }
};

struct SinkOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;
  unsigned threads = 0;       // 0 = one per core
  bool fsync = false;         // write each message to a file, fdatasync before 250
  bool group_commit = false;  // --fsync: one write + fdatasync per group, not per message
  std::string fsync_dir;      // where those files live ($TMPDIR or /tmp)
  unsigned buffers = 1024;    // provided receive buffers per thread (power of two)
  unsigned buffer_size = 16384;
  // --expect N: exit as soon as N messages have arrived (end-to-end relay runs), printing
  // when that happened; --expect-seconds bounds the wait.
  uint64_t expect = 0;
  unsigned expect_seconds = 600;
};

// argv after the program name (and after "sink" for the sink).
ringmail::Result<ClientOptions> parse_client_options(int argc, char** argv);
ringmail::Result<SinkOptions> parse_sink_options(int argc, char** argv);

void print_usage();

}  // namespace ringbench
