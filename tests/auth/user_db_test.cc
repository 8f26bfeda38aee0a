// auth/user_db.h: the LMDB user database and its alias index.
#include "auth/user_db.h"

#include <gtest/gtest.h>
#include <lmdb.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.h"

namespace ringmail::auth {
namespace {

User make_user(std::string address, std::vector<std::string> aliases = {}) {
  User u;
  u.address = std::move(address);
  u.password_hash = "$y$j9T$abcdefghijklmnop$0Hi8KsZH/hAMRN9Bam6ce3nmi5QAIz3R/KeaXG/c7p9";
  u.aliases = std::move(aliases);
  return u;
}

class UserDbTest : public ::testing::Test {
 protected:
  void SetUp() override { reopen(); }
  void reopen() {
    db_.reset();
    auto db = UserDb::open(dir());
    ASSERT_TRUE(db.ok()) << db.error().message;
    db_ = std::move(*db);
  }
  std::string dir() const { return tmp_.path() + "/users"; }
  std::optional<User> find(std::string_view a) {
    auto r = db_->find(a);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : std::nullopt;
  }
  std::optional<User> owner(std::string_view a) {
    auto r = db_->find_owner(a);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : std::nullopt;
  }
  std::vector<std::string> addresses() {
    std::vector<std::string> out;
    EXPECT_TRUE(db_->for_each([&](const User& u) { out.push_back(u.address); }).ok());
    return out;
  }
  // Writes raw bytes under a key of the "users" sub-database, behind UserDb's back.
  void put_raw(const std::string& key, const std::string& value) {
    db_.reset();  // LMDB: one environment handle per process
    MDB_env* env;
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    ASSERT_EQ(mdb_env_open(env, dir().c_str(), 0, 0600), 0);
    MDB_txn* txn;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    MDB_dbi dbi;
    ASSERT_EQ(mdb_dbi_open(txn, "users", 0, &dbi), 0);
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    reopen();
  }

  testing::TempDir tmp_;
  std::unique_ptr<UserDb> db_;
};

TEST_F(UserDbTest, EmptyDatabase) {
  EXPECT_FALSE(find("alice@example.test"));
  EXPECT_FALSE(owner("alice@example.test"));
  EXPECT_TRUE(addresses().empty());
  EXPECT_FALSE(find(""));
  EXPECT_FALSE(find(std::string(1000, 'a')));
}

TEST_F(UserDbTest, AddFindRoundTripsEveryField) {
  User u = make_user("Alice@Example.TEST", {"AL@example.test", "a2@example.test"});
  u.quota = 123456789012ULL;
  u.enabled = false;
  u.scram.salt = std::string("\0\x01\xff salt", 8);
  u.scram.iterations = 4096;
  u.scram.stored_key = std::string(32, '\x11');
  u.scram.server_key = std::string(32, '\x22');
  ASSERT_TRUE(db_->add(u).ok());
  auto got = find("ALICE@example.test");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->address, "alice@example.test");
  EXPECT_EQ(got->password_hash, u.password_hash);
  EXPECT_EQ(got->aliases, (std::vector<std::string>{"al@example.test", "a2@example.test"}));
  EXPECT_EQ(got->quota, 123456789012ULL);
  EXPECT_FALSE(got->enabled);
  EXPECT_EQ(got->scram.salt, u.scram.salt);
  EXPECT_EQ(got->scram.iterations, 4096u);
  EXPECT_EQ(got->scram.stored_key, u.scram.stored_key);
  EXPECT_EQ(got->scram.server_key, u.scram.server_key);
  // Survives a reopen (it is on disk, not in a cache).
  reopen();
  ASSERT_TRUE(find("alice@example.test"));
}

TEST_F(UserDbTest, FindIsByLoginAddressOnly) {
  ASSERT_TRUE(db_->add(make_user("alice@example.test", {"al@example.test"})).ok());
  EXPECT_FALSE(find("al@example.test"));
  auto o = owner("AL@EXAMPLE.TEST");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->address, "alice@example.test");
  o = owner("alice@example.test");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->address, "alice@example.test");
  EXPECT_FALSE(owner("nobody@example.test"));
}

