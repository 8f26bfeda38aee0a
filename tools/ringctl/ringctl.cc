// ringctl: the admin CLI. Reads the daemon's config (-c FILE, or the embedded default)
// and works on the same LMDB environments while the daemon runs: LMDB lets several
// processes read at once and serialises writers across processes.
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "conf/config.h"
#include "queue/committer.h"
#include "queue/store.h"
#include "tools/ringctl/mailbox_cmd.h"
#include "tools/ringctl/status_cmd.h"
#include "tools/ringctl/user_cmd.h"

using namespace ringmail;

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: ringctl [-c FILE] COMMAND\n"
               "  queue list              one line per queued message, queue id first\n"
               "  queue show ID           envelope, recipients and the whole stored message\n"
               "  queue delete ID...      remove messages from the queue\n"
               "%s%s%s",
               ringctl::status_usage(), ringctl::user_usage(), ringctl::mailbox_usage());
  return 2;
}

std::string iso_time(int64_t unix_us) {
  time_t t = static_cast<time_t>(unix_us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const char* body_name(queue::BodyType b) {
  switch (b) {
    case queue::BodyType::seven_bit:
      return "7BIT";
    case queue::BodyType::eight_bit_mime:
      return "8BITMIME";
    case queue::BodyType::binary_mime:
      return "BINARYMIME";
    default:
      return "-";
  }
}

const char* ret_name(queue::Ret r) {
  switch (r) {
    case queue::Ret::full:
      return "FULL";
    case queue::Ret::hdrs:
      return "HDRS";
    default:
      return "-";
  }
}

std::string notify_text(uint8_t n) {
  if (n == 0) return "-";
  if (n & queue::kNotifyNever) return "NEVER";
  std::string s;
  if (n & queue::kNotifySuccess) s += "SUCCESS,";
  if (n & queue::kNotifyFailure) s += "FAILURE,";
  if (n & queue::kNotifyDelay) s += "DELAY,";
  s.pop_back();
  return s;
}

Result<std::unique_ptr<queue::Store>> open_queue(const conf::Config& c) {
  std::string dir = (std::filesystem::path(c.server.data_dir) / "queue").string();
  if (!std::filesystem::exists(std::filesystem::path(dir) / "data.mdb"))
    return Error{ENOENT, "no queue in " + dir + " (has ringmaild run with this config?)"};
  queue::Store::Options o;
  o.dir = dir;
  o.max_map_size = c.limits.max_queue_size;
  auto store = queue::Store::open(o);
  if (!store) return store;
  // What was answered 250 just before may still be only in the daemon's write-ahead log.
  std::string lock = (std::filesystem::path(c.server.data_dir) / "ringmaild.pid").string();
  if (Status s = queue::catch_up_with_log(**store, dir, lock, std::chrono::seconds(2)); !s)
    std::fprintf(stderr, "ringctl: warning: %s\n", s.error().message.c_str());
  return store;
}

void print_recipients(const queue::Envelope& e) {
  for (const auto& r : e.recipients) {
    std::printf("recipient: <%s> state=%s attempts=%u next_attempt=%s notify=%s orcpt=%s\n",
                r.address.c_str(), std::string(queue::state_name(r.state)).c_str(), r.attempts,
                iso_time(r.next_attempt * 1000000).c_str(), notify_text(r.notify).c_str(),
                r.orcpt.empty() ? "-" : r.orcpt.c_str());
    if (!r.last_response.empty()) std::printf("  last_response: %s\n", r.last_response.c_str());
  }
}

int queue_list(queue::Store& q) {
  size_t n = 0;
  auto s = q.for_each([&](queue::QueueId id, const queue::Envelope& e) {
    std::string rcpts;
    for (const auto& r : e.recipients) {
      if (!rcpts.empty()) rcpts += ' ';
      rcpts += r.address + "(" + std::string(queue::state_name(r.state)) + ")";
    }
    std::printf("%s %llu %s <%s> %s\n", id.str().c_str(),
                static_cast<unsigned long long>(e.body_size), iso_time(e.arrival_us).c_str(),
                e.sender.c_str(), rcpts.c_str());
    ++n;
    return true;
  });
  if (!s) {
    std::fprintf(stderr, "ringctl: %s\n", s.error().message.c_str());
    return 1;
  }
  std::fprintf(stderr, "-- %zu message%s\n", n, n == 1 ? "" : "s");
  return 0;
}

void print_envelope(queue::QueueId id, const queue::Envelope& e) {
  std::printf("queue_id: %s\n", id.str().c_str());
  std::printf("arrival: %s\n", iso_time(e.arrival_us).c_str());
  std::printf("sender: <%s>\n", e.sender.c_str());
  std::printf("client: %s helo=%s\n", e.client_address.c_str(), e.helo.c_str());
  if (!e.auth_user.empty()) std::printf("auth_user: %s\n", e.auth_user.c_str());
  std::printf("size: %llu\n", static_cast<unsigned long long>(e.body_size));
  if (e.declared_size)
    std::printf("declared_size: %llu\n", static_cast<unsigned long long>(e.declared_size));
  std::printf("body: %s\nsmtputf8: %s\nret: %s\nenvid: %s\n", body_name(e.body),
              e.smtputf8 ? "yes" : "no", ret_name(e.ret), e.envid.empty() ? "-" : e.envid.c_str());
  std::printf("message_id: %s\n", e.message_id.empty() ? "-" : e.message_id.c_str());
  print_recipients(e);
}

int queue_show(queue::Store& q, const std::string& text) {
  auto id = queue::QueueId::parse(text);
  if (!id) {
    std::fprintf(stderr, "ringctl: '%s' is not a queue id\n", text.c_str());
    return 1;
  }
  auto e = q.load(*id);
  if (!e) {
    std::fprintf(stderr, "ringctl: %s\n", e.error().message.c_str());
    return 1;
  }
  print_envelope(*id, *e);
  std::printf("*** MESSAGE CONTENTS ***\n");
  std::fflush(stdout);
  auto s = q.read_body(
      *id, [](std::string_view chunk) { std::fwrite(chunk.data(), 1, chunk.size(), stdout); });
  std::fflush(stdout);
  if (!s) {
    std::fprintf(stderr, "ringctl: %s\n", s.error().message.c_str());
    return 1;
  }
  return 0;
}

int queue_delete(queue::Store& q, const std::vector<std::string>& ids) {
  int rc = 0;
  for (const auto& text : ids) {
    auto id = queue::QueueId::parse(text);
    if (!id) {
      std::fprintf(stderr, "ringctl: '%s' is not a queue id\n", text.c_str());
      rc = 1;
      continue;
    }
    auto r = q.remove(*id);
    if (!r) {
      std::fprintf(stderr, "ringctl: %s: %s\n", text.c_str(), r.error().message.c_str());
      rc = 1;
    } else if (!*r) {
      std::fprintf(stderr, "ringctl: %s: no such message\n", text.c_str());
      rc = 1;
    } else {
      std::printf("%s: deleted\n", id->str().c_str());
    }
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "-c" || a == "--config") && i + 1 < argc)
      path = argv[++i];
    else if (a == "-h" || a == "--help")
      return usage(), 0;
    else
      args.push_back(a);
  }
  if (args.empty()) return usage();
  auto cfg = path.empty() ? conf::load_string(conf::default_config_text(), "<embedded default>")
                          : conf::load_file(path);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().message.c_str());
    return 1;
  }
  const std::string& cmd = args[0];
  if (cmd == "user")
    return ringctl::user_command(*cfg, std::vector<std::string>(args.begin() + 1, args.end()));
  if (cmd == "mailbox")
    return ringctl::mailbox_command(*cfg, std::vector<std::string>(args.begin() + 1, args.end()));
  if (cmd != "queue" && cmd != "status" && cmd != "stats") return usage();
  auto q = open_queue(*cfg);
  if (!q) {
    std::fprintf(stderr, "ringctl: %s\n", q.error().message.c_str());
    return 1;
  }
  if (cmd == "stats") return ringctl::stats_command(**q, {args.begin() + 1, args.end()});
  if (cmd == "status") return ringctl::status_command(**q, {args.begin() + 1, args.end()});
  if (args.size() < 2) return usage();
  const std::string& sub = args[1];
  if (sub == "list" && args.size() == 2) return queue_list(**q);
  if (sub == "show" && args.size() == 3) return queue_show(**q, args[2]);
  if (sub == "flush") return ringctl::flush_command(**q, {args.begin() + 2, args.end()});
  if (sub == "delete" && args.size() >= 3)
    return queue_delete(**q, std::vector<std::string>(args.begin() + 2, args.end()));
  return usage();
}
