// MAIL and RCPT: check everything first, then change the transaction.
#include <cctype>
#include <string>

#include "auth/address.h"
#include "auth/user_db.h"
#include "mta/smtp/command_parser.h"
#include "mta/smtp/session.h"

namespace ringmail::smtp {

void Session::cmd_mail(std::string_view arg) {
  if (helo_.empty()) {
    reply("503 5.5.1 Error: send HELO/EHLO first");
    count_error();
    return;
  }
  if (has_mail_) {
    reply("503 5.5.1 Error: nested MAIL command");
    count_error();
    return;
  }
  if (role_ != Role::smtp && !authenticated_) {
    // RFC 6409 4.3 / RFC 8314: submission is for authenticated users only.
    reply("530 5.7.0 Authentication required");
    count_error();
    return;
  }
  auto m = parse_mail_from(arg);
  if (!m) {
    reply_error(m.error());
    count_error();
    return;
  }
  if (authenticated_ && !sender_allowed(m->path.str())) {
    reply("553 5.7.1 <" + m->path.str() + ">: Sender address rejected: not owned by user " +
          auth_user_);
    count_error();
    return;
  }
  bool has_params = m->size || m->body != queue::BodyType::unspecified || m->smtputf8 ||
                    !m->auth.empty() || m->ret != queue::Ret::unspecified || !m->envid.empty();
  if (has_params && !esmtp_) {
    // Parameters are ESMTP: a client that said HELO was not offered any.
    reply("555 5.5.4 MAIL parameters need EHLO");
    count_error();
    return;
  }
  if (m->size > ctx_.config.limits.max_message_size) {
    reply("552 5.3.4 Message size exceeds fixed maximum message size");
    return;
  }
  has_mail_ = true;
  env_ = queue::Envelope{};
  env_.sender = m->path.str();
  env_.declared_size = m->size;
  env_.body = m->body;
  env_.smtputf8 = m->smtputf8;
  env_.ret = m->ret;
  env_.envid = std::move(m->envid);
  env_.auth_user = auth_user_;  // who submitted it, for the record (ringctl queue show)
  reply("250 2.1.0 Ok");
}

void Session::cmd_rcpt(std::string_view arg) {
  if (!has_mail_) {
    reply("503 5.5.1 Error: need MAIL command");
    count_error();
    return;
  }
  ++rcpt_attempts_;
  auto r = parse_rcpt_to(arg, env_.smtputf8);
  if (!r) {
    reply_error(r.error());
    count_error();
    return;
  }
  if ((r->notify || !r->orcpt.empty()) && !esmtp_) {
    reply("555 5.5.4 RCPT parameters need EHLO");
    count_error();
    return;
  }
  if (r->path.mailbox.domain.empty()) {
    // RCPT TO:<Postmaster> (RFC 5321 4.1.1.3): this server's postmaster, which is the
    // postmaster of its first local domain, so a user or alias of that name gets it. A
    // server with no local domain (a pure relay) has no mailbox to put it in.
    if (ctx_.config.relay.local_domains.empty()) {
      reply("550 5.1.1 <" + r->path.mailbox.local + ">: no local postmaster mailbox here");
      count_error();
      return;
    }
    r->path.mailbox.domain = ctx_.config.relay.local_domains.front();
  }
  if (env_.recipients.size() >= ctx_.config.limits.max_recipients) {
    // 452, not 552: RFC 5321 4.5.3.1.10 asks clients to retry the rest later.
    reply("452 4.5.3 Error: too many recipients");
    return;
  }
  const std::string address = r->path.str();
  auto decision =
      ctx_.policy.check(r->path, reinterpret_cast<const sockaddr*>(&peer_), authenticated_);
  if (decision == auth::RcptDecision::denied) {
    reply("554 5.7.1 <" + address + ">: Relay access denied");
    count_error();  // relay probing counts towards max_errors like any refused command
    return;
  }
  if (decision == auth::RcptDecision::local && ctx_.config.relay.reject_unknown_recipients &&
      ctx_.auth.users && !auth::is_postmaster(address)) {
    // A few B-tree page reads from the user database's memory map (auth/user_db.h), so it
    // runs here rather than on a worker: refusing now is what saves the bounce later.
    auto owner = ctx_.auth.users->find_owner(address);
    if (!owner) {
      reply("451 4.3.0 <" + address + ">: Recipient lookup failed, try again later");
      return;
    }
    if (!owner->has_value()) {
      reply("550 5.1.1 <" + address + ">: Recipient address rejected: user unknown");
      count_error();  // address harvesting counts towards max_errors too
      return;
    }
  }
  queue::Recipient rc;
  rc.address = address;
  rc.orcpt = std::move(r->orcpt);
  rc.notify = r->notify;
  env_.recipients.push_back(std::move(rc));
  reply("250 2.1.5 Ok");
}

bool Session::sender_allowed(std::string_view sender) const {
  if (!ctx_.config.auth.sender_ownership || sender.empty()) return true;  // <> is nobody
  std::string lower(sender);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& a : owned_)
    if (a == lower) return true;
  return false;
}

}  // namespace ringmail::smtp
