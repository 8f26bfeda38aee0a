// DATA and BDAT: receiving the message, and handing it to the queue.
#include <chrono>
#include <coroutine>

#include "mta/runtime/tls.h"
#include "mta/smtp/command_parser.h"
#include "mta/smtp/data_decoder.h"
#include "mta/smtp/received.h"
#include "mta/smtp/session.h"

namespace ringmail::smtp {

namespace {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Hands a message to the Committer and resumes the session, on its own loop, once the
// transaction holding it is on disk (or has failed).
class EnqueueOp final : public queue::EnqueueRequest, public rt::Posted {
 public:
  EnqueueOp(rt::Loop& loop, queue::Committer& committer) : loop_(loop), committer_(committer) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    h_ = h;
    committer_.submit(this);
  }
  Status await_resume() { return std::move(status); }

  void on_done() override { loop_.post(this); }  // committer thread
  void run() override { h_.resume(); }           // loop thread

 private:
  rt::Loop& loop_;
  queue::Committer& committer_;
  std::coroutine_handle<> h_;
};

constexpr std::string_view kTooBig = "552 5.3.4 Message size exceeds fixed maximum message size";
constexpr std::string_view kNoResources = "452 4.3.1 Insufficient system resources";

}  // namespace

void Session::account(uint64_t added) {
  held_ += added;
  ls_.inflight_bytes += added;
}

bool Session::over_budget() const {
  return ls_.inflight_bytes > ctx_.config.limits.max_inflight_bytes;
}

void Session::start_message() {
  id_ = queue::next_queue_id();
  TraceInfo t;
  t.helo = helo_;
  t.client_ip = peer_ip_;
  t.hostname = ctx_.config.server.hostname;
  // RFC 3848 / RFC 6531 names: S for TLS, A for AUTH, both for ESMTPSA.
  std::string protocol = env_.smtputf8 ? "UTF8SMTP" : (esmtp_ ? "ESMTP" : "SMTP");
  if (esmtp_) {
    if (stream_.tls()) protocol += 'S';
    if (authenticated_) protocol += 'A';
  }
  t.protocol = protocol;
  std::string tls;
  if (const rt::TlsConn* c = stream_.tls()) {
    tls = "using " + std::string(c->version()) + " with cipher " + std::string(c->cipher()) + " (" +
          std::to_string(c->cipher_bits()) + " bits)";
    t.tls = tls;
  }
  std::string qid = id_.str();
  t.queue_id = qid;
  // "for" only names a single recipient: listing several would disclose Bcc: recipients.
  if (env_.recipients.size() == 1) t.recipient = env_.recipients[0].address;
  t.unix_time = now_us() / 1000000;
  body_ = received_header(t);
  trace_len_ = body_.size();
  if (env_.declared_size)
    body_.reserve(trace_len_ + std::min(env_.declared_size, ctx_.config.limits.max_message_size) +
                  1024);
  account(body_.size());
}

rt::Task<int> Session::fill_content(rt::Duration timeout) {
  // Replies still pending (pipelined ones before a BDAT) go out before we wait.
  if (stream_.pending_output()) {
    int r = co_await stream_.flush(timeout);
    if (r < 0) {
      in_data_ = false;
      co_return r;
    }
  }
  int n = co_await stream_.fill(timeout, 1);
  if (n > 0) co_return n;
  in_data_ = false;
  const auto& host = ctx_.config.server.hostname;
  if (n == -ETIME)
    reply("421 4.4.2 " + host + " Error: timeout exceeded");
  else if (n == -ECANCELED)
    reply("421 4.3.2 " + host + " Service shutting down");
  co_return n;
}

