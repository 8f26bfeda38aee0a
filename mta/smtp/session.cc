// The session loop and the commands that do not touch the transaction's content.
#include "mta/smtp/session.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "auth/sasl.h"
#include "mta/runtime/listener.h"
#include "mta/runtime/tls.h"
#include "mta/smtp/command_parser.h"

namespace ringmail::smtp {

namespace {
std::string ip_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "unknown";
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    auto* a6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
      inet_ntop(AF_INET, reinterpret_cast<const char*>(&a6->sin6_addr) + 12, buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof buf);
      return std::string("IPv6:") + buf;  // RFC 5321 4.1.3 address literal form
    }
  }
  return buf;
}

// EHLO/HELO argument: a domain or address literal. Clients are sloppy here, so any
// printable token is taken, but never control characters or spaces: it goes into the
// Received: header.
bool acceptable_helo(std::string_view s) {
  if (s.empty() || s.size() > 255) return false;
  for (unsigned char c : s)
    if (c <= 32 || c >= 127) return false;
  return true;
}

void log_tls_failure(const std::string& ip, int r, const rt::Stream& s) {
  std::string why = r == -EPROTO && s.tls() ? s.tls()->error()
                    : r == -ETIME           ? "timeout"
                    : r == -ECONNRESET      ? "connection closed"
                                            : std::strerror(-r);
  std::fprintf(stderr, "ringmaild: TLS handshake with %s failed: %s\n", ip.c_str(), why.c_str());
}
}  // namespace

void LoopState::shutdown(bool force) {
  force_close = force_close || force;
  for (Session* s = first; s; s = s->next_) s->interrupt(force);
}

Session::Session(Context& ctx, LoopState& ls, rt::Loop& loop, int fd, const sockaddr_storage& peer,
                 Role role)
    : ctx_(ctx),
      ls_(ls),
      loop_(loop),
      stream_(loop, fd),
      peer_(peer),
      peer_ip_(ip_text(peer)),
      role_(role) {
  next_ = ls_.first;
  if (next_) next_->prev_ = this;
  ls_.first = this;
}

Session::~Session() {
  if (prev_)
    prev_->next_ = next_;
  else
    ls_.first = next_;
  if (next_) next_->prev_ = prev_;
  ls_.inflight_bytes -= held_;
  if (limits_acquired_) ctx_.limits.release(peer_);
}

void Session::interrupt(bool force) {
  if (!in_data_ || force) stream_.cancel_read();
}

void Session::reply(std::string_view text) {
  stream_.write(text);
  stream_.write("\r\n");
}

void Session::reply_error(const Error& e) {
  stream_.write(std::to_string(e.code));
  stream_.write(" ");
  reply(e.message);
}

void Session::count_error() {
  ++errors_;
}

rt::Task<Session::ReadStatus> Session::read_line(std::string_view& line, size_t& consumed) {
  const size_t limit = ctx_.config.limits.max_line_length;
  const auto timeout = std::chrono::duration_cast<rt::Duration>(ctx_.config.limits.command_timeout);
  bool skipping = false;  // discarding the rest of an over-long line
  for (;;) {
    std::string_view in = stream_.input();
    if (!skipping) {
      size_t lf = in.substr(0, std::min(in.size(), limit)).find('\n');
      if (lf != std::string_view::npos) {
        line = in.substr(0, lf);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        consumed = lf + 1;
        co_return ReadStatus::line;
      }
      skipping = in.size() >= limit;
    }
    if (skipping) {
      size_t lf = in.find('\n');
      stream_.consume(lf == std::string_view::npos ? in.size() : lf + 1);
      if (lf != std::string_view::npos) co_return ReadStatus::too_long;
    }
    // Nothing complete is buffered: the replies to this pipelined batch go out in one send.
    if (stream_.pending_output()) {
      int r = co_await stream_.flush(timeout);
      if (r < 0) co_return ReadStatus::error;
    }
    if (loop_.stopping()) co_return ReadStatus::shutdown;
    int n = co_await stream_.fill(timeout, limit);
    if (n == 0) co_return ReadStatus::eof;
    if (n == -ETIME) co_return ReadStatus::timeout;
    if (n == -ECANCELED) co_return ReadStatus::shutdown;
    if (n < 0) co_return ReadStatus::error;
  }
}

