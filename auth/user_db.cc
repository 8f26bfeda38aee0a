#include "auth/user_db.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <mutex>
#include <vector>

#include "auth/address.h"
#include "conf/record_codec.h"

namespace ringmail::auth {

namespace {
constexpr uint8_t kUserVersion = 1;
constexpr uint8_t kRecordEnd = 0x55;  // last byte of every record: catches truncation
constexpr uint8_t kFlagEnabled = 1;
constexpr size_t kMaxAddress = 320;     // 64 + 1 + 255 (RFC 5321 4.5.3.1); LMDB keys: 511
constexpr size_t kMaxAliases = 100000;  // far above any sane account

using Writer = RecordWriter;
using Reader = RecordReader;

// --- LMDB helpers --------------------------------------------------------------------
MDB_val val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
std::string_view view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}
Error lmdb_err(const std::string& what, int rc) {
  return Error{rc, what + ": " + mdb_strerror(rc)};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool valid_key(std::string_view k) {
  return !k.empty() && k.size() <= kMaxAddress && k.find('\0') == std::string_view::npos;
}

// u with its address and aliases lower-cased and the aliases de-duplicated (order kept).
Result<User> normalized(const User& u) {
  User n = u;
  n.address = lower(u.address);
  if (!valid_key(n.address)) return Error{EINVAL, "bad user address '" + u.address + "'"};
  n.aliases.clear();
  for (const auto& a : u.aliases) {
    std::string la = lower(a);
    if (!valid_key(la)) return Error{EINVAL, "bad alias '" + a + "'"};
    if (la == n.address) return Error{EINVAL, "alias " + la + " is the user's own address"};
    if (std::find(n.aliases.begin(), n.aliases.end(), la) == n.aliases.end())
      n.aliases.push_back(std::move(la));
  }
  if (n.aliases.size() > kMaxAliases) return Error{EINVAL, "too many aliases"};
  return n;
}

// Looks a key up; 0 with *out set, MDB_NOTFOUND, or an LMDB error.
int get(MDB_txn* txn, MDB_dbi dbi, std::string_view key, std::string_view* out) {
  MDB_val k = val(key), v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == 0) *out = view(v);
  return rc;
}
}  // namespace

std::string encode_user(const User& u) {
  Writer w;
  w.u8(kUserVersion);
  w.str(u.address);
  w.str(u.password_hash);
  w.varint(u.aliases.size());
  for (const auto& a : u.aliases) w.str(a);
  w.varint(u.quota);
  w.u8(u.enabled ? kFlagEnabled : 0);
  w.str(u.scram.salt);
  w.varint(u.scram.iterations);
  w.str(u.scram.stored_key);
  w.str(u.scram.server_key);
  w.u8(kRecordEnd);
  return w.take();
}

Result<User> decode_user(std::string_view data) {
  Reader r(data);
  uint8_t version = 0, flags = 0, end = 0;
  uint64_t naliases = 0, iterations = 0;
  User u;
  r.u8(version);
  if (!r.ok() || version != kUserVersion)
    return Error{EBADMSG, "user record: unknown version " + std::to_string(version)};
  r.str(u.address);
  r.str(u.password_hash);
  r.varint(naliases);
  // Each alias takes at least its length byte, so a count above what is left is damage.
  if (!r.ok() || naliases > r.remaining() || naliases > kMaxAliases)
    return Error{EBADMSG, "user record: damaged"};
  u.aliases.resize(naliases);
  for (auto& a : u.aliases) r.str(a);
  r.varint(u.quota);
  r.u8(flags);
  r.str(u.scram.salt);
  r.varint(iterations);
  r.str(u.scram.stored_key);
  r.str(u.scram.server_key);
  r.u8(end);
  if (!r.done() || end != kRecordEnd || (flags & ~kFlagEnabled) || iterations > UINT32_MAX)
    return Error{EBADMSG, "user record: damaged"};
  u.enabled = flags & kFlagEnabled;
  u.scram.iterations = static_cast<uint32_t>(iterations);
  return u;
}

