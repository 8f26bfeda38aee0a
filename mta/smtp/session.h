// mta/smtp: the SMTP server (RFC 5321 + ESMTP PIPELINING, SIZE, 8BITMIME,
// ENHANCEDSTATUSCODES, SMTPUTF8, DSN, CHUNKING, STARTTLS (RFC 3207), AUTH (RFC 4954)),
// on three listener roles: smtp (25), submission (587) and submissions (465, RFC 8314).
//
// One Session is one connection, written as one coroutine that reads like the RFC's
// command sequence. Each command is checked first (a pure check that returns the exact
// reply) and acted on second. A Session owns its transaction and its socket; it never
// touches the disk itself: accepted messages go to the queue Committer, and the 250 is
// sent only when the Committer says the message is on disk.
#pragma once

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
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

namespace ringmail::auth {
class UserDb;
class AuthThrottle;
class VerifiedCache;
}  // namespace ringmail::auth
namespace ringmail::rt {
class WorkerPool;
}

namespace ringmail::smtp {

class Session;
struct Found;
struct Verdict;

// What a listener is for (DESIGN "SMTP server": ports by role).
enum class Role {
  smtp,        // inbound MX and relay; STARTTLS offered; AUTH optional
  submission,  // STARTTLS, then AUTH required before MAIL
  submissions  // implicit TLS (RFC 8314), AUTH required before MAIL
};

// What AUTH needs; all owned by ringmaild and alive longer than every session.
struct AuthServices {
  auth::UserDb* users = nullptr;
  rt::WorkerPool* pool = nullptr;  // password checks run here, never on a loop thread
  auth::AuthThrottle* throttle = nullptr;
  auth::VerifiedCache* cache = nullptr;  // optional
};

// Shared by every session of the daemon; read-only after start.
struct Context {
  Context(const conf::Config& c, queue::Committer& q, server::ConnLimits& l, AuthServices a)
      : config(c), policy(c), committer(q), limits(l), auth(a) {}
  const conf::Config& config;
  auth::RelayPolicy policy;
  queue::Committer& committer;
  server::ConnLimits& limits;
  AuthServices auth;
};

// Per loop thread: the sessions living on it (for shutdown) and the DATA bytes they hold.
struct LoopState {
  Session* first = nullptr;
  uint64_t inflight_bytes = 0;
  bool force_close = false;  // shutdown timeout passed: stop waiting for transactions
  // This loop's reference to the server TLS context; SIGHUP swaps it on the loop thread,
  // and sessions already in TLS keep the context they started with (SSL holds a ref).
  bssl::UniquePtr<SSL_CTX> tls;
  // Cancels idle reads so sessions can say 421; `force` also cancels DATA in progress.
  void shutdown(bool force);
};

class Session {
 public:
  Session(Context& ctx, LoopState& ls, rt::Loop& loop, int fd, const sockaddr_storage& peer,
          Role role);
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
  rt::Task<bool> cmd_starttls(std::string_view arg);
  rt::Task<bool> cmd_auth(std::string arg);
  // One SASL response line (after a 334); nullopt when the session must end.
  rt::Task<std::optional<std::string>> read_sasl_line();
  rt::Task<bool> auth_failed(std::string_view user, std::string_view mech);
  bool auth_busy();
  rt::Task<Verdict> check(std::string login, std::string password);  // on the worker pool
  rt::Task<Found> lookup(std::string login);
  bool sender_allowed(std::string_view sender) const;
  bool auth_offered() const;
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
  Role role_;

  // session state
  std::string helo_;
  bool esmtp_ = false;
  uint32_t errors_ = 0;
  uint32_t junk_ = 0;     // NOOP/RSET/VRFY/HELP so far
  bool in_data_ = false;  // reading DATA/BDAT content: shutdown lets it finish
  bool authenticated_ = false;
  std::string auth_user_;           // login address once authenticated
  std::vector<std::string> owned_;  // addresses the user may send as (address + aliases)

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
rt::Task<void> serve(Context& ctx, LoopState& ls, rt::Loop& loop, int fd, Role role);

}  // namespace ringmail::smtp