rt::Task<bool> Session::cmd_data() {
  const auto& limits = ctx_.config.limits;
  if (!has_mail_) {
    reply("503 5.5.1 Error: need MAIL command");
    count_error();
    co_return true;
  }
  if (env_.recipients.empty()) {
    // RFC 2920 3.1: after pipelined RCPTs that all failed, DATA gets 554 "no valid recipients".
    reply(rcpt_attempts_ ? "554 5.5.1 Error: no valid recipients"
                         : "503 5.5.1 Error: need RCPT command");
    count_error();
    co_return true;
  }
  if (bdat_started_) {
    reply("503 5.5.1 Error: DATA cannot follow BDAT");
    count_error();
    co_return true;
  }
  if (over_budget()) {
    reply(kNoResources);
    co_return true;
  }
  start_message();
  reply("354 End data with <CR><LF>.<CR><LF>");
  const auto timeout = std::chrono::duration_cast<rt::Duration>(limits.data_timeout);
  if (co_await stream_.flush(timeout) < 0) co_return false;

  DataDecoder dec({limits.max_message_size, limits.max_line_length, limits.reject_bare_lf});
  std::string scratch;  // where content goes once we stop keeping it
  std::string* sink = &body_;
  in_data_ = true;
  for (;;) {
    std::string_view in = stream_.input();
    if (!in.empty()) {
      size_t before = sink->size();
      size_t used = dec.feed(in, *sink);
      stream_.consume(used);
      if (sink == &body_) {
        account(body_.size() - before);
        if (over_budget()) sink = &scratch;  // keep reading to the end, keep nothing
      } else {
        scratch.clear();
      }
      if (dec.done()) break;
    }
    int n = co_await fill_content(timeout);
    if (n <= 0) co_return false;
  }
  in_data_ = false;
  switch (dec.fault()) {
    case DataDecoder::Fault::none:
      break;
    case DataDecoder::Fault::bare_lf:
    case DataDecoder::Fault::bare_cr:
      // RFC 5321 2.3.8: CR and LF only as CRLF. Accepting them lets a message smuggle
      // a second one past another server's idea of where DATA ends.
      reply("554 5.6.0 Message rejected: bare CR or LF in message text (RFC 5321 2.3.8)");
      reset_transaction();
      co_return true;
    case DataDecoder::Fault::line_too_long:
      reply("554 5.6.0 Message rejected: line longer than " +
            std::to_string(limits.max_line_length) + " octets (RFC 5321 4.5.3.1.6)");
      reset_transaction();
      co_return true;
    case DataDecoder::Fault::too_big:
      reply(kTooBig);
      reset_transaction();
      co_return true;
  }
  if (sink != &body_) {
    reply(kNoResources);
    reset_transaction();
    co_return true;
  }
  co_await finish_message();
  co_return true;
}

rt::Task<bool> Session::cmd_bdat(std::string_view arg) {
  const auto& limits = ctx_.config.limits;
  auto b = parse_bdat(arg);
  if (!b) {
    // Without a size we cannot find where the chunk ends: the session cannot continue.
    reply_error(b.error());
    co_return false;
  }
  // Decide before reading whether to keep the chunk; it is read either way (RFC 3030 2).
  std::string refuse;
  if (!has_mail_) {
    refuse = "503 5.5.1 Error: need MAIL command";
  } else if (env_.recipients.empty()) {
    refuse = rcpt_attempts_ ? "554 5.5.1 Error: no valid recipients"
                            : "503 5.5.1 Error: need RCPT command";
  } else if (b->size > limits.max_message_size - (bdat_started_ ? body_.size() - trace_len_ : 0)) {
    // Written as a subtraction: "BDAT 18446744073709551615" must not wrap around.
    refuse = kTooBig;
  } else if (over_budget()) {
    refuse = kNoResources;
  }
  if (b->size > limits.max_message_size) {
    // Draining a chunk larger than any message we accept would only make us a free sink
    // (up to 2^64 octets); say why and hang up instead.
    reply(kTooBig);
    co_return false;
  }
  if (refuse.empty() && !bdat_started_) {
    start_message();
    bdat_started_ = true;
  }
  const auto timeout = std::chrono::duration_cast<rt::Duration>(limits.data_timeout);
  uint64_t left = b->size;
  in_data_ = true;
  while (left) {
    std::string_view in = stream_.input();
    if (in.empty()) {
      int n = co_await fill_content(timeout);
      if (n <= 0) co_return false;
      continue;
    }
    size_t take = static_cast<size_t>(std::min<uint64_t>(left, in.size()));
    if (refuse.empty()) {
      body_.append(in.data(), take);
      account(take);
    }
    stream_.consume(take);
    left -= take;
  }
  in_data_ = false;
  if (!refuse.empty()) {
    reply(refuse);
    if (has_mail_) reset_transaction();  // a refused chunk ends the transaction
    count_error();
    co_return true;
  }
  if (b->last) {
    co_await finish_message();
  } else {
    reply("250 2.0.0 Ok: " + std::to_string(b->size) + " octets received");
  }
  co_return true;
}

rt::Task<void> Session::finish_message() {
  env_.client_address = peer_ip_;
  env_.helo = helo_;
  env_.message_id = find_message_id(std::string_view(body_).substr(trace_len_));
  env_.body_size = body_.size();
  env_.arrival_us = now_us();
  EnqueueOp op(loop_, ctx_.committer);
  op.id = id_;
  op.envelope = std::move(env_);
  op.body = std::move(body_);
  Status st = co_await op;
  if (st) {
    reply("250 2.0.0 Ok: queued as " + id_.str());
  } else {
    std::fprintf(stderr, "smtp: %s not queued: %s\n", id_.str().c_str(),
                 st.error().message.c_str());
    reply(std::to_string(st.error().code) + " " + st.error().message);
  }
  reset_transaction();
}

}  // namespace ringmail::smtp