rt::Task<void> Session::run() {
  const auto& host = ctx_.config.server.hostname;
  const auto send_timeout =
      std::chrono::duration_cast<rt::Duration>(ctx_.config.limits.command_timeout);
  switch (ctx_.limits.acquire(peer_)) {
    case server::ConnLimits::Verdict::ok:
      limits_acquired_ = true;
      break;
    case server::ConnLimits::Verdict::too_many_total:
      reply("421 4.7.0 " + host + " Error: too many connections");
      co_await stream_.flush(send_timeout);
      co_return;
    case server::ConnLimits::Verdict::too_many_from_ip:
      reply("421 4.7.0 " + host + " Error: too many connections from your address");
      co_await stream_.flush(send_timeout);
      co_return;
  }
  if (loop_.stopping()) {
    reply("421 4.3.2 " + host + " Service shutting down");
    co_await stream_.flush(send_timeout);
    co_return;
  }
  if (role_ == Role::submissions) {
    // RFC 8314: TLS first, then the greeting, so nothing is ever sent in the clear.
    if (!ls_.tls) co_return;
    int r = co_await stream_.start_tls(ls_.tls.get(), /*server=*/true, send_timeout);
    if (r < 0) {
      log_tls_failure(peer_ip_, r, stream_);
      co_return;
    }
  }
  reply("220 " + host + " ESMTP ringmail");
  for (;;) {
    std::string_view line;
    size_t used = 0;
    ReadStatus st = co_await read_line(line, used);
    if (st == ReadStatus::eof || st == ReadStatus::error) co_return;
    if (st == ReadStatus::timeout) {
      reply("421 4.4.2 " + host + " Error: timeout exceeded");
      break;
    }
    if (st == ReadStatus::shutdown) {
      reply("421 4.3.2 " + host + " Service shutting down");
      break;
    }
    if (st == ReadStatus::too_long) {
      reply("500 5.5.2 Error: line too long");
      count_error();
      if (errors_ >= ctx_.config.limits.max_errors) {
        reply("421 4.7.0 " + host + " Error: too many errors");
        break;
      }
      continue;
    }
    Command c = parse_command(line);
    bool keep = true;
    bool bad = false;
    if ((c.verb == Verb::noop || c.verb == Verb::rset || c.verb == Verb::vrfy ||
         c.verb == Verb::help) &&
        ++junk_ > ctx_.config.limits.max_junk_commands) {
      reply("421 4.7.0 " + host + " Error: too many NOOP/RSET/VRFY/HELP commands");
      break;
    }
    switch (c.verb) {
      case Verb::ehlo:
      case Verb::helo:
        cmd_ehlo(c.arg, c.verb == Verb::ehlo);
        break;
      case Verb::mail:
        cmd_mail(c.arg);
        break;
      case Verb::rcpt:
        cmd_rcpt(c.arg);
        break;
      case Verb::data:
        stream_.consume(used);
        used = 0;
        if (!c.arg.empty()) {
          reply("501 5.5.4 Syntax: DATA");
          bad = true;
        } else {
          keep = co_await cmd_data();
        }
        break;
      case Verb::bdat: {
        std::string arg(c.arg);  // the line's buffer is consumed before the chunk is read
        stream_.consume(used);
        used = 0;
        keep = co_await cmd_bdat(arg);
        break;
      }
      case Verb::rset:
        if (!c.arg.empty()) {
          reply("501 5.5.4 Syntax: RSET");
          bad = true;
        } else {
          cmd_rset();
        }
        break;
      case Verb::noop:
        reply("250 2.0.0 Ok");
        break;
      case Verb::quit:
        reply("221 2.0.0 Bye");
        keep = false;
        break;
      case Verb::vrfy:
        if (c.arg.empty()) {
          reply("501 5.5.4 Syntax: VRFY address");
          bad = true;
        } else {
          // RFC 5321 3.5.3: 252 when we will not say whether the user exists.
          reply("252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
        }
        break;
      case Verb::expn:
        reply("502 5.5.1 Error: EXPN not implemented");
        bad = true;
        break;
      case Verb::help:
        reply("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
        break;
      case Verb::starttls: {
        std::string arg(c.arg);
        // A STARTTLS that goes ahead discards all buffered input, this line included:
        // nothing pipelined behind it may be executed after the handshake.
        if (arg.empty() && !stream_.tls() && ls_.tls) used = 0;
        keep = co_await cmd_starttls(arg);
        break;
      }
      case Verb::auth: {
        std::string arg(c.arg);  // the line's buffer is consumed before responses are read
        stream_.consume(used);
        used = 0;
        keep = co_await cmd_auth(std::move(arg));
        break;
      }
      case Verb::http:
        // RFC-less, but every MTA does it: a web request on the SMTP port is an attack
        // (cross-protocol scripting) or a mistake; either way, hang up.
        reply("221 2.7.0 Error: this is an SMTP server, not HTTP; closing");
        keep = false;
        break;
      case Verb::unknown:
        reply("500 5.5.2 Error: command not recognized");
        bad = true;
        break;
    }
    if (used) stream_.consume(used);
    if (!keep) break;
    // Handlers count their own refusals; `bad` marks the ones refused here.
    if (bad) count_error();
    if (errors_ >= ctx_.config.limits.max_errors) {
      reply("421 4.7.0 " + host + " Error: too many errors");
      break;
    }
    if (loop_.stopping() && stream_.input().empty()) {
      reply("421 4.3.2 " + host + " Service shutting down");
      break;
    }
  }
  co_await stream_.flush(send_timeout);
  // Clients that insist on a close_notify (OpenSSL 3 reports "unexpected EOF" without one)
  // get it.
  co_await stream_.close_tls(send_timeout);
}

void Session::cmd_ehlo(std::string_view arg, bool extended) {
  if (!acceptable_helo(arg)) {
    reply(extended ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname");
    count_error();
    return;
  }
  reset_transaction();
  helo_ = std::string(arg);
  esmtp_ = extended;
  const auto& host = ctx_.config.server.hostname;
  if (!extended) {
    reply("250 " + host);
    return;
  }
  stream_.write("250-" + host + "\r\n");
  stream_.write("250-PIPELINING\r\n");
  stream_.write("250-SIZE " + std::to_string(ctx_.config.limits.max_message_size) + "\r\n");
  stream_.write("250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-DSN\r\n");
  const bool starttls = !stream_.tls() && ls_.tls;
  const bool auth = auth_offered();
  stream_.write(starttls || auth ? "250-CHUNKING\r\n" : "250 CHUNKING\r\n");
  if (starttls) stream_.write(auth ? "250-STARTTLS\r\n" : "250 STARTTLS\r\n");
  if (auth) {
    stream_.write("250 AUTH ");
    stream_.write(auth::advertised_mechanisms());
    stream_.write("\r\n");
  }
}

bool Session::auth_offered() const {
  return ctx_.auth.users && (stream_.tls() || ctx_.config.auth.allow_plaintext);
}

rt::Task<bool> Session::cmd_starttls(std::string_view arg) {
  const auto timeout = std::chrono::duration_cast<rt::Duration>(ctx_.config.limits.command_timeout);
  if (!arg.empty()) {
    // The rest of the line is still buffered: only a good STARTTLS discards input.
    reply("501 5.5.4 Syntax: STARTTLS");
    count_error();
    co_return true;
  }
  if (stream_.tls()) {
    reply("503 5.5.1 Error: TLS already active");
    count_error();
    co_return true;
  }
  if (!ls_.tls) {
    reply("454 4.7.0 TLS not available");
    co_return true;
  }
  reply("220 2.0.0 Ready to start TLS");
  if (co_await stream_.flush(timeout) < 0) co_return false;
  int r = co_await stream_.start_tls(ls_.tls.get(), /*server=*/true, timeout);
  if (r < 0) {
    log_tls_failure(peer_ip_, r, stream_);
    co_return false;
  }
  // RFC 3207 4.2: forget everything the client said before TLS, including who it was.
  reset_transaction();
  helo_.clear();
  esmtp_ = false;
  authenticated_ = false;
  auth_user_.clear();
  owned_.clear();
  co_return true;
}

void Session::cmd_rset() {
  reset_transaction();
  reply("250 2.0.0 Ok");
}

void Session::reset_transaction() {
  has_mail_ = false;
  env_ = queue::Envelope{};
  rcpt_attempts_ = 0;
  bdat_started_ = false;
  std::string().swap(body_);
  trace_len_ = 0;
  ls_.inflight_bytes -= held_;
  held_ = 0;
}

rt::Task<void> serve(Context& ctx, LoopState& ls, rt::Loop& loop, int fd, Role role) {
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len);
  rt::set_nodelay(fd);
  Session s(ctx, ls, loop, fd, peer, role);
  co_await s.run();
}

}  // namespace ringmail::smtp
