#include "queue/admin.h"

#include <lmdb.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iterator>
#include <utility>

#include "queue/lmdb_util.h"
#include "queue/record.h"

namespace ringmail::queue {

namespace {

using lmdb::Cursor;
using lmdb::ReadTxn;
using lmdb::val;
using lmdb::view;

Error lmdb_err(const std::string& what, int rc) {
  return Error{rc, what + ": " + lmdb_error(rc)};
}

// --- minimal JSON (flat objects only) ------------------------------------------------

struct JsonValue {
  enum Kind { string, integer, number, literal } kind = literal;
  std::string text;  // string: decoded; literal: "true" / "false" / "null"
  int64_t integer_value = 0;
};

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

class FlatJson {
 public:
  explicit FlatJson(std::string_view s) : s_(s) {}

  // Calls fn(key, value) for each member of the one top-level object whose key want(key)
  // accepts; the other values are checked but not decoded (stats reads one field of
  // every event in the log).
  template <class Want, class Fn>
  Status parse(Want&& want, Fn&& fn) {
    ws();
    if (!eat('{')) return fail("expected '{'");
    ws();
    if (!eat('}')) {
      std::string key;
      JsonValue v;
      for (;;) {
        ws();
        key.clear();
        if (auto s = string(&key); !s) return s;
        ws();
        if (!eat(':')) return fail("expected ':'");
        ws();
        bool wanted = want(std::string_view(key));
        v.text.clear();
        if (auto s = value(v, wanted); !s) return s;
        if (wanted)
          if (auto s = fn(key, v); !s) return s;
        ws();
        if (eat(',')) continue;
        if (eat('}')) break;
        return fail("expected ',' or '}'");
      }
    }
    ws();
    if (pos_ != s_.size()) return fail("trailing data after the object");
    return ok_status();
  }

 private:
  Error fail(const std::string& why) const {
    return Error{EINVAL, "event JSON: " + why + " at offset " + std::to_string(pos_)};
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool hex4(uint32_t& out) {
    if (s_.size() - pos_ < 4) return false;
    out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      uint32_t d;
      if (c >= '0' && c <= '9')
        d = static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        d = static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        d = static_cast<uint32_t>(c - 'A' + 10);
      else
        return false;
      out = out << 4 | d;
    }
    return true;
  }
  // Decodes into *out, or only checks when out is null.
  Status string(std::string* out) {
    if (!eat('"')) return fail("expected a string");
    std::string scratch;
    std::string& o = out ? *out : scratch;
    for (;;) {
      // Copy the run of plain bytes at once: escapes are rare.
      size_t run = pos_;
      while (run < s_.size() && s_[run] != '"' && s_[run] != '\\' &&
             static_cast<unsigned char>(s_[run]) >= 0x20)
        ++run;
      if (out) o.append(s_.substr(pos_, run - pos_));
      pos_ = run;
      if (pos_ >= s_.size()) return fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(s_[pos_++]);
      if (c == '"') return ok_status();
      if (c < 0x20) return fail("control character in a string");
      if (pos_ >= s_.size()) return fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          o.push_back(e);
          break;
        case 'b':
          o.push_back('\b');
          break;
        case 'f':
          o.push_back('\f');
          break;
        case 'n':
          o.push_back('\n');
          break;
        case 'r':
          o.push_back('\r');
          break;
        case 't':
          o.push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!hex4(cp)) return fail("bad \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            // A high surrogate makes one code point with the low one after it; alone it
            // is not a character, so it becomes U+FFFD like any invalid sequence.
            uint32_t low = 0;
            size_t save = pos_;
            if (eat('\\') && eat('u') && hex4(low) && low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              pos_ = save;
              cp = 0xFFFD;
            }
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = 0xFFFD;
          }
          append_utf8(o, cp);
          break;
        }
        default:
          return fail("unknown escape");
      }
    }
  }
  Status number(JsonValue& v) {
    size_t start = pos_;
    bool negative = eat('-');
    size_t digits = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    if (pos_ == digits) return fail("bad number");
    if (s_[digits] == '0' && pos_ - digits > 1) return fail("leading zero in a number");
    bool integral = true;
    if (eat('.')) {
      size_t f = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == f) return fail("bad number");
      integral = false;
    }
    if (eat('e') || eat('E')) {
      if (!eat('+')) eat('-');
      size_t x = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == x) return fail("bad number");
      integral = false;
    }
    v.text = std::string(s_.substr(start, pos_ - start));
    v.kind = JsonValue::number;
    if (!integral) return ok_status();
    // Accumulate the magnitude unsigned so INT64_MIN fits; anything larger is a number
    // that no integer field accepts.
    uint64_t mag = 0;
    const uint64_t limit = negative ? (1ULL << 63) : (1ULL << 63) - 1;
    for (size_t i = digits; i < pos_; ++i) {
      uint64_t d = static_cast<uint64_t>(s_[i] - '0');
      if (mag > (limit - d) / 10) return ok_status();
      mag = mag * 10 + d;
    }
    v.kind = JsonValue::integer;
    v.integer_value = negative ? static_cast<int64_t>(0 - mag) : static_cast<int64_t>(mag);
    return ok_status();
  }
  Status value(JsonValue& v, bool decode) {
    if (pos_ >= s_.size()) return fail("missing value");
    char c = s_[pos_];
    if (c == '"') {
      v.kind = JsonValue::string;
      return string(decode ? &v.text : nullptr);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return number(v);
    for (std::string_view lit : {"true", "false", "null"}) {
      if (s_.substr(pos_, lit.size()) == lit) {
        pos_ += lit.size();
        v.kind = JsonValue::literal;
        v.text = lit;
        return ok_status();
      }
    }
    if (c == '{' || c == '[') return fail("nested values are not expected");
    return fail("bad value");
  }

  std::string_view s_;
  size_t pos_ = 0;
};

