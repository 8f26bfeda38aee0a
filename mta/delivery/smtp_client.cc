#include "mta/delivery/smtp_client.h"

#include <openssl/mem.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "auth/sasl.h"
#include "mta/runtime/ops.h"
#include "mta/runtime/tls.h"

namespace ringmail::delivery {

namespace {

// RFC 4954 4: a command line with its initial response stays within 512 octets;
// longer credentials go in a separate line after the 334.
constexpr size_t kMaxAuthLine = 512;

enum : char { kPending = 0, kRejected = 1, kAccepted = 2 };

bool non_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  return false;
}

// A value from the queue goes into a command line verbatim; one holding CR, LF or NUL
// would let it smuggle a command of its own, so it is refused instead.
bool line_safe(std::string_view s) {
  for (char c : s)
    if (c == '\r' || c == '\n' || c == '\0') return false;
  return true;
}

// xtext (RFC 3461 4) is printable ASCII without spaces; anything else is not passed on.
bool xtext_safe(std::string_view s) {
  for (char c : s)
    if (c <= ' ' || c > '~') return false;
  return true;
}

std::string_view header_section(std::string_view m) {
  size_t end = m.find("\r\n\r\n");
  if (end == std::string_view::npos) end = m.find("\n\n");
  return end == std::string_view::npos ? m : m.substr(0, end);
}

Response local(Outcome o, std::string status, std::string text) {
  Response r;
  r.outcome = o;
  r.status = std::move(status);
  r.text = std::move(text);
  return r;
}

// The whole transaction ended with `r`: every recipient the server did not refuse on its
// own shares it (RFC 5321 3.3: a failed MAIL, DATA or final reply covers them all).
void settle(TransactionResult& t, const std::vector<char>& state, const Response& r) {
  t.message = r;
  for (size_t i = 0; i < state.size(); ++i)
    if (state[i] != kRejected) t.recipients[i] = r;
}

std::string notify_param(uint8_t n) {
  if (n & queue::kNotifyNever) return "NEVER";
  std::string s;
  if (n & queue::kNotifySuccess) s += "SUCCESS";
  if (n & queue::kNotifyFailure) s += s.empty() ? "FAILURE" : ",FAILURE";
  if (n & queue::kNotifyDelay) s += s.empty() ? "DELAY" : ",DELAY";
  return s;
}

}  // namespace

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::delivered:
      return "delivered";
    case Outcome::deferred:
      return "deferred";
    case Outcome::failed:
      return "failed";
  }
  return "?";
}

Outcome outcome_of(const Error& e) {
  return e.code >= 500 && e.code < 600 ? Outcome::failed : Outcome::deferred;
}

MailParams mail_params(const queue::Envelope& e) {
  MailParams m;
  m.sender = e.sender;
  m.body = e.body;
  m.smtputf8 = e.smtputf8;
  m.ret = e.ret;
  m.envid = e.envid;
  return m;
}

RcptParams rcpt_params(const queue::Recipient& r) {
  return RcptParams{r.address, r.orcpt, r.notify};
}

bool needs_smtputf8(const MailParams& m, std::span<const RcptParams> rcpts,
                    std::string_view message) {
  if (!m.smtputf8) return false;
  if (non_ascii(m.sender)) return true;
  for (const auto& r : rcpts)
    if (non_ascii(r.address)) return true;
  return non_ascii(header_section(message));
}

SmtpClient::SmtpClient(rt::Loop& loop, int fd, const Timeouts& t, const ReplyLimits& limits)
    : stream_(loop, fd), timeouts_(t), limits_(limits), parser_(limits) {}

rt::Task<SmtpClient::Io> SmtpClient::read_reply(rt::Duration timeout, Reply& out) {
  if (broken_) co_return Io::closed;
  for (;;) {
    size_t used = 0;
    Result<bool> r = parser_.parse(stream_.input(), used);
    if (used) stream_.consume(used);
    if (!r.ok()) {
      last_io_error_ = r.error().message;
      co_return Io::protocol;
    }
    if (r.value()) {
      out = parser_.take();
      co_return Io::ok;
    }
    // The parser leaves at most one partial line unconsumed, so this bound never bites
    // before the parser's own line limit does.
    int n = co_await stream_.fill(timeout, limits_.max_line + 8);
    if (n > 0) continue;
    if (n == -ETIME) co_return Io::timeout;
    last_io_error_ = n == 0 ? "" : n == -EPROTO && tls() ? tls()->error() : std::strerror(-n);
    co_return Io::closed;
  }
}

