// The small value types of the config (protocols, CIDRs, durations) and describe().
//
// Kept apart from config_load.cc so that code using only these (the SMTP server checks
// trusted_networks on every connection) does not pull in toml++.
#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "conf/config.h"
#include "conf/quote.h"

namespace ringmail::conf {

std::string_view protocol_name(Protocol p) {
  switch (p) {
    case Protocol::smtp:
      return "smtp";
    case Protocol::submission:
      return "submission";
    case Protocol::submissions:
      return "submissions";
    case Protocol::pop3:
      return "pop3";
    case Protocol::pop3s:
      return "pop3s";
    case Protocol::imap:
      return "imap";
    case Protocol::imaps:
      return "imaps";
  }
  return "unknown";
}

// Message text quotes what the user wrote; control bytes are escaped so that every
// problem stays on one line, and very long input is cut so one typo cannot flood a log.
std::string quoted(std::string_view s) {
  std::string out = "'";
  size_t n = 0;
  for (unsigned char ch : s) {
    if (++n > 80) {
      out += "...";
      break;
    }
    if (ch < 0x20 || ch == 0x7f) {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    } else {
      out += static_cast<char>(ch);
    }
  }
  out += "'";
  return out;
}

namespace {

// Everything is compared in IPv6 space, IPv4 as ::ffff:a.b.c.d with the prefix moved by
// 96 bits. That makes a v4 peer on an AF_INET socket and the same peer seen as mapped on
// a dual-stack socket match exactly the same networks, whichever way the network was
// written.
void to_v6_space(bool v6, const uint8_t* addr, unsigned prefix, uint8_t out[16],
                 unsigned* out_prefix) {
  if (v6) {
    std::memcpy(out, addr, 16);
    *out_prefix = prefix;
    return;
  }
  std::memset(out, 0, 10);
  out[10] = 0xff;
  out[11] = 0xff;
  std::memcpy(out + 12, addr, 4);
  *out_prefix = prefix + 96;
}

void mask_host_bits(uint8_t* addr, unsigned bytes, unsigned prefix) {
  for (unsigned i = 0; i < bytes; ++i) {
    unsigned bit = i * 8;
    if (bit >= prefix) {
      addr[i] = 0;
    } else if (prefix - bit < 8) {
      addr[i] &= static_cast<uint8_t>(0xff << (8 - (prefix - bit)));
    }
  }
}

}  // namespace

bool Cidr::contains(const sockaddr* peer) const {
  if (peer == nullptr) return false;
  uint8_t p[16];
  unsigned unused;
  if (peer->sa_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(peer);
    to_v6_space(false, reinterpret_cast<const uint8_t*>(&sin->sin_addr), 0, p, &unused);
  } else if (peer->sa_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(peer);
    std::memcpy(p, &sin6->sin6_addr, 16);
  } else {
    return false;  // AF_UNIX and friends are never "trusted networks"
  }
  uint8_t net[16];
  unsigned bits;
  to_v6_space(v6, addr, prefix, net, &bits);
  if (bits > 128) return false;  // not produced by parse_cidr
  unsigned whole = bits / 8;
  if (std::memcmp(p, net, whole) != 0) return false;
  unsigned rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (p[whole] & mask) == (net[whole] & mask);
}

Result<Cidr> parse_cidr(std::string_view text) {
  auto bad = [&](std::string why) { return Error{EINVAL, quoted(text) + ": " + why}; };
  std::string_view host = text;
  std::string_view len;
  bool has_len = false;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    host = text.substr(0, slash);
    len = text.substr(slash + 1);
    has_len = true;
  }
  Cidr c;
  std::string h(host);
  if (h.find('\0') != std::string::npos) return bad("contains a NUL character");
  if (inet_pton(AF_INET, h.c_str(), c.addr) == 1) {
    c.v6 = false;
  } else if (inet_pton(AF_INET6, h.c_str(), c.addr) == 1) {
    c.v6 = true;
  } else {
    return bad(
        "not an IP address or network (expected e.g. \"10.0.0.0/8\", \"192.0.2.1\" "
        "or \"2001:db8::/32\")");
  }
  unsigned max = c.v6 ? 128 : 32;
  c.prefix = max;
  if (has_len) {
    if (len.empty() || len.size() > 3 ||
        len.find_first_not_of("0123456789") != std::string_view::npos) {
      return bad("prefix length must be a number");
    }
    unsigned v = 0;
    for (char ch : len) v = v * 10 + static_cast<unsigned>(ch - '0');
    if (v > max) {
      return bad("prefix length /" + std::to_string(v) + " is out of range for " +
                 (c.v6 ? "IPv6 (0..128)" : "IPv4 (0..32)"));
    }
    c.prefix = v;
  }
  // "192.0.2.7/24" is taken to mean its network, 192.0.2.0/24: that is what the writer
  // meant far more often than not, and matching does not depend on it anyway.
  mask_host_bits(c.addr, c.v6 ? 16 : 4, c.prefix);
  return c;
}