TEST_F(UserDbTest, AddConflicts) {
  ASSERT_TRUE(db_->add(make_user("alice@example.test", {"al@example.test"})).ok());
  auto code = [&](const User& u) {
    auto s = db_->add(u);
    return s.ok() ? 0 : s.error().code;
  };
  EXPECT_EQ(code(make_user("ALICE@example.test")), EEXIST);  // same user
  EXPECT_EQ(code(make_user("al@example.test")), EEXIST);     // someone's alias
  EXPECT_EQ(code(make_user("bob@example.test", {"alice@example.test"})), EEXIST);
  EXPECT_EQ(code(make_user("bob@example.test", {"Al@example.test"})), EEXIST);
  EXPECT_EQ(code(make_user("bob@example.test", {"bob@example.test"})), EINVAL);
  EXPECT_EQ(code(make_user("")), EINVAL);
  // A refused add leaves nothing behind.
  EXPECT_FALSE(find("bob@example.test"));
  EXPECT_EQ(owner("al@example.test")->address, "alice@example.test");
  // Duplicate aliases within one user are stored once.
  ASSERT_EQ(code(make_user("bob@example.test", {"b@example.test", "B@example.test"})), 0);
  EXPECT_EQ(find("bob@example.test")->aliases, std::vector<std::string>{"b@example.test"});
}

TEST_F(UserDbTest, UpdateKeepsAliasIndexConsistent) {
  ASSERT_TRUE(
      db_->add(make_user("alice@example.test", {"a1@example.test", "a2@example.test"})).ok());
  ASSERT_TRUE(db_->add(make_user("bob@example.test", {"b1@example.test"})).ok());

  User a = *find("alice@example.test");
  a.aliases = {"a2@example.test", "a3@example.test"};
  a.quota = 5;
  ASSERT_TRUE(db_->update(a).ok());
  EXPECT_FALSE(owner("a1@example.test"));  // dropped alias is free again
  EXPECT_EQ(owner("a2@example.test")->address, "alice@example.test");
  EXPECT_EQ(owner("a3@example.test")->address, "alice@example.test");
  EXPECT_EQ(find("alice@example.test")->quota, 5u);

  // Conflicts: another user's alias, another user's address, own address.
  for (const char* bad : {"b1@example.test", "bob@example.test"}) {
    User c = a;
    c.aliases.push_back(bad);
    auto s = db_->update(c);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().code, EEXIST) << bad;
  }
  User c = a;
  c.aliases.push_back("alice@example.test");
  EXPECT_EQ(db_->update(c).error().code, EINVAL);
  // Nothing of the refused updates stuck.
  EXPECT_EQ(find("alice@example.test")->aliases,
            (std::vector<std::string>{"a2@example.test", "a3@example.test"}));
  EXPECT_EQ(owner("b1@example.test")->address, "bob@example.test");

  auto s = db_->update(make_user("carol@example.test"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENOENT);

  // The freed alias can go to someone else now.
  User b = *find("bob@example.test");
  b.aliases.push_back("a1@example.test");
  ASSERT_TRUE(db_->update(b).ok());
  EXPECT_EQ(owner("a1@example.test")->address, "bob@example.test");
}

TEST_F(UserDbTest, RemoveFreesAliases) {
  ASSERT_TRUE(db_->add(make_user("alice@example.test", {"al@example.test"})).ok());
  ASSERT_TRUE(db_->add(make_user("bob@example.test")).ok());
  ASSERT_TRUE(db_->remove("ALICE@example.test").ok());
  EXPECT_FALSE(find("alice@example.test"));
  EXPECT_FALSE(owner("al@example.test"));
  auto s = db_->remove("alice@example.test");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENOENT);
  // Both names are free again.
  EXPECT_TRUE(db_->add(make_user("al@example.test", {"alice@example.test"})).ok());
  EXPECT_EQ(addresses(), (std::vector<std::string>{"al@example.test", "bob@example.test"}));
}

TEST_F(UserDbTest, ForEachIsSortedAndMayWrite) {
  for (const char* a : {"zed@example.test", "alice@example.test", "Mike@example.test"})
    ASSERT_TRUE(db_->add(make_user(a)).ok());
  EXPECT_EQ(addresses(), (std::vector<std::string>{"alice@example.test", "mike@example.test",
                                                   "zed@example.test"}));
  // The callback runs outside the read transaction, so it may change the database.
  ASSERT_TRUE(db_->for_each([&](const User& u) {
                   User v = u;
                   v.quota = 7;
                   EXPECT_TRUE(db_->update(v).ok());
                 })
                  .ok());
  EXPECT_EQ(find("zed@example.test")->quota, 7u);
}

