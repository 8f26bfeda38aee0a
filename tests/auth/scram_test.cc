// auth/scram.h: the RFC 7677 section 3 exchange byte for byte, a test client for other
// shapes of the first message, and every refusal path of both client messages.
#include "auth/scram.h"

#include <gtest/gtest.h>
#include <openssl/digest.h>
#include <openssl/evp.h>

#include <string>

#include "auth/sasl.h"
#include "auth/scram_credentials.h"

namespace ringmail::auth {
namespace {

using namespace std::string_literals;

// RFC 7677 section 3.
constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kSalt = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view kClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
constexpr std::string_view kNonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

std::string raw_salt() {
  return decode_base64(kSalt).value();
}

// PBKDF2 once for the whole file: 4096 iterations per test would add up.
const ScramCredentials& pencil() {
  static const ScramCredentials c = scram_credentials("pencil", raw_salt(), 4096);
  return c;
}

std::string salted_pencil() {
  uint8_t out[32];
  std::string salt = raw_salt();
  PKCS5_PBKDF2_HMAC("pencil", 6, reinterpret_cast<const uint8_t*>(salt.data()), salt.size(), 4096,
                    EVP_sha256(), sizeof out, out);
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

ScramServer fixed_server() {
  return ScramServer([] { return std::string(kServerNonce); });
}

// The client side of RFC 5802 section 3, enough to make valid final messages for first
// messages other than the RFC's.
struct TestClient {
  std::string gs2_header;
  std::string client_first_bare;

  std::string final_message(std::string_view server_first, std::string_view nonce,
                            std::string* server_signature = nullptr) const {
    std::string without_proof = "c=" + encode_base64(gs2_header) + ",r=" + std::string(nonce);
    std::string auth_message =
        client_first_bare + "," + std::string(server_first) + "," + without_proof;
    std::string salted = salted_pencil();
    std::string client_key = hmac_sha256(salted, "Client Key");
    std::string signature = hmac_sha256(sha256(client_key), auth_message);
    std::string proof = client_key;
    for (size_t i = 0; i < proof.size(); ++i) proof[i] ^= signature[i];
    if (server_signature)
      *server_signature = hmac_sha256(hmac_sha256(salted, "Server Key"), auth_message);
    return without_proof + ",p=" + encode_base64(proof);
  }
};

TEST(Scram, Rfc7677Exchange) {
  ScramServer s = fixed_server();
  Result<std::string> user = s.client_first(kClientFirst);
  ASSERT_TRUE(user.ok()) << user.error().message;
  EXPECT_EQ(user.value(), "user");
  EXPECT_EQ(s.username(), "user");
  EXPECT_EQ(s.server_first(pencil()), kServerFirst);
  Result<std::string> v = s.client_final(kClientFinal);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v.value(), kServerFinal);
  // The exchange is over: nothing more is accepted.
  EXPECT_FALSE(s.client_final(kClientFinal).ok());
  EXPECT_FALSE(s.client_first(kClientFirst).ok());
}

TEST(Scram, TestClientReproducesRfc7677) {
  TestClient c{"n,,", "n=user,r=rOprNGfwEbeRWgbNEkqO"};
  std::string sig;
  EXPECT_EQ(c.final_message(kServerFirst, kNonce, &sig), kClientFinal);
  EXPECT_EQ("v=" + encode_base64(sig), kServerFinal);
}

// Runs a whole exchange for `first`, whose bare part starts after gs2_header.
void expect_success(std::string_view first, std::string_view gs2_header, std::string_view user) {
  ScramServer s = fixed_server();
  Result<std::string> u = s.client_first(first);
  ASSERT_TRUE(u.ok()) << first << ": " << u.error().message;
  EXPECT_EQ(u.value(), user);
  std::string server_first = s.server_first(pencil());
  TestClient c{std::string(gs2_header), std::string(first.substr(gs2_header.size()))};
  std::string nonce = server_first.substr(2, server_first.find(',') - 2);
  std::string sig;
  Result<std::string> v = s.client_final(c.final_message(server_first, nonce, &sig));
  ASSERT_TRUE(v.ok()) << first << ": " << v.error().message;
  EXPECT_EQ(v.value(), "v=" + encode_base64(sig));
}

TEST(Scram, AcceptedFirstMessages) {
  expect_success("y,,n=user,r=abc", "y,,", "user");
  expect_success("n,a=user,n=user,r=abc", "n,a=user,", "user");
  expect_success("n,,n=a=2Cb=3Dc,r=abc", "n,,", "a,b=c");
  expect_success("n,a=a=2Cb,n=a=2Cb,r=x", "n,a=a=2Cb,", "a,b");
  expect_success("n,,n=j\xc3\xb6rg@example.org,r=!~+/=", "n,,", "j\xc3\xb6rg@example.org");
  expect_success("n,,n=" + std::string(255, 'u') + ",r=" + std::string(512, 'r'), "n,,",
                 std::string(255, 'u'));
}

TEST(Scram, ClientFirstRefusals) {
  const std::string bad[] = {
      "",
      "n",
      "n,",
      "n,,",
      "p=tls-unique,,n=user,r=abc",  // channel binding: we do not offer -PLUS
      "p,,n=user,r=abc",
      "x,,n=user,r=abc",
      "N,,n=user,r=abc",
      "nn,,n=user,r=abc",
      "n,n=user,r=abc",                            // gs2-header without its second comma
      "n,b=user,n=user,r=abc",                     // not an authzid
      "n,a=,n=user,r=abc",                         // empty authzid
      "n,a=other,n=user,r=abc",                    // acting as somebody else
      "n,a=User,n=user,r=abc",                     //
      "n,a=us=41er,n=user,r=abc",                  // bad escape in authzid
      "n,,m=ext,n=user,r=abc",                     // reserved mandatory extension
      "n,,r=abc,n=user",                           // wrong order
      "n,,n=user",                                 // no nonce
      "n,,n=user,",                                //
      "n,,n=user,r=",                              // empty nonce
      "n,,n=user,r=ab c",                          // nonce not printable
      "n,,n=user,r=ab\x7f",                        //
      "n,,n=user,r=ab\xc3\xa9",                    //
      "n,,n=user,r=abc,x=ext",                     // extensions
      "n,,n=user,r=abc,m=ext",                     //
      "n,,n=user,r=abc,",                          // trailing comma
      "n,,n=,r=abc",                               // empty user name
      "n,,n=us=41er,r=abc",                        // escapes other than =2C, =3D
      "n,,n=us=2c,r=abc",                          // lower-case hex is not the RFC's
      "n,,n=user=,r=abc",                          // truncated escape
      "n,,n=user=2,r=abc",                         //
      "n,,n=us\xffr,r=abc",                        // invalid UTF-8
      "n,,n=us\xc0\x80r,r=abc",                    //
      "n,,n=u\0ser,r=abc"s,                        // NUL
      "n,,u=user,r=abc",                           // wrong attribute name
      "n,,nn=user,r=abc",                          //
      "n,,n=" + std::string(256, 'u') + ",r=abc",  // user name too long
      "n,,n=user,r=" + std::string(513, 'r'),      // client nonce too long
  };
  for (const std::string& msg : bad) {
    ScramServer s = fixed_server();
    Result<std::string> r = s.client_first(msg);
    EXPECT_FALSE(r.ok()) << "accepted " << testing::PrintToString(msg);
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, 535);
    }
    // A refused first message ends the exchange.
    EXPECT_FALSE(s.client_first(kClientFirst).ok());
  }
}