// --- helpers ------------------------------------------------------------------------

// "2026-11-27T10:31:22.123456Z", the form event_json writes.
std::string iso_time_us(int64_t time_us) {
  char ts[64];
  time_t secs = static_cast<time_t>(time_us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(ts + n, sizeof ts - n, ".%06lldZ", static_cast<long long>(time_us % 1000000));
  return ts;
}

std::string_view strip_brackets(std::string_view s) {
  if (s.size() >= 2 && s.front() == '<' && s.back() == '>') return s.substr(1, s.size() - 2);
  return s;
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

std::string domain_of(std::string_view address) {
  size_t at = address.rfind('@');
  std::string d(at == std::string_view::npos ? std::string_view() : address.substr(at + 1));
  for (char& c : d) c = ascii_lower(c);
  return d;
}

// Events keys: time (8, sign bit flipped), queue id (8), recipient index (4).
bool decode_event(std::string_view key, std::string_view data, StoredEvent& out) {
  if (key.size() != 20) return false;
  out.time_us = static_cast<int64_t>(read_be64(key) ^ (1ULL << 63));
  out.id = QueueId{read_be64(key, 8)};
  out.rcpt_index = read_be32(key, 16);
  out.json.assign(data);
  auto f = parse_event(out.json);
  out.parsed = f.ok();
  if (f.ok()) out.fields = std::move(f).value();
  return true;
}

// Calls fn for every event row in key (time) order until fn returns false.
Status scan_events(MDB_txn* txn, MDB_dbi dbi,
                   const std::function<bool(std::string_view, std::string_view)>& fn) {
  Cursor c(txn, dbi);
  if (c.rc()) return lmdb_err("events cursor", c.rc());
  MDB_val k, v;
  int rc;
  for (rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    if (!fn(view(k), view(v))) return ok_status();
  }
  if (rc != MDB_NOTFOUND) return lmdb_err("events", rc);
  return ok_status();
}

// The envelope with its recipients, from `txn`'s snapshot. nullopt when not queued.
Result<std::optional<Envelope>> load_in(MDB_txn* txn, const Store::Dbis& d, QueueId id) {
  std::string k = key_id(id.value);
  MDB_val key = val(k), v;
  int rc = mdb_get(txn, d.msg, &key, &v);
  if (rc == MDB_NOTFOUND) return std::optional<Envelope>();
  if (rc) return lmdb_err("message " + id.str(), rc);
  Envelope env;
  if (auto s = decode_envelope(view(v), env); !s)
    return Error{s.error().code, "message " + id.str() + ": " + s.error().message};
  for (uint32_t i = 0; i < env.recipients.size(); ++i) {
    std::string rk = key_id_index(id.value, i);
    MDB_val rkey = val(rk), rv;
    if ((rc = mdb_get(txn, d.rcpt, &rkey, &rv)))
      return lmdb_err("message " + id.str() + " recipient " + std::to_string(i), rc);
    auto r = decode_recipient(view(rv));
    if (!r) return Error{r.error().code, "message " + id.str() + ": " + r.error().message};
    env.recipients[i] = std::move(r.value());
  }
  return std::optional<Envelope>(std::move(env));
}

// Just the "event" member of an event record, still checking the whole object.
bool event_name(std::string_view json, std::string& out) {
  out.clear();
  FlatJson p(json);
  auto s = p.parse([](std::string_view key) { return key == "event"; },
                   [&](const std::string&, const JsonValue& v) -> Status {
                     if (v.kind != JsonValue::string) return Error{EINVAL, "event: not a string"};
                     out = v.text;
                     return ok_status();
                   });
  return s.ok();
}

// Cheap rejection before decoding an event: when `needle` has no byte event_json would
// escape ('"', '\\', control characters), every event that can match it carries it
// literally, in some letter case, in its raw text.
class RawFilter {
 public:
  explicit RawFilter(std::string_view needle)
      : needle_(needle), searcher_(needle_.begin(), needle_.end(), Hash{}, Eq{}) {
    usable_ = !needle.empty() && std::none_of(needle.begin(), needle.end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\';
    });
  }
  RawFilter(const RawFilter&) = delete;  // searcher_ points into needle_
  RawFilter& operator=(const RawFilter&) = delete;
  bool may_match(std::string_view raw) const {
    return !usable_ || std::search(raw.begin(), raw.end(), searcher_) != raw.end();
  }

 private:
  struct Hash {
    size_t operator()(char c) const { return static_cast<unsigned char>(ascii_lower(c)); }
  };
  struct Eq {
    bool operator()(char a, char b) const { return ascii_lower(a) == ascii_lower(b); }
  };
  std::string needle_;
  bool usable_ = false;
  std::boyer_moore_horspool_searcher<std::string::const_iterator, Hash, Eq> searcher_;
};

Status set_field(EventFields& f, const std::string& key, const JsonValue& v) {
  static const std::pair<std::string_view, std::string EventFields::*> kStrings[] = {
      {"time", &EventFields::time},
      {"event", &EventFields::event},
      {"queue_id", &EventFields::queue_id},
      {"message_id", &EventFields::message_id},
      {"sender", &EventFields::sender},
      {"recipient", &EventFields::recipient},
      {"client", &EventFields::client},
      {"mx", &EventFields::mx},
      {"address", &EventFields::address},
      {"status", &EventFields::status},
      {"response", &EventFields::response},
      {"next_attempt", &EventFields::next_attempt},
      {"dsn_queue_id", &EventFields::dsn_queue_id},
  };
  const bool null = v.kind == JsonValue::literal && v.text == "null";
  for (const auto& [name, member] : kStrings) {
    if (key != name) continue;
    if (null) return ok_status();
    if (v.kind != JsonValue::string) return Error{EINVAL, "event JSON: " + key + ": not a string"};
    f.*member = v.text;
    return ok_status();
  }
  if (key != "size" && key != "attempt" && key != "code")
    return ok_status();  // a field added later: not ours to judge
  if (null) return ok_status();
  if (v.kind != JsonValue::integer || (key == "size" && v.integer_value < 0))
    return Error{EINVAL, "event JSON: " + key + ": not an integer"};
  if (key == "size") {
    f.size = static_cast<uint64_t>(v.integer_value);
  } else if (key == "attempt") {
    f.attempt = v.integer_value;
    f.has_attempt = true;
  } else {
    f.code = v.integer_value;
  }
  return ok_status();
}

using Found = std::map<uint64_t, std::map<uint32_t, std::vector<StoredEvent>>>;

}  // namespace