Result<std::string> normalize_user_address(std::string_view address) {
  if (address.empty()) return Error{EINVAL, "empty address"};
  std::string bracketed = "<" + std::string(address) + ">";
  size_t consumed = 0;
  auto p = parse_path(bracketed, /*allow_null=*/false, /*allow_utf8=*/true, &consumed);
  if (!p) return Error{EINVAL, "bad address '" + std::string(address) + "': " + p.error().message};
  if (consumed != bracketed.size())
    return Error{EINVAL, "bad address '" + std::string(address) + "'"};
  const Mailbox& m = p->mailbox;
  if (p->source_route || m.address_literal || m.quoted_local ||
      m.local.find_first_of("%!") != std::string::npos)
    return Error{EINVAL, "address '" + std::string(address) +
                             "' is not a plain mailbox (no source route, address literal, quoted "
                             "local part, '%' or '!')"};
  std::string out = lower(m.str());
  if (out.size() > kMaxAddress) return Error{EINVAL, "address too long"};
  return out;
}

// --- transactions ----------------------------------------------------------------------
namespace {
// A transaction plus the shared hold on the map size; both end together.
class Txn {
 public:
  Txn(MDB_env* env, std::shared_mutex& mu, uint64_t& map_size, unsigned flags) : lock_(mu) {
    rc_ = mdb_txn_begin(env, nullptr, flags, &txn_);
    if (rc_ == MDB_MAP_RESIZED) {
      // Another process grew the map past ours. Adopting its size needs every transaction
      // of this process closed: trade the shared hold for an exclusive one.
      lock_.unlock();
      {
        std::unique_lock<std::shared_mutex> x(mu);
        mdb_env_set_mapsize(env, 0);
        MDB_envinfo info;
        if (mdb_env_info(env, &info) == 0) map_size = info.me_mapsize;
      }
      lock_.lock();
      rc_ = mdb_txn_begin(env, nullptr, flags, &txn_);
    }
  }
  ~Txn() { abort(); }
  int rc() const { return rc_; }
  MDB_txn* get() { return txn_; }
  int commit() {
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    return rc;
  }
  void abort() {
    if (rc_ == 0 && txn_) mdb_txn_abort(txn_);
    txn_ = nullptr;
  }

 private:
  std::shared_lock<std::shared_mutex> lock_;
  MDB_txn* txn_ = nullptr;
  int rc_;
};
}  // namespace

Result<std::unique_ptr<UserDb>> UserDb::open(const std::string& dir) {
  Options o;
  o.dir = dir;
  return open(o);
}

