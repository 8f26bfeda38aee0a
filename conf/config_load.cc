// TOML -> Config, with validation.
//
// The loader walks the document once. Every table lists the keys it knows; anything else
// is reported with its line, so a typo such as "max_recipient" never silently leaves a
// default in force. Problems are collected, not thrown: an operator fixing a config wants
// all of them from one --check-config run. toml++ throws only for syntax errors, and
// those end parsing, so that is the one case with a single message.
#include <arpa/inet.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>

#include "conf/config.h"
#include "conf/quote.h"

namespace ringmail::conf {
namespace {

struct Problem {
  uint32_t line = 0;
  uint32_t column = 0;
  std::string text;
};

std::string position(std::string_view source, const toml::source_position& p) {
  std::string out(source);
  if (p.line > 0) out += ":" + std::to_string(p.line) + ":" + std::to_string(p.column);
  return out;
}

std::string type_name(toml::node_type t) {
  static constexpr std::string_view kNames[] = {"nothing", "table",    "array",   "string",
                                                "integer", "float",    "boolean", "date",
                                                "time",    "date-time"};
  static_assert(static_cast<size_t>(toml::node_type::date_time) == std::size(kNames) - 1);
  auto i = static_cast<size_t>(t);
  return std::string(i < std::size(kNames) ? kNames[i] : "value");
}

// RFC 5321 Domain: dot-separated labels of letters, digits and hyphens, neither starting
// nor ending with a hyphen; RFC 1035 lengths. Internationalised names go in as A-labels
// (xn--...), which this accepts.
bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = d.find('.', start);
    std::string_view label = d.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char ch : label) {
      bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '-';
      if (!ok) return false;
    }
    if (dot == std::string_view::npos) {
      // No top-level domain is all digits (RFC 3696 section 2); this keeps "10.0.0.1"
      // from passing as a name (address literals are written "[10.0.0.1]" in mail).
      return label.find_first_not_of("0123456789") != std::string_view::npos;
    }
    start = dot + 1;
  }
}

