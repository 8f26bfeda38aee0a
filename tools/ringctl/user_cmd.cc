#include "tools/ringctl/user_cmd.h"

#include <openssl/mem.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>

#include "auth/passwd_file.h"
#include "auth/password.h"
#include "auth/scram_credentials.h"
#include "auth/user_db.h"

namespace ringmail::ringctl {

namespace {

constexpr size_t kMaxPassword = 4096;

// A string that is wiped when it goes away (it holds a password).
struct Secret {
  std::string s;
  ~Secret() { OPENSSL_cleanse(s.data(), s.size()); }
};

int fail(const std::string& msg) {
  std::fprintf(stderr, "ringctl: %s\n", msg.c_str());
  return 1;
}

int usage_error(const char* why = nullptr) {
  if (why) std::fprintf(stderr, "ringctl: %s\n", why);
  std::fprintf(stderr, "usage: ringctl [-c FILE] user COMMAND\n%s", user_usage());
  return 2;
}

// One line from fd 0, without its line ending. false at EOF before any byte.
bool read_line(std::string& out, bool& too_long) {
  out.clear();
  too_long = false;
  bool any = false;
  for (;;) {
    char c;
    ssize_t n = ::read(0, &c, 1);  // unbuffered: never reads past the first line
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    any = true;
    if (c == '\n') break;
    if (out.size() >= kMaxPassword) {
      too_long = true;
      continue;
    }
    out.push_back(c);
  }
  if (!out.empty() && out.back() == '\r') out.pop_back();
  return any;
}

// Echo off while reading from a terminal; restored on every path.
class NoEcho {
 public:
  NoEcho() {
    if (tcgetattr(0, &saved_) == 0) {
      struct termios t = saved_;
      t.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      t.c_lflag |= ECHONL;
      active_ = tcsetattr(0, TCSAFLUSH, &t) == 0;
    }
  }
  ~NoEcho() {
    if (active_) tcsetattr(0, TCSAFLUSH, &saved_);
  }

