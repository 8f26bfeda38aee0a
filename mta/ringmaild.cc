// ringmaild: the daemon. Foreground only (systemd, containers and tests supervise it),
// logs to stderr, SIGTERM/SIGINT stop it cleanly, SIGHUP reloads the TLS certificate
// and re-validates the config.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "auth/auth_throttle.h"
#include "auth/user_db.h"
#include "auth/verified_cache.h"
#include "conf/config.h"
#include "mta/delivery/service.h"
#include "mta/runtime/worker_pool.h"
#include "mta/server/server.h"
#include "mta/store/mail_store.h"
#include "queue/committer.h"
#include "queue/store.h"

using namespace ringmail;

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: ringmaild [-c FILE] [--check-config]\n"
               "  -c FILE          config file (TOML); without it the embedded default is used\n"
               "  --check-config   validate the config, print the effective values, exit\n");
}

Result<conf::Config> load(const std::string& path) {
  if (path.empty()) return conf::load_string(conf::default_config_text(), "<embedded default>");
  return conf::load_file(path);
}

// glibc's allocator by default adapts its thresholds to the largest block freed so far, so
// the same load ran at two speeds depending on what the process had allocated at start: a
// daemon that had just created its write-ahead log trimmed each thread's heap after every
// commit and took ~15 page faults per 100 KB message in the commit thread (LMDB's dirty
// pages), 1,240-1,290 msgs/s against 2,030-2,200 with these fixed (50 connections, 100 KB,
// bench/README.md "Allocator thresholds"). Fixed values also turn the adaptation off. A
// thread heap may keep up to kTrimThreshold of freed memory; blocks of kMmapThreshold
// and more (only message bodies that large) still get their own mapping.
constexpr int kMmapThreshold = 8 << 20;
constexpr int kTrimThreshold = 64 << 20;
}  // namespace

