#include "tools/ringctl/mailbox_cmd.h"

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>

#include "auth/user_db.h"
#include "dns/domain.h"
#include "mta/store/mail_store.h"

namespace ringmail::ringctl {

namespace {

std::string iso_time(int64_t unix_s) {
  time_t t = static_cast<time_t>(unix_s);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The account an address delivers to (its owner, through aliases), as delivery does.
Result<std::string> account_for(const conf::Config& cfg, const std::string& address) {
  auto users = auth::UserDb::open((std::filesystem::path(cfg.server.data_dir) / "users").string());
  if (!users) return users.error();
  auto owner = (*users)->find_owner(address);
  if (!owner) return owner.error();
  if (owner->has_value()) return (*owner)->address;
  // postmaster without a user of that name has a mailbox of its own (delivery does this).
  std::string lower = dns::lower(address);
  if (lower.rfind("postmaster@", 0) == 0 || lower == "postmaster") return lower;
  return Error{ENOENT, "no user or alias " + address};
}

}  // namespace

const char* mailbox_usage() {
  return "  mailbox list ADDRESS    the user's INBOX: uid, size, arrival, one line each\n"
         "  mailbox show ADDRESS UID  one stored message, byte for byte\n";
}

int mailbox_command(const conf::Config& cfg, const std::vector<std::string>& args) {
  if (args.size() < 2 || (args[0] == "list" && args.size() != 2) ||
      (args[0] == "show" && args.size() != 3) || (args[0] != "list" && args[0] != "show")) {
    std::fprintf(stderr, "usage:\n%s", mailbox_usage());
    return 2;
  }
  std::string dir = (std::filesystem::path(cfg.server.data_dir) / "mail").string();
  if (!std::filesystem::exists(std::filesystem::path(dir) / "data.mdb")) {
    std::fprintf(stderr, "ringctl: no mail store in %s (has ringmaild delivered local mail?)\n",
                 dir.c_str());
    return 1;
  }
  auto account = account_for(cfg, args[1]);
  if (!account) {
    std::fprintf(stderr, "ringctl: %s\n", account.error().message.c_str());
    return 1;
  }
  auto store = store::LmdbMailStore::open(dir);
  if (!store) {
    std::fprintf(stderr, "ringctl: %s\n", store.error().message.c_str());
    return 1;
  }
  if (args[0] == "list") {
    auto list = (*store)->list(*account);
    if (!list) {
      std::fprintf(stderr, "ringctl: %s\n", list.error().message.c_str());
      return 1;
    }
    for (const auto& m : *list)
      std::printf("%u %llu %s\n", m.uid, static_cast<unsigned long long>(m.size),
                  iso_time(m.internal_date).c_str());
    std::fprintf(stderr, "-- %zu message%s for %s\n", list->size(), list->size() == 1 ? "" : "s",
                 account->c_str());
    return 0;
  }
  char* end = nullptr;
  unsigned long uid = std::strtoul(args[2].c_str(), &end, 10);
  if (args[2].empty() || *end != '\0' || uid == 0 || uid > UINT32_MAX) {
    std::fprintf(stderr, "ringctl: '%s' is not a UID\n", args[2].c_str());
    return 2;
  }
  auto msg = (*store)->read(*account, static_cast<uint32_t>(uid));
  if (!msg) {
    std::fprintf(stderr, "ringctl: %s\n", msg.error().message.c_str());
    return 1;
  }
  std::fwrite(msg->data(), 1, msg->size(), stdout);
  return 0;
}

}  // namespace ringmail::ringctl