bool parse_port(std::string_view s, uint16_t* port) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string_view::npos) {
    return false;
  }
  unsigned v = 0;
  for (char ch : s) v = v * 10 + static_cast<unsigned>(ch - '0');
  if (v < 1 || v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

// A numeric socket address: "a.b.c.d:port" or "[v6]:port"; with port_optional also
// "a.b.c.d" and "[v6]". Names are refused on purpose: the config never resolves anything,
// so what --check-config accepts is exactly what bind() gets.
bool parse_address(std::string_view text, bool port_optional, sockaddr_storage* ss, socklen_t* len,
                   std::string* why) {
  std::string_view host = text, port_text;
  bool v6 = false, has_port = false;
  if (text.starts_with('[')) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || (close + 1 < text.size() && text[close + 1] != ':')) {
      *why = "expected \"[ipv6]:port\"";
      return false;
    }
    v6 = true;
    host = text.substr(1, close - 1);
    has_port = close + 1 < text.size();
    if (has_port) port_text = text.substr(close + 2);
  } else if (size_t colon = text.find(':'); colon != std::string_view::npos) {
    if (text.find(':', colon + 1) != std::string_view::npos) {
      // Bare IPv6 is refused even where the port is optional: "::1:53" is a valid address
      // (not ::1 port 53), and silently using it would be worse than asking for brackets.
      *why = "IPv6 addresses are written in brackets, e.g. \"[::1]:25\"";
      return false;
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    has_port = true;
  }
  uint16_t port = 0;
  if (!has_port && !port_optional) {
    *why = "missing port (expected \"a.b.c.d:port\" or \"[ipv6]:port\")";
    return false;
  }
  if (has_port && !parse_port(port_text, &port)) {
    *why = "port must be a number from 1 to 65535";
    return false;
  }
  std::string h(host);
  *ss = {};
  auto* sin = reinterpret_cast<sockaddr_in*>(ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (h.find('\0') != std::string::npos) {
    *why = "contains a NUL character";
  } else if (v6 && inet_pton(AF_INET6, h.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    *len = sizeof(sockaddr_in6);
    return true;
  } else if (!v6 && inet_pton(AF_INET, h.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    *len = sizeof(sockaddr_in);
    return true;
  } else {
    *why = quoted(h) + (v6 ? " is not an IPv6 address"
                           : " is not an IPv4 address (host names are not accepted here)");
  }
  return false;
}

// host:port with host a domain, a.b.c.d or [v6]. The port is required so that the
// delivery code never has to guess between 25 and 587.
bool valid_relayhost(std::string_view h) {
  size_t colon = h.rfind(':');
  uint16_t port;
  sockaddr_storage ss;
  socklen_t len;
  std::string why;
  return colon != std::string_view::npos && parse_port(h.substr(colon + 1), &port) &&
         (parse_address(h, false, &ss, &len, &why) || valid_domain(h.substr(0, colon)));
}

bool same_address(const Listen& a, const Listen& b) {
  if (a.sockaddr.ss_family != b.sockaddr.ss_family) return false;
  if (a.sockaddr.ss_family == AF_INET) {
    const auto& x = reinterpret_cast<const sockaddr_in&>(a.sockaddr);
    const auto& y = reinterpret_cast<const sockaddr_in&>(b.sockaddr);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  const auto& x = reinterpret_cast<const sockaddr_in6&>(a.sockaddr);
  const auto& y = reinterpret_cast<const sockaddr_in6&>(b.sockaddr);
  return x.sin6_port == y.sin6_port && std::memcmp(&x.sin6_addr, &y.sin6_addr, 16) == 0;
}

// gethostname() is only a default, and the default config must always load, so a
// hostname that would be unsafe in a greeting or Received: line falls back to localhost.
std::string system_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || !valid_domain(buf)) return "localhost";
  return buf;
}

class Loader {
 public:
  explicit Loader(std::string_view source) : source_(source) {}

  void load(const toml::table& root, Config& c);
  bool failed() const { return !problems_.empty(); }

  std::string message() {
    // toml++ keeps tables in key order; the operator reads the file top to bottom.
    std::stable_sort(problems_.begin(), problems_.end(), [](const Problem& a, const Problem& b) {
      return a.line != b.line ? a.line < b.line : a.column < b.column;
    });
    std::string out;
    for (const Problem& p : problems_) {
      if (!out.empty()) out += '\n';
      out += position(source_, {p.line, p.column}) + ": " + p.text;
    }
    return out;
  }

 private:
  using Reader = std::function<void(const toml::node&, const std::string&)>;
  struct Field {
    std::string_view key;
    Reader read;
  };

  void add(const toml::source_region& where, std::string text) {
    problems_.push_back({where.begin.line, where.begin.column, std::move(text)});
  }
  void add(const toml::node& n, const std::string& path, const std::string& what) {
    add(n.source(), path + ": " + what);
  }

  bool expect(const toml::node& n, toml::node_type t, const std::string& path) {
    if (n.type() == t) return true;
    add(n, path, "expected " + type_name(t) + ", got " + type_name(n.type()));
    return false;
  }

  void table(const toml::node& n, const std::string& path, std::string_view shown,
             const std::vector<Field>& fields) {
    if (!expect(n, toml::node_type::table, path)) return;
    for (auto&& [key, value] : *n.as_table()) {
      std::string_view name = key.str();
      auto f = std::find_if(fields.begin(), fields.end(),
                            [name](const Field& f) { return f.key == name; });
      if (f == fields.end()) {
        add(key.source(), "unknown key " + quoted(key.str()) + " in " + std::string(shown));
        continue;
      }
      f->read(value, path + "." + std::string(key.str()));
    }
  }

  bool read_string(const toml::node& n, const std::string& path, std::string& out) {
    if (!expect(n, toml::node_type::string, path)) return false;
    const std::string& s = n.as_string()->get();
    // TOML allows "\u0000"; in a path or address it would silently cut the text short
    // wherever it reaches a C API (open(), inet_pton()).
    if (s.find('\0') != std::string::npos) {
      add(n, path, "must not contain NUL characters");
      return false;
    }
    out = s;
    return true;
  }

  void read_bool(const toml::node& n, const std::string& path, bool& out) {
    if (expect(n, toml::node_type::boolean, path)) out = n.as_boolean()->get();
  }

  template <class T>
  void read_uint(const toml::node& n, const std::string& path, uint64_t lo, uint64_t hi, T& out,
                 std::string_view why = {}) {
    if (!expect(n, toml::node_type::integer, path)) return;
    int64_t v = n.as_integer()->get();
    hi = std::min<uint64_t>(hi, std::numeric_limits<T>::max());
    if (v < 0 || static_cast<uint64_t>(v) < lo || static_cast<uint64_t>(v) > hi) {
      std::string range =
          hi >= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
              ? "must be at least " + std::to_string(lo)
              : "must be between " + std::to_string(lo) + " and " + std::to_string(hi);
      if (!why.empty()) range += " (" + std::string(why) + ")";
      add(n, path, range + ", got " + std::to_string(v));
      return;
    }
    out = static_cast<T>(v);
  }

  void read_duration(const toml::node& n, const std::string& path, Seconds& out,
                     bool allow_zero = false) {
    Seconds v{};
    if (const auto* i = n.as_integer()) {
      Result<Seconds> r = parse_duration(std::to_string(i->get()));
      if (i->get() < 0 || !r.ok()) {
        add(n, path,
            "must be a positive number of seconds up to 3650 days, got " +
                std::to_string(i->get()));
        return;
      }
      v = r.value();
    } else if (const auto* s = n.as_string()) {
      Result<Seconds> r = parse_duration(s->get());
      if (!r.ok()) {
        add(n, path, r.error().message);
        return;
      }
      v = r.value();
    } else {
      add(n, path,
          "expected a duration (\"30s\", \"5m\", \"1h\", \"5d\" or integer seconds), got " +
              type_name(n.type()));
      return;
    }
    if (v.count() == 0 && !allow_zero) {
      add(n, path, "must be greater than zero");
      return;
    }
    out = v;
  }

  void read_array(const toml::node& n, const std::string& path, const Reader& each) {
    if (!expect(n, toml::node_type::array, path)) return;
    size_t i = 0;
    for (const toml::node& e : *n.as_array()) each(e, path + "[" + std::to_string(i++) + "]");
  }

  void listeners(const toml::node& n, std::vector<Listen>& out) {
    const toml::array* a = n.as_array();
    if (a == nullptr) {
      add(n, "listen",
          "expected [[listen]] tables (an array of tables), got " + type_name(n.type()));
      return;
    }
    std::vector<toml::source_region> where;
    for (size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      std::string path = "listen[" + std::to_string(i) + "]";
      if (!expect(e, toml::node_type::table, path)) continue;
      Listen l;
      bool have_address = false, have_protocol = false, address_ok = false;
      toml::source_region address_at = e.source();
      table(e, path, "[[listen]]",
            {{"address",
              [&](const toml::node& v, const std::string& p) {
                have_address = true;
                address_at = v.source();
                if (!read_string(v, p, l.address)) return;
                std::string why;
                address_ok = parse_address(l.address, false, &l.sockaddr, &l.sockaddr_len, &why);
                if (!address_ok) add(v, p, quoted(l.address) + ": " + why);
              }},
             {"protocol", [&](const toml::node& v, const std::string& p) {
                have_protocol = true;
                if (!expect(v, toml::node_type::string, p)) return;
                const std::string& s = v.as_string()->get();
                for (Protocol pr :
                     {Protocol::smtp, Protocol::submission, Protocol::submissions, Protocol::pop3,
                      Protocol::pop3s, Protocol::imap, Protocol::imaps}) {
                  if (protocol_name(pr) == s) {
                    l.protocol = pr;
                    return;
                  }
                }
                add(v, p,
                    "unknown protocol " + quoted(s) +
                        " (expected smtp, submission, submissions, pop3, pop3s, imap or imaps)");
              }}});
      // Both are required: a listener that silently defaulted to "smtp" on a port meant for
      // submission would accept unauthenticated mail where the operator expected AUTH.
      if (!have_address) add(e, path, "missing required key 'address'");
      if (!have_protocol) add(e, path, "missing required key 'protocol'");
      if (!address_ok) continue;
      for (size_t j = 0; j < out.size(); ++j) {
        if (same_address(out[j], l)) {
          add(address_at, path + ".address: " + quoted(l.address) + " is already used by the " +
                              "listener on line " + std::to_string(where[j].begin.line));
        }
      }
      out.push_back(std::move(l));
      where.push_back(address_at);
    }
  }

  void relay(const toml::node& n, Config::Relay& r) {
    table(n, "relay", "[relay]",
          {{"local_domains",
            [&](const toml::node& v, const std::string& p) {
              read_array(v, p, [&](const toml::node& e, const std::string& ep) {
                std::string d;
                if (!read_string(e, ep, d)) return;
                if (!valid_domain(d)) {
                  add(e, ep,
                      quoted(d) +
                          " is not a valid domain name (letters, digits, hyphens "
                          "and dots; labels of 1-63 characters; IDNs as xn-- A-labels)");
                  return;
                }
                std::transform(d.begin(), d.end(), d.begin(),
                               [](char ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; });
                if (std::find(r.local_domains.begin(), r.local_domains.end(), d) ==
                    r.local_domains.end()) {
                  r.local_domains.push_back(std::move(d));
                }
              });
            }},
           {"trusted_networks",
            [&](const toml::node& v, const std::string& p) {
              read_array(v, p, [&](const toml::node& e, const std::string& ep) {
                std::string text;
                if (!read_string(e, ep, text)) return;
                Result<Cidr> c = parse_cidr(text);
                if (c.ok()) {
                  r.trusted_networks.push_back(c.value());
                } else {
                  add(e, ep, c.error().message);
                }
              });
            }},
           {"reject_unknown_recipients", [&](const toml::node& v, const std::string& p) {
              read_bool(v, p, r.reject_unknown_recipients);
            }}});
  }

  std::string source_;
  std::vector<Problem> problems_;
};

void Loader::load(const toml::table& root, Config& c) {
  constexpr uint64_t kAny = std::numeric_limits<uint64_t>::max();
  bool retry_given = false;
  const toml::node* tls_node = nullptr;
  const toml::node* limits_node = nullptr;
  const toml::node* hostname_node = nullptr;

  auto server = [&](const toml::node& n, const std::string& p) {
    auto& s = c.server;
    table(n, p, "[server]",
          {{"hostname",
            [&](const toml::node& v, const std::string& kp) {
              hostname_node = &v;
              read_string(v, kp, s.hostname);
            }},
           {"data_dir",
            [&](const toml::node& v, const std::string& kp) {
              read_string(v, kp, s.data_dir);
              if (v.is_string() && s.data_dir.empty()) add(v, kp, "must not be empty");
            }},
           {"threads", [&](const toml::node& v, const std::string& kp) {
              read_uint(v, kp, 0, 256, s.threads, "0 = number of cores");
            }}});
  };

  auto tls = [&](const toml::node& n, const std::string& p) {
    tls_node = &n;
    table(n, p, "[tls]",
          {{"cert",
            [&](const toml::node& v, const std::string& kp) { read_string(v, kp, c.tls.cert); }},
           {"key",
            [&](const toml::node& v, const std::string& kp) { read_string(v, kp, c.tls.key); }}});
  };

  auto auth = [&](const toml::node& n, const std::string& p) {
    auto& a = c.auth;
    auto b = [&](std::string_view key, bool& out) {
      return Field{
          key, [&out, this](const toml::node& v, const std::string& kp) { read_bool(v, kp, out); }};
    };
    auto d = [&](std::string_view key, Seconds& out) {
      return Field{key, [&out, this](const toml::node& v, const std::string& kp) {
                     read_duration(v, kp, out);
                   }};
    };
    table(n, p, "[auth]",
          {b("allow_plaintext", a.allow_plaintext),
           b("sender_ownership", a.sender_ownership),
           {"max_failures",
            [&](const toml::node& v, const std::string& kp) {
              read_uint(v, kp, 1, kAny, a.max_failures, {});
            }},
           d("failure_window", a.failure_window),
           // "0s" is allowed here: no delay (the 421 after max_failures still applies).
           {"failure_delay",
            [&](const toml::node& v, const std::string& kp) {
              read_duration(v, kp, a.failure_delay, /*allow_zero=*/true);
            }},
           {"hash_threads",
            [&](const toml::node& v, const std::string& kp) {
              read_uint(v, kp, 1, 64, a.hash_threads, {});
            }},
           {"cache_ttl", [&](const toml::node& v, const std::string& kp) {
              read_duration(v, kp, a.cache_ttl, /*allow_zero=*/true);
            }}});
  };

  auto limits = [&](const toml::node& n, const std::string& p) {
    limits_node = &n;
    auto& m = c.limits;
    auto u = [&](std::string_view key, auto& out, uint64_t lo, uint64_t hi,
                 std::string_view why = {}) {
      return Field{key, [&out, lo, hi, why, this](const toml::node& v, const std::string& kp) {
                     read_uint(v, kp, lo, hi, out, why);
                   }};
    };
    auto d = [&](std::string_view key, Seconds& out) {
      return Field{key, [&out, this](const toml::node& v, const std::string& kp) {
                     read_duration(v, kp, out);
                   }};
    };
    table(n, p, "[limits]",
          {u("max_message_size", m.max_message_size, 1024, kAny),
           u("max_recipients", m.max_recipients, 100, 100000,
             "RFC 5321 4.5.3.1.8 requires at least 100"),
           u("max_connections", m.max_connections, 1, kAny),
           u("max_connections_per_ip", m.max_connections_per_ip, 1, kAny),
           u("max_line_length", m.max_line_length, 1000, 65536,
             "RFC 5321 4.5.3.1.6: at least 1000 octets including CRLF"),
           u("max_errors", m.max_errors, 1, kAny),
           u("max_junk_commands", m.max_junk_commands, 1, kAny),
           d("command_timeout", m.command_timeout),
           d("data_timeout", m.data_timeout),
           d("shutdown_timeout", m.shutdown_timeout),
           {"reject_bare_lf", [&](const toml::node& v,
                                  const std::string& kp) { read_bool(v, kp, m.reject_bare_lf); }},
           // Below 1 MiB an LMDB map cannot hold a queue worth having.
           u("max_queue_size", m.max_queue_size, 1 << 20, kAny, "bytes, at least 1 MiB"),
           u("max_inflight_bytes", m.max_inflight_bytes, 1, kAny)});
  };

  // The per-destination keys, read into `out` (the [delivery] defaults or one domain's).
  auto policy_fields = [&](Config::DestinationPolicy& out) {
    auto u = [&](std::string_view key, uint32_t& v, uint64_t lo, uint64_t hi) {
      return Field{key, [&v, lo, hi, this](const toml::node& n, const std::string& kp) {
                     read_uint(n, kp, lo, hi, v, {});
                   }};
    };
    return std::vector<Field>{
        u("max_connections", out.max_connections, 1, 10000),
        u("max_messages_per_connection", out.max_messages_per_connection, 1, 1000000),
        // RFC 5321 4.5.3.1.8: a server must take 100; more per transaction is ours to try.
        u("max_recipients_per_transaction", out.max_recipients_per_transaction, 1, 100000),
        u("max_messages_per_minute", out.max_messages_per_minute, 0, 100000000),
        {"tls", [&out, this](const toml::node& v, const std::string& kp) {
           std::string t;
           if (!read_string(v, kp, t)) return;
           if (t == "none") {
             out.tls = Config::TlsPolicy::none;
           } else if (t == "opportunistic") {
             out.tls = Config::TlsPolicy::opportunistic;
           } else if (t == "required") {
             out.tls = Config::TlsPolicy::required;
           } else {
             add(v, kp, "unknown TLS policy " + quoted(t) + " (none, opportunistic, required)");
           }
         }}};
  };

  const toml::node* domains_node = nullptr;
  const toml::node* delivery_node = nullptr;
  auto delivery = [&](const toml::node& n, const std::string& p) {
    delivery_node = &n;
    auto& d = c.delivery;
    auto dur = [&](std::string_view key, Seconds& out) {
      return Field{key, [&out, this](const toml::node& v, const std::string& kp) {
                     read_duration(v, kp, out);
                   }};
    };
    auto str = [&](std::string_view key, std::string& out) {
      return Field{key, [&out, this](const toml::node& v, const std::string& kp) {
                     read_string(v, kp, out);
                   }};
    };
    std::vector<Field> fields = {
        {"enabled",
         [&](const toml::node& v, const std::string& kp) { read_bool(v, kp, d.enabled); }},
        {"threads",
         [&](const toml::node& v, const std::string& kp) { read_uint(v, kp, 1, 64, d.threads); }},
        {"smtp_port", [&](const toml::node& v,
                          const std::string& kp) { read_uint(v, kp, 1, 65535, d.smtp_port); }},
        {"relayhost",
         [&](const toml::node& v, const std::string& kp) {
           std::string h;
           if (!read_string(v, kp, h) || h.empty()) return;
           if (valid_relayhost(h)) {
             d.relayhost = h;
           } else {
             add(v, kp,
                 quoted(h) +
                     ": expected \"host:port\", e.g. \"smtp.example.com:587\", "
                     "\"192.0.2.1:25\" or \"[2001:db8::1]:25\"");
           }
         }},
        str("relayhost_username", d.relayhost_username),
        str("relayhost_password", d.relayhost_password),
        {"retry_intervals",
         [&](const toml::node& v, const std::string& kp) {
           retry_given = true;
           read_array(v, kp, [&](const toml::node& e, const std::string& ep) {
             Seconds s{};
             read_duration(e, ep, s);
             if (s.count() > 0) d.retry_intervals.push_back(s);
           });
           if (v.is_array() && v.as_array()->empty()) {
             add(v, kp, "must not be empty (its last interval repeats until max_lifetime)");
           }
         }},
        dur("max_lifetime", d.max_lifetime),
        dur("delay_notice_after", d.delay_notice_after),
        dur("connect_timeout", d.connect_timeout),
        dur("command_timeout", d.command_timeout),
        dur("data_timeout", d.data_timeout),
        {"max_inflight",
         [&](const toml::node& v, const std::string& kp) {
           read_uint(v, kp, 1, 10000000, d.max_inflight);
         }},
        {"event_retention",
         [&](const toml::node& v, const std::string& kp) {
           read_duration(v, kp, d.event_retention, /*allow_zero=*/true);
         }},
        {"max_inflight_bytes",
         [&](const toml::node& v, const std::string& kp) {
           read_uint(v, kp, 1 << 20, kAny, d.max_inflight_bytes, "bytes, at least 1 MiB");
         }},
        {"domains",
         [&](const toml::node& v, const std::string& kp) {
           domains_node = &v;
           if (!expect(v, toml::node_type::table, kp)) return;
           for (auto&& [key, value] : *v.as_table()) {
             std::string name(key.str());
             std::transform(name.begin(), name.end(), name.begin(),
                            [](unsigned char ch) { return std::tolower(ch); });
             std::string dp = kp + "." + quoted(name);
             if (!valid_domain(name)) {
               add(key.source(), dp + ": not a valid domain name");
               continue;
             }
             d.domains.emplace_back(name, Config::DestinationPolicy{});
             // Filled after the [delivery] defaults are known (see below).
           }
         }},
    };
    for (auto& f : policy_fields(d.defaults)) fields.push_back(std::move(f));
    table(n, p, "[delivery]", fields);
  };

  auto dns = [&](const toml::node& n, const std::string& p) {
    auto& dn = c.dns;
    table(n, p, "[dns]",
          {{"servers",
            [&](const toml::node& v, const std::string& kp) {
              read_array(v, kp, [&](const toml::node& e, const std::string& ep) {
                std::string s;
                if (!read_string(e, ep, s)) return;
                sockaddr_storage ss;
                socklen_t len;
                std::string why;
                if (parse_address(s, true, &ss, &len, &why)) {
                  dn.servers.push_back(s);
                } else {
                  add(e, ep, quoted(s) + ": " + why);
                }
              });
            }},
           {"timeout",
            [&](const toml::node& v, const std::string& kp) { read_duration(v, kp, dn.timeout); }},
           {"attempts", [&](const toml::node& v,
                            const std::string& kp) { read_uint(v, kp, 1, 10, dn.attempts); }},
           {"prefer_ipv6",
            [&](const toml::node& v, const std::string& kp) { read_bool(v, kp, dn.prefer_ipv6); }},
           {"cache_size", [&](const toml::node& v, const std::string& kp) {
              read_uint(v, kp, 0, 10000000, dn.cache_size);
            }}});
  };

  auto store = [&](const toml::node& n, const std::string& p) {
    table(n, p, "[store]",
          {{"backend", [&](const toml::node& v, const std::string& kp) {
              std::string b;
              if (!read_string(v, kp, b)) return;
              if (b == "lmdb" || b == "lmtp" || b == "maildir") {
                c.store.backend = b;
              } else {
                add(v, kp, "unknown backend " + quoted(b) + " (expected lmdb, lmtp or maildir)");
              }
            }}});
  };

  auto queue = [&](const toml::node& n, const std::string& p) {
    auto& q = c.queue;
    table(n, p, "[queue]",
          {{"wal", [&](const toml::node& v, const std::string& kp) { read_bool(v, kp, q.wal); }},
           {"wal_segment_size",
            [&](const toml::node& v, const std::string& kp) {
              read_uint(v, kp, 1 << 16, 1ULL << 32, q.wal_segment_size,
                        "bytes, between 64 KiB and 4 GiB");
            }},
           {"wal_threads", [&](const toml::node& v,
                               const std::string& kp) { read_uint(v, kp, 1, 8, q.wal_threads); }},
           {"wal_max_message", [&](const toml::node& v, const std::string& kp) {
              read_uint(v, kp, 0, kAny, q.wal_max_message, {});
            }}});
  };

  const std::vector<Field> tables = {
      {"server", server},
      {"listen", [&](const toml::node& n, const std::string&) { listeners(n, c.listen); }},
      {"tls", tls},
      {"relay", [&](const toml::node& n, const std::string&) { relay(n, c.relay); }},
      {"auth", auth},
      {"limits", limits},
      {"delivery", delivery},
      {"dns", dns},
      {"store", store},
      {"queue", queue},
  };
  for (auto&& [key, value] : root) {
    std::string_view name = key.str();
    auto t = std::find_if(tables.begin(), tables.end(),
                          [name](const Field& f) { return f.key == name; });
    if (t != tables.end()) {
      t->read(value, std::string(key.str()));
    } else if (value.is_table() || value.is_array_of_tables()) {
      add(key.source(), "unknown table [" + std::string(key.str()) +
                            "] (known: server, listen, tls, relay, auth, limits, delivery, "
                            "dns, store, queue)");
    } else {
      add(key.source(), "unknown key " + quoted(key.str()) +
                            " at top level (keys belong in a table such as [server])");
    }
  }

  // Domain overrides start from the [delivery] defaults wherever they were written.
  if (domains_node != nullptr && domains_node->is_table()) {
    size_t i = 0;
    for (auto&& [key, value] : *domains_node->as_table()) {
      std::string name(key.str());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char ch) { return std::tolower(ch); });
      if (i >= c.delivery.domains.size() || c.delivery.domains[i].first != name) continue;
      auto& pol = c.delivery.domains[i++].second;
      pol = c.delivery.defaults;
      std::string dp = "delivery.domains." + quoted(name);
      table(value, dp, "[delivery.domains." + quoted(name) + "]", policy_fields(pol));
    }
  }
  if (delivery_node != nullptr && !c.delivery.relayhost_username.empty() &&
      c.delivery.relayhost.empty()) {
    add(*delivery_node, "delivery", "relayhost_username is set but relayhost is empty");
  }

  // Checks that involve more than one key, or defaults that need the system.
  if (!c.server.hostname.empty() && !valid_domain(c.server.hostname)) {
    add(*hostname_node, "server.hostname",
        quoted(c.server.hostname) +
            " is not a valid domain name (it is used in the greeting, "
            "EHLO reply and Received: lines)");
  }
  if (c.server.hostname.empty()) c.server.hostname = system_hostname();
  if (tls_node != nullptr && c.tls.cert.empty() != c.tls.key.empty()) {
    add(*tls_node, "tls",
        "cert and key must be set together (or both left out for a "
        "self-signed certificate)");
  }
  if (limits_node != nullptr && c.limits.max_message_size > c.limits.max_queue_size) {
    add(*limits_node, "limits",
        "max_message_size (" + std::to_string(c.limits.max_message_size) +
            ") is larger than max_queue_size (" + std::to_string(c.limits.max_queue_size) + ")");
  }
  if (!retry_given) {
    using std::chrono::hours;
    using std::chrono::minutes;
    c.delivery.retry_intervals = {minutes(5), minutes(10), minutes(20), minutes(40),
                                  hours(1),   hours(2),    hours(4)};
  }
}

}  // namespace

Result<Config> load_string(std::string_view toml_text, std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    std::string what(e.description());
    std::replace(what.begin(), what.end(), '\n', ' ');  // one line per problem
    return Error{EINVAL, position(source_name, e.source().begin) + ": " + what};
  }
  Config c;
  Loader loader(source_name);
  loader.load(root, c);
  if (loader.failed()) return Error{EINVAL, loader.message()};
  return c;
}

Result<Config> load_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    int err = errno;
    return Error{err, path + ": cannot open: " + std::strerror(err)};
  }
  // A config file is a few KiB; the cap stops "-c /dev/zero" from eating memory.
  constexpr size_t kMaxSize = 16 << 20;
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    text.append(buf, n);
    if (text.size() > kMaxSize) {
      std::fclose(f);
      return Error{EFBIG, path + ": larger than 16 MiB, not a config file"};
    }
  }
  int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err != 0) return Error{err, path + ": cannot read: " + std::strerror(err)};
  return load_string(text, path);
}

}  // namespace ringmail::conf