TEST(Scram, ClientFirstTwiceIsRefused) {
  ScramServer s = fixed_server();
  ASSERT_TRUE(s.client_first(kClientFirst).ok());
  EXPECT_FALSE(s.client_first(kClientFirst).ok());
}

TEST(Scram, ClientFinalBeforeServerFirstIsRefused) {
  ScramServer s = fixed_server();
  EXPECT_FALSE(s.client_final(kClientFinal).ok());
  ScramServer t = fixed_server();
  ASSERT_TRUE(t.client_first(kClientFirst).ok());
  EXPECT_FALSE(t.client_final(kClientFinal).ok());
}

TEST(Scram, ClientFinalRefusals) {
  const std::string nonce(kNonce);
  const std::string proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
  const std::string bad[] = {
      "",
      "c=biws",
      "c=biws,r=" + nonce,                         // no proof
      "c=biws,r=" + nonce + ",",                   //
      "c=biws,r=" + nonce + ",p=",                 //
      "c=biws,r=" + nonce + "," + proof + ",",     // trailing comma
      "c=biws,r=" + nonce + "," + proof + ",x=1",  // data after the proof
      "c=biws,r=" + nonce + ",x=1," + proof,       // extension
      "r=" + nonce + ",c=biws," + proof,           // wrong order
      "c=biws," + proof + ",r=" + nonce,           //
      "c=eSws,r=" + nonce + "," + proof,           // "y,," is not what was sent
      "c=bix,r=" + nonce + "," + proof,            // c= not base64
      "c=,r=" + nonce + "," + proof,               //
      "c=biws,r=rOprNGfwEbeRWgbNEkqO," + proof,    // client nonce only
      "c=biws,r=" + nonce + "x," + proof,          // nonce extended
      "c=biws,r=" + nonce.substr(0, nonce.size() - 1) + "," + proof,
      "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",   // bad base64
      "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=",  // pad bits
      "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQA",  // 33 bytes?
      "c=biws,r=" + nonce + ",p=" + encode_base64(std::string(31, 'x')),        // short proof
      "c=biws,r=" + nonce + ",p=" + encode_base64(std::string(33, 'x')),        // long proof
      "c=biws,r=" + nonce + ",p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",  // wrong proof
      "c=biws,r=" + nonce + ",p=" + encode_base64(std::string(32, '\0')),       //
      "c=biws,r=" + nonce + ",p=" + encode_base64(std::string(32, '\0')),       //
      "c=biws ,r=" + nonce + "," + proof,                                       //
      "C=biws,r=" + nonce + "," + proof,                                        //
  };
  for (const std::string& msg : bad) {
    ScramServer s = fixed_server();
    ASSERT_TRUE(s.client_first(kClientFirst).ok());
    s.server_first(pencil());
    Result<std::string> r = s.client_final(msg);
    EXPECT_FALSE(r.ok()) << "accepted " << msg;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, 535);
    }
    // One failure ends the exchange: even the right answer is refused afterwards.
    EXPECT_FALSE(s.client_final(kClientFinal).ok());
  }
}

