// The config ringmaild runs on without -c (DESIGN.md, "Names other tools rely on").
//
// It is TOML text rather than a filled-in struct so that it goes through the same loader
// and validation as any file, and so that `ringmaild --check-config` can show an operator
// a starting point. Everything listens on 127.0.0.1 and on unprivileged 2xxx ports: a
// first start as an ordinary user works, and nothing is exposed to the network until
// somebody writes a config that says so. A unit test loads it.
#include "conf/config.h"

namespace ringmail::conf {

std::string_view default_config_text() {
  return R"toml(# ringmail embedded default configuration (used when ringmaild runs without -c).
# See conf/example.toml for every key and conf/README.md for what each one means.

[server]
# hostname: name used in the greeting, EHLO reply, Received: lines and DSNs.
# Left out here, so it defaults to the system host name (gethostname()).
data_dir = "./ringmail-data"   # queue/, mail/, users/ and log/ live below it
threads = 0                    # event-loop threads; 0 = one per CPU core

# Loopback only, unprivileged ports. protocol is one of
# smtp | submission | submissions | pop3 | pop3s | imap | imaps.
[[listen]]
address = "127.0.0.1:2525"     # SMTP: inbound mail and relay (STARTTLS offered)
protocol = "smtp"

[[listen]]
address = "127.0.0.1:2587"     # submission: STARTTLS, then AUTH required
protocol = "submission"

[[listen]]
address = "127.0.0.1:2465"     # submissions: implicit TLS, AUTH required
protocol = "submissions"

[[listen]]
address = "127.0.0.1:2110"     # POP3 (STLS offered)
protocol = "pop3"

[[listen]]
address = "127.0.0.1:2995"     # POP3 over implicit TLS
protocol = "pop3s"

[[listen]]
address = "127.0.0.1:2143"     # IMAP (STARTTLS offered)
protocol = "imap"

[[listen]]
address = "127.0.0.1:2993"     # IMAP over implicit TLS
protocol = "imaps"

[tls]
# cert and key unset: a self-signed certificate is made on first start.
# cert = "/etc/ringmail/cert.pem"
# key  = "/etc/ringmail/key.pem"

[relay]
local_domains = ["localhost"]  # mail for these goes to the local mailbox store
trusted_networks = []          # CIDRs that may relay without AUTH; none by default

[auth]
allow_plaintext = false        # AUTH only after TLS

[limits]
max_message_size = 52428800    # bytes (50 MiB); advertised in the SIZE extension
max_recipients = 1000          # RCPT TO per transaction
max_connections = 20000        # all protocols together; beyond it: 421 and close
max_connections_per_ip = 50    # per client address

[delivery]
smtp_port = 25                 # port for onward delivery to MX hosts
relayhost = ""                 # "host:port" smart host; empty = deliver by MX lookup
retry_intervals = ["5m", "10m", "20m", "40m", "1h", "2h", "4h"]  # the last repeats
max_lifetime = "5d"            # then the message expires and bounces
delay_notice_after = "4h"      # one "delayed" DSN after this long
max_connections = 20           # per destination (domain or relayhost) at once
max_messages_per_connection = 100
max_recipients_per_transaction = 100
max_messages_per_minute = 0    # per destination; 0 = no rate limit
tls = "opportunistic"          # none | opportunistic | required
# [delivery.domains."example.com"] overrides the five keys above for one domain.

[dns]
servers = []                   # e.g. ["127.0.0.1:5353"]; empty = /etc/resolv.conf
timeout = "3s"                 # per try and server
attempts = 2

[store]
backend = "lmdb"               # lmdb | lmtp | maildir
)toml";
}

}  // namespace ringmail::conf