rt::Task<SmtpClient::Io> SmtpClient::flush(rt::Duration timeout) {
  if (broken_) co_return Io::closed;
  int r = co_await stream_.flush(timeout);
  if (r == 0) co_return Io::ok;
  if (r == -ETIME) co_return Io::timeout;
  last_io_error_ = r == -EPROTO && tls() ? tls()->error() : std::strerror(-r);
  co_return Io::closed;
}

Response SmtpClient::lost(Io s, std::string_view phrase) {
  usable_ = false;
  broken_ = true;
  Response r;
  r.outcome = Outcome::deferred;
  // RFC 3463: 4.4.2 "bad connection" for a peer that stopped answering or hung up.
  r.status = "4.4.2";
  if (s == Io::timeout) {
    r.text = "timeout ";
    r.text += phrase;
  } else if (s == Io::protocol) {
    r.status = "4.5.0";
    r.text = "protocol error ";
    r.text += phrase;
    r.text += ": " + last_io_error_;
  } else {
    r.text = "connection lost ";
    r.text += phrase;
    if (!last_io_error_.empty()) r.text += " (" + last_io_error_ + ")";
  }
  last_io_error_.clear();
  return r;
}

Response SmtpClient::judge(const Reply& rep, int want, std::string_view phrase) {
  Response r;
  r.code = rep.code;
  r.text = rep.summary();
  int k = rep.klass();
  if (k == want) {
    r.outcome = Outcome::delivered;
    r.status = rep.enhanced.empty() ? "2.0.0" : rep.enhanced;
  } else if (k == 4 || k == 5) {
    r.outcome = k == 4 ? Outcome::deferred : Outcome::failed;
    r.status = rep.enhanced.empty() ? std::to_string(k) + ".0.0" : rep.enhanced;
  } else {
    // A 354 to MAIL, a 250 to DATA: client and server disagree on where they are, and
    // nothing sent after this could be trusted to mean what we meant.
    usable_ = false;
    broken_ = true;
    r.outcome = Outcome::deferred;
    r.status = "4.5.0";
    r.text = "unexpected reply ";
    r.text += phrase;
    r.text += ": " + rep.summary();
  }
  // RFC 5321 3.8: 421 means the server is closing the channel.
  if (rep.code == 421) usable_ = false;
  return r;
}

rt::Task<Result<Capabilities>> SmtpClient::greet(std::string_view helo_name) {
  helo_name_ = std::string(helo_name);
  Reply r;
  Io io = co_await read_reply(timeouts_.greeting, r);
  if (io != Io::ok) {
    Response l = lost(io, "waiting for the greeting");
    co_return Error{0, l.text};
  }
  if (!r.lines.empty()) banner_ = r.lines.front();
  if (r.code != 220) {
    // RFC 5321 3.1: a 554 greeting means "no service here"; the caller may still QUIT.
    usable_ = false;
    co_return Error{r.code, r.summary()};
  }
  Result<Capabilities> c = co_await ehlo();
  co_return c;
}

rt::Task<Result<Capabilities>> SmtpClient::ehlo() {
  caps_ = Capabilities{};
  stream_.write("EHLO " + helo_name_ + "\r\n");
  Io io = co_await flush(timeouts_.command);
  Reply r;
  if (io == Io::ok) io = co_await read_reply(timeouts_.command, r);
  if (io != Io::ok) co_return Error{0, lost(io, "after EHLO").text};
  if (r.code == 250) {
    caps_ = parse_ehlo(r);
    co_return caps_;
  }
  if (r.klass() != 5) {
    if (r.code == 421) usable_ = false;
    co_return Error{r.code, r.summary()};
  }
  // RFC 5321 3.2: a server that does not know EHLO answers 5xx; HELO still works, with
  // no extensions.
  stream_.write("HELO " + helo_name_ + "\r\n");
  io = co_await flush(timeouts_.command);
  if (io == Io::ok) io = co_await read_reply(timeouts_.command, r);
  if (io != Io::ok) co_return Error{0, lost(io, "after HELO").text};
  if (r.code != 250) {
    if (r.code == 421) usable_ = false;
    co_return Error{r.code, r.summary()};
  }
  co_return caps_;
}