TEST_F(UserDbTest, DamagedRecordIsAnErrorNotACrash) {
  ASSERT_TRUE(db_->add(make_user("alice@example.test")).ok());
  std::string good = encode_user(make_user("bob@example.test", {"b@example.test"}));
  ASSERT_TRUE(decode_user(good).ok());
  // Every truncation and a huge alias count / string length must fail cleanly.
  for (size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(decode_user(good.substr(0, n)).ok()) << n;
  EXPECT_FALSE(decode_user(good + "x").ok());
  std::string bad_version = good;
  bad_version[0] = 9;
  EXPECT_FALSE(decode_user(bad_version).ok());
  std::string huge = std::string("\x01", 1) + "\xff\xff\xff\xff\xff\xff\xff\xff\x7f" + "x";
  EXPECT_FALSE(decode_user(huge).ok());

  put_raw("bob@example.test", good.substr(0, good.size() / 2));
  auto r = db_->find("bob@example.test");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EBADMSG);
  EXPECT_FALSE(db_->for_each([](const User&) {}).ok());
  // Other users are unaffected; the damaged one can be removed.
  EXPECT_TRUE(find("alice@example.test"));
  EXPECT_TRUE(db_->remove("bob@example.test").ok());
  EXPECT_TRUE(db_->for_each([](const User&) {}).ok());

  // A record filed under the wrong key is damage too.
  put_raw("carol@example.test", encode_user(make_user("alice@example.test")));
  EXPECT_FALSE(db_->find("carol@example.test").ok());
}

TEST_F(UserDbTest, ConcurrentReadersWhileWriting) {
  constexpr int kUsers = 200;
  for (int i = 0; i < kUsers; ++i)
    ASSERT_TRUE(db_->add(make_user("u" + std::to_string(i) + "@example.test",
                                   {"alias" + std::to_string(i) + "@example.test"}))
                    .ok());
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0}, lookups{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      for (int round = 0; !stop.load() || round < 3; ++round) {
        for (int i = t; i < kUsers; i += 4) {
          std::string n = std::to_string(i);
          auto u = db_->find("u" + n + "@example.test");
          auto o = db_->find_owner("alias" + n + "@example.test");
          if (!u.ok() || !*u || !o.ok() || !*o || (*o)->address != "u" + n + "@example.test")
            errors++;
          lookups++;
        }
      }
    });
  }
  // Meanwhile a writer keeps changing other users.
  for (int i = 0; i < 100; ++i) {
    User w = make_user("writer@example.test", {"w" + std::to_string(i) + "@example.test"});
    if (i == 0)
      ASSERT_TRUE(db_->add(w).ok());
    else
      ASSERT_TRUE(db_->update(w).ok());
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(lookups.load(), 0);
  EXPECT_EQ(owner("w99@example.test")->address, "writer@example.test");
  EXPECT_FALSE(owner("w98@example.test"));
}

TEST_F(UserDbTest, MapGrowsWhenFull) {
  db_.reset();
  UserDb::Options o;
  o.dir = tmp_.path() + "/small";
  o.initial_map_size = 64 * 1024;
  o.max_map_size = 64 * 1024 * 1024;
  auto db = UserDb::open(o);
  ASSERT_TRUE(db.ok()) << db.error().message;
  uint64_t before = (*db)->map_size();
  User u = make_user("big@example.test");
  for (int i = 0; i < 2000; ++i)
    u.aliases.push_back("alias-" + std::to_string(i) + "@example.test");
  auto s = (*db)->add(u);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_GT((*db)->map_size(), before);
  auto got = (*db)->find_owner("alias-1999@example.test");
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ((*got)->address, "big@example.test");
}

TEST(NormalizeUserAddressTest, AcceptsPlainMailboxesLowerCased) {
  auto a = normalize_user_address("Alice.Smith+tag@Example.TEST");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(*a, "alice.smith+tag@example.test");
  for (const char* bad :
       {"", "alice", "@example.test", "alice@", "a b@example.test", "<alice@example.test>",
        "\"a@b\"@example.test", "a%b@example.test", "a!b@example.test", "alice@[127.0.0.1]",
        "@a.test:alice@example.test", "alice@example.test>", "alice@@example.test"}) {
    auto r = normalize_user_address(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, EINVAL) << bad;
    }
  }
}

}  // namespace
}  // namespace ringmail::auth