Result<std::unique_ptr<UserDb>> UserDb::open(const Options& o) {
  std::error_code ec;
  if (!std::filesystem::exists(o.dir, ec)) {
    std::filesystem::create_directories(o.dir, ec);
    if (ec) return Error{ec.value(), "cannot create " + o.dir + ": " + ec.message()};
    // Password hashes live here: owner only.
    std::filesystem::permissions(o.dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
  }
  std::unique_ptr<UserDb> db(new UserDb);
  int rc = mdb_env_create(&db->env_);
  if (rc) return lmdb_err("mdb_env_create", rc);
  mdb_env_set_maxdbs(db->env_, 4);
  db->max_map_size_ = std::max(o.max_map_size, o.initial_map_size);
  db->map_size_ = o.initial_map_size;
  mdb_env_set_mapsize(db->env_, db->map_size_);
  // MDB_NOTLS: read transactions belong to the call, not the thread, so several lookups
  // may run at once from any threads. Full sync on commit (no MDB_NOSYNC).
  rc = mdb_env_open(db->env_, o.dir.c_str(), MDB_NOTLS, 0600);
  if (rc) {
    mdb_env_close(db->env_);
    db->env_ = nullptr;
    return lmdb_err("cannot open user database in " + o.dir, rc);
  }
  int dead = 0;
  mdb_reader_check(db->env_, &dead);  // slots left by a killed ringctl
  MDB_envinfo info;
  if (mdb_env_info(db->env_, &info) == 0) db->map_size_ = info.me_mapsize;

  Txn txn(db->env_, db->map_mu_, db->map_size_, 0);
  if (txn.rc()) return lmdb_err("begin", txn.rc());
  struct {
    const char* name;
    MDB_dbi* dbi;
  } dbs[] = {{"users", &db->users_}, {"aliases", &db->aliases_}, {"meta", &db->meta_}};
  for (auto& d : dbs) {
    rc = mdb_dbi_open(txn.get(), d.name, MDB_CREATE, d.dbi);
    if (rc) return lmdb_err(d.name, rc);
  }
  std::string_view schema;
  rc = get(txn.get(), db->meta_, "schema", &schema);
  if (rc == MDB_NOTFOUND) {
    MDB_val k = val("schema"), v = val("1");
    rc = mdb_put(txn.get(), db->meta_, &k, &v, 0);
  } else if (rc == 0 && schema != "1") {
    return Error{EINVAL,
                 "user database schema " + std::string(schema) + " is not supported (want 1)"};
  }
  if (rc == 0) rc = txn.commit();
  if (rc) return lmdb_err("init user database", rc);
  return db;
}

UserDb::~UserDb() {
  if (env_) mdb_env_close(env_);
}

uint64_t UserDb::map_size() const {
  std::shared_lock<std::shared_mutex> l(map_mu_);
  return map_size_;
}

bool UserDb::grow_map() {
  // REQUIRES: map_mu_ held exclusively.
  if (map_size_ >= max_map_size_) return false;
  uint64_t next = std::min(map_size_ * 2, max_map_size_);
  if (mdb_env_set_mapsize(env_, next) != 0) return false;
  map_size_ = next;
  return true;
}

Status UserDb::write(const std::function<Status(MDB_txn*)>& body) {
  for (;;) {
    int rc;
    {
      Txn txn(env_, map_mu_, map_size_, 0);
      if (txn.rc()) return lmdb_err("begin write", txn.rc());
      Status s = body(txn.get());
      if (!s && s.error().code != MDB_MAP_FULL) return s;  // txn aborts
      rc = s ? txn.commit() : MDB_MAP_FULL;
      if (rc != MDB_MAP_FULL) {
        if (rc) return lmdb_err("commit", rc);
        return ok_status();
      }
    }
    std::unique_lock<std::shared_mutex> x(map_mu_);
    if (!grow_map())
      return Error{ENOSPC, "user database is full (map size " + std::to_string(map_size_) + ")"};
  }
}

Result<std::optional<User>> UserDb::get_user(MDB_txn* txn, std::string_view key) const {
  std::string_view data;
  int rc = get(txn, users_, key, &data);
  if (rc == MDB_NOTFOUND) return std::optional<User>();
  if (rc) return lmdb_err("read user", rc);
  auto u = decode_user(data);
  if (!u) return Error{u.error().code, std::string(key) + ": " + u.error().message};
  if (u->address != key)
    return Error{EBADMSG, std::string(key) + ": user record names " + u->address};
  return std::optional<User>(std::move(*u));
}

Result<std::optional<User>> UserDb::find(std::string_view address) const {
  std::string key = lower(address);
  if (!valid_key(key)) return std::optional<User>();
  Txn txn(env_, map_mu_, map_size_, MDB_RDONLY);
  if (txn.rc()) return lmdb_err("begin read", txn.rc());
  return get_user(txn.get(), key);
}

Result<std::optional<User>> UserDb::find_owner(std::string_view address) const {
  std::string key = lower(address);
  if (!valid_key(key)) return std::optional<User>();
  Txn txn(env_, map_mu_, map_size_, MDB_RDONLY);
  if (txn.rc()) return lmdb_err("begin read", txn.rc());
  auto u = get_user(txn.get(), key);
  if (!u || *u) return u;
  std::string_view owner;
  int rc = get(txn.get(), aliases_, key, &owner);
  if (rc == MDB_NOTFOUND) return std::optional<User>();
  if (rc) return lmdb_err("read alias", rc);
  std::string owner_key(owner);  // the view dies with the transaction
  auto o = get_user(txn.get(), owner_key);
  if (o && !*o) return Error{EBADMSG, "alias " + key + " points at missing user " + owner_key};
  return o;
}

Status UserDb::for_each(const std::function<void(const User&)>& fn) const {
  std::vector<User> all;
  {
    Txn txn(env_, map_mu_, map_size_, MDB_RDONLY);
    if (txn.rc()) return lmdb_err("begin read", txn.rc());
    MDB_cursor* c;
    int rc = mdb_cursor_open(txn.get(), users_, &c);
    if (rc) return lmdb_err("cursor", rc);
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      auto u = decode_user(view(v));
      if (!u) {
        mdb_cursor_close(c);
        return Error{u.error().code, std::string(view(k)) + ": " + u.error().message};
      }
      all.push_back(std::move(*u));
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND) return lmdb_err("read users", rc);
  }
  for (const auto& u : all) fn(u);
  return ok_status();
}