rt::Task<Status> SmtpClient::starttls(SSL_CTX* ctx, std::string_view sni) {
  if (!usable_) co_return Error{0, "connection not usable"};
  if (stream_.tls()) co_return Error{0, "TLS already active"};
  if (!caps_.starttls) co_return Error{0, "STARTTLS not offered"};
  stream_.write("STARTTLS\r\n");
  Io io = co_await flush(timeouts_.command);
  Reply r;
  if (io == Io::ok) io = co_await read_reply(timeouts_.command, r);
  if (io != Io::ok) co_return Error{0, lost(io, "after STARTTLS").text};
  if (r.code != 220) {
    if (r.code == 421) usable_ = false;
    co_return Error{r.code, r.summary()};
  }
  // start_tls() drops anything the server sent after its 220: replies injected before
  // the handshake must not be read as if they came over TLS (RFC 3207 6).
  int hs = co_await stream_.start_tls(ctx, false, timeouts_.command, sni);
  if (hs != 0) {
    usable_ = false;
    broken_ = true;
    std::string why = hs == -ETIME ? "timeout"
                      : hs == -EPROTO && tls() && !tls()->error().empty()
                          ? tls()->error()
                          : std::string(std::strerror(-hs));
    co_return Error{0, "TLS handshake failed: " + why};
  }
  // RFC 3207 4.2: forget what the server said before TLS and ask again.
  Result<Capabilities> c = co_await ehlo();
  if (!c.ok()) co_return c.error();
  co_return ok_status();
}

rt::Task<Status> SmtpClient::auth_plain(std::string_view user, std::string_view password,
                                        bool allow_plaintext) {
  if (!usable_) co_return Error{0, "connection not usable"};
  if (!caps_.has_auth("PLAIN")) co_return Error{0, "AUTH PLAIN not offered"};
  if (!stream_.tls() && !allow_plaintext)
    co_return Error{0, "refusing to send a password without TLS"};
  std::string raw;
  raw.push_back('\0');
  raw.append(user);
  raw.push_back('\0');
  raw.append(password);
  std::string resp = auth::encode_base64(raw);
  OPENSSL_cleanse(raw.data(), raw.size());
  bool inline_resp = resp.size() + 13 <= kMaxAuthLine;
  std::string line = inline_resp ? "AUTH PLAIN " + resp + "\r\n" : std::string("AUTH PLAIN\r\n");
  stream_.write(line);
  OPENSSL_cleanse(line.data(), line.size());
  Io io = co_await flush(timeouts_.command);
  Reply r;
  if (io == Io::ok) io = co_await read_reply(timeouts_.command, r);
  if (io == Io::ok && !inline_resp && r.code == 334) {
    resp += "\r\n";
    stream_.write(resp);
    io = co_await flush(timeouts_.command);
    if (io == Io::ok) io = co_await read_reply(timeouts_.command, r);
  }
  OPENSSL_cleanse(resp.data(), resp.size());
  if (io != Io::ok) co_return Error{0, lost(io, "after AUTH").text};
  if (r.code == 334) {
    // A challenge PLAIN should not send: cancel the exchange (RFC 4954 4) and stay in step.
    stream_.write("*\r\n");
    io = co_await flush(timeouts_.command);
    Reply cancel;
    if (io == Io::ok) io = co_await read_reply(timeouts_.command, cancel);
    if (io != Io::ok) co_return Error{0, lost(io, "after AUTH").text};
    co_return Error{0, "unexpected AUTH PLAIN challenge: " + r.summary()};
  }
  if (r.klass() != 2) {
    if (r.code == 421) usable_ = false;
    co_return Error{r.code, r.summary()};
  }
  co_return ok_status();
}

