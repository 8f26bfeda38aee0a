// mta/server/tls_setup: which certificate the daemon uses, and the self-signed one.
#include "mta/server/tls_setup.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "tests/support/temp_dir.h"

namespace ringmail::server {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(TlsSetup, MakesASelfSignedPairOnceAndKeepsIt) {
  testing::TempDir dir;
  conf::Config c;
  c.server.data_dir = dir.path();
  c.server.hostname = "mx.example.test";
  auto f = ensure_tls_files(c);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_TRUE(f->self_signed);
  EXPECT_EQ(f->cert, dir.path() + "/tls/cert.pem");
  EXPECT_EQ(f->key, dir.path() + "/tls/key.pem");
  struct stat st;
  ASSERT_EQ(stat(f->key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the private key must not be readable by others";
  std::string first = slurp(f->cert);
  EXPECT_NE(first.find("BEGIN CERTIFICATE"), std::string::npos);

  // A restart reuses the certificate: clients that pinned it keep working.
  auto again = ensure_tls_files(c);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(slurp(again->cert), first);
  EXPECT_TRUE(rt::make_server_tls(again->cert, again->key).ok());
}

TEST(TlsSetup, CertificateNamesTheHost) {
  testing::TempDir dir;
  std::string cert = dir.path() + "/c.pem", key = dir.path() + "/k.pem";
  ASSERT_TRUE(make_self_signed("mx.example.test", cert, key).ok());
  FILE* fp = std::fopen(cert.c_str(), "r");
  ASSERT_NE(fp, nullptr);
  bssl::UniquePtr<X509> x(PEM_read_X509(fp, nullptr, nullptr, nullptr));
  std::fclose(fp);
  ASSERT_TRUE(x);
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(x.get()), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "mx.example.test");
  EXPECT_EQ(X509_check_host(x.get(), "mx.example.test", 15, 0, nullptr), 1);
  // Valid now, for years.
  EXPECT_LT(X509_cmp_current_time(X509_get0_notBefore(x.get())), 0);
  EXPECT_GT(X509_cmp_current_time(X509_get0_notAfter(x.get())), 0);
}

TEST(TlsSetup, ConfiguredFilesAreUsedAsTheyAre) {
  conf::Config c;
  c.server.data_dir = "/nonexistent";
  c.tls.cert = "/etc/ringmail/cert.pem";
  c.tls.key = "/etc/ringmail/key.pem";
  auto f = ensure_tls_files(c);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->self_signed);
  EXPECT_EQ(f->cert, "/etc/ringmail/cert.pem");
}

}  // namespace
}  // namespace ringmail::server
