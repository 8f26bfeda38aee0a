#include "queue/store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "queue/lmdb_util.h"
#include "queue/record.h"

namespace ringmail::queue {

namespace {
constexpr size_t kChunk = 64 * 1024;

using lmdb::Cursor;
using lmdb::ReadTxn;
using lmdb::val;
using lmdb::view;

Error lmdb_err(const char* what, int rc) {
  return Error{rc, std::string(what) + ": " + lmdb_error(rc)};
}

// "2026-11-27T10:31:22.123456Z" (micro) or "2026-11-27T10:31:22Z".
std::string iso_time(int64_t time_us, bool micro) {
  char ts[64];
  time_t secs = static_cast<time_t>(time_us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  if (micro)
    std::snprintf(ts + n, sizeof ts - n, ".%06lldZ", static_cast<long long>(time_us % 1000000));
  else
    std::snprintf(ts + n, sizeof ts - n, "Z");
  return ts;
}
}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

std::string lmdb_error(int rc) {
  return mdb_strerror(rc);
}

Result<std::unique_ptr<Store>> Store::open(const Options& o) {
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  if (ec) return Error{ec.value(), "cannot create " + o.dir + ": " + ec.message()};
  std::unique_ptr<Store> s(new Store);
  int rc = mdb_env_create(&s->env_);
  if (rc) return lmdb_err("mdb_env_create", rc);
  mdb_env_set_maxdbs(s->env_, 8);
  // No MDB_NOSYNC/MDB_NOMETASYNC: a commit returns only when it is on disk, which is what
  // lets the server answer 250 after it. MDB_NOTLS: read transactions are not tied to a
  // thread (loop threads hand work around).
  s->max_map_size_ = o.max_map_size;
  s->map_size_ = std::min(o.initial_map_size, o.max_map_size);
  mdb_env_set_mapsize(s->env_, s->map_size_);
  rc = mdb_env_open(s->env_, o.dir.c_str(), MDB_NOTLS, 0600);
  if (rc) {
    mdb_env_close(s->env_);
    s->env_ = nullptr;
    return lmdb_err(("cannot open queue in " + o.dir).c_str(), rc);
  }
  MDB_envinfo info;
  if (mdb_env_info(s->env_, &info) == 0) s->map_size_ = info.me_mapsize;

  MDB_txn* txn;
  rc = s->begin_write(&txn);
  if (rc) return lmdb_err("begin", rc);
  struct {
    const char* name;
    MDB_dbi* dbi;
  } dbs[] = {{"msg", &s->msg_},     {"body", &s->body_},     {"rcpt", &s->rcpt_},
             {"sched", &s->sched_}, {"events", &s->events_}, {"meta", &s->meta_}};
  for (auto& d : dbs) {
    rc = mdb_dbi_open(txn, d.name, MDB_CREATE, d.dbi);
    if (rc) {
      mdb_txn_abort(txn);
      return lmdb_err(d.name, rc);
    }
  }
  MDB_val k = val("schema"), v;
  rc = mdb_get(txn, s->meta_, &k, &v);
  if (rc == MDB_NOTFOUND) {
    v = val("1");
    rc = mdb_put(txn, s->meta_, &k, &v, 0);
  } else if (rc == 0 && view(v) != "1") {
    mdb_txn_abort(txn);
    return Error{0, "queue schema " + std::string(view(v)) + " is not supported (want 1)"};
  }
  if (rc == 0)
    rc = mdb_txn_commit(txn);
  else
    mdb_txn_abort(txn);
  if (rc) return lmdb_err("init", rc);
  return s;
}

Store::~Store() {
  if (env_) mdb_env_close(env_);
}

int Store::begin_write(MDB_txn** txn, MDB_txn* parent) {
  int rc = mdb_txn_begin(env_, parent, 0, txn);
  if (rc == MDB_MAP_RESIZED && !parent) {
    mdb_env_set_mapsize(env_, 0);
    MDB_envinfo info;
    if (mdb_env_info(env_, &info) == 0) map_size_ = info.me_mapsize;
    rc = mdb_txn_begin(env_, nullptr, 0, txn);
  }
  return rc;
}

bool Store::grow_map() {
  if (map_size_ >= max_map_size_) return false;
  uint64_t next = std::min(map_size_ * 2, max_map_size_);
  if (mdb_env_set_mapsize(env_, next) != 0) return false;
  map_size_ = next;
  return true;
}

int Store::put_wal_applied(MDB_txn* txn, uint64_t seq, int end_segment, uint64_t end_offset) {
  // seq (8 bytes), then segment (1 byte, 0xff: unknown) and offset (8 bytes).
  std::string v = key_id(seq);
  v.push_back(static_cast<char>(end_segment < 0 ? 0xff : end_segment));
  v += key_id(end_offset);
  MDB_val k = val("wal_applied"), d = val(v);
  return mdb_put(txn, meta_, &k, &d, 0);
}

Store::WalMark Store::wal_mark() {
  WalMark m;
  ReadTxn txn(env_);
  if (txn.rc()) return m;
  MDB_val k = val("wal_applied"), v;
  if (mdb_get(txn.get(), meta_, &k, &v) != 0 || v.mv_size < 8) return m;
  std::string_view d = view(v);
  m.seq = read_be64(d);
  if (d.size() == 17 && static_cast<unsigned char>(d[8]) < 2) {
    m.segment = static_cast<unsigned char>(d[8]);
    m.offset = read_be64(d, 9);
  }
  return m;
}

uint64_t Store::wal_applied() {
  return wal_mark().seq;
}

void Store::set_meta_sync(bool on) {
  mdb_env_set_flags(env_, MDB_NOMETASYNC, on ? 0 : 1);
}

int Store::sync() {
  return mdb_env_sync(env_, 1);
}

int Store::put_message(MDB_txn* txn, QueueId id, const Envelope& env, std::string_view body) {
  std::string k = key_id(id.value);
  std::string rec = encode_envelope(env);
  MDB_val key = val(k), data = val(rec);
  // The id is fresh, so MDB_NOOVERWRITE only guards against a programming error.
  int rc = mdb_put(txn, msg_, &key, &data, MDB_NOOVERWRITE);
  if (rc) return rc;
  for (uint32_t chunk = 0; chunk * kChunk < body.size() || (chunk == 0 && body.empty()); ++chunk) {
    std::string ck = key_id_index(id.value, chunk);
    std::string_view part = body.substr(chunk * kChunk, kChunk);
    MDB_val bk = val(ck), bv = val(part);
    // Keys arrive in order within one message: MDB_APPEND would need global order.
    if ((rc = mdb_put(txn, body_, &bk, &bv, 0))) return rc;
    if (body.empty()) break;
  }
  int64_t now_s = env.arrival_us / 1000000;
  for (uint32_t i = 0; i < env.recipients.size(); ++i) {
    std::string rk = key_id_index(id.value, i);
    Recipient rcpt = env.recipients[i];
    rcpt.next_attempt = now_s;  // the sched entry below is keyed by this time
    std::string rv = encode_recipient(rcpt);
    MDB_val k2 = val(rk), v2 = val(rv);
    if ((rc = mdb_put(txn, rcpt_, &k2, &v2, 0))) return rc;
    std::string ek = key_time_id(env.arrival_us, id.value);
    ek += key_id(i).substr(4);  // 4-byte recipient index keeps events unique
    std::string ev = event_json("received", env.arrival_us, id, env, &env.recipients[i]);
    MDB_val k3 = val(ek), v3 = val(ev);
    if ((rc = mdb_put(txn, events_, &k3, &v3, 0))) return rc;
  }
  std::string sk = key_time_id(now_s, id.value);
  MDB_val k4 = val(sk), v4 = val("");
  return mdb_put(txn, sched_, &k4, &v4, 0);
}

Status Store::load_recipients(MDB_txn* txn, QueueId id, Envelope& env) {
  for (uint32_t i = 0; i < env.recipients.size(); ++i) {
    std::string rk = key_id_index(id.value, i);
    MDB_val k = val(rk), v;
    int rc = mdb_get(txn, rcpt_, &k, &v);
    if (rc) return lmdb_err("recipient", rc);
    auto r = decode_recipient(view(v));
    if (!r) return r.error();
    env.recipients[i] = std::move(r.value());
  }
  return ok_status();
}

Status Store::for_each(const std::function<bool(QueueId, const Envelope&)>& fn) {
  ReadTxn txn(env_);
  if (txn.rc()) return lmdb_err("read", txn.rc());
  Cursor c(txn.get(), msg_);
  if (c.rc()) return lmdb_err("cursor", c.rc());
  MDB_val k, v;
  for (int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    QueueId id{read_be64(view(k))};
    Envelope env;
    if (auto s = decode_envelope(view(v), env); !s) return s.error();
    if (auto s = load_recipients(txn.get(), id, env); !s) return s.error();
    if (!fn(id, env)) break;
  }
  return ok_status();
}

Result<Envelope> Store::load(QueueId id) {
  ReadTxn txn(env_);
  if (txn.rc()) return lmdb_err("read", txn.rc());
  std::string k = key_id(id.value);
  MDB_val key = val(k), v;
  int rc = mdb_get(txn.get(), msg_, &key, &v);
  if (rc == MDB_NOTFOUND) return Error{ENOENT, "no message " + id.str() + " in the queue"};
  if (rc) return lmdb_err("read", rc);
  Envelope env;
  if (auto s = decode_envelope(view(v), env); !s) return s.error();
  if (auto s = load_recipients(txn.get(), id, env); !s) return s.error();
  return env;
}

Status Store::read_body(QueueId id, const std::function<void(std::string_view)>& fn) {
  ReadTxn txn(env_);
  if (txn.rc()) return lmdb_err("read", txn.rc());
  Cursor c(txn.get(), body_);
  std::string start = key_id_index(id.value, 0);
  MDB_val k = val(start), v;
  for (int rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    if (read_be64(view(k)) != id.value) break;
    fn(view(v));
  }
  return ok_status();
}

Status Store::for_each_event(uint64_t id, const std::function<void(std::string_view)>& fn) {
  ReadTxn txn(env_);
  if (txn.rc()) return lmdb_err("read", txn.rc());
  Cursor c(txn.get(), events_);
  MDB_val k, v;
  for (int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    if (id == 0 || read_be64(view(k), 8) == id) fn(view(v));
  }
  return ok_status();
}

uint64_t Store::max_id() {
  ReadTxn txn(env_);
  if (txn.rc()) return 0;
  Cursor c(txn.get(), msg_);
  MDB_val k, v;
  if (mdb_cursor_get(c.get(), &k, &v, MDB_LAST) != 0) return 0;
  return read_be64(view(k));
}

int Store::remove_in(MDB_txn* txn, QueueId id, const Envelope& env) {
  std::string k = key_id(id.value);
  MDB_val key = val(k);
  int rc = mdb_del(txn, msg_, &key, nullptr);
  // Body chunks and recipients share the (id, index) key shape.
  for (MDB_dbi dbi : {body_, rcpt_}) {
    if (rc) break;
    Cursor c(txn, dbi);
    std::string start = key_id_index(id.value, 0);
    MDB_val ck = val(start), cv;
    for (int r = mdb_cursor_get(c.get(), &ck, &cv, MDB_SET_RANGE); r == 0;
         r = mdb_cursor_get(c.get(), &ck, &cv, MDB_NEXT)) {
      if (read_be64(view(ck)) != id.value) break;
      if (dbi == rcpt_) {
        if (auto rcpt = decode_recipient(view(cv))) {
          std::string sk = key_time_id(rcpt->next_attempt, id.value);
          MDB_val skv = val(sk);
          mdb_del(txn, sched_, &skv, nullptr);  // absent once one recipient removed it
        }
      }
      if ((rc = mdb_cursor_del(c.get(), 0))) break;
    }
  }
  if (rc == 0) {
    std::string sk = key_time_id(env.arrival_us / 1000000, id.value);
    MDB_val skv = val(sk);
    mdb_del(txn, sched_, &skv, nullptr);
  }
  return rc;
}

Result<bool> Store::remove(QueueId id) {
  MDB_txn* txn;
  int rc = begin_write(&txn);
  if (rc) return lmdb_err("begin", rc);
  std::string k = key_id(id.value);
  MDB_val key = val(k), v;
  rc = mdb_get(txn, msg_, &key, &v);
  if (rc == MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    return false;
  }
  Envelope env;
  if (rc == 0) {
    if (auto s = decode_envelope(view(v), env); !s) {
      mdb_txn_abort(txn);
      return s.error();
    }
    rc = remove_in(txn, id, env);
  }
  if (rc == 0) {
    rc = mdb_txn_commit(txn);
  } else {
    mdb_txn_abort(txn);
  }
  if (rc) return lmdb_err("delete", rc);
  return true;
}

int Store::update_recipients(MDB_txn* txn, QueueId id,
                             std::span<const std::pair<uint32_t, Recipient>> changes,
                             std::span<const Event> events) {
  std::string k = key_id(id.value);
  MDB_val key = val(k), v;
  int rc = mdb_get(txn, msg_, &key, &v);
  if (rc) return rc;
  Envelope env;
  if (!decode_envelope(view(v), env)) return MDB_CORRUPTED;
  if (!load_recipients(txn, id, env)) return MDB_CORRUPTED;
  std::vector<int64_t> before;
  for (const auto& r : env.recipients)
    if (is_pending(r.state)) before.push_back(r.next_attempt);
  for (const auto& [index, rcpt] : changes) {
    if (index >= env.recipients.size()) return MDB_CORRUPTED;
    env.recipients[index] = rcpt;
    std::string rk = key_id_index(id.value, index);
    std::string rv = encode_recipient(rcpt);
    MDB_val k2 = val(rk), v2 = val(rv);
    if ((rc = mdb_put(txn, rcpt_, &k2, &v2, 0))) return rc;
  }
  for (const Event& e : events) {
    // Two events of one recipient in one instant (deferred + delayed) must both stay.
    for (int64_t t = e.time_us;; ++t) {
      std::string ek = key_time_id(t, id.value) + key_id(e.rcpt_index).substr(4);
      MDB_val k3 = val(ek), v3 = val(e.json);
      rc = mdb_put(txn, events_, &k3, &v3, MDB_NOOVERWRITE);
      if (rc != MDB_KEYEXIST) break;
    }
    if (rc) return rc;
  }
  std::vector<int64_t> after;
  for (const auto& r : env.recipients)
    if (is_pending(r.state)) after.push_back(r.next_attempt);
  if (after.empty()) return remove_in(txn, id, env);
  auto has = [](const std::vector<int64_t>& set, int64_t t) {
    return std::find(set.begin(), set.end(), t) != set.end();
  };
  for (int64_t t : before) {
    if (has(after, t)) continue;
    std::string sk = key_time_id(t, id.value);
    MDB_val skv = val(sk);
    mdb_del(txn, sched_, &skv, nullptr);  // already gone when two recipients shared it
  }
  for (int64_t t : after) {
    std::string sk = key_time_id(t, id.value);
    MDB_val skv = val(sk), empty = val("");
    if ((rc = mdb_put(txn, sched_, &skv, &empty, 0))) return rc;
  }
  return 0;
}

int64_t Store::prune_events(MDB_txn* txn, int64_t before_us, size_t max) {
  Cursor c(txn, events_);
  if (c.rc()) return -c.rc();
  const uint64_t limit = static_cast<uint64_t>(before_us) ^ (1ULL << 63);
  int64_t n = 0;
  MDB_val k, v;
  for (int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST); rc == 0 && static_cast<size_t>(n) < max;
       rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    if (read_be64(view(k)) >= limit) break;
    if (int d = mdb_cursor_del(c.get(), 0)) return -d;
    ++n;
  }
  return n;
}

Status Store::for_each_due(int64_t now, const std::function<bool(int64_t, QueueId)>& fn) {
  ReadTxn txn(env_);
  if (txn.rc()) return lmdb_err("read", txn.rc());
  Cursor c(txn.get(), sched_);
  if (c.rc()) return lmdb_err("cursor", c.rc());
  const uint64_t limit = static_cast<uint64_t>(now) ^ (1ULL << 63);
  MDB_val k, v;
  for (int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    uint64_t t = read_be64(view(k));
    if (t > limit) break;
    if (!fn(static_cast<int64_t>(t ^ (1ULL << 63)), QueueId{read_be64(view(k), 8)})) break;
  }
  return ok_status();
}

std::optional<int64_t> Store::next_due() {
  ReadTxn txn(env_);
  if (txn.rc()) return std::nullopt;
  Cursor c(txn.get(), sched_);
  MDB_val k, v;
  if (c.rc() || mdb_cursor_get(c.get(), &k, &v, MDB_FIRST) != 0) return std::nullopt;
  return static_cast<int64_t>(read_be64(view(k)) ^ (1ULL << 63));
}

Result<size_t> Store::requeue_inflight() {
  MDB_txn* txn;
  int rc = begin_write(&txn);
  if (rc) return lmdb_err("begin", rc);
  size_t n = 0;
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  // Collect first, write after: changing records under an open cursor is asking for trouble.
  std::vector<std::pair<std::string, Recipient>> changes;
  {
    Cursor c(txn, rcpt_);
    MDB_val k, v;
    for (int r = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST); r == 0;
         r = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
      auto rcpt = decode_recipient(view(v));
      if (rcpt && rcpt->state == RcptState::inflight)
        changes.emplace_back(std::string(view(k)), std::move(rcpt.value()));
    }
  }
  for (auto& [key, rcpt] : changes) {
    uint64_t id = read_be64(key);
    std::string old_sk = key_time_id(rcpt.next_attempt, id);
    MDB_val osk = val(old_sk);
    mdb_del(txn, sched_, &osk, nullptr);
    rcpt.state = RcptState::queued;
    rcpt.next_attempt = now;
    std::string rv = encode_recipient(rcpt);
    MDB_val k = val(key), nv = val(rv);
    if ((rc = mdb_put(txn, rcpt_, &k, &nv, 0))) break;
    std::string sk = key_time_id(now, id);
    MDB_val skv = val(sk), empty = val("");
    if ((rc = mdb_put(txn, sched_, &skv, &empty, 0))) break;
    ++n;
  }
  if (rc) {
    mdb_txn_abort(txn);
    return lmdb_err("requeue", rc);
  }
  if ((rc = mdb_txn_commit(txn))) return lmdb_err("requeue commit", rc);
  return n;
}