void SmtpClient::write_mail(const MailParams& m, bool utf8, bool eight_bit, uint64_t size) {
  std::string l = "MAIL FROM:<";
  l.append(m.sender);
  l += '>';
  if (caps_.size) l += " SIZE=" + std::to_string(size);
  if (eight_bit && caps_.eightbitmime) l += " BODY=8BITMIME";
  if (utf8) l += " SMTPUTF8";
  if (caps_.dsn) {
    if (m.ret == queue::Ret::full) l += " RET=FULL";
    if (m.ret == queue::Ret::hdrs) l += " RET=HDRS";
    if (!m.envid.empty() && xtext_safe(m.envid)) {
      l += " ENVID=";
      l.append(m.envid);
    }
  }
  l += "\r\n";
  stream_.write(l);
}

void SmtpClient::write_rcpt(const RcptParams& r) {
  std::string l = "RCPT TO:<";
  l.append(r.address);
  l += '>';
  if (caps_.dsn) {
    if (r.notify) l += " NOTIFY=" + notify_param(r.notify);
    if (!r.orcpt.empty() && xtext_safe(r.orcpt)) {
      l += " ORCPT=";
      l.append(r.orcpt);
    }
  }
  l += "\r\n";
  stream_.write(l);
}

void SmtpClient::write_body(std::string_view m) {
  // RFC 5321 4.5.2: a line that starts with "." gets another; every line ends in CRLF
  // (a bare LF from a locally made message included) and the data ends with CRLF.CRLF.
  size_t i = 0;
  while (i < m.size()) {
    if (m[i] == '.') stream_.write(".");
    size_t lf = m.find('\n', i);
    if (lf == std::string_view::npos) {
      stream_.write(m.substr(i));
      stream_.write("\r\n");
      break;
    }
    size_t end = lf > i && m[lf - 1] == '\r' ? lf - 1 : lf;
    stream_.write(m.substr(i, end - i));
    stream_.write("\r\n");
    i = lf + 1;
  }
  stream_.write(".\r\n");
}

