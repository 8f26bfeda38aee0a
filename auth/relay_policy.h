// RelayPolicy: may this recipient be accepted from this client?
//
// DESIGN "Auth and relay policy": relay only to local domains, or from an authenticated
// user, or from relay.trusted_networks; everything else is 554 5.7.1 at RCPT. A recipient
// counts as local only if nothing in it can route the mail elsewhere: no source route,
// no '%' or '!' in the local part, no quoted local part hiding an '@', no address
// literal. The policy is pure: no I/O, no state, safe on any thread.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>
#include <vector>

#include "auth/address.h"
#include "conf/config.h"

namespace ringmail::auth {

enum class RcptDecision {
  local,  // for a local domain: deliver to the mailbox store
  relay,  // not local, but this client may relay
  denied  // 554 5.7.1 Relay access denied
};

class RelayPolicy {
 public:
  RelayPolicy(std::vector<std::string> local_domains, std::vector<conf::Cidr> trusted);
  explicit RelayPolicy(const conf::Config& c);

  bool is_local_domain(std::string_view lower_domain) const;
  bool is_trusted(const sockaddr* peer) const;
  // True when the recipient is plainly a mailbox of a local domain.
  bool is_local_recipient(const Path& rcpt) const;
  RcptDecision check(const Path& rcpt, const sockaddr* peer, bool authenticated) const;

 private:
  std::vector<std::string> local_domains_;
  std::vector<conf::Cidr> trusted_;
};

}  // namespace ringmail::auth
