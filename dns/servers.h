// dns: the `dns.servers` list.
//
// This header owns the syntax of one `dns.servers` entry: a numeric IPv4 "a.b.c.d" or
// bracketed IPv6 "[::1]", each with an optional ":port" (53 when absent), the same
// grammar the config loader checks. Names are refused: resolving the resolver's own
// address would need the resolver. It never touches c-ares; the resolver turns the
// parsed list into c-ares' server list, and an empty list means /etc/resolv.conf.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"

namespace ringmail::dns {

struct Server {
  int family = 0;                  // AF_INET or AF_INET6
  std::array<uint8_t, 16> addr{};  // the first 4 for AF_INET
  uint16_t port = 53;
  bool operator==(const Server&) const = default;
};

Result<Server> parse_server(std::string_view text);
// Fails on the first bad entry, naming it.
Result<std::vector<Server>> parse_servers(const std::vector<std::string>& entries);

}  // namespace ringmail::dns