rt::Task<TransactionResult> SmtpClient::send(const MailParams& mail,
                                             std::span<const RcptParams> rcpts,
                                             std::string_view message) {
  TransactionResult t;
  t.recipients.resize(rcpts.size());
  std::vector<char> state(rcpts.size(), kPending);
  if (dirty_ && usable_) {
    Status s = co_await reset();
    if (!s.ok()) {
      // Whatever RSET got, the message itself was never offered: try it again later.
      settle(t, state, local(Outcome::deferred, "4.4.2", "RSET failed: " + s.error().message));
      co_return t;
    }
  }
  if (!usable_) {
    settle(t, state, local(Outcome::deferred, "4.4.2", "connection not usable"));
    co_return t;
  }
  if (rcpts.empty()) {
    t.message = local(Outcome::failed, "5.5.1", "no recipients");
    co_return t;
  }
  if (!line_safe(mail.sender)) {
    settle(t, state, local(Outcome::failed, "5.1.7", "invalid sender address"));
    co_return t;
  }
  // What the EHLO reply already decides: nothing is offered that the server has said it
  // cannot take.
  bool utf8 = needs_smtputf8(mail, rcpts, message);
  if (utf8 && !caps_.smtputf8) {
    // RFC 6531 3.2: without SMTPUTF8 at the next hop the message cannot go on as it is.
    settle(
        t, state,
        local(Outcome::failed, "5.6.7", "message needs SMTPUTF8 but the server does not offer it"));
    co_return t;
  }
  const uint64_t size = message.size();
  if (caps_.size && caps_.size_limit > 0 && size > caps_.size_limit) {
    // RFC 1870 6: a message larger than the announced limit is not offered at all.
    settle(t, state,
           local(Outcome::failed, "5.3.4",
                 "message size " + std::to_string(size) + " exceeds the server's limit of " +
                     std::to_string(caps_.size_limit)));
    co_return t;
  }
  size_t sendable = 0;
  for (size_t i = 0; i < rcpts.size(); ++i) {
    if (line_safe(rcpts[i].address)) {
      ++sendable;
      continue;
    }
    state[i] = kRejected;
    t.recipients[i] = local(Outcome::failed, "5.1.3", "invalid recipient address");
  }
  if (sendable == 0) {
    t.message = local(Outcome::failed, "5.1.3", "no valid recipient address");
    co_return t;
  }
  // SMTPUTF8 goes along whenever the message came with it and the server takes it, even
  // if this copy happens to be ASCII (its body may still carry UTF-8 headers further on).
  const bool send_utf8 = mail.smtputf8 && caps_.smtputf8;
  bool eight_bit = mail.body == queue::BodyType::eight_bit_mime ||
                   mail.body == queue::BodyType::binary_mime ||
                   (mail.body == queue::BodyType::unspecified && non_ascii(message));
  t.dsn_passed_on = caps_.dsn;
  const bool pipelined = caps_.pipelining;

  dirty_ = true;
  write_mail(mail, send_utf8, eight_bit, size);
  Reply r;
  Response mail_resp;
  if (pipelined) {
    // RFC 2920 3.1: MAIL, every RCPT and DATA in one send; the replies come back in
    // order and are read one by one.
    for (size_t i = 0; i < rcpts.size(); ++i)
      if (state[i] == kPending) write_rcpt(rcpts[i]);
    stream_.write("DATA\r\n");
    Io io = co_await flush(timeouts_.mail);
    if (io == Io::ok) io = co_await read_reply(timeouts_.mail, r);
    if (io != Io::ok) {
      settle(t, state, lost(io, "after MAIL"));
      co_return t;
    }
    mail_resp = judge(r, 2, "after MAIL");
  } else {
    Io io = co_await flush(timeouts_.mail);
    if (io == Io::ok) io = co_await read_reply(timeouts_.mail, r);
    if (io != Io::ok) {
      settle(t, state, lost(io, "after MAIL"));
      co_return t;
    }
    mail_resp = judge(r, 2, "after MAIL");
    if (mail_resp.outcome != Outcome::delivered) {
      dirty_ = false;  // a refused MAIL leaves no transaction open
      settle(t, state, mail_resp);
      co_return t;
    }
  }
  if (!broken_) {
    size_t accepted = 0;
    for (size_t i = 0; i < rcpts.size(); ++i) {
      if (state[i] != kPending) continue;
      Io io = Io::ok;
      if (!pipelined) {
        write_rcpt(rcpts[i]);
        io = co_await flush(timeouts_.rcpt);
      }
      if (io == Io::ok) io = co_await read_reply(timeouts_.rcpt, r);
      if (io != Io::ok) {
        settle(t, state, lost(io, "after RCPT"));
        co_return t;
      }
      Response rr = judge(r, 2, "after RCPT");
      if (broken_) {
        settle(t, state, rr);
        co_return t;
      }
      // RFC 5321 4.5.3.1.10: 552 to RCPT is an old way of saying "too many
      // recipients"; it is temporary, like 452.
      if (r.code == 552) {
        rr.outcome = Outcome::deferred;
        if (rr.status[0] == '5') rr.status[0] = '4';
      }
      t.recipients[i] = rr;
      if (rr.outcome == Outcome::delivered) {
        state[i] = kAccepted;
        ++accepted;
      } else {
        state[i] = kRejected;
      }
    }
    if (pipelined && mail_resp.outcome != Outcome::delivered) {
      // RFC 2920 3.1: after a refused MAIL the RCPT replies mean nothing; MAIL's does.
      for (auto& s : state) s = kPending;
    }
    Io io = Io::ok;
    if (!pipelined && accepted > 0) {
      stream_.write("DATA\r\n");
      io = co_await flush(timeouts_.data_init);
    }
    Response data_resp;
    bool data_asked = pipelined || accepted > 0;
    if (data_asked) {
      if (io == Io::ok) io = co_await read_reply(timeouts_.data_init, r);
      if (io != Io::ok) {
        settle(t, state, lost(io, "after DATA"));
        co_return t;
      }
      data_resp = judge(r, 3, "after DATA");
      if (r.code != 354 && data_resp.outcome == Outcome::delivered) {
        data_resp = judge(r, 0, "after DATA");
      }
    }
    Response failure;
    bool failed = false;
    if (mail_resp.outcome != Outcome::delivered) {
      failure = mail_resp;
      failed = true;
    } else if (accepted == 0) {
      // Each recipient keeps its own refusal; the message is deferred if any may still go.
      bool any_deferred = false;
      for (const auto& x : t.recipients) any_deferred |= x.outcome == Outcome::deferred;
      failure = local(any_deferred ? Outcome::deferred : Outcome::failed,
                      any_deferred ? "4.0.0" : "5.0.0", "no recipient accepted");
      failed = true;
    } else if (data_resp.outcome != Outcome::delivered) {
      failure = data_resp;
      failed = true;
    }
    if (failed) {
      if (data_asked && !broken_ && r.code == 354) {
        // RFC 2920 3.1: the server took a pipelined DATA although the transaction cannot
        // go on; end the empty message so both sides stay in step, and ignore the reply.
        stream_.write(".\r\n");
        io = co_await flush(timeouts_.data_block);
        Reply ignored;
        if (io == Io::ok) io = co_await read_reply(timeouts_.data_final, ignored);
        if (io != Io::ok) (void)lost(io, "after end of data");
        dirty_ = false;
      }
      if (mail_resp.outcome != Outcome::delivered) dirty_ = false;
      settle(t, state, failure);
      co_return t;
    }
    write_body(message);
    io = co_await flush(timeouts_.data_block);
    if (io != Io::ok) {
      settle(t, state, lost(io, "while sending the message body"));
      co_return t;
    }
    io = co_await read_reply(timeouts_.data_final, r);
    if (io != Io::ok) {
      settle(t, state, lost(io, "after end of data"));
      co_return t;
    }
    dirty_ = false;
    settle(t, state, judge(r, 2, "after end of data"));
    co_return t;
  }
  settle(t, state, mail_resp);
  co_return t;
}

