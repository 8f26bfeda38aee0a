// SmtpClient: one outbound SMTP connection (RFC 5321) as coroutines on an rt::Stream.
//
// It owns the connected socket (through the Stream) and speaks the client side of the
// protocol: greeting, EHLO with HELO fallback, STARTTLS (RFC 3207), AUTH PLAIN (RFC 4954)
// to a smart host, and mail transactions with SIZE (RFC 1870), 8BITMIME (RFC 6152),
// SMTPUTF8 (RFC 6531), DSN (RFC 3461) and PIPELINING (RFC 2920). It reports what the
// server said, per recipient, classified delivered / deferred / failed. It never
// resolves names, picks MX hosts, retries, decides TLS or certificate policy, touches the
// queue or writes a DSN: those are the scheduler's; it never sends a message the server
// has told it (SIZE, missing SMTPUTF8) it cannot take. Every wait has a deadline
// (RFC 5321 4.5.3.2); a timeout or lost connection is a deferral, never a bounce.
//
// Use: greet() once, then optionally starttls() and auth_plain(), then send() any number
// of times (it sends RSET first when the previous transaction left the server mid-way),
// then quit(). After any failure that leaves the connection unusable (usable() false)
// only quit() or destruction make sense. One call at a time; arguments passed by
// reference or view must outlive the awaited call.
#pragma once

#include <openssl/base.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"
#include "mta/delivery/smtp_reply.h"
#include "mta/runtime/loop.h"
#include "mta/runtime/stream.h"
#include "mta/runtime/task.h"
#include "queue/envelope.h"

namespace ringmail::delivery {

// RFC 5321 4.5.3.2 client timeouts; tests inject short ones.
struct Timeouts {
  rt::Duration connect = std::chrono::seconds(30);  // not in the RFC; used by connect_to()
  rt::Duration greeting = std::chrono::minutes(5);  // initial 220
  // EHLO/HELO, STARTTLS and its handshake, AUTH, RSET (RFC 5321 gives none; as MAIL)
  rt::Duration command = std::chrono::minutes(5);
  rt::Duration mail = std::chrono::minutes(5);         // MAIL FROM reply
  rt::Duration rcpt = std::chrono::minutes(5);         // each RCPT TO reply
  rt::Duration data_init = std::chrono::minutes(2);    // DATA's 354
  rt::Duration data_block = std::chrono::minutes(3);   // each send of the message body
  rt::Duration data_final = std::chrono::minutes(10);  // reply to the final dot
  rt::Duration quit = std::chrono::seconds(10);        // QUIT's 221: nothing depends on it
};

enum class Outcome : uint8_t { delivered, deferred, failed };
std::string_view outcome_name(Outcome o);

// How one recipient (or the message as a whole) ended on this connection.
struct Response {
  Outcome outcome = Outcome::deferred;
  // The server's reply code, or 0 when the outcome was decided here (timeout, lost
  // connection, protocol error, a SIZE or SMTPUTF8 refusal before sending).
  int code = 0;
  // RFC 3463 status: the server's enhanced code, or one derived from the reply class
  // ("4.0.0", "5.0.0") when it gave none, or ours (5.3.4, 5.6.7, 4.4.2, 4.4.1 ...).
  std::string status;
  // The reply on one line ("550 5.1.1 User unknown") or our own explanation
  // ("timeout after RCPT"); ready for a log or a DSN Diagnostic-Code when code != 0.
  std::string text;
};

// A failed greet()/starttls()/auth_plain()/reset(): Error::code is the server's reply
// code (e.g. 554, 421, 454, 535) or 0 for a timeout, a lost connection or a protocol
// error, and Error::message the reply on one line or our explanation. A 5xx code is
// permanent for this host; anything else temporary.
Outcome outcome_of(const Error& e);

// What send() needs of the envelope (views into the caller's storage).
struct MailParams {
  std::string_view sender;  // without angle brackets; empty: the null path <>
  queue::BodyType body = queue::BodyType::unspecified;
  bool smtputf8 = false;  // the message came in with SMTPUTF8
  queue::Ret ret = queue::Ret::unspecified;
  std::string_view envid;  // RFC 3461 xtext, passed on verbatim
};

struct RcptParams {
  std::string_view address;  // without angle brackets
  std::string_view orcpt;    // "rfc822;xtext" verbatim, empty: none
  uint8_t notify = 0;        // queue::Notify bits, 0: not given
};

MailParams mail_params(const queue::Envelope& e);
RcptParams rcpt_params(const queue::Recipient& r);

// Whether the message really needs SMTPUTF8: it came with SMTPUTF8 and an envelope
// address or the header section holds a non-ASCII byte (as Postfix's autodetection; a
// client that asks for SMTPUTF8 on plain ASCII mail need not bounce at an older host).
bool needs_smtputf8(const MailParams& m, std::span<const RcptParams> rcpts,
                    std::string_view message);

struct TransactionResult {
  // The message as a whole: delivered on the final 250; otherwise why it was not (MAIL
  // refused, no recipient accepted, DATA refused, the final reply, a timeout ...).
  Response message;
  // One per recipient, in the order given: a refused RCPT keeps its own reply; an
  // accepted one gets the message's outcome.
  std::vector<Response> recipients;
  // DSN parameters went to the next hop (it offers DSN). False: the caller owes
  // "relayed" notices to recipients that asked NOTIFY=SUCCESS (RFC 3461 4.2).
  bool dsn_passed_on = false;
};

class SmtpClient {
 public:
  // Takes ownership of the connected socket `fd`.
  SmtpClient(rt::Loop& loop, int fd, const Timeouts& t = {}, const ReplyLimits& limits = {});
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // Reads the 220 greeting and sends EHLO; on a 5xx to EHLO (a server without ESMTP)
  // sends HELO and reports no extensions. A 554 (or other non-220) greeting is returned
  // as an error carrying the code.
  rt::Task<Result<Capabilities>> greet(std::string_view helo_name);