int main(int argc, char** argv) {
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
  std::string path;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "-c" || a == "--config") && i + 1 < argc) {
      path = argv[++i];
    } else if (a == "--check-config" || a == "-n") {
      check = true;
    } else if (a == "-h" || a == "--help") {
      usage();
      return 0;
    } else {
      usage();
      return 2;
    }
  }
  auto cfg = load(path);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().message.c_str());
    return 1;
  }
  if (check) {
    std::printf("config OK: %s\n%s", path.empty() ? "<embedded default>" : path.c_str(),
                conf::describe(*cfg).c_str());
    return 0;
  }
  const conf::Config& config = *cfg;

  // Every connection is an fd: the soft limit (often 1024) would cap us far below
  // limits.max_connections, so take the hard limit.
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
      nofile.rlim_cur < config.limits.max_connections + 64)
    std::fprintf(stderr,
                 "ringmaild: warning: only %llu file descriptors for max_connections = %u\n",
                 static_cast<unsigned long long>(nofile.rlim_cur), config.limits.max_connections);

  // Signals are taken synchronously by this thread; loop threads inherit the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // One daemon per data dir: a second one would requeue the first one's in-flight mail and
  // deliver it twice. The lock dies with the process (kill -9 included), so no stale-lock
  // clean-up is ever needed.
  std::error_code dir_ec;
  std::filesystem::create_directories(config.server.data_dir, dir_ec);
  std::string lock_path =
      (std::filesystem::path(config.server.data_dir) / "ringmaild.pid").string();
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) {
    std::fprintf(stderr, "ringmaild: cannot open %s: %s\n", lock_path.c_str(),
                 std::strerror(errno));
    return 1;
  }
  // ringctl holds the lock for a moment when it replays the log of a stopped daemon.
  bool locked = false;
  for (int i = 0; i < 300 && !(locked = ::flock(lock_fd, LOCK_EX | LOCK_NB) == 0); ++i)
    ::usleep(10000);
  if (!locked) {
    char other[32] = {};
    ssize_t n = ::pread(lock_fd, other, sizeof other - 1, 0);
    std::string pid = n > 0 ? std::string(other, static_cast<size_t>(n)) : "?";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    std::fprintf(stderr, "ringmaild: data dir %s is in use by another ringmaild (pid %s)\n",
                 config.server.data_dir.c_str(), pid.c_str());
    return 1;
  }
  std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd, 0) != 0 || ::pwrite(lock_fd, me.data(), me.size(), 0) < 0)
    std::fprintf(stderr, "ringmaild: warning: cannot write %s\n", lock_path.c_str());

  queue::Store::Options qo;
  qo.dir = (std::filesystem::path(config.server.data_dir) / "queue").string();
  qo.max_map_size = config.limits.max_queue_size;
  auto store = queue::Store::open(qo);
  if (!store) {
    std::fprintf(stderr, "ringmaild: %s\n", store.error().message.c_str());
    return 1;
  }
  // DESIGN "Delivery log": JSON Lines, one record per event, for operators to ship.
  std::filesystem::path log_dir = std::filesystem::path(config.server.data_dir) / "log";
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  std::string log_path = (log_dir / "delivery.jsonl").string();
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0) {
    std::fprintf(stderr, "ringmaild: cannot open %s: %s\n", log_path.c_str(), std::strerror(errno));
    return 1;
  }

  // The write-ahead log is replayed even when [queue] wal is now false: what it holds
  // was acknowledged.
  std::unique_ptr<queue::Wal> wal;
  {
    queue::Wal::Options wo;
    wo.dir = qo.dir;
    wo.segment_size = config.queue.wal_segment_size;
    wo.create = config.queue.wal;
    auto w = queue::Wal::open(wo, (*store)->wal_applied());
    if (!w) {
      std::fprintf(stderr, "ringmaild: write-ahead log: %s\n", w.error().message.c_str());
      return 1;
    }
    auto n = queue::replay_wal(**store, **w);
    if (!n) {
      std::fprintf(stderr, "ringmaild: %s\n", n.error().message.c_str());
      return 1;
    }
    if (*n) std::fprintf(stderr, "ringmaild: %zu messages replayed from the write-ahead log\n", *n);
    if (config.queue.wal) {
      if (Status s = (*w)->resize_if_needed(); !s) {
        std::fprintf(stderr, "ringmaild: write-ahead log: %s\n", s.error().message.c_str());
        return 1;
      }
      wal = std::move(*w);
    }
  }
  if (auto n = (*store)->requeue_inflight(); !n) {
    std::fprintf(stderr, "ringmaild: %s\n", n.error().message.c_str());
    return 1;
  } else if (*n) {
    std::fprintf(stderr, "ringmaild: %zu in-flight recipients returned to the queue\n", *n);
  }
  queue::raise_queue_id_floor((*store)->max_id());
  queue::Committer::Limits commit_limits;
  commit_limits.log_threads = config.queue.wal_threads;
  commit_limits.log_max_message = static_cast<size_t>(config.queue.wal_max_message);
  queue::Committer committer(**store, commit_limits, wal.get());
  committer.set_event_log(log_fd);

  // Users live in their own LMDB environment (DESIGN "Queue"): ringctl writes it while the
  // daemon reads it, and its small records never share a commit with queue traffic.
  auto users =
      auth::UserDb::open((std::filesystem::path(config.server.data_dir) / "users").string());
  if (!users) {
    std::fprintf(stderr, "ringmaild: %s\n", users.error().message.c_str());
    return 1;
  }
  rt::WorkerPool hash_pool(config.auth.hash_threads, "rm-hash");
  auth::AuthThrottle throttle(config.auth.max_failures, config.auth.failure_window);
  auth::VerifiedCache verified(config.auth.cache_ttl);
  // Local mail (relay.local_domains) goes to the built-in LMDB mailbox store.
  if (config.store.backend != "lmdb") {
    std::fprintf(stderr, "ringmaild: store.backend = \"%s\" is not built yet (only \"lmdb\")\n",
                 config.store.backend.c_str());
    return 1;
  }
  auto mail =
      store::LmdbMailStore::open((std::filesystem::path(config.server.data_dir) / "mail").string());
  if (!mail) {
    std::fprintf(stderr, "ringmaild: %s\n", mail.error().message.c_str());
    return 1;
  }
  rt::WorkerPool store_pool(2, "rm-store");
  delivery::Service delivery(
      {&config, store->get(), &committer, users->get(), mail->get(), &store_pool});
  if (config.delivery.enabled) {
    committer.set_on_commit([&delivery] { delivery.wake(); });
    if (auto s = delivery.start(); !s) {
      std::fprintf(stderr, "ringmaild: %s\n", s.error().message.c_str());
      return 1;
    }
  } else {
    std::fprintf(stderr, "ringmaild: delivery.enabled = false: mail is accepted and queued only\n");
  }

  server::Server srv(config, committer,
                     smtp::AuthServices{users->get(), &hash_pool, &throttle, &verified});
  if (auto s = srv.start(); !s) {
    std::fprintf(stderr, "ringmaild: %s\n", s.error().message.c_str());
    delivery.stop();
    committer.stop();  // before `delivery` is destroyed: outcomes report back to it
    return 1;
  }
  std::fprintf(stderr, "ringmaild: started, hostname %s, data in %s\n",
               config.server.hostname.c_str(), config.server.data_dir.c_str());

  for (;;) {
    int sig = 0;
    if (sigwait(&sigs, &sig) != 0) continue;
    if (sig == SIGHUP) {
      // The TLS certificate reloads live (certificates renew without a restart); other
      // changes are validated so an operator learns of mistakes before the restart.
      auto again = load(path);
      if (!again) {
        std::fprintf(stderr, "ringmaild: SIGHUP: config has errors, keeping the running one:\n%s\n",
                     again.error().message.c_str());
        continue;
      }
      if (auto s = srv.reload_tls(*again); !s)
        std::fprintf(stderr,
                     "ringmaild: SIGHUP: TLS reload failed, keeping the old certificate: %s\n",
                     s.error().message.c_str());
      else
        std::fprintf(stderr,
                     "ringmaild: SIGHUP: TLS certificate reloaded; restart to apply listener and "
                     "limit changes\n");
      continue;
    }
    std::fprintf(stderr, "ringmaild: %s: stopping\n", strsignal(sig));
    break;
  }
  srv.stop();
  delivery.stop();
  committer.stop();
  std::fprintf(stderr, "group-commit: %s\n", committer.stats().summary().c_str());
  if (config.delivery.enabled)
    std::fprintf(stderr, "delivery: %s\n", delivery.stats().summary().c_str());
  ::close(log_fd);
  std::fprintf(stderr, "ringmaild: stopped\n");
  return 0;
}
