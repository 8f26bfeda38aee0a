#include "tools/ringctl/status_cmd.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "queue/admin.h"
#include "queue/envelope.h"

namespace ringmail::ringctl {

namespace {

constexpr std::string_view kEventOrder[] = {"received", "delivered", "deferred",
                                            "delayed",  "bounced",   "expired"};

int fail(const std::string& msg) {
  std::fprintf(stderr, "ringctl: %s\n", msg.c_str());
  return 1;
}

int usage_error(const char* why) {
  std::fprintf(stderr, "ringctl: %s\nusage: ringctl [-c FILE] COMMAND\n%s", why, status_usage());
  return 2;
}

void out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
}

std::string iso_seconds(int64_t unix_s) {
  time_t t = static_cast<time_t>(unix_s);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string iso_micros(int64_t unix_us) {
  std::string s = iso_seconds(unix_us / 1000000);
  char frac[16];
  std::snprintf(frac, sizeof frac, ".%06lldZ", static_cast<long long>(unix_us % 1000000));
  s.pop_back();
  return s + frac;
}

// `"..."` with \" \\ \n \r \t and \xNN for other control bytes, so a value never breaks
// a line or a word-splitting reader.
std::string quoted(std::string_view s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\r':
        o += "\\r";
        break;
      case '\t':
        o += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char b[8];
          std::snprintf(b, sizeof b, "\\x%02x", c);
          o += b;
        } else {
          o.push_back(static_cast<char>(c));
        }
    }
  }
  return o + "\"";
}

// One whitespace-free word: as is when it can be, "-" when empty, quoted otherwise.
std::string word(std::string_view s) {
  if (s.empty()) return "-";
  for (unsigned char c : s)
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\') return quoted(s);
  return std::string(s);
}

std::string angle(std::string_view address) {
  return word("<" + std::string(address) + ">");
}

std::string json_string(std::string_view s) {
  std::string o;
  queue::append_json_string(o, s);
  return o;
}

std::string event_line(const queue::StoredEvent& e) {
  if (!e.parsed) return iso_micros(e.time_us) + " unreadable json=" + quoted(e.json);
  const queue::EventFields& f = e.fields;
  std::string l = word(f.time.empty() ? iso_micros(e.time_us) : f.time) + " " + word(f.event);
  if (f.has_attempt) l += " attempt=" + std::to_string(f.attempt);
  if (!f.mx.empty() || !f.address.empty()) {
    l += " mx=" + word(f.mx);
    if (!f.address.empty()) l += " [" + word(f.address) + "]";
  }
  if (f.code) l += " code=" + std::to_string(f.code);
  if (!f.status.empty()) l += " status=" + word(f.status);
  if (!f.next_attempt.empty()) l += " next_attempt=" + word(f.next_attempt);
  if (!f.dsn_queue_id.empty()) l += " dsn=" + word(f.dsn_queue_id);
  if (f.has_attempt || !f.response.empty()) l += " response=" + quoted(f.response);
  return l;
}

bool is_final_event(std::string_view ev) {
  return ev == "delivered" || ev == "bounced" || ev == "expired";
}

std::string recipient_line(const queue::RecipientHistory& r) {
  std::string l = "  recipient " + angle(r.address);
  if (r.current) {
    const queue::Recipient& c = *r.current;
    l += " state=" + std::string(queue::state_name(c.state));
    l += " attempts=" + std::to_string(c.attempts);
    if (queue::is_pending(c.state)) l += " next_attempt=" + iso_seconds(c.next_attempt);
    return l;
  }
  // Gone from the queue: its last final event says how it ended; without one an
  // operator removed it (ringctl queue delete).
  std::string state = "removed";
  for (const auto& e : r.events)
    if (e.parsed && is_final_event(e.fields.event)) state = e.fields.event;
  return l + " state=" + state;
}

const char* kind_name(queue::MatchKind k) {
  switch (k) {
    case queue::MatchKind::queue_id:
      return "queue-id";
    case queue::MatchKind::message_id:
      return "message-id";
    case queue::MatchKind::address:
      return "address";
    default:
      return "none";
  }
}

std::string pad_left(const std::string& s, size_t w) {
  return s.size() >= w ? s : std::string(w - s.size(), ' ') + s;
}
std::string pad_right(const std::string& s, size_t w) {
  return s.size() >= w ? s : s + std::string(w - s.size(), ' ');
}

// Rows of text cells, the first column left-aligned and the rest right-aligned (numbers).
std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string o;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      if (i == 0)
        line += pad_right(r[i], width[i]);
      else
        line += "  " + pad_left(r[i], width[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    o += line + "\n";
  }
  return o;
}

std::vector<std::string> event_names(const queue::QueueStats& st) {
  std::vector<std::string> names(std::begin(kEventOrder), std::end(kEventOrder));
  for (const auto& [name, n] : st.events_all)
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  return names;
}

uint64_t count(const std::map<std::string, uint64_t>& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? 0 : it->second;
}

std::string state_label(size_t i) {
  return std::string(queue::state_name(static_cast<queue::RcptState>(i)));
}

