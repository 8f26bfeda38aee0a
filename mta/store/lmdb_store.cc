#include <filesystem>
#include <mutex>

#include "conf/record_codec.h"
#include "mta/store/mail_store.h"
#include "queue/lmdb_util.h"

namespace ringmail::store {

namespace {

constexpr std::string_view kInbox = "INBOX";
constexpr uint8_t kMailboxVersion = 1;

using lmdb::val;
using lmdb::view;
Error lmdb_err(const char* what, int rc) {
  return Error{451, std::string(what) + ": " + mdb_strerror(rc)};
}

struct MailboxRecord {
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t count = 0;
  uint64_t bytes = 0;
};

std::string encode(const MailboxRecord& m) {
  RecordWriter w;
  w.u8(kMailboxVersion);
  w.varint(m.uidvalidity);
  w.varint(m.uidnext);
  w.varint(m.count);
  w.varint(m.bytes);
  return w.take();
}

bool decode(std::string_view data, MailboxRecord& m) {
  RecordReader r(data);
  uint8_t version = 0;
  uint64_t validity = 0, next = 0;
  r.u8(version);
  r.varint(validity);
  r.varint(next);
  r.varint(m.count);
  r.varint(m.bytes);
  if (!r.done() || version != kMailboxVersion || validity > UINT32_MAX || next > UINT32_MAX)
    return false;
  m.uidvalidity = static_cast<uint32_t>(validity);
  m.uidnext = static_cast<uint32_t>(next);
  return true;
}

std::string mailbox_key(std::string_view account) {
  std::string k(account);
  k.push_back('\0');
  k += kInbox;
  return k;
}

std::string message_key(std::string_view account, uint32_t uid) {
  std::string k = mailbox_key(account);
  k.push_back('\0');
  for (int i = 3; i >= 0; --i) k.push_back(static_cast<char>((uid >> (8 * i)) & 0xff));
  return k;
}

// One call at a time per process: LMDB serialises writers anyway, and growing the map
// (mdb_env_set_mapsize) needs no transaction of this process open, readers included.
// Reads are short (one record, or one cursor walk) and off the loop threads.
std::mutex g_mu;

}  // namespace

Result<std::unique_ptr<LmdbMailStore>> LmdbMailStore::open(const std::string& dir,
                                                           uint64_t max_map_size) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error{451, "cannot create " + dir + ": " + ec.message()};
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, ec);
  std::unique_ptr<LmdbMailStore> s(new LmdbMailStore);
  int rc = mdb_env_create(&s->env_);
  if (rc) return lmdb_err("mdb_env_create", rc);
  mdb_env_set_maxdbs(s->env_, 4);
  s->max_map_size_ = max_map_size;
  s->map_size_ = std::min<uint64_t>(256ULL << 20, max_map_size);
  mdb_env_set_mapsize(s->env_, s->map_size_);
  // Full syncs: delivery removes the message from the queue after this commit.
  rc = mdb_env_open(s->env_, dir.c_str(), MDB_NOTLS, 0600);
  if (rc) {
    mdb_env_close(s->env_);
    s->env_ = nullptr;
    return lmdb_err(("cannot open mail store in " + dir).c_str(), rc);
  }
  MDB_envinfo info;
  if (mdb_env_info(s->env_, &info) == 0) s->map_size_ = std::max(s->map_size_, info.me_mapsize);
  MDB_txn* txn;
  if ((rc = mdb_txn_begin(s->env_, nullptr, 0, &txn))) return lmdb_err("begin", rc);
  if ((rc = mdb_dbi_open(txn, "mailbox", MDB_CREATE, &s->mailbox_)) ||
      (rc = mdb_dbi_open(txn, "message", MDB_CREATE, &s->message_))) {
    mdb_txn_abort(txn);
    return lmdb_err("open", rc);
  }
  if ((rc = mdb_txn_commit(txn))) return lmdb_err("init", rc);
  return s;
}

LmdbMailStore::~LmdbMailStore() {
  if (env_) mdb_env_close(env_);
}

bool LmdbMailStore::grow_map() {
  if (map_size_ >= max_map_size_) return false;
  uint64_t next = std::min(map_size_ * 2, max_map_size_);
  if (mdb_env_set_mapsize(env_, next) != 0) return false;
  map_size_ = next;
  return true;
}

