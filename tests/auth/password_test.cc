// auth/password.h: crypt(3) hashing and verification through libxcrypt.
#include "auth/password.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmail::auth {
namespace {

using namespace std::string_literals;

// Published vectors, independent of this libxcrypt: Drepper's SHA-crypt specification
// (the "Hello world!" / "saltstring" examples) and the crypt_blowfish "U*U" vector.
constexpr const char* kSha512Spec =
    "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/"
    "O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
constexpr const char* kSha256Spec = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";
constexpr const char* kBcryptUU = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";

// Made with Python's crypt module (libxcrypt underneath) for "correct horse" and
// cross-checked with direct crypt_rn calls; they pin the formats, not the library.
constexpr const char* kSha512 =
    "$6$saltsaltsalt$Cy2drr8kDRji6smvDcT28wkqtq0R0VzVL5CkrjPQCITc5d/"
    "31j94knt9rGTcVSyjLXfjsiIsBh5ee8qR/3QDx1";
constexpr const char* kSha512Rounds =
    "$6$rounds=1000$abc$3EgFb4AlyVHHbB8rZGsx.UO9EloeRJkmmCazg5i8FYgCDMmLggphTmz."
    "lZDeWybZ2DY3jFUtB1pLy87i2YoZr.";
constexpr const char* kBcrypt2b = "$2b$05$abcdefghijklmnopqrstuuHNbAKRhpaujgo33bRWs.NLUTJO3lOy2";
constexpr const char* kBcrypt2y = "$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";
constexpr const char* kYescrypt =
    "$y$j9T$abcdefghijklmnop$0Hi8KsZH/hAMRN9Bam6ce3nmi5QAIz3R/KeaXG/c7p9";
constexpr const char* kGostYescrypt =
    "$gy$j9T$ay9PTT9cWdTmHupdhr451/$4pmeJEz1Voie0BRJzoEAC8BinuBoKlYmgMO7bn83/0C";
constexpr const char* kScrypt =
    "$7$CU..../....DpmUB11BXBa9i2zRu4tyx.$TdNnhfyRnRPjIyGX6qok.ZF/tYqKRsgtSuAIwQOau14";
constexpr const char* kMd5 = "$1$abc$mEYYKBYwc4Odg5SoPgnFr/";  // "correct horse", MD5-crypt

TEST(PasswordTest, HashIsYescryptAndRoundTrips) {
  auto h = hash_password("correct horse battery staple");
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->rfind("$y$", 0), 0u) << *h;
  EXPECT_TRUE(is_supported_hash(*h));
  EXPECT_TRUE(verify_password("correct horse battery staple", *h));
  EXPECT_FALSE(verify_password("correct horse battery stapl", *h));
  EXPECT_FALSE(verify_password("Correct horse battery staple", *h));
  EXPECT_FALSE(verify_password("", *h));
}

TEST(PasswordTest, SaltsDiffer) {
  auto a = hash_password("same"), b = hash_password("same");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(verify_password("same", *a));
  EXPECT_TRUE(verify_password("same", *b));
}

TEST(PasswordTest, HashRefusesNulAndEmpty) {
  EXPECT_FALSE(hash_password("abc\0def"s).ok());
  EXPECT_FALSE(hash_password("").ok());
}

TEST(PasswordTest, PublishedVectors) {
  EXPECT_TRUE(verify_password("Hello world!", kSha512Spec));
  EXPECT_TRUE(verify_password("Hello world!", kSha256Spec));
  EXPECT_TRUE(verify_password("U*U", kBcryptUU));
  EXPECT_FALSE(verify_password("Hello world", kSha512Spec));
  EXPECT_FALSE(verify_password("U*V", kBcryptUU));
}

TEST(PasswordTest, EveryAcceptedFormatVerifies) {
  for (const char* h :
       {kSha512, kSha512Rounds, kBcrypt2b, kBcrypt2y, kYescrypt, kGostYescrypt, kScrypt}) {
    EXPECT_TRUE(is_supported_hash(h)) << h;
    EXPECT_TRUE(verify_password("correct horse", h)) << h;
    EXPECT_FALSE(verify_password("correct horsE", h)) << h;
    EXPECT_FALSE(verify_password("correct horse ", h)) << h;
  }
}

TEST(PasswordTest, NulInPasswordNeverVerifies) {
  // crypt(3) takes a C string: "correct horse\0junk" would hash as "correct horse".
  EXPECT_FALSE(verify_password("correct horse\0junk"s, kSha512));
  EXPECT_FALSE(verify_password("correct horse\0"s, kYescrypt));
}

TEST(PasswordTest, WeakAndLegacyFormatsAreRefused) {
  EXPECT_FALSE(is_supported_hash(kMd5));
  EXPECT_FALSE(verify_password("correct horse", kMd5));
  EXPECT_FALSE(is_supported_hash("abJnggxhB/yWI"));     // DES
  EXPECT_FALSE(is_supported_hash("_J9..salt1234567"));  // BSDi
  // bcrypt $2x$ is the known-broken variant.
  std::string x = kBcrypt2b;
  x[2] = 'x';
  EXPECT_FALSE(is_supported_hash(x));
  EXPECT_FALSE(is_supported_hash("$3$$8846f7eaee8fb117ad06bdd830b7586c"));  // NT
}

TEST(PasswordTest, MalformedHashesAreRefused) {
  std::string sha = kSha512;
  for (std::string bad : {
           ""s,
           "*"s,
           "*0"s,
           "!"s + kSha512,                 // a locked account in /etc/shadow style
           "$6$saltsaltsalt"s,             // a setting, no checksum
           "$6$saltsaltsalt$"s,            // empty checksum
           sha.substr(0, sha.size() - 1),  // truncated checksum
           sha + "A",                      // checksum too long
           "$6$rounds=x$abc$"s + sha.substr(sha.rfind('$') + 1),
           "$6$salt:bad$"s + sha.substr(sha.rfind('$') + 1),
           std::string(kBcrypt2b).substr(0, 59),
           "$2b$99$abcdefghijklmnopqrstuuHNbAKRhpaujgo33bRWs.NLUTJO3lOy2"s,  // cost
           "$2b$05$abcdefghijklmnopqrstuuHNbAKRhpaujgo33bRWs.NLUTJO3lOy!"s,  // charset
           "$y$j9T$abcdefghijklmnop$"s,
           "$y$j9T$$0Hi8KsZH/hAMRN9Bam6ce3nmi5QAIz3R/KeaXG/c7p9"s,
           "$y$j9T$abc$def$0Hi8KsZH/hAMRN9Bam6ce3nmi5QAIz3R/KeaXG/c7p9"s,
           "$7$CU..$TdNnhfyRnRPjIyGX6qok.ZF/tYqKRsgtSuAIwQOau14"s,
           "$sha1$1$x$y"s,
           "garbage"s,
           "$6$saltsaltsalt$Cy2\0drr"s,
       }) {
    EXPECT_FALSE(is_supported_hash(bad)) << bad;
    EXPECT_FALSE(verify_password("correct horse", bad)) << bad;
  }
}

TEST(PasswordTest, ChangedChecksumFails) {
  std::string h = kYescrypt;
  h.back() = h.back() == 'a' ? 'b' : 'a';
  EXPECT_TRUE(is_supported_hash(h));
  EXPECT_FALSE(verify_password("correct horse", h));
}

}  // namespace
}  // namespace ringmail::auth