Result<EventFields> parse_event(std::string_view json) {
  EventFields f;
  FlatJson p(json);
  auto s =
      p.parse([](std::string_view) { return true; },
              [&](const std::string& key, const JsonValue& v) { return set_field(f, key, v); });
  if (!s) return s.error();
  return f;
}

std::vector<StoredEvent> MessageHistory::events() const {
  std::vector<StoredEvent> all;
  for (const auto& r : recipients) all.insert(all.end(), r.events.begin(), r.events.end());
  std::stable_sort(all.begin(), all.end(), [](const StoredEvent& a, const StoredEvent& b) {
    return std::pair(a.time_us, a.rcpt_index) < std::pair(b.time_us, b.rcpt_index);
  });
  return all;
}

Result<StatusResult> find_status(Store& store, std::string_view key) {
  ReadTxn txn(store.env());
  if (txn.rc()) return lmdb_err("read", txn.rc());
  const Store::Dbis d = store.dbis();
  StatusResult res;
  Found found;

  if (auto id = QueueId::parse(key)) {
    auto s = scan_events(txn.get(), d.events, [&](std::string_view k, std::string_view v) {
      if (k.size() == 20 && read_be64(k, 8) == id->value) {
        StoredEvent e;
        decode_event(k, v, e);
        found[e.id.value][e.rcpt_index].push_back(std::move(e));
      }
      return true;
    });
    if (!s) return s.error();
    auto queued = load_in(txn.get(), d, *id);
    if (!queued) return queued.error();
    if (!found.empty() || queued->has_value()) {
      res.kind = MatchKind::queue_id;
      found[id->value];  // a queued message without events still gets its entry
    }
  }

  std::string_view bare = strip_brackets(key);
  if (res.kind == MatchKind::none && !bare.empty()) {
    // Message-ID and address in one pass: the log can be large.
    Found by_mid, by_addr;
    const RawFilter filter(bare);
    auto s = scan_events(txn.get(), d.events, [&](std::string_view k, std::string_view v) {
      if (!filter.may_match(v)) return true;
      StoredEvent e;
      if (!decode_event(k, v, e) || !e.parsed) return true;
      bool mid = strip_brackets(e.fields.message_id) == bare;
      bool addr = iequal(e.fields.sender, bare) || iequal(e.fields.recipient, bare);
      if (mid && addr) by_addr[e.id.value][e.rcpt_index].push_back(e);
      if (mid)
        by_mid[e.id.value][e.rcpt_index].push_back(std::move(e));
      else if (addr)
        by_addr[e.id.value][e.rcpt_index].push_back(std::move(e));
      return true;
    });
    if (!s) return s.error();
    if (!by_mid.empty()) {
      res.kind = MatchKind::message_id;
      found = std::move(by_mid);
    } else if (!by_addr.empty()) {
      res.kind = MatchKind::address;
      found = std::move(by_addr);
    }
  }

  for (auto& [idv, by_rcpt] : found) {
    MessageHistory m;
    m.id = QueueId{idv};
    auto env = load_in(txn.get(), d, m.id);
    if (!env) return env.error();
    m.in_queue = env->has_value();
    const StoredEvent* first = nullptr;
    for (const auto& [i, evs] : by_rcpt)
      for (const auto& e : evs)
        if (e.parsed && (!first || e.time_us < first->time_us)) first = &e;
    bool sender_matches = false;
    if (m.in_queue) {
      const Envelope& e = **env;
      m.sender = e.sender;
      m.message_id = e.message_id;
      m.client = e.client_address;
      m.size = e.body_size;
      m.arrival = iso_time_us(e.arrival_us);
      sender_matches = iequal(e.sender, bare);
    } else if (first) {
      m.sender = first->fields.sender;
      m.message_id = first->fields.message_id;
      m.client = first->fields.client;
      m.size = first->fields.size;
      for (const auto& [i, evs] : by_rcpt)
        for (const auto& ev : evs)
          if (ev.parsed && ev.fields.event == "received" &&
              (m.arrival.empty() || ev.fields.time < m.arrival))
            m.arrival = ev.fields.time;
    }
    // Recipients: those with matching events, and while queued those the key selects
    // (all of them unless the match was on a recipient's address).
    std::map<uint32_t, RecipientHistory> rcpts;
    for (auto& [i, evs] : by_rcpt) {
      RecipientHistory& r = rcpts[i];
      r.index = i;
      for (const auto& ev : evs)
        if (ev.parsed && !ev.fields.recipient.empty()) r.address = ev.fields.recipient;
      r.events = std::move(evs);
    }
    if (m.in_queue) {
      const auto& list = (*env)->recipients;
      for (uint32_t i = 0; i < list.size(); ++i) {
        bool wanted = res.kind != MatchKind::address || sender_matches ||
                      iequal(list[i].address, bare) || rcpts.count(i);
        if (!wanted) continue;
        RecipientHistory& r = rcpts[i];
        r.index = i;
        r.address = list[i].address;
        r.current = list[i];
      }
    }
    for (auto& [i, r] : rcpts) m.recipients.push_back(std::move(r));
    res.messages.push_back(std::move(m));
  }
  return res;
}

