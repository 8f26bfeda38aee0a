#include "mta/server/tls_setup.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace ringmail::server {

namespace {
constexpr long kValidSeconds = 10L * 365 * 24 * 3600;

// Writes `pem` via a temporary file and rename(), so a crash never leaves half a key.
template <class WriteFn>
Status write_pem(const std::string& path, mode_t mode, WriteFn write) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Error{errno, "cannot create " + tmp + ": " + std::strerror(errno)};
  FILE* f = fdopen(fd, "w");
  if (!f) {
    int e = errno;
    ::close(fd);
    return Error{e, "cannot open " + tmp};
  }
  bool ok = write(f) == 1;
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(fileno(f)) == 0 && ok;
  std::fclose(f);
  if (!ok) return Error{EIO, "cannot write " + tmp + ": " + rt::tls_error_text()};
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Error{errno, "cannot rename " + tmp + ": " + std::strerror(errno)};
  return ok_status();
}
}  // namespace

Status make_self_signed(const std::string& hostname, const std::string& cert_file,
                        const std::string& key_file) {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  if (!ec || !EC_KEY_generate_key(ec.get())) return Error{EIO, "cannot make an EC key"};
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  EVP_PKEY_set1_EC_KEY(key.get(), ec.get());

  bssl::UniquePtr<X509> x(X509_new());
  X509_set_version(x.get(), X509_VERSION_3);
  uint8_t serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;  // positive (RFC 5280 4.1.2.2)
  bssl::UniquePtr<BIGNUM> bn(BN_bin2bn(serial, sizeof serial, nullptr));
  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get()));
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), kValidSeconds);
  X509_NAME* name = X509_get_subject_name(x.get());
  std::string cn = hostname.substr(0, 64);  // CN is at most 64 characters
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const uint8_t*>(cn.data()),
                             static_cast<int>(cn.size()), -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509_set_pubkey(x.get(), key.get());
  std::string san = "DNS:" + hostname;
  if (X509_EXTENSION* ext =
          X509V3_EXT_nconf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str())) {
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (!X509_sign(x.get(), key.get(), EVP_sha256()))
    return Error{EIO, "cannot sign the certificate: " + rt::tls_error_text()};

  if (auto s = write_pem(key_file, 0600,
                         [&](FILE* f) {
                           return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr,
                                                       nullptr);
                         });
      !s)
    return s;
  return write_pem(cert_file, 0644, [&](FILE* f) { return PEM_write_X509(f, x.get()); });
}

Result<TlsFiles> ensure_tls_files(const conf::Config& c) {
  if (!c.tls.cert.empty()) return TlsFiles{c.tls.cert, c.tls.key, false};
  std::filesystem::path dir = std::filesystem::path(c.server.data_dir) / "tls";
  TlsFiles f{(dir / "cert.pem").string(), (dir / "key.pem").string(), true};
  std::error_code ec;
  if (std::filesystem::exists(f.cert, ec) && std::filesystem::exists(f.key, ec)) return f;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error{ec.value(), "cannot create " + dir.string() + ": " + ec.message()};
  if (auto s = make_self_signed(c.server.hostname, f.cert, f.key); !s) return s.error();
  std::fprintf(stderr, "ringmaild: made a self-signed TLS certificate for %s in %s\n",
               c.server.hostname.c_str(), dir.c_str());
  return f;
}

}  // namespace ringmail::server