 private:
  struct termios saved_ {};
  bool active_ = false;
};

Result<std::string> prompt(const char* text) {
  std::fprintf(stderr, "%s", text);
  std::fflush(stderr);
  Secret line;
  bool too_long;
  bool got;
  {
    NoEcho quiet;
    got = read_line(line.s, too_long);
  }
  if (!got) return Error{EIO, "no password given"};
  if (too_long) return Error{EINVAL, "password too long"};
  return std::string(line.s);
}

// The new password: the first line of standard input, or asked twice on a terminal.
Result<std::string> read_password(const std::string& address) {
  Secret pw;
  if (isatty(0)) {
    std::string first_prompt = "New password for " + address + ": ";
    auto a = prompt(first_prompt.c_str());
    if (!a) return a.error();
    pw.s = std::move(*a);
    auto b = prompt("Retype new password: ");
    if (!b) return b.error();
    Secret again{std::move(*b)};
    if (again.s != pw.s) return Error{EINVAL, "passwords do not match"};
  } else {
    bool too_long;
    if (!read_line(pw.s, too_long))
      return Error{EIO, "no password on standard input (the first line is the password)"};
    if (too_long) return Error{EINVAL, "password too long"};
  }
  if (pw.s.empty()) return Error{EINVAL, "empty password refused"};
  if (pw.s.find('\0') != std::string::npos) return Error{EINVAL, "password contains a NUL byte"};
  return std::string(pw.s);
}

// Sets u's crypt hash (yescrypt) and SCRAM verifiers from a password on stdin.
Status set_password_from_stdin(auth::User& u) {
  auto pw = read_password(u.address);
  if (!pw) return pw.error();
  Secret p{std::move(*pw)};
  auto h = auth::hash_password(p.s);
  if (!h) return h.error();
  u.password_hash = std::move(*h);
  u.scram = auth::new_scram_credentials(p.s);
  return ok_status();
}

bool parse_u64(const std::string& s, uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (n > (UINT64_MAX - static_cast<uint64_t>(c - '0')) / 10) return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  out = n;
  return true;
}

Result<std::unique_ptr<auth::UserDb>> open_db(const conf::Config& cfg) {
  std::string dir = (std::filesystem::path(cfg.server.data_dir) / "users").string();
  return auth::UserDb::open(dir);
}

// The user an admin command names; an Error (ENOENT) when there is none.
Result<auth::User> existing(auth::UserDb& db, const std::string& address) {
  auto u = db.find(address);
  if (!u) return u.error();
  if (!*u) return Error{ENOENT, "no user " + address};
  return std::move(**u);
}

std::string list_line(const auth::User& u) {
  std::string aliases;
  for (const auto& a : u.aliases) {
    if (!aliases.empty()) aliases += ',';
    aliases += a;
  }
  return u.address + (u.enabled ? " enabled" : " disabled") +
         " quota=" + (u.quota ? std::to_string(u.quota) : std::string("unlimited")) +
         " aliases=" + (aliases.empty() ? std::string("-") : aliases) +
         " scram=" + (u.scram.empty() ? "no" : "yes");
}

int cmd_add(auth::UserDb& db, const std::string& address, const std::vector<std::string>& opts) {
  auth::User u;
  u.address = address;
  for (size_t i = 0; i < opts.size(); ++i) {
    const std::string& o = opts[i];
    if (o == "--alias" && i + 1 < opts.size()) {
      auto a = auth::normalize_user_address(opts[++i]);
      if (!a) return fail(a.error().message);
      u.aliases.push_back(std::move(*a));
    } else if (o == "--quota" && i + 1 < opts.size()) {
      if (!parse_u64(opts[++i], u.quota)) return usage_error("--quota wants a number of bytes");
    } else if (o == "--disabled") {
      u.enabled = false;
    } else {
      return usage_error(("unknown option '" + o + "' for user add").c_str());
    }
  }
  // Refuse before asking for a password that would be thrown away.
  auto owner = db.find_owner(address);
  if (!owner) return fail(owner.error().message);
  if (*owner)
    return fail((*owner)->address == address
                    ? address + " already exists"
                    : address + " is already an alias of " + (*owner)->address);
  if (auto s = set_password_from_stdin(u); !s) return fail(s.error().message);
  if (auto s = db.add(u); !s) return fail(s.error().message);
  std::printf("added %s\n", u.address.c_str());
  return 0;
}

int cmd_passwd(auth::UserDb& db, const std::string& address) {
  auto u = existing(db, address);
  if (!u) return fail(u.error().message);
  if (auto s = set_password_from_stdin(*u); !s) return fail(s.error().message);
  if (auto s = db.update(*u); !s) return fail(s.error().message);
  std::printf("password changed for %s\n", address.c_str());
  return 0;
}

int cmd_del(auth::UserDb& db, const std::string& address) {
  if (auto s = db.remove(address); !s) return fail(s.error().message);
  std::printf("deleted %s\n", address.c_str());
  return 0;
}

int cmd_list(auth::UserDb& db) {
  auto s = db.for_each([](const auth::User& u) { std::printf("%s\n", list_line(u).c_str()); });
  if (!s) return fail(s.error().message);
  return 0;
}

int cmd_alias(auth::UserDb& db, const std::string& op, const std::string& address,
              const std::string& alias_arg) {
  auto alias = auth::normalize_user_address(alias_arg);
  if (!alias) return fail(alias.error().message);
  auto u = existing(db, address);
  if (!u) return fail(u.error().message);
  auto& aliases = u->aliases;
  auto it = std::find(aliases.begin(), aliases.end(), *alias);
  if (op == "add") {
    if (it != aliases.end()) return fail(*alias + " is already an alias of " + address);
    aliases.push_back(*alias);
  } else {
    if (it == aliases.end()) return fail(address + " has no alias " + *alias);
    aliases.erase(it);
  }
  if (auto s = db.update(*u); !s) return fail(s.error().message);
  std::printf(op == "add" ? "alias %s added to %s\n" : "alias %s removed from %s\n", alias->c_str(),
              address.c_str());
  return 0;
}

int cmd_enable(auth::UserDb& db, const std::string& address, bool enable) {
  auto u = existing(db, address);
  if (!u) return fail(u.error().message);
  u->enabled = enable;
  if (auto s = db.update(*u); !s) return fail(s.error().message);
  std::printf("%s %s\n", enable ? "enabled" : "disabled", address.c_str());
  return 0;
}

int cmd_quota(auth::UserDb& db, const std::string& address, uint64_t quota) {
  auto u = existing(db, address);
  if (!u) return fail(u.error().message);
  u->quota = quota;
  if (auto s = db.update(*u); !s) return fail(s.error().message);
  if (quota)
    std::printf("quota for %s set to %llu\n", address.c_str(),
                static_cast<unsigned long long>(quota));
  else
    std::printf("quota for %s set to unlimited\n", address.c_str());
  return 0;
}

// Dovecot passwd-file import. Hashes are kept as they are (so PLAIN and LOGIN work at
// once); clear-text lines are hashed with yescrypt and also get SCRAM verifiers.
int cmd_import(auth::UserDb& db, const std::string& file, bool replace) {
  std::string text;
  if (file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) return fail("cannot read " + file + ": " + std::strerror(errno));
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auth::PasswdFile pf = auth::parse_passwd_file(text);
  OPENSSL_cleanse(text.data(), text.size());  // may hold clear-text passwords

  // Errors are reported in line order: parse errors and database refusals interleave.
  size_t imported = 0, skipped = 0, refused = pf.errors.size();
  std::vector<auth::PasswdError> msgs = pf.errors;
  for (auto& e : pf.entries) {
    Secret clear{std::move(e.clear_password)};
    auto found = db.find_owner(e.address);
    if (!found) {
      msgs.push_back({e.line, found.error().message});
      ++refused;
      continue;
    }
    bool exists = *found && (*found)->address == e.address;
    if (*found && !exists) {
      msgs.push_back({e.line, e.address + " is already an alias of " + (*found)->address});
      ++refused;
      continue;
    }
    if (exists && !replace) {
      msgs.push_back({e.line, e.address + " exists, skipped (--replace overwrites)"});
      ++skipped;
      continue;
    }
    auth::User u = exists ? **found : auth::User{};
    u.address = e.address;
    u.scram = {};
    if (!clear.s.empty()) {
      auto h = auth::hash_password(clear.s);
      if (!h) {
        msgs.push_back({e.line, h.error().message});
        ++refused;
        continue;
      }
      u.password_hash = std::move(*h);
      u.scram = auth::new_scram_credentials(clear.s);
    } else {
      u.password_hash = e.password_hash;
    }
    if (e.quota) u.quota = e.quota;
    auto s = exists ? db.update(u) : db.add(u);
    if (!s) {
      msgs.push_back({e.line, s.error().message});
      ++refused;
      continue;
    }
    ++imported;
  }
  std::stable_sort(msgs.begin(), msgs.end(),
                   [](const auto& a, const auto& b) { return a.line < b.line; });
  for (const auto& m : msgs)
    std::fprintf(stderr, "%s:%zu: %s\n", file.c_str(), m.line, m.reason.c_str());
  std::printf("imported %zu users, skipped %zu\n", imported, skipped + refused);
  return refused ? 1 : 0;
}

}  // namespace

const char* user_usage() {
  return "  user add ADDRESS [--alias ADDR]... [--quota BYTES] [--disabled]\n"
         "                          new user; password from stdin (first line) or a prompt\n"
         "  user passwd ADDRESS     new password, read the same way\n"
         "  user del ADDRESS        remove the user and its aliases\n"
         "  user list               one line per user: address, enabled|disabled, quota=,\n"
         "                          aliases=, scram=\n"
         "  user alias add|del ADDRESS ALIAS\n"
         "  user enable|disable ADDRESS\n"
         "  user quota ADDRESS BYTES  mailbox quota in bytes (0 = unlimited)\n"
         "  user import FILE|- [--replace]  Dovecot passwd-file (SHA512-CRYPT, BLF-CRYPT,\n"
         "                          CRYPT, SHA256-CRYPT, PLAIN); existing users are skipped\n";
}

int user_command(const conf::Config& cfg, const std::vector<std::string>& args) {
  if (args.empty()) return usage_error();
  const std::string& sub = args[0];
  size_t n = args.size();

  // Check the words before touching the database.
  std::string address;
  auto need_address = [&](size_t i) -> bool {
    auto a = auth::normalize_user_address(args[i]);
    if (!a) {
      std::fprintf(stderr, "ringctl: %s\n", a.error().message.c_str());
      return false;
    }
    address = std::move(*a);
    return true;
  };

  if (sub == "list") {
    if (n != 1) return usage_error();
  } else if (sub == "add") {
    if (n < 2 || args[1].starts_with("-")) return usage_error();
    if (!need_address(1)) return 1;
  } else if (sub == "passwd" || sub == "del" || sub == "enable" || sub == "disable") {
    if (n != 2) return usage_error();
    if (!need_address(1)) return 1;
  } else if (sub == "quota") {
    if (n != 3) return usage_error();
    if (!need_address(1)) return 1;
  } else if (sub == "alias") {
    if (n != 4 || (args[1] != "add" && args[1] != "del")) return usage_error();
    if (!need_address(2)) return 1;
  } else if (sub == "import") {
    if (n < 2) return usage_error();
  } else {
    return usage_error();
  }

  uint64_t quota = 0;
  if (sub == "quota" && !parse_u64(args[2], quota))
    return usage_error("quota wants a number of bytes (0 = unlimited)");
  std::string import_file;
  bool replace = false;
  if (sub == "import") {
    for (size_t i = 1; i < n; ++i) {
      if (args[i] == "--replace")
        replace = true;
      else if (import_file.empty() && (args[i] == "-" || !args[i].starts_with("-")))
        import_file = args[i];
      else
        return usage_error();
    }
    if (import_file.empty()) return usage_error();
  }

  auto db = open_db(cfg);
  if (!db) return fail(db.error().message);
  auth::UserDb& d = **db;
  if (sub == "list") return cmd_list(d);
  if (sub == "add")
    return cmd_add(d, address, std::vector<std::string>(args.begin() + 2, args.end()));
  if (sub == "passwd") return cmd_passwd(d, address);
  if (sub == "del") return cmd_del(d, address);
  if (sub == "enable" || sub == "disable") return cmd_enable(d, address, sub == "enable");
  if (sub == "quota") return cmd_quota(d, address, quota);
  if (sub == "alias") return cmd_alias(d, args[1], address, args[3]);
  return cmd_import(d, import_file, replace);
}

}  // namespace ringmail::ringctl
