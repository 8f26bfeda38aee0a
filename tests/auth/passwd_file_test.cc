// auth/passwd_file.h: Dovecot passwd-file lines for `ringctl user import`.
#include "auth/passwd_file.h"

#include <gtest/gtest.h>

#include <string>

#include "auth/password.h"

namespace ringmail::auth {
namespace {

constexpr const char* kSha512 =
    "$6$saltsaltsalt$Cy2drr8kDRji6smvDcT28wkqtq0R0VzVL5CkrjPQCITc5d/"
    "31j94knt9rGTcVSyjLXfjsiIsBh5ee8qR/3QDx1";
constexpr const char* kSha256 = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";
constexpr const char* kBcrypt = "$2b$05$abcdefghijklmnopqrstuuHNbAKRhpaujgo33bRWs.NLUTJO3lOy2";
constexpr const char* kBcrypt2y = "$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";
constexpr const char* kYescrypt =
    "$y$j9T$abcdefghijklmnop$0Hi8KsZH/hAMRN9Bam6ce3nmi5QAIz3R/KeaXG/c7p9";
constexpr const char* kMd5 = "$1$abc$mEYYKBYwc4Odg5SoPgnFr/";

PasswdEntry ok(const std::string& line) {
  auto r = parse_passwd_line(line);
  EXPECT_TRUE(r.ok()) << line << ": " << (r.ok() ? "" : r.error().message);
  if (!r.ok() || !*r) {
    ADD_FAILURE() << "no entry for " << line;
    return {};
  }
  return **r;
}

// The refusal reason ("" when the line was accepted).
std::string refused(const std::string& line) {
  auto r = parse_passwd_line(line);
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_FALSE(r.error().message.empty());
  return r.error().message;
}

TEST(PasswdFileTest, EverySupportedScheme) {
  struct {
    std::string line;
    const char* hash;
    const char* scheme;
  } cases[] = {
      {std::string("alice@example.test:{SHA512-CRYPT}") + kSha512, kSha512, "SHA512-CRYPT"},
      {std::string("alice@example.test:{sha512-crypt}") + kSha512, kSha512, "SHA512-CRYPT"},
      {std::string("alice@example.test:{SHA256-CRYPT}") + kSha256, kSha256, "SHA256-CRYPT"},
      {std::string("alice@example.test:{BLF-CRYPT}") + kBcrypt, kBcrypt, "BLF-CRYPT"},
      {std::string("alice@example.test:{BLF-CRYPT}") + kBcrypt2y, kBcrypt2y, "BLF-CRYPT"},
      {std::string("alice@example.test:{CRYPT}") + kYescrypt, kYescrypt, "CRYPT"},
      {std::string("alice@example.test:{CRYPT}") + kSha512, kSha512, "CRYPT"},
      {std::string("alice@example.test:") + kYescrypt, kYescrypt, ""},
      {std::string("alice@example.test:") + kBcrypt, kBcrypt, ""},
  };
  for (const auto& c : cases) {
    PasswdEntry e = ok(c.line);
    EXPECT_EQ(e.address, "alice@example.test") << c.line;
    EXPECT_EQ(e.password_hash, c.hash) << c.line;
    EXPECT_EQ(e.scheme, c.scheme) << c.line;
    EXPECT_TRUE(e.clear_password.empty());
    EXPECT_TRUE(verify_password("correct horse", e.password_hash) ||
                verify_password("Hello world!", e.password_hash))
        << c.line;
  }
}

TEST(PasswdFileTest, PlainAndClear) {
  PasswdEntry e = ok("Bob@Example.TEST:{PLAIN}pa ss$word{x}");
  EXPECT_EQ(e.address, "bob@example.test");
  EXPECT_EQ(e.clear_password, "pa ss$word{x}");
  EXPECT_TRUE(e.password_hash.empty());
  EXPECT_EQ(ok("bob@example.test:{CLEAR}secret").clear_password, "secret");
  EXPECT_NE(refused("bob@example.test:{PLAIN}"), "");
}

TEST(PasswdFileTest, FullDovecotLineWithQuota) {
  PasswdEntry e = ok(std::string("carol@example.test:{SHA512-CRYPT}") + kSha512 +
                     ":1000:1000:Carol:/home/carol:/bin/false:userdb_quota_rule=*:storage=2G "
                     "userdb_mail=maildir:~/Maildir\r");
  EXPECT_EQ(e.password_hash, kSha512);
  EXPECT_EQ(e.quota, 2ULL << 30);
  EXPECT_EQ(ok("c@example.test:{PLAIN}x::::::quota_rule=*:storage=100M").quota, 100ULL << 20);
  EXPECT_EQ(ok("c@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=10").quota, 10240u);
  EXPECT_EQ(ok("c@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=512K").quota, 512u * 1024);
  EXPECT_EQ(ok("c@example.test:{PLAIN}x::::::userdb_quota_rule=*:bytes=1000").quota, 1000u);
  EXPECT_EQ(ok("c@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=1G:messages=10").quota,
            1ULL << 30);
  // Mailbox-specific rules are not a mailbox quota.
  EXPECT_EQ(ok("c@example.test:{PLAIN}x::::::userdb_quota_rule=Trash:storage=+100M").quota, 0u);
  EXPECT_EQ(ok("c@example.test:{PLAIN}x:1:2").quota, 0u);
  EXPECT_NE(refused("c@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=10%"), "");
  EXPECT_NE(refused("c@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=+10M"), "");
  EXPECT_NE(refused("c@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=1Q"), "");
  EXPECT_NE(refused("c@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=99999999999T"), "");
}

TEST(PasswdFileTest, BlankAndCommentLinesAreSkipped) {
  for (const char* line : {"", "   ", "\r", "# alice@example.test:{PLAIN}x", "  # note"}) {
    auto r = parse_passwd_line(line);
    ASSERT_TRUE(r.ok()) << line;
    EXPECT_FALSE(*r) << line;
  }
}

TEST(PasswdFileTest, WeakUnknownAndMismatchedSchemesAreRefused) {
  EXPECT_NE(refused(std::string("a@example.test:{MD5-CRYPT}") + kMd5).find("weak"),
            std::string::npos);
  EXPECT_NE(refused("a@example.test:{PLAIN-MD5}5f4dcc3b5aa765d61d8327deb882cf99").find("weak"),
            std::string::npos);
  EXPECT_NE(refused("a@example.test:{SSHA}abcdefghijklmnop").find("weak"), std::string::npos);
  EXPECT_NE(refused("a@example.test:{SHA512}abcdefghijklmnop").find("weak"), std::string::npos);
  EXPECT_NE(refused("a@example.test:{ARGON2ID}$argon2id$v=19$m=65536").find("unknown"),
            std::string::npos);
  EXPECT_NE(refused("a@example.test:{SHA512-CRYPT.B64}abc").find("unknown"), std::string::npos);
  // The hash must match the scheme it claims.
  EXPECT_NE(refused(std::string("a@example.test:{SHA512-CRYPT}") + kBcrypt).find("$6$"),
            std::string::npos);
  EXPECT_NE(refused(std::string("a@example.test:{BLF-CRYPT}") + kSha512).find("$2"),
            std::string::npos);
  EXPECT_NE(refused(std::string("a@example.test:{SHA256-CRYPT}") + kSha512).find("$5$"),
            std::string::npos);
  // Right prefix, damaged hash.
  std::string cut = kSha512;
  cut.pop_back();
  EXPECT_NE(refused("a@example.test:{SHA512-CRYPT}" + cut).find("malformed"), std::string::npos);
  // {CRYPT} and bare strings with weak crypt formats.
  EXPECT_NE(refused(std::string("a@example.test:{CRYPT}") + kMd5).find("MD5"), std::string::npos);
  EXPECT_NE(refused(std::string("a@example.test:") + kMd5).find("MD5"), std::string::npos);
  EXPECT_NE(refused("a@example.test:{CRYPT}abJnggxhB/yWI").find("DES"), std::string::npos);
  EXPECT_NE(refused("a@example.test:notahash").find("not a supported"), std::string::npos);
  EXPECT_NE(refused("a@example.test:{SHA512-CRYPT").find("unterminated"), std::string::npos);
}

TEST(PasswdFileTest, BadLinesAreRefused) {
  EXPECT_NE(refused("alice@example.test"), "");   // no password field
  EXPECT_NE(refused("alice@example.test:"), "");  // empty password
  EXPECT_NE(refused("alice:{PLAIN}x"), "");       // not an address
  EXPECT_NE(refused("a%b@example.test:{PLAIN}x"), "");
  EXPECT_NE(refused("\"a@b\"@example.test:{PLAIN}x"), "");
  EXPECT_NE(refused("alice@[127.0.0.1]:{PLAIN}x"), "");
  EXPECT_NE(refused(" alice@example.test:{PLAIN}x"), "");
  EXPECT_NE(refused(std::string("alice@example.test:{PLAIN}a\0b", 30)), "");
}

TEST(PasswdFileTest, WholeFileKeepsLineNumbers) {
  std::string text = std::string("# users\n") +                              // 1
                     "alice@example.test:{SHA512-CRYPT}" + kSha512 + "\n" +  // 2
                     "\n" +                                                  // 3
                     "bob@example.test:{MD5-CRYPT}" + kMd5 + "\r\n" +        // 4
                     "carol@example.test:{PLAIN}pw\n" +                      // 5
                     "ALICE@example.test:{PLAIN}again\n" +                   // 6
                     "dave@example.test:{BLF-CRYPT}" + kBcrypt;              // 7, no newline
  PasswdFile f = parse_passwd_file(text);
  ASSERT_EQ(f.entries.size(), 3u);
  EXPECT_EQ(f.entries[0].line, 2u);
  EXPECT_EQ(f.entries[0].address, "alice@example.test");
  EXPECT_EQ(f.entries[1].line, 5u);
  EXPECT_EQ(f.entries[2].line, 7u);
  EXPECT_EQ(f.entries[2].password_hash, kBcrypt);
  ASSERT_EQ(f.errors.size(), 2u);
  EXPECT_EQ(f.errors[0].line, 4u);
  EXPECT_EQ(f.errors[1].line, 6u);
  EXPECT_NE(f.errors[1].reason.find("line 2"), std::string::npos);
}

}  // namespace
}  // namespace ringmail::auth