std::string stats_text(const queue::QueueStats& st) {
  std::string o;
  std::vector<std::vector<std::string>> totals = {
      {"messages", std::to_string(st.messages)},
      {"bytes", std::to_string(st.bytes)},
      {"recipients", std::to_string(st.recipients.total())},
  };
  for (size_t i = 0; i < queue::kRcptStates; ++i)
    totals.push_back({"  " + state_label(i), std::to_string(st.recipients.n[i])});
  o += table(totals);

  std::vector<std::vector<std::string>> domains;
  std::vector<std::string> head = {"domain", "recipients"};
  for (size_t i = 0; i < queue::kRcptStates; ++i) head.push_back(state_label(i));
  domains.push_back(head);
  std::vector<std::pair<std::string, queue::StateCounts>> sorted(st.domains.begin(),
                                                                 st.domains.end());
  // Busiest first: that is where a backlog shows.
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second.total() > b.second.total();
  });
  for (const auto& [name, c] : sorted) {
    std::vector<std::string> row = {name.empty() ? "-" : word(name), std::to_string(c.total())};
    for (uint64_t n : c.n) row.push_back(std::to_string(n));
    domains.push_back(row);
  }
  o += "\n" + table(domains);

  std::vector<std::vector<std::string>> events = {{"event", "all-time", "last-hour"}};
  for (const auto& name : event_names(st))
    events.push_back({word(name), std::to_string(count(st.events_all, name)),
                      std::to_string(count(st.events_last_hour, name))});
  o += "\n" + table(events);
  return o;
}

std::string counts_json(const queue::StateCounts& c) {
  std::string o = "{\"total\":" + std::to_string(c.total());
  for (size_t i = 0; i < queue::kRcptStates; ++i)
    o += "," + json_string(state_label(i)) + ":" + std::to_string(c.n[i]);
  return o + "}";
}

std::string stats_json(const queue::QueueStats& st, int64_t now) {
  std::string o = "{\"time\":" + json_string(iso_seconds(now));
  o += ",\"messages\":" + std::to_string(st.messages);
  o += ",\"bytes\":" + std::to_string(st.bytes);
  o += ",\"recipients\":" + counts_json(st.recipients);
  o += ",\"domains\":{";
  bool first = true;
  for (const auto& [name, c] : st.domains) {
    if (!first) o += ",";
    first = false;
    o += json_string(name) + ":" + counts_json(c);
  }
  o += "},\"events\":{";
  const std::pair<const char*, const std::map<std::string, uint64_t>*> windows[] = {
      {"all_time", &st.events_all}, {"last_hour", &st.events_last_hour}};
  for (size_t w = 0; w < 2; ++w) {
    if (w) o += ",";
    o += json_string(windows[w].first) + ":{";
    bool f = true;
    for (const auto& name : event_names(st)) {
      if (!f) o += ",";
      f = false;
      o += json_string(name) + ":" + std::to_string(count(*windows[w].second, name));
    }
    o += "}";
  }
  return o + "}}\n";
}

// Splits "--json" off the positional arguments; false on another option.
bool take_json(const std::vector<std::string>& args, bool& json, std::vector<std::string>& pos) {
  for (const auto& a : args) {
    if (a == "--json")
      json = true;
    else if (a.size() > 1 && a[0] == '-' && a[1] == '-')
      return false;
    else
      pos.push_back(a);
  }
  return true;
}

}  // namespace

const char* status_usage() {
  return "  queue flush [ID]        make deferred mail due now (every message, or one)\n"
         "  status [--json] ID|MSGID|ADDR\n"
         "                          each recipient's state and delivery timeline, by queue\n"
         "                          id, Message-ID, or sender/recipient address\n"
         "  stats [--json]          queue totals by state and domain, events by type\n";
}

int status_command(queue::Store& store, const std::vector<std::string>& args) {
  bool json = false;
  std::vector<std::string> pos;
  if (!take_json(args, json, pos) || pos.size() != 1)
    return usage_error("status takes one queue id, Message-ID or address");
  const std::string& key = pos[0];
  auto r = queue::find_status(store, key);
  if (!r) return fail(r.error().message);
  if (r->messages.empty()) return fail("no message matches " + key);
  std::string o;
  if (json) {
    for (const auto& m : r->messages)
      for (const auto& e : m.events()) o += e.json + "\n";
    out(o);
    return 0;
  }
  bool first = true;
  for (const auto& m : r->messages) {
    if (!first) o += "\n";
    first = false;
    o += "message " + m.id.str() + " arrival=" + word(m.arrival) + " sender=" + angle(m.sender) +
         " message_id=" + word(m.message_id) + " size=" + std::to_string(m.size) +
         " client=" + word(m.client) + " in_queue=" + (m.in_queue ? "yes" : "no") +
         " matched=" + kind_name(r->kind) + "\n";
    for (const auto& rc : m.recipients) {
      o += recipient_line(rc) + "\n";
      for (const auto& e : rc.events) o += "    " + event_line(e) + "\n";
    }
  }
  out(o);
  return 0;
}

int stats_command(queue::Store& store, const std::vector<std::string>& args) {
  bool json = false;
  std::vector<std::string> pos;
  if (!take_json(args, json, pos) || !pos.empty()) return usage_error("stats takes no arguments");
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  auto st = queue::queue_stats(store, now);
  if (!st) return fail(st.error().message);
  out(json ? stats_json(*st, now) : stats_text(*st));
  return 0;
}

int flush_command(queue::Store& store, const std::vector<std::string>& args) {
  if (args.size() > 1) return usage_error("queue flush takes at most one queue id");
  std::optional<queue::QueueId> only;
  if (!args.empty()) {
    only = queue::QueueId::parse(args[0]);
    if (!only) return fail("'" + args[0] + "' is not a queue id");
  }
  auto r = queue::flush(store, only, static_cast<int64_t>(std::time(nullptr)));
  if (!r) return fail(r.error().message);
  std::printf("flushed %zu recipients in %zu messages\n", r->recipients, r->messages);
  return 0;
}

}  // namespace ringmail::ringctl
