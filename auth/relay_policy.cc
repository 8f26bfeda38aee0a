#include "auth/relay_policy.h"

#include <algorithm>

namespace ringmail::auth {

RelayPolicy::RelayPolicy(std::vector<std::string> local_domains, std::vector<conf::Cidr> trusted)
    : local_domains_(std::move(local_domains)), trusted_(std::move(trusted)) {}

RelayPolicy::RelayPolicy(const conf::Config& c)
    : RelayPolicy(c.relay.local_domains, c.relay.trusted_networks) {}

bool RelayPolicy::is_local_domain(std::string_view d) const {
  // A trailing dot names the same domain; anything else must match exactly.
  if (!d.empty() && d.back() == '.') d.remove_suffix(1);
  return std::find(local_domains_.begin(), local_domains_.end(), d) != local_domains_.end();
}

bool RelayPolicy::is_trusted(const sockaddr* peer) const {
  if (!peer) return false;
  return std::any_of(trusted_.begin(), trusted_.end(),
                     [peer](const conf::Cidr& c) { return c.contains(peer); });
}

bool RelayPolicy::is_local_recipient(const Path& rcpt) const {
  if (rcpt.null || rcpt.source_route || rcpt.mailbox.address_literal) return false;
  if (rcpt.mailbox.quoted_local) return false;  // "a@b"@local, "a%b"@local: never local
  // user%remote@local and remote!user@local are the classic relay tricks: a mailer that
  // honours them forwards the mail. They are not local mailboxes here.
  if (rcpt.mailbox.local.find_first_of("%!@") != std::string::npos) return false;
  return is_local_domain(rcpt.mailbox.domain);
}

RcptDecision RelayPolicy::check(const Path& rcpt, const sockaddr* peer, bool authenticated) const {
  if (is_local_recipient(rcpt)) return RcptDecision::local;
  // Nothing without a domain is local or relayed: the parser makes none but
  // "<Postmaster>", which the session maps to a local domain first.
  if (rcpt.null || rcpt.mailbox.domain.empty()) return RcptDecision::denied;
  if (authenticated || is_trusted(peer)) return RcptDecision::relay;
  return RcptDecision::denied;
}

}  // namespace ringmail::auth
