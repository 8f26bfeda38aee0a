// TLS for rt::Stream: BoringSSL driven through memory the loop owns.
//
// BoringSSL never touches a socket (DESIGN "Runtime"): a custom BIO hands it the ciphertext
// the Stream received (straight from the kernel-picked ring buffer) and collects what it
// wants to send in a string the Stream flushes. Only ciphertext BoringSSL has not taken
// yet is copied, so an idle TLS connection holds no buffer beyond BoringSSL's own state.
// This file knows nothing about SMTP or config files: it makes contexts from PEM paths and
// runs one connection's TLS state.
#pragma once

#include <openssl/ssl.h>

#include <string>
#include <string_view>

#include "conf/result.h"

namespace ringmail::rt {

using TlsContextPtr = bssl::UniquePtr<SSL_CTX>;

// Server context: TLS 1.2 and 1.3 only (RFC 8996 retired 1.0 and 1.1), the certificate chain
// and private key from PEM files, checked against each other.
Result<TlsContextPtr> make_server_tls(const std::string& cert_file, const std::string& key_file);
// Client context: TLS 1.2 and 1.3; certificate checking is the caller's policy.
TlsContextPtr make_client_tls();
// What BoringSSL's error queue says (and empties it), "" if nothing.
std::string tls_error_text();

// One connection's TLS state. Used by rt::Stream; not thread-safe, lives on one loop.
class TlsConn {
 public:
  TlsConn(SSL_CTX* ctx, bool server, std::string_view sni = {});
  ~TlsConn();
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;

  SSL* ssl() const { return ssl_.get(); }

  // Ciphertext received; BoringSSL reads it through the BIO. `data` must stay valid until
  // keep_unread() (the Stream gives the ring buffer back right after).
  void feed(std::string_view data) { in_ = data; }
  // Copies what BoringSSL has not read yet into our own storage.
  void keep_unread();
  bool has_unread() const { return !in_.empty(); }
  // Ciphertext BoringSSL produced and the Stream has to send.
  std::string& out() { return out_; }

  // "TLSv1.3", "TLS_AES_128_GCM_SHA256", 128; valid after the handshake.
  std::string_view version() const;
  std::string_view cipher() const;
  int cipher_bits() const;
  // Why the last operation failed (for the log), "" if it did not.
  const std::string& error() const { return error_; }
  void set_error(std::string e) { error_ = std::move(e); }

 private:
  friend struct TlsBio;
  bssl::UniquePtr<SSL> ssl_;
  std::string_view in_;
  std::string in_store_;
  std::string out_;
  std::string error_;
};

}  // namespace ringmail::rt
