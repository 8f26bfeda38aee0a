#include "dns/servers.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <charconv>

namespace ringmail::dns {

namespace {

Error bad(std::string_view text, const char* why) {
  return Error{EINVAL, "dns server \"" + std::string(text) + "\": " + why};
}

}  // namespace

Result<Server> parse_server(std::string_view text) {
  std::string_view host = text, port_text;
  bool v6 = false, has_port = false;
  if (text.starts_with('[')) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || (close + 1 < text.size() && text[close + 1] != ':'))
      return bad(text, "expected \"[ipv6]\" or \"[ipv6]:port\"");
    v6 = true;
    host = text.substr(1, close - 1);
    has_port = close + 1 < text.size();
    if (has_port) port_text = text.substr(close + 2);
  } else if (size_t colon = text.find(':'); colon != std::string_view::npos) {
    // "::1:53" is itself a valid IPv6 address, so a bare IPv6 address with a port would
    // be read wrongly; brackets are required instead of guessing.
    if (text.find(':', colon + 1) != std::string_view::npos)
      return bad(text, "IPv6 addresses are written in brackets, e.g. \"[::1]:53\"");
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    has_port = true;
  }
  Server s;
  if (has_port) {
    unsigned v = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), v);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || v == 0 || v > 65535 ||
        port_text.starts_with('+'))
      return bad(text, "port must be a number from 1 to 65535");
    s.port = static_cast<uint16_t>(v);
  }
  std::string h(host);
  if (h.find('\0') != std::string::npos) return bad(text, "contains a NUL character");
  if (v6 && inet_pton(AF_INET6, h.c_str(), s.addr.data()) == 1) {
    s.family = AF_INET6;
  } else if (!v6 && inet_pton(AF_INET, h.c_str(), s.addr.data()) == 1) {
    s.family = AF_INET;
  } else {
    return bad(text, v6 ? "not a numeric IPv6 address" : "not a numeric IPv4 address");
  }
  return s;
}

Result<std::vector<Server>> parse_servers(const std::vector<std::string>& entries) {
  std::vector<Server> out;
  out.reserve(entries.size());
  for (const std::string& e : entries) {
    auto s = parse_server(e);
    if (!s) return s.error();
    out.push_back(s.value());
  }
  return out;
}

}  // namespace ringmail::dns
