// Slot: one of the C concurrent client connections, as one coroutine on one loop.
//
// A slot claims messages from the run's shared counter one at a time, so the total is
// exact however fast each connection goes; it connects (again after --per-connection
// messages, or after the connection failed), greets, and sends each claimed message in
// lock-step or pipelined (RFC 2920), timing it from MAIL to the final reply. Everything a
// thread's slots count goes into that thread's Counters, never shared between threads.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/ringbench/message.h"
#include "bench/ringbench/options.h"
#include "mta/runtime/loop.h"
#include "mta/runtime/stream.h"
#include "mta/runtime/task.h"
#include "mta/runtime/tls.h"

namespace ringbench {

// What all threads share. Read-only once the threads start, except the two atomics.
struct Run {
  explicit Run(const ClientOptions& o) : opt(o) {}
  const ClientOptions& opt;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  MessageSpec spec;
  Content content;
  std::string ehlo;                 // "EHLO name\r\n"
  ringmail::rt::TlsContextPtr tls;  // client context (--starttls / --tls-on-connect)
  std::string auth;                 // "AUTH PLAIN <base64>\r\n" (--auth)
  ringmail::rt::Clock::time_point deadline;
  std::atomic<uint64_t> next{0};      // next message sequence number to claim
  std::atomic<bool> abort{false};     // a setup problem no retry can fix
  std::atomic<unsigned> reported{0};  // error lines printed so far
};

// One thread's tallies (cache-line aligned: threads write their own, side by side).
struct alignas(64) Counters {
  std::vector<uint32_t> latency_us;  // one per accepted message
  uint64_t accepted = 0;
  uint64_t failed = 0;                 // messages claimed but not accepted
  uint64_t rejected = 0;               // ... of which a reply said no
  uint64_t lost = 0;                   // ... of which the connection failed mid-message
  uint64_t timeouts = 0;               // ... of which a read or write timed out
  uint64_t connects = 0;               // connections that reached EHLO
  uint64_t connect_failures = 0;       // connect, greeting or EHLO failed
  uint64_t gave_up = 0;                // slots that ran out of retries
  std::vector<uint32_t> handshake_us;  // one per completed TLS handshake
  std::vector<uint32_t> auth_us;       // one per accepted AUTH (command sent to 235)
  std::vector<uint32_t> setup_us;      // connect to ready for MAIL, per connection
  std::string tls_params;              // version, cipher, group of the first handshake
  unsigned live = 0;                   // slots still running on this thread
};

class Slot {
 public:
  Slot(Run& run, Counters& counters, ringmail::rt::Loop& loop, unsigned id);
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

  // Runs until no message is left (or retries or time ran out), then stops the loop if it
  // was the thread's last slot. `this` must outlive the task.
  ringmail::rt::Task<void> run();

 private:
  enum class Outcome { done, lost, out_of_time };
  struct Caps {
    bool pipelining = false;
    bool chunking = false;
    bool size = false;
    bool starttls = false;
    bool auth_plain = false;
  };
  // One write and the replies it earns. expect: 2 = any 2xx, 3 = any 3xx.
  struct Exchange {
    std::string_view bytes;
    int replies = 0;
    int expect[3] = {2, 2, 2};
    const char* what[3] = {"", "", ""};
  };

  bool claim(uint64_t& seq);
  bool expired() const;
  ringmail::rt::Duration timeout() const;
  int fd() const { return stream_->fd(); }

  ringmail::rt::Task<bool> open();
  // Sends bytes (encrypted once TLS is on); 0 or a negative errno.
  ringmail::rt::Task<int> send(std::string_view bytes);
  // Sends a command and reads one reply into `code` (EHLO: `caps` collects keywords).
  ringmail::rt::Task<int> command(std::string_view bytes, int& code, Caps* caps);
  ringmail::rt::Task<bool> handshake();
  // A problem no retry can fix (the server lacks STARTTLS or AUTH, credentials refused):
  // the whole run stops, with one clear message.
  void abort_run(const char* why);
  // Sends claimed messages until none is left, the per-connection count is reached or
  // the connection fails; `seq` and `have` are the next claim.
  ringmail::rt::Task<Outcome> deliver(uint64_t& seq, bool& have);
  ringmail::rt::Task<void> quit();
  // Reads `n` replies into `codes`; 0, or a negative errno / kEof.
  ringmail::rt::Task<int> replies(int* codes, int n, Caps* caps);
  // Takes the complete replies at the front of the input (parsed in place).
  int parse_replies(int* codes, int n, Caps* caps);
  void plan();
  Outcome lost(int r, const char* what, uint64_t& seq, bool& have);
  void report(const char* what, int code);

  Run& run_;
  Counters& c_;
  ringmail::rt::Loop& loop_;
  unsigned id_;
  std::optional<ringmail::rt::Stream> stream_;
  std::optional<Wire> wire_;
  bool wire_size_param_ = false;
  bool pipelined_ = false;
  Caps caps_;
  Exchange steps_[4];
  int nsteps_ = 0;
  char last_[200];  // the last reply line, for error reports
  size_t last_len_ = 0;
};

}  // namespace ringbench
