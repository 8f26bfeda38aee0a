// mta/smtp: the SMTP server (RFC 5321 + ESMTP PIPELINING, SIZE, 8BITMIME,
// ENHANCEDSTATUSCODES, SMTPUTF8, DSN, CHUNKING).
//
// One Session is one connection, written as one coroutine that reads like the RFC's
// command sequence. Each command is checked first (a pure check that returns the exact
// reply) and acted on second. A Session owns its transaction and its socket; it never
// touches the disk itself: accepted messages go to the queue Committer, and the 250 is
// sent only when the Committer says the message is on disk.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "auth/relay_policy.h"
#include "conf/config.h"
#include "mta/runtime/stream.h"
#include "mta/runtime/task.h"
#include "mta/server/conn_limits.h"
#include "queue/committer.h"
#include "queue/envelope.h"

namespace ringmail::smtp {

class Session;

// Shared by every session of the daemon; read-only after start.
struct Context {
  Context(const conf::Config& c, queue::Committer& q, server::ConnLimits& l)
      : config(c), policy(c), committer(q), limits(l) {}
  const conf::Config& config;
  auth::RelayPolicy policy;
  queue::Committer& committer;
  server::ConnLimits& limits;
};

// Per loop thread: the sessions living on it (for shutdown) and the DATA bytes they hold.
struct LoopState {
  Session* first = nullptr;
  uint64_t inflight_bytes = 0;
  bool force_close = false;  // shutdown timeout passed: stop waiting for transactions
  // Cancels idle reads so sessions can say 421; `force` also cancels DATA in progress.
  void shutdown(bool force);
};

class Session {
 public:
  Session(Context& ctx, LoopState& ls, rt::Loop& loop, int fd, const sockaddr_storage& peer);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  rt::Task<void> run();

  // Shutdown: interrupt a wait for the next command (or, if force, any read).
  void interrupt(bool force);

 private:
  friend struct LoopState;
  enum class ReadStatus { line, too_long, eof, timeout, shutdown, error };

  rt::Task<ReadStatus> read_line(std::string_view& line, size_t& consumed);
  void reply(std::string_view text);  // one reply line (CRLF added)
  void reply_error(const Error& e);   // "CODE x.y.z text"
  void count_error();  // one more refused command; the session ends at limits.max_errors

  // command handlers: each writes its own reply
  void cmd_ehlo(std::string_view arg, bool extended);
  void cmd_mail(std::string_view arg);
  void cmd_rcpt(std::string_view arg);
  rt::Task<bool> cmd_data();  // false: connection must close
  rt::Task<bool> cmd_bdat(std::string_view arg);
  void cmd_rset();
  rt::Task<void> finish_message();  // enqueue and reply
  // More message content; on failure (<= 0) the 421 for timeout/shutdown is written.
  rt::Task<int> fill_content(rt::Duration timeout);
  void reset_transaction();
  void start_message();          // queue id + Received: header
  void account(uint64_t added);  // body_ grew: count it against the loop
  bool over_budget() const;

  Context& ctx_;
  LoopState& ls_;
  rt::Loop& loop_;
  rt::Stream stream_;
  sockaddr_storage peer_;
  std::string peer_ip_;
  bool limits_acquired_ = false;

  // session state
  std::string helo_;
  bool esmtp_ = false;
  uint32_t errors_ = 0;
  uint32_t junk_ = 0;     // NOOP/RSET/VRFY/HELP so far
  bool in_data_ = false;  // reading DATA/BDAT content: shutdown lets it finish

  // transaction state (RFC 5321 3.3)
  bool has_mail_ = false;
  queue::Envelope env_;
  uint32_t rcpt_attempts_ = 0;
  bool bdat_started_ = false;
  queue::QueueId id_;
  std::string body_;
  size_t trace_len_ = 0;  // the Received: header at the front of body_
  uint64_t held_ = 0;     // bytes of body_ counted in ls_.inflight_bytes

  Session* prev_ = nullptr;
  Session* next_ = nullptr;
};

// The coroutine a listener spawns for every accepted SMTP connection.
rt::Task<void> serve(Context& ctx, LoopState& ls, rt::Loop& loop, int fd);

}  // namespace ringmail::smtp