uint64_t StateCounts::total() const {
  uint64_t t = 0;
  for (uint64_t v : n) t += v;
  return t;
}

Result<QueueStats> queue_stats(Store& store, int64_t now) {
  ReadTxn txn(store.env());
  if (txn.rc()) return lmdb_err("read", txn.rc());
  const Store::Dbis d = store.dbis();
  QueueStats st;
  MDB_val k, v;
  int rc;
  {
    Cursor c(txn.get(), d.msg);
    if (c.rc()) return lmdb_err("cursor", c.rc());
    for (rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
      Envelope e;
      if (auto s = decode_envelope(view(v), e); !s)
        return Error{s.error().code,
                     "message " + QueueId{read_be64(view(k))}.str() + ": " + s.error().message};
      ++st.messages;
      st.bytes += e.body_size;
    }
    if (rc != MDB_NOTFOUND) return lmdb_err("messages", rc);
  }
  {
    // Recipient records exist only for queued messages (removed with them).
    Cursor c(txn.get(), d.rcpt);
    if (c.rc()) return lmdb_err("cursor", c.rc());
    for (rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
      auto r = decode_recipient(view(v));
      if (!r)
        return Error{r.error().code,
                     "message " + QueueId{read_be64(view(k))}.str() + ": " + r.error().message};
      size_t state = static_cast<size_t>(r->state);
      if (state >= kRcptStates) continue;
      st.recipients.n[state]++;
      st.domains[domain_of(r->address)].n[state]++;
    }
    if (rc != MDB_NOTFOUND) return lmdb_err("recipients", rc);
  }
  const int64_t hour_ago_us = (now - 3600) * 1000000;
  std::string name;
  auto s = scan_events(txn.get(), d.events, [&](std::string_view key, std::string_view data) {
    if (key.size() != 20) return true;
    if (!event_name(data, name) || name.empty()) name = "unreadable";
    st.events_all[name]++;
    const int64_t time_us = static_cast<int64_t>(read_be64(key) ^ (1ULL << 63));
    if (time_us >= hour_ago_us) st.events_last_hour[name]++;
    return true;
  });
  if (!s) return s.error();
  return st;
}

