#include "mta/runtime/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <cerrno>
#include <cstring>

namespace ringmail::rt {

// The BIO between BoringSSL and the Stream's buffers. read() hands out the fed ciphertext
// and asks to be retried when there is none: that surfaces as SSL_ERROR_WANT_READ, the
// Stream's cue to receive more.
struct TlsBio {
  static TlsConn* conn(BIO* b) { return static_cast<TlsConn*>(BIO_get_data(b)); }

  static int read(BIO* b, char* buf, int len) {
    BIO_clear_retry_flags(b);
    TlsConn* c = conn(b);
    if (c->in_.empty()) {
      BIO_set_retry_read(b);
      return -1;
    }
    size_t n = std::min(c->in_.size(), static_cast<size_t>(len));
    std::memcpy(buf, c->in_.data(), n);
    c->in_.remove_prefix(n);
    return static_cast<int>(n);
  }

  static int write(BIO* b, const char* buf, int len) {
    BIO_clear_retry_flags(b);
    conn(b)->out_.append(buf, static_cast<size_t>(len));
    return len;
  }

  static long ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }

  static const BIO_METHOD* method() {
    static const BIO_METHOD* m = [] {
      BIO_METHOD* bm = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "ringmail-stream");
      BIO_meth_set_read(bm, read);
      BIO_meth_set_write(bm, write);
      BIO_meth_set_ctrl(bm, ctrl);
      BIO_meth_set_create(bm, create);
      return bm;
    }();
    return m;
  }
};

std::string tls_error_text() {
  std::string s;
  while (uint32_t e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!s.empty()) s += "; ";
    s += buf;
  }
  return s;
}

namespace {
SSL_CTX* new_ctx() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  return ctx;
}
}  // namespace

Result<TlsContextPtr> make_server_tls(const std::string& cert_file, const std::string& key_file) {
  ERR_clear_error();
  TlsContextPtr ctx(new_ctx());
  if (!ctx) return Error{ENOMEM, "cannot create a TLS context: " + tls_error_text()};
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1)
    return Error{EINVAL, "cannot load TLS certificate " + cert_file + ": " + tls_error_text()};
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return Error{EINVAL, "cannot load TLS key " + key_file + ": " + tls_error_text()};
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    return Error{EINVAL, "TLS key " + key_file + " does not match certificate " + cert_file};
  // Prefer our cipher order: clients list weak suites first surprisingly often.
  SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  return ctx;
}

TlsContextPtr make_client_tls() {
  return TlsContextPtr(new_ctx());
}

TlsConn::TlsConn(SSL_CTX* ctx, bool server, std::string_view sni) : ssl_(SSL_new(ctx)) {
  BIO* bio = BIO_new(TlsBio::method());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_.get(), bio, bio);  // one BIO both ways; SSL owns the one reference
  if (server) {
    SSL_set_accept_state(ssl_.get());
  } else {
    SSL_set_connect_state(ssl_.get());
    if (!sni.empty()) SSL_set_tlsext_host_name(ssl_.get(), std::string(sni).c_str());
  }
}

TlsConn::~TlsConn() = default;

void TlsConn::keep_unread() {
  if (in_.empty()) {
    in_store_.clear();
    if (in_store_.capacity() > 1024) std::string().swap(in_store_);
    in_ = {};
    return;
  }
  if (in_.data() >= in_store_.data() && in_.data() < in_store_.data() + in_store_.size()) {
    in_store_.erase(0, static_cast<size_t>(in_.data() - in_store_.data()));
  } else {
    in_store_.assign(in_);
  }
  in_ = in_store_;
}

std::string_view TlsConn::version() const {
  return SSL_get_version(ssl_.get());
}

std::string_view TlsConn::cipher() const {
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_.get());
  return c ? SSL_CIPHER_standard_name(c) : "";
}

int TlsConn::cipher_bits() const {
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_.get());
  return c ? SSL_CIPHER_get_bits(c, nullptr) : 0;
}

}  // namespace ringmail::rt