namespace {
// Checks that `name` is free for `owner` to take as an alias: not any user's address and
// not someone else's alias. Error codes: EEXIST, or the LMDB error.
Status alias_free(MDB_txn* txn, MDB_dbi users, MDB_dbi aliases, const std::string& name,
                  const std::string& owner) {
  std::string_view v;
  int rc = get(txn, users, name, &v);
  if (rc == 0) return Error{EEXIST, name + " is already a user"};
  if (rc != MDB_NOTFOUND) return lmdb_err("read user", rc);
  rc = get(txn, aliases, name, &v);
  if (rc == 0 && v != owner)
    return Error{EEXIST, name + " is already an alias of " + std::string(v)};
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_err("read alias", rc);
  return ok_status();
}

Status put(MDB_txn* txn, MDB_dbi dbi, std::string_view key, std::string_view data) {
  MDB_val k = val(key), v = val(data);
  int rc = mdb_put(txn, dbi, &k, &v, 0);
  if (rc) return lmdb_err("write", rc);  // code MDB_MAP_FULL makes write() grow the map
  return ok_status();
}

Status del(MDB_txn* txn, MDB_dbi dbi, std::string_view key) {
  MDB_val k = val(key);
  int rc = mdb_del(txn, dbi, &k, nullptr);
  if (rc && rc != MDB_NOTFOUND) return lmdb_err("delete", rc);
  return ok_status();
}
}  // namespace

Status UserDb::add(const User& in) {
  auto n = normalized(in);
  if (!n) return n.error();
  const User& u = *n;
  std::string rec = encode_user(u);
  return write([&](MDB_txn* txn) -> Status {
    std::string_view v;
    int rc = get(txn, users_, u.address, &v);
    if (rc == 0) return Error{EEXIST, u.address + " already exists"};
    if (rc != MDB_NOTFOUND) return lmdb_err("read user", rc);
    rc = get(txn, aliases_, u.address, &v);
    if (rc == 0) return Error{EEXIST, u.address + " is already an alias of " + std::string(v)};
    if (rc != MDB_NOTFOUND) return lmdb_err("read alias", rc);
    for (const auto& a : u.aliases) {
      // No alias is ours yet, so any existing alias entry is someone else's.
      auto s = alias_free(txn, users_, aliases_, a, "");
      if (!s) return s;
    }
    for (const auto& a : u.aliases)
      if (auto s = put(txn, aliases_, a, u.address); !s) return s;
    return put(txn, users_, u.address, rec);
  });
}

Status UserDb::update(const User& in) {
  auto n = normalized(in);
  if (!n) return n.error();
  const User& u = *n;
  std::string rec = encode_user(u);
  return write([&](MDB_txn* txn) -> Status {
    auto old = get_user(txn, u.address);
    if (!old) return old.error();
    if (!*old) return Error{ENOENT, "no user " + u.address};
    for (const auto& a : u.aliases) {
      auto s = alias_free(txn, users_, aliases_, a, u.address);
      if (!s) return s;
    }
    for (const auto& a : (*old)->aliases) {
      if (std::find(u.aliases.begin(), u.aliases.end(), a) != u.aliases.end()) continue;
      std::string_view owner;
      int rc = get(txn, aliases_, a, &owner);
      if (rc == 0 && owner == u.address) {
        if (auto s = del(txn, aliases_, a); !s) return s;
      }
    }
    for (const auto& a : u.aliases)
      if (auto s = put(txn, aliases_, a, u.address); !s) return s;
    return put(txn, users_, u.address, rec);
  });
}

Status UserDb::remove(std::string_view address) {
  std::string key = lower(address);
  if (!valid_key(key)) return Error{ENOENT, "no user " + key};
  return write([&](MDB_txn* txn) -> Status {
    std::string_view data;
    int rc = get(txn, users_, key, &data);
    if (rc == MDB_NOTFOUND) return Error{ENOENT, "no user " + key};
    if (rc) return lmdb_err("read user", rc);
    // Even a damaged record can be removed; its aliases are found through the index.
    auto u = decode_user(data);
    std::vector<std::string> aliases;
    if (u) {
      aliases = u->aliases;
    } else {
      MDB_cursor* c;
      if ((rc = mdb_cursor_open(txn, aliases_, &c))) return lmdb_err("cursor", rc);
      MDB_val k, v;
      for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
           rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        if (view(v) == key) aliases.emplace_back(view(k));
      mdb_cursor_close(c);
    }
    for (const auto& a : aliases) {
      std::string_view owner;
      rc = get(txn, aliases_, a, &owner);
      if (rc == 0 && owner == key) {
        if (auto s = del(txn, aliases_, a); !s) return s;
      }
    }
    return del(txn, users_, key);
  });
}

}  // namespace ringmail::auth
