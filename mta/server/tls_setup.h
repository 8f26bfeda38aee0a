// Where the daemon's certificate comes from, and the self-signed one made on first start.
//
// With [tls] cert and key set, those files are used as they are. With neither, the daemon
// uses <data_dir>/tls/cert.pem and key.pem, making them on first start (an ECDSA P-256 key
// and a self-signed certificate for server.hostname, valid ten years): STARTTLS and
// implicit TLS then work out of the box, and clients that check certificates see an
// untrusted one until the operator installs a real one. This file never opens a socket.
#pragma once

#include <string>

#include "conf/config.h"
#include "conf/result.h"
#include "mta/runtime/tls.h"

namespace ringmail::server {

struct TlsFiles {
  std::string cert;
  std::string key;
  bool self_signed = false;
};

// The files to load; makes the self-signed pair if the config names none and it is missing.
Result<TlsFiles> ensure_tls_files(const conf::Config& c);

// Writes a fresh self-signed certificate for `hostname` and its key (mode 0600).
Status make_self_signed(const std::string& hostname, const std::string& cert_file,
                        const std::string& key_file);

}  // namespace ringmail::server
