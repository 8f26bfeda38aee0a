// auth/sasl.h: mechanism names, strict base64 (RFC 4648), PLAIN (RFC 4616) and the
// RFC 4954 response framing, with every way a client can get them wrong.
#include "auth/sasl.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmail::auth {
namespace {

using namespace std::string_literals;

TEST(SaslMechanism, NamesAreCaseInsensitive) {
  EXPECT_EQ(parse_mechanism("PLAIN"), Mechanism::plain);
  EXPECT_EQ(parse_mechanism("plain"), Mechanism::plain);
  EXPECT_EQ(parse_mechanism("LoGiN"), Mechanism::login);
  EXPECT_EQ(parse_mechanism("SCRAM-SHA-256"), Mechanism::scram_sha256);
  EXPECT_EQ(parse_mechanism("scram-sha-256"), Mechanism::scram_sha256);
}

TEST(SaslMechanism, UnknownNamesAreRefused) {
  for (const char* name : {"", "PLAIN ", " PLAIN", "PLAINX", "PLAI", "CRAM-MD5", "SCRAM-SHA-1",
                           "SCRAM-SHA-256-PLUS", "XOAUTH2", "GSSAPI"})
    EXPECT_FALSE(parse_mechanism(name).has_value()) << name;
  EXPECT_FALSE(parse_mechanism("PLAIN\0"s).has_value());
}

TEST(SaslMechanism, AdvertisedListParsesBack) {
  EXPECT_EQ(advertised_mechanisms(), "PLAIN LOGIN SCRAM-SHA-256");
  std::string_view list = advertised_mechanisms();
  size_t n = 0;
  while (!list.empty()) {
    size_t sp = list.find(' ');
    std::string_view name = list.substr(0, sp);
    auto m = parse_mechanism(name);
    ASSERT_TRUE(m.has_value()) << name;
    EXPECT_EQ(mechanism_name(*m), name);
    list = sp == std::string_view::npos ? std::string_view() : list.substr(sp + 1);
    ++n;
  }
  EXPECT_EQ(n, 3u);
}

// RFC 4648 section 10.
TEST(SaslBase64, Rfc4648TestVectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (auto [raw, encoded] : vectors) {
    EXPECT_EQ(encode_base64(raw), encoded);
    Result<std::string> r = decode_base64(encoded);
    ASSERT_TRUE(r.ok()) << encoded << ": " << r.error().message;
    EXPECT_EQ(r.value(), raw);
  }
}

TEST(SaslBase64, EveryByteRoundTrips) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t len = 0; len <= all.size(); len += 37) {
    std::string raw = all.substr(0, len);
    Result<std::string> r = decode_base64(encode_base64(raw));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value(), raw);
  }
  // Both extra alphabet characters.
  Result<std::string> r = decode_base64("+/+/");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), "\xfb\xff\xbf"s);
}

TEST(SaslBase64, RefusesEverythingNotStrict) {
  const std::string bad[] = {
      "Zg",            // padding missing
      "Zg=",           // short padding
      "Zm9",           // length not a multiple of 4
      "Zm9v\r\n",      // line break
      "Zm9v\n",        //
      " Zm9v",         // whitespace
      "Zm9 v",         //
      "Zm9v ",         //
      "Zm\tv",         //
      "Zg==Zg==",      // padding in the middle
      "Zg==Zm9v",      //
      "Z===",          // three pad characters
      "====",          //
      "=Zm9",          //
      "Zh==",          // non-zero pad bits (RFC 4648 section 3.5)
      "Zm9=",          //
      "Zm-_",          // base64url alphabet
      "Zm9v\0"s,       // NUL
      "Zm9*",          //
      "*",             //
      "Zm9v\xc3\xa9",  // non-ASCII
      "=",             //
      "==",            //
  };
  for (const std::string& text : bad) {
    Result<std::string> r = decode_base64(text);
    EXPECT_FALSE(r.ok()) << "accepted \"" << text << "\"";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, 501);
    }
  }
}

TEST(SaslBase64, LengthBound) {
  std::string at_limit(kMaxBase64Length, 'A');
  EXPECT_TRUE(decode_base64(at_limit).ok());
  EXPECT_FALSE(decode_base64(at_limit + "AAAA").ok());
  EXPECT_TRUE(decode_base64("Zm9vYmFy", 8).ok());
  Result<std::string> r = decode_base64("Zm9vYmFy", 7);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 501);
}

TEST(SaslUtf8, ValidAndInvalidSequences) {
  for (std::string ok : {""s, "abc"s, "\0"s, "caf\xc3\xa9"s, "\xe2\x82\xac"s, "\xf0\x9f\x98\x80"s,
                         "\xf4\x8f\xbf\xbf"s, "\xed\x9f\xbf"s, "\xee\x80\x80"s, "\x7f"s})
    EXPECT_TRUE(valid_utf8(ok)) << ok;
  for (std::string bad : {
           "\x80"s,              // lone continuation
           "\xbf"s,              //
           "\xc0\x80"s,          // overlong NUL
           "\xc1\xbf"s,          // overlong
           "\xe0\x80\xaf"s,      // overlong '/'
           "\xf0\x8f\xbf\xbf"s,  // overlong U+FFFF
           "\xed\xa0\x80"s,      // surrogate U+D800
           "\xed\xbf\xbf"s,      // surrogate U+DFFF
           "\xf4\x90\x80\x80"s,  // U+110000
           "\xf5\x80\x80\x80"s,  // F5 lead
           "\xff"s,              //
           "\xe2\x82"s,          // truncated
           "\xc3"s,              //
           "a\xc3("s,            // bad continuation
           "\xe2\x28\xa1"s,      //
           "\xf0\x9f\x98"s,      // truncated 4-byte
       })
    EXPECT_FALSE(valid_utf8(bad)) << testing::PrintToString(bad);
}