  // STARTTLS, the client handshake (SNI `sni` if not empty) and EHLO again: capabilities
  // learnt before TLS are forgotten (RFC 3207 4.2). An error before the handshake
  // (not offered: code 0, nothing sent; 454) leaves the plaintext connection usable, so
  // opportunistic TLS can carry on; a failed handshake does not. Certificate checks are
  // whatever `ctx` is set up to do.
  rt::Task<Status> starttls(SSL_CTX* ctx, std::string_view sni);

  // AUTH PLAIN (RFC 4616) with an initial response. Refused without sending anything if
  // the server does not offer PLAIN, or if the connection is not TLS and
  // `allow_plaintext` is false.
  rt::Task<Status> auth_plain(std::string_view user, std::string_view password,
                              bool allow_plaintext = false);

  // One mail transaction. `message` is the stored message (header and body, CRLF line
  // ends; bare LF is sent as CRLF); dot-stuffing and the final dot are added here.
  // Refused here, with nothing sent: a message over the server's SIZE (5.3.4), one that
  // needs SMTPUTF8 where it is not offered (5.6.7). BODY=8BITMIME goes along when the
  // message is 8-bit (declared, or 8-bit bytes when undeclared) and the server offers it;
  // an 8-bit message to a server without 8BITMIME is sent as it is, as Postfix does,
  // rather than converted. DATA only: CHUNKING/BDAT is not used.
  rt::Task<TransactionResult> send(const MailParams& mail, std::span<const RcptParams> rcpts,
                                   std::string_view message);

  // Any time, even while another call waits: shuts the socket down so a pending read or
  // send ends at once (daemon shutdown must not wait for a stalled server). The waiting
  // call reports a lost connection.
  void abort();
  // Between transactions: whether the connection can still carry one. False when the
  // server has closed it or sent something unasked (a 421, a TLS alert) while we held
  // it idle: reusing it would only lose the next message to "connection lost".
  bool idle_ok() const;
  // RSET, so the connection can carry another message.
  rt::Task<Status> reset();
  // QUIT and close_notify, best effort; the connection is unusable afterwards.
  rt::Task<void> quit();

  const Capabilities& capabilities() const { return caps_; }
  // The greeting's first line text (server name and banner), for the log.
  const std::string& banner() const { return banner_; }
  // False after a timeout, a lost connection, a protocol error, a 421 or a failed
  // handshake: do not send more on it.
  bool usable() const { return usable_; }
  const rt::TlsConn* tls() const { return stream_.tls(); }

 private:
  enum class Io { ok, timeout, closed, protocol };
  rt::Task<Io> read_reply(rt::Duration timeout, Reply& out);
  rt::Task<Io> flush(rt::Duration timeout);
  // Why an exchange produced no reply ("timeout after RCPT"); the connection is broken.
  Response lost(Io s, std::string_view phrase);
  // `r` judged against the reply class the command expects (2, or 3 for DATA); an
  // unexpected class is a protocol error that breaks the connection.
  Response judge(const Reply& r, int want, std::string_view phrase);
  rt::Task<Result<Capabilities>> ehlo();
  void write_mail(const MailParams& m, bool utf8, bool eight_bit, uint64_t size);
  void write_rcpt(const RcptParams& r);
  void write_body(std::string_view message);

  rt::Stream stream_;
  Timeouts timeouts_;
  ReplyLimits limits_;
  ReplyParser parser_;
  Capabilities caps_;
  std::string banner_;
  std::string helo_name_;
  std::string last_io_error_;  // what the last failed read or send saw, for the text
  bool usable_ = true;         // the server will take another command from us
  bool broken_ = false;        // the transport is dead or out of step: not even QUIT
  bool dirty_ = false;         // a transaction was started and not finished or reset
};

// Connects a new TCP socket to `addr` with the ring's connect op: the fd, or an error
// (Error::code is the errno; -ETIME → ETIMEDOUT).
rt::Task<Result<int>> connect_to(rt::Loop& loop, const sockaddr* addr, socklen_t len,
                                 rt::Duration timeout);

}  // namespace ringmail::delivery