Result<FlushResult> flush(Store& store, std::optional<QueueId> only, int64_t now) {
  const Store::Dbis d = store.dbis();
  // A flush rewrites records in place and adds schedule keys, so a full map is unlikely
  // but possible; grow and redo the whole transaction, as the committer does.
  for (int tries = 0;; ++tries) {
    MDB_txn* txn = nullptr;
    int rc = store.begin_write(&txn);
    if (rc) return lmdb_err("begin", rc);
    auto fail = [&](const std::string& what, int code) -> Result<FlushResult> {
      mdb_txn_abort(txn);
      return lmdb_err(what, code);
    };
    if (only) {
      std::string k = key_id(only->value);
      MDB_val key = val(k), v;
      rc = mdb_get(txn, d.msg, &key, &v);
      if (rc == MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return Error{ENOENT, "no message " + only->str() + " in the queue"};
      }
      if (rc) return fail("message " + only->str(), rc);
    }
    // Collect under the cursor, write after it: update_recipients rewrites rcpt records.
    std::vector<std::pair<QueueId, std::vector<std::pair<uint32_t, Recipient>>>> changes;
    {
      Cursor c(txn, d.rcpt);
      if (c.rc()) return fail("cursor", c.rc());
      std::string start = key_id_index(only ? only->value : 0, 0);
      MDB_val k = val(start), v;
      for (rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE); rc == 0;
           rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
        std::string_view key = view(k);
        QueueId id{read_be64(key)};
        if (only && id != *only) break;
        auto r = decode_recipient(view(v));
        if (!r) {
          mdb_txn_abort(txn);
          return Error{r.error().code, "message " + id.str() + ": " + r.error().message};
        }
        bool due_later = (r->state == RcptState::queued || r->state == RcptState::deferred) &&
                         r->next_attempt > now;
        if (!due_later) continue;
        r->next_attempt = now;
        if (changes.empty() || changes.back().first != id) changes.push_back({id, {}});
        changes.back().second.emplace_back(read_be32(key, 8), std::move(r.value()));
      }
      if (rc != MDB_NOTFOUND && rc != 0) return fail("recipients", rc);
    }
    FlushResult res;
    rc = 0;
    for (const auto& [id, list] : changes) {
      rc = store.update_recipients(txn, id, list, {});
      if (rc == MDB_NOTFOUND) {  // recipient records without their message: nothing to do
        rc = 0;
        continue;
      }
      if (rc) break;
      res.recipients += list.size();
      ++res.messages;
    }
    if (rc == 0) {
      rc = mdb_txn_commit(txn);
      if (rc == 0) return res;
    } else {
      mdb_txn_abort(txn);
    }
    if (rc == MDB_MAP_FULL && tries < 8 && store.grow_map()) continue;
    return lmdb_err("flush", rc);
  }
}

}  // namespace ringmail::queue