Result<Seconds> parse_duration(std::string_view text) {
  auto bad = [&](std::string why) { return Error{EINVAL, quoted(text) + ": " + why}; };
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || text.size() - digits > 1) {
    return bad(
        "not a duration (expected a number with an optional unit s, m, h or d, "
        "e.g. \"30s\", \"5m\", \"1h\", \"5d\")");
  }
  int64_t unit = 1;
  if (digits < text.size()) {
    switch (text[digits]) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 86400;
        break;
      default:
        return bad("unknown unit (expected s, m, h or d)");
    }
  }
  // Ten years is far beyond any sensible timeout or lifetime and keeps "now + d" in
  // nanoseconds (io_uring timespecs, steady_clock) well away from overflow.
  constexpr int64_t kMax = 3650LL * 86400;
  int64_t v = 0;
  for (size_t i = 0; i < digits; ++i) {
    v = v * 10 + (text[i] - '0');
    if (v > kMax) return bad("too long (at most 3650d)");
  }
  if (v * unit > kMax) return bad("too long (at most 3650d)");
  return Seconds{v * unit};
}

namespace {

std::string format_duration(Seconds s) {
  int64_t v = s.count();
  if (v != 0 && v % 86400 == 0) return std::to_string(v / 86400) + "d";
  if (v != 0 && v % 3600 == 0) return std::to_string(v / 3600) + "h";
  if (v != 0 && v % 60 == 0) return std::to_string(v / 60) + "m";
  return std::to_string(v) + "s";
}

// A TOML basic string, so that describe() output can be fed back to the loader.
std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  out += '"';
  return out;
}

std::string format_cidr(const Cidr& c) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(c.v6 ? AF_INET6 : AF_INET, c.addr, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(c.prefix);
}

template <class T, class F>
std::string list(const std::vector<T>& v, F format) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ", ";
    out += format(v[i]);
  }
  return out + "]";
}

}  // namespace

std::string_view tls_policy_name(Config::TlsPolicy p) {
  switch (p) {
    case Config::TlsPolicy::none:
      return "none";
    case Config::TlsPolicy::opportunistic:
      return "opportunistic";
    case Config::TlsPolicy::required:
      return "required";
  }
  return "?";
}

const Config::DestinationPolicy& Config::Delivery::policy_for(std::string_view domain) const {
  for (const auto& [name, p] : domains)
    if (name.size() == domain.size() &&
        std::equal(name.begin(), name.end(), domain.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); }))
      return p;
  return defaults;
}