// RFC 4616 section 4, first example: no authzid.
TEST(SaslPlain, Rfc4616ExampleWithoutAuthzid) {
  ClientResponse resp = parse_initial_response(encode_base64("\0tim\0tanstaaftanstaaf"s));
  ASSERT_EQ(resp.kind, ResponseKind::data);
  Result<PlainCredentials> c = decode_plain(resp.data);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->authzid, "");
  EXPECT_EQ(c->authcid, "tim");
  EXPECT_EQ(c->password, "tanstaaftanstaaf");
  EXPECT_EQ(encode_base64("\0tim\0tanstaaftanstaaf"s), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
}

// RFC 4616 section 4, second example: Kurt acting as Ursel.
TEST(SaslPlain, Rfc4616ExampleWithAuthzid) {
  Result<PlainCredentials> c = decode_plain("Ursel\0Kurt\0xipj3plmq"s);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->authzid, "Ursel");
  EXPECT_EQ(c->authcid, "Kurt");
  EXPECT_EQ(c->password, "xipj3plmq");
}

TEST(SaslPlain, Utf8AndMaximumLengthsAccepted) {
  std::string f255(255, 'x');
  Result<PlainCredentials> c = decode_plain(f255 + '\0' + f255 + '\0' + f255);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->authcid.size(), 255u);
  c = decode_plain("\0j\xc3\xb6rg@example.org\0p\xc3\xa4ss \xf0\x9f\x94\x91"s);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->authcid, "j\xc3\xb6rg@example.org");
}

TEST(SaslPlain, Refusals) {
  std::string f256(256, 'x');
  const std::string bad[] = {
      ""s,                       // nothing
      "timtanstaaf"s,            // no NUL
      "\0tim"s,                  // one NUL
      "tim\0tanstaaf"s,          //
      "\0tim\0tan\0staaf"s,      // three NULs
      "\0tim\0tanstaaf\0"s,      //
      "\0\0tanstaaf"s,           // empty authcid
      "\0tim\0"s,                // empty password
      "\0\0"s,                   //
      f256 + "\0tim\0pw"s,       // authzid too long
      "\0"s + f256 + "\0pw"s,    // authcid too long
      "\0tim\0"s + f256,         // password too long
      "\xc0\x80\0tim\0pw"s,      // invalid UTF-8 in each field
      "\0t\xedm\0pw"s,           //
      "\0tim\0p\xff"s,           //
      "\0tim\0pw\xed\xa0\x80"s,  //
  };
  for (const std::string& raw : bad) {
    Result<PlainCredentials> c = decode_plain(raw);
    EXPECT_FALSE(c.ok()) << "accepted " << testing::PrintToString(raw);
    if (!c.ok()) {
      EXPECT_EQ(c.error().code, 535);
    }
  }
}

TEST(SaslLogin, PromptsAndCredentials) {
  EXPECT_EQ(decode_base64(kLoginUsernamePrompt).value(), "Username:");
  EXPECT_EQ(decode_base64(kLoginPasswordPrompt).value(), "Password:");
  Result<PlainCredentials> c = login_credentials("tim", "tanstaaf");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->authzid, "");
  EXPECT_EQ(c->authcid, "tim");
  EXPECT_EQ(c->password, "tanstaaf");
  EXPECT_FALSE(login_credentials("", "pw").ok());
  EXPECT_FALSE(login_credentials("tim", "").ok());
  EXPECT_FALSE(login_credentials("t\0m"s, "pw").ok());
  EXPECT_FALSE(login_credentials("tim", "p\0w"s).ok());
  EXPECT_FALSE(login_credentials(std::string(256, 'u'), "pw").ok());
  EXPECT_FALSE(login_credentials("tim", "\xc3(").ok());
  EXPECT_EQ(login_credentials("tim", "").error().code, 535);
}

TEST(SaslResponse, ContinuationLines) {
  ClientResponse r = parse_response("*");
  EXPECT_EQ(r.kind, ResponseKind::cancel);
  r = parse_response("");
  EXPECT_EQ(r.kind, ResponseKind::data);
  EXPECT_EQ(r.data, "");
  r = parse_response("dGltAHRhbnN0YWFm");
  EXPECT_EQ(r.kind, ResponseKind::data);
  EXPECT_EQ(r.data, "tim\0tanstaaf"s);
  for (const char* bad : {"=", "**", "* ", " *", "dGlt AHRh", "dGltAHRhbnN0YWFm\r", "!"}) {
    EXPECT_EQ(parse_response(bad).kind, ResponseKind::bad_base64) << bad;
    EXPECT_EQ(parse_response(bad).data, "");
  }
  EXPECT_EQ(parse_response(std::string(kMaxBase64Length + 4, 'A')).kind, ResponseKind::bad_base64);
}

TEST(SaslResponse, InitialResponse) {
  ClientResponse r = parse_initial_response("=");
  EXPECT_EQ(r.kind, ResponseKind::data);
  EXPECT_EQ(r.data, "");
  r = parse_initial_response("dGVzdA==");
  EXPECT_EQ(r.kind, ResponseKind::data);
  EXPECT_EQ(r.data, "test");
  for (const char* bad : {"", "*", "==", "dGVzdA", "dGVzdA= ="})
    EXPECT_EQ(parse_initial_response(bad).kind, ResponseKind::bad_base64) << bad;
}

}  // namespace
}  // namespace ringmail::auth