Result<uint32_t> LmdbMailStore::deliver(std::string_view account, std::string_view message,
                                        uint64_t quota, int64_t now) {
  std::lock_guard lock(g_mu);
  for (int round = 0; round < 8; ++round) {
    MDB_txn* txn;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc == MDB_MAP_RESIZED) {
      mdb_env_set_mapsize(env_, 0);
      rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    }
    if (rc) return lmdb_err("begin", rc);
    std::string mk = mailbox_key(account);
    MDB_val k = val(mk), v;
    MailboxRecord box;
    rc = mdb_get(txn, mailbox_, &k, &v);
    if (rc == MDB_NOTFOUND) {
      // RFC 3501 2.3.1.1: UIDVALIDITY must change if UIDs are ever reused; a creation
      // time is the usual choice.
      box.uidvalidity = static_cast<uint32_t>(now);
      rc = 0;
    } else if (rc == 0 && !decode(view(v), box)) {
      mdb_txn_abort(txn);
      return Error{451, "mailbox record of " + std::string(account) + " is damaged"};
    }
    if (rc) {
      mdb_txn_abort(txn);
      return lmdb_err("read", rc);
    }
    if (quota != 0 && box.bytes + message.size() > quota) {
      mdb_txn_abort(txn);
      return Error{452, "mailbox full (" + std::to_string(box.bytes) + " of " +
                            std::to_string(quota) + " bytes used)"};
    }
    if (box.uidnext == UINT32_MAX) {
      mdb_txn_abort(txn);
      return Error{451, "mailbox of " + std::string(account) + " has run out of UIDs"};
    }
    uint32_t uid = box.uidnext++;
    box.count++;
    box.bytes += message.size();
    RecordWriter w;
    w.varint(static_cast<uint64_t>(now));
    std::string rec = w.take();
    rec.append(message);
    std::string msgk = message_key(account, uid);
    std::string boxv = encode(box);
    MDB_val k2 = val(msgk), v2 = val(rec), v3 = val(boxv);
    rc = mdb_put(txn, message_, &k2, &v2, MDB_NOOVERWRITE);
    if (rc == 0) rc = mdb_put(txn, mailbox_, &k, &v3, 0);
    if (rc == 0) {
      rc = mdb_txn_commit(txn);
      if (rc == 0) return uid;
    } else {
      mdb_txn_abort(txn);
    }
    if (rc != MDB_MAP_FULL || !grow_map()) return lmdb_err("deliver", rc);
  }
  return Error{451, "mail store keeps filling up"};
}

Result<std::vector<MessageInfo>> LmdbMailStore::list(std::string_view account) {
  std::lock_guard lock(g_mu);
  MDB_txn* txn;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc == MDB_MAP_RESIZED) {
    mdb_env_set_mapsize(env_, 0);
    rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  }
  if (rc) return lmdb_err("read", rc);
  std::vector<MessageInfo> out;
  MDB_cursor* c;
  if ((rc = mdb_cursor_open(txn, message_, &c))) {
    mdb_txn_abort(txn);
    return lmdb_err("cursor", rc);
  }
  std::string prefix = mailbox_key(account);
  prefix.push_back('\0');
  MDB_val k = val(prefix), v;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    std::string_view key = view(k);
    if (key.size() != prefix.size() + 4 || key.substr(0, prefix.size()) != prefix) break;
    MessageInfo m;
    for (size_t i = prefix.size(); i < key.size(); ++i)
      m.uid = (m.uid << 8) | static_cast<uint8_t>(key[i]);
    RecordReader r(view(v));
    uint64_t date = 0;
    r.varint(date);
    m.internal_date = static_cast<int64_t>(date);
    m.size = r.remaining();
    out.push_back(m);
  }
  mdb_cursor_close(c);
  mdb_txn_abort(txn);
  return out;
}

Result<std::string> LmdbMailStore::read(std::string_view account, uint32_t uid) {
  std::lock_guard lock(g_mu);
  MDB_txn* txn;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc == MDB_MAP_RESIZED) {
    mdb_env_set_mapsize(env_, 0);
    rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  }
  if (rc) return lmdb_err("read", rc);
  std::string key = message_key(account, uid);
  MDB_val k = val(key), v;
  rc = mdb_get(txn, message_, &k, &v);
  if (rc) {
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND) return Error{404, "no message " + std::to_string(uid)};
    return lmdb_err("read", rc);
  }
  RecordReader r(view(v));
  uint64_t date = 0;
  r.varint(date);
  std::string_view rest = view(v).substr(view(v).size() - r.remaining());
  std::string out(rest);
  mdb_txn_abort(txn);
  return out;
}

}  // namespace ringmail::store
