// conf: the daemon's configuration, loaded from TOML and validated in one pass.
//
// Owns the Config struct (every key of the design's contract, with safe defaults), the
// TOML loader that reports every error with its file and line, and the embedded default
// config used when ringmaild runs without -c. It never opens sockets or files other than
// the config file itself, and never starts anything: parts read the values they need.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"

namespace ringmail::conf {

enum class Protocol { smtp, submission, submissions, pop3, pop3s, imap, imaps };
std::string_view protocol_name(Protocol p);

struct Listen {
  std::string address;  // as written: "127.0.0.1:2525" or "[::1]:2525"
  Protocol protocol = Protocol::smtp;
  sockaddr_storage sockaddr{};  // parsed address, ready for bind()
  socklen_t sockaddr_len = 0;
};

// An IPv4 or IPv6 network. IPv4-mapped IPv6 peers (::ffff:a.b.c.d) match IPv4 networks.
struct Cidr {
  bool v6 = false;
  uint8_t addr[16] = {};
  unsigned prefix = 0;
  bool contains(const sockaddr* peer) const;
};
Result<Cidr> parse_cidr(std::string_view text);

using Seconds = std::chrono::seconds;
// "30s", "5m", "1h", "5d", or a bare integer of seconds.
Result<Seconds> parse_duration(std::string_view text);

struct Config {
  struct Server {
    std::string hostname;  // default: gethostname()
    std::string data_dir = "./ringmail-data";
    unsigned threads = 0;  // 0 = number of cores
  } server;

  std::vector<Listen> listen;

  struct Tls {
    std::string cert;  // empty = self-signed certificate made on first start (issue 3)
    std::string key;
  } tls;

  struct Relay {
    std::vector<std::string> local_domains;  // lower-cased on load
    std::vector<Cidr> trusted_networks;
    // RCPT for a local domain names a user or alias of the user database (or postmaster),
    // or gets 550 5.1.1 at once instead of a bounce after the 250 (backscatter).
    bool reject_unknown_recipients = false;
  } relay;

  struct Auth {
    bool allow_plaintext = false;  // AUTH offered only after TLS unless true
    bool sender_ownership = true;  // authenticated MAIL FROM must be the user's own address
    uint32_t max_failures = 5;     // failed AUTHs per client address within failure_window
    Seconds failure_window{900};   // then 421 and AUTH refused until the window has passed
    Seconds failure_delay{1};      // reply to the n-th failure delayed n x this (max 5x)
    uint32_t hash_threads = 2;     // worker threads for password hashing (never a loop thread)
    Seconds cache_ttl{300};        // verified logins remembered this long; 0 = no cache
  } auth;

  struct Limits {
    uint64_t max_message_size = 52428800;  // bytes, advertised in SIZE
    uint32_t max_recipients = 1000;        // per transaction
    uint32_t max_connections = 20000;      // all protocols together
    uint32_t max_connections_per_ip = 50;
    uint32_t max_line_length = 1000;           // octets including CRLF (RFC 5321 4.5.3.1.6)
    uint32_t max_errors = 20;                  // bad commands before the session is closed
    uint32_t max_junk_commands = 100;          // NOOP/RSET/VRFY/HELP per session (keep-alive abuse)
    Seconds command_timeout{300};              // RFC 5321 4.5.3.2.7: server timeout 5 min
    Seconds data_timeout{600};                 // RFC 5321 4.5.3.2.6: DATA termination 10 min
    Seconds shutdown_timeout{30};              // SIGTERM: time to finish open transactions
    bool reject_bare_lf = true;                // bare CR/LF in DATA: 5xx (false: normalise to CRLF)
    uint64_t max_queue_size = 17179869184ULL;  // bytes the LMDB queue map may grow to
    uint64_t max_inflight_bytes = 268435456;   // per loop thread: DATA held in memory
  } limits;

  // How hard to push one destination (a recipient domain, or the relayhost). The
  // [delivery] values are the defaults; [delivery.domains."example.com"] overrides them.
  enum class TlsPolicy { none, opportunistic, required };
  struct DestinationPolicy {
    uint32_t max_connections = 20;               // simultaneous, per destination
    uint32_t max_messages_per_connection = 100;  // then QUIT and reconnect
    uint32_t max_recipients_per_transaction = 100;
    uint32_t max_messages_per_minute = 0;  // 0 = no rate limit
    TlsPolicy tls = TlsPolicy::opportunistic;
  };

  struct Delivery {
    bool enabled = true;   // false: accept and queue only (maintenance, accept-side tests)
    unsigned threads = 1;  // delivery loop threads
    uint16_t smtp_port = 25;
    std::string relayhost;
    std::string relayhost_username;  // AUTH PLAIN to the relayhost when set
    std::string relayhost_password;
    std::vector<Seconds> retry_intervals;  // default 5m 10m 20m 40m 1h 2h 4h
    Seconds max_lifetime{5 * 24 * 3600};
    Seconds delay_notice_after{4 * 3600};
    Seconds connect_timeout{30};
    Seconds command_timeout{300};             // RFC 5321 4.5.3.2: greeting, MAIL, RCPT (5 min)
    Seconds data_timeout{600};                // RFC 5321 4.5.3.2.6: reply to the final dot (10 min)
    uint32_t max_inflight = 20000;            // messages handed to delivery at once
    uint64_t max_inflight_bytes = 268435456;  // their bodies, held in memory meanwhile
    // Delivery events kept in the queue for `ringctl status`; 0 = forever. The JSON Lines
    // log under <data_dir>/log/ is the lasting record.
    Seconds event_retention{7 * 24 * 3600};
    DestinationPolicy defaults;
    std::vector<std::pair<std::string, DestinationPolicy>> domains;  // lower-cased
    const DestinationPolicy& policy_for(std::string_view domain) const;
  } delivery;

  struct Dns {
    std::vector<std::string> servers;  // "127.0.0.1:5353"
    Seconds timeout{3};                // per try and server
    uint32_t attempts = 2;
    bool prefer_ipv6 = false;
    uint32_t cache_size = 10000;  // answers kept (TTL-bound)
  } dns;

  struct Store {
    std::string backend = "lmdb";  // lmdb | lmtp | maildir (lmdb only so far)
  } store;

  // The queue's write-ahead log (queue/wal.h): 250 after one log append and fdatasync,
  // LMDB updated just after. false: 250 after the LMDB commit itself (two syncs).
  struct Queue {
    bool wal = true;
    uint64_t wal_segment_size = 67108864;  // bytes per segment file (two of them)
    uint32_t wal_threads = 1;              // appending threads (syncs in flight)
    uint64_t wal_max_message = 16384;      // bigger messages are committed to LMDB directly
  } queue;
};

std::string_view tls_policy_name(Config::TlsPolicy p);

// Parses and validates. On failure the Error message holds one line per problem,
// each "SOURCE:LINE:COL: what is wrong".
Result<Config> load_string(std::string_view toml_text, std::string_view source_name);
Result<Config> load_file(const std::string& path);

// The embedded default (DESIGN.md: ./ringmail-data, 127.0.0.1 ports 2xxx, localhost).
std::string_view default_config_text();

// Human-readable dump of the effective config (ringmaild --check-config prints it).
std::string describe(const Config& c);

}  // namespace ringmail::conf