std::string event_json(std::string_view event, int64_t time_us, QueueId id, const Envelope& env,
                       const Recipient* rcpt, const EventDetail* d) {
  std::string out;
  out.reserve(256);
  out += "{\"time\":";
  append_json_string(out, iso_time(time_us, true));
  out += ",\"event\":";
  append_json_string(out, event);
  out += ",\"queue_id\":";
  append_json_string(out, id.str());
  out += ",\"message_id\":";
  append_json_string(out, env.message_id);
  out += ",\"sender\":";
  append_json_string(out, env.sender);
  if (rcpt) {
    out += ",\"recipient\":";
    append_json_string(out, rcpt->address);
  }
  out += ",\"client\":";
  append_json_string(out, env.client_address);
  out += ",\"size\":" + std::to_string(env.body_size);
  if (d) {
    out += ",\"attempt\":" + std::to_string(d->attempt);
    out += ",\"mx\":";
    append_json_string(out, d->mx);
    out += ",\"address\":";
    append_json_string(out, d->address);
    out += ",\"code\":" + std::to_string(d->code);
    out += ",\"status\":";
    append_json_string(out, d->status);
    out += ",\"response\":";
    append_json_string(out, d->response);
    if (d->next_attempt) {
      out += ",\"next_attempt\":";
      append_json_string(out, iso_time(d->next_attempt * 1000000, false));
    }
    if (!d->dsn_id.empty()) {
      out += ",\"dsn_queue_id\":";
      append_json_string(out, d->dsn_id);
    }
  }
  out += "}";
  return out;
}

}  // namespace ringmail::queue