TEST(Scram, WrongPasswordFails) {
  ScramServer s = fixed_server();
  ASSERT_TRUE(s.client_first(kClientFirst).ok());
  ScramCredentials other = scram_credentials("pencil2", raw_salt(), 4096);
  EXPECT_EQ(s.server_first(other), kServerFirst);
  Result<std::string> r = s.client_final(kClientFinal);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 535);
}

TEST(Scram, FakeCredentialsAreStableButUseless) {
  ScramCredentials a = ScramServer::fake_credentials("nobody", "secret");
  ScramCredentials b = ScramServer::fake_credentials("nobody", "secret");
  ScramCredentials c = ScramServer::fake_credentials("somebody", "secret");
  ScramCredentials d = ScramServer::fake_credentials("nobody", "other secret");
  EXPECT_EQ(a.salt, b.salt);
  EXPECT_EQ(a.salt.size(), 16u);
  EXPECT_NE(a.salt, c.salt);
  EXPECT_NE(a.salt, d.salt);
  EXPECT_EQ(a.iterations, kScramDefaultIterations);
  EXPECT_EQ(a.stored_key.size(), 32u);
  EXPECT_EQ(a.server_key.size(), 32u);
  EXPECT_NE(a.stored_key, b.stored_key);
  EXPECT_NE(a.server_key, b.server_key);

  // The right password for a real user's salt is still wrong for fake credentials.
  ScramCredentials fake = ScramServer::fake_credentials("user", "secret");
  fake.salt = raw_salt();
  ScramServer s = fixed_server();
  ASSERT_TRUE(s.client_first(kClientFirst).ok());
  EXPECT_EQ(s.server_first(fake), kServerFirst);
  EXPECT_FALSE(s.client_final(kClientFinal).ok());
}

// An unknown user or one without verifiers: the session may pass an empty record and
// still get a normal-looking challenge with a salt that does not change between tries.
TEST(Scram, EmptyCredentialsLookNormalAndFail) {
  std::string salts[2];
  for (std::string& salt : salts) {
    ScramServer s = fixed_server();
    ASSERT_TRUE(s.client_first("n,,n=ghost,r=abc").ok());
    std::string first = s.server_first(ScramCredentials{});
    std::string prefix = "r=abc" + std::string(kServerNonce) + ",s=";
    ASSERT_EQ(first.substr(0, prefix.size()), prefix);
    size_t i = first.find(",i=");
    ASSERT_NE(i, std::string::npos);
    EXPECT_EQ(first.substr(i), ",i=4096");
    salt = first.substr(prefix.size(), i - prefix.size());
    EXPECT_EQ(decode_base64(salt).value().size(), 16u);
    std::string final_msg =
        "c=biws,r=abc" + std::string(kServerNonce) + ",p=" + encode_base64(std::string(32, 'x'));
    EXPECT_FALSE(s.client_final(final_msg).ok());
  }
  EXPECT_EQ(salts[0], salts[1]);
  // A damaged record (no server key) is treated the same way.
  ScramCredentials damaged = pencil();
  damaged.server_key.clear();
  ScramServer s = fixed_server();
  ASSERT_TRUE(s.client_first(kClientFirst).ok());
  EXPECT_NE(s.server_first(damaged), kServerFirst);
  EXPECT_FALSE(s.client_final(kClientFinal).ok());
}

TEST(Scram, RandomServerNonce) {
  ScramServer a, b;
  ASSERT_TRUE(a.client_first(kClientFirst).ok());
  ASSERT_TRUE(b.client_first(kClientFirst).ok());
  std::string fa = a.server_first(pencil()), fb = b.server_first(pencil());
  std::string na = fa.substr(2, fa.find(',') - 2), nb = fb.substr(2, fb.find(',') - 2);
  ASSERT_EQ(na.substr(0, kClientNonce.size()), kClientNonce);
  EXPECT_GE(na.size() - kClientNonce.size(), 24u);  // 18 random bytes in base64
  EXPECT_NE(na, nb);
  // And the exchange works with it.
  TestClient c{"n,,", "n=user,r=rOprNGfwEbeRWgbNEkqO"};
  EXPECT_TRUE(a.client_final(c.final_message(fa, na)).ok());
}

}  // namespace
}  // namespace ringmail::auth