std::string describe(const Config& c) {
  // Valid TOML in the loader's own key names: an operator can diff it against the file,
  // or save it as a config with every default spelled out.
  std::string o;
  auto line = [&](std::string_view key, const std::string& value, std::string_view note = {}) {
    o.append(key).append(" = ").append(value);
    if (!note.empty()) o.append("  # ").append(note);
    o += '\n';
  };
  auto str = [](const std::string& s) { return toml_string(s); };
  auto num = [](uint64_t v) { return std::to_string(v); };
  auto dur = [](Seconds s) { return toml_string(format_duration(s)); };
  auto boolean = [](bool b) { return std::string(b ? "true" : "false"); };

  o += "[server]\n";
  line("hostname", str(c.server.hostname));
  line("data_dir", str(c.server.data_dir));
  line("threads", num(c.server.threads), c.server.threads == 0 ? "0 = number of cores" : "");

  for (const Listen& l : c.listen) {
    o += "\n[[listen]]\n";
    line("address", str(l.address));
    line("protocol", toml_string(protocol_name(l.protocol)));
  }
  if (c.listen.empty()) o += "\n# no [[listen]] tables: nothing to listen on\n";

  o += "\n[tls]\n";
  line("cert", str(c.tls.cert), c.tls.cert.empty() ? "self-signed certificate" : "");
  line("key", str(c.tls.key));

  o += "\n[relay]\n";
  line("local_domains", list(c.relay.local_domains, str));
  line("trusted_networks",
       list(c.relay.trusted_networks, [](const Cidr& n) { return toml_string(format_cidr(n)); }));
  line("reject_unknown_recipients", c.relay.reject_unknown_recipients ? "true" : "false");

  o += "\n[auth]\n";
  line("allow_plaintext", boolean(c.auth.allow_plaintext));
  line("sender_ownership", boolean(c.auth.sender_ownership));
  line("max_failures", num(c.auth.max_failures));
  line("failure_window", dur(c.auth.failure_window));
  line("failure_delay", dur(c.auth.failure_delay));
  line("hash_threads", num(c.auth.hash_threads));
  line("cache_ttl", dur(c.auth.cache_ttl));

  const auto& m = c.limits;
  o += "\n[limits]\n";
  line("max_message_size", num(m.max_message_size));
  line("max_recipients", num(m.max_recipients));
  line("max_connections", num(m.max_connections));
  line("max_connections_per_ip", num(m.max_connections_per_ip));
  line("max_line_length", num(m.max_line_length));
  line("max_errors", num(m.max_errors));
  line("max_junk_commands", num(m.max_junk_commands));
  line("command_timeout", dur(m.command_timeout));
  line("data_timeout", dur(m.data_timeout));
  line("shutdown_timeout", dur(m.shutdown_timeout));
  line("reject_bare_lf", boolean(m.reject_bare_lf));
  line("max_queue_size", num(m.max_queue_size));
  line("max_inflight_bytes", num(m.max_inflight_bytes));

  const auto& d = c.delivery;
  o += "\n[delivery]\n";
  line("smtp_port", num(d.smtp_port));
  line("relayhost", str(d.relayhost), d.relayhost.empty() ? "MX delivery" : "");
  line("retry_intervals", list(d.retry_intervals, dur));
  line("max_lifetime", dur(d.max_lifetime));
  line("delay_notice_after", dur(d.delay_notice_after));
  line("enabled", boolean(d.enabled));
  line("threads", num(d.threads));
  line("relayhost_username", str(d.relayhost_username));
  line("relayhost_password", str(d.relayhost_password.empty() ? "" : "********"),
       d.relayhost_password.empty() ? "" : "hidden");
  line("connect_timeout", dur(d.connect_timeout));
  line("command_timeout", dur(d.command_timeout));
  line("data_timeout", dur(d.data_timeout));
  line("max_inflight", num(d.max_inflight));
  line("max_inflight_bytes", num(d.max_inflight_bytes));
  line("event_retention", dur(d.event_retention), d.event_retention.count() ? "" : "forever");
  auto policy = [&](const Config::DestinationPolicy& p) {
    line("max_connections", num(p.max_connections));
    line("max_messages_per_connection", num(p.max_messages_per_connection));
    line("max_recipients_per_transaction", num(p.max_recipients_per_transaction));
    line("max_messages_per_minute", num(p.max_messages_per_minute),
         p.max_messages_per_minute ? "" : "no rate limit");
    line("tls", str(std::string(tls_policy_name(p.tls))));
  };
  policy(d.defaults);
  for (const auto& [domain, p] : d.domains) {
    o += "\n[delivery.domains." + str(domain) + "]\n";
    policy(p);
  }

  o += "\n[dns]\n";
  line("servers", list(c.dns.servers, str), c.dns.servers.empty() ? "/etc/resolv.conf" : "");
  line("timeout", dur(c.dns.timeout));
  line("attempts", num(c.dns.attempts));
  line("prefer_ipv6", boolean(c.dns.prefer_ipv6));
  line("cache_size", num(c.dns.cache_size));

  o += "\n[store]\n";
  line("backend", str(c.store.backend));

  o += "\n[queue]\n";
  line("wal", boolean(c.queue.wal));
  line("wal_segment_size", num(c.queue.wal_segment_size));
  line("wal_threads", num(c.queue.wal_threads));
  line("wal_max_message", num(c.queue.wal_max_message));
  return o;
}

}  // namespace ringmail::conf