rt::Task<Status> SmtpClient::reset() {
  if (!usable_) co_return Error{0, "connection not usable"};
  stream_.write("RSET\r\n");
  Io io = co_await flush(timeouts_.command);
  Reply r;
  if (io == Io::ok) io = co_await read_reply(timeouts_.command, r);
  if (io != Io::ok) co_return Error{0, lost(io, "after RSET").text};
  if (r.klass() != 2) {
    // The server's transaction state is unknown now; do not build on it.
    usable_ = false;
    co_return Error{r.code, r.summary()};
  }
  dirty_ = false;
  co_return ok_status();
}

rt::Task<void> SmtpClient::quit() {
  if (broken_) co_return;
  usable_ = false;
  stream_.write("QUIT\r\n");
  Io io = co_await flush(timeouts_.quit);
  // RFC 5321 4.1.1.10: wait for the 221 so the server sees an orderly end.
  Reply r;
  if (io == Io::ok) io = co_await read_reply(timeouts_.quit, r);
  if (io == Io::ok && stream_.tls()) co_await stream_.close_tls(timeouts_.quit);
  broken_ = true;
}

bool SmtpClient::idle_ok() const {
  if (!usable_) return false;
  char c;
  ssize_t n = ::recv(stream_.fd(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void SmtpClient::abort() {
  ::shutdown(stream_.fd(), SHUT_RDWR);
}

rt::Task<Result<int>> connect_to(rt::Loop& loop, const sockaddr* addr, socklen_t len,
                                 rt::Duration timeout) {
  int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    co_return Error{e, std::string("socket: ") + std::strerror(e)};
  }
  rt::Connect op(loop, fd, addr, len, timeout);
  int r = co_await op;
  if (r < 0) {
    ::close(fd);
    int e = r == -ETIME ? ETIMEDOUT : -r;
    co_return Error{e, std::string("connect: ") + std::strerror(e)};
  }
  co_return fd;
}

}  // namespace ringmail::delivery
