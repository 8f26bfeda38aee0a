#include "bench/ringbench/sink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/ringbench/sink_session.h"
#include "mta/runtime/listener.h"
#include "mta/runtime/loop.h"

namespace ringbench {

namespace rt = ringmail::rt;

namespace {

struct Worker {
  SinkThread state;
  int listen_fd = -1;
  std::atomic<rt::Loop*> loop{nullptr};  // published once its on_stop hook is set
  std::atomic<bool> done{false};
  std::thread thread;
};

bool parse_address(const SinkOptions& o, sockaddr_storage& ss, socklen_t& len) {
  ss = {};
  auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
  std::string host = o.address;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(o.port);
    len = sizeof *a4;
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(o.port);
    len = sizeof *a6;
    return true;
  }
  return false;
}

// --fsync: one file per thread, unnamed where the filesystem allows (nothing to clean up),
// zero-filled to its full size first, as a real log would be: a write then never changes
// the file's size or extents, so fdatasync writes data only, not a journal commit too.
constexpr uint64_t kStoreFileSize = uint64_t{64} << 20;

int open_store_file(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::string path = dir + "/ringbench-sink-XXXXXX";
    fd = mkstemp(path.data());
    if (fd >= 0) ::unlink(path.c_str());
  }
  if (fd < 0) return fd;
  static const std::string zeros(1 << 20, '\0');
  for (uint64_t off = 0; off < kStoreFileSize; off += zeros.size()) {
    errno = 0;  // a short write sets none
    if (::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(off)) !=
        static_cast<ssize_t>(zeros.size())) {
      int e = errno ? errno : ENOSPC;
      ::close(fd);
      errno = e;
      return -1;
    }
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

void worker_main(Worker& w, const SinkOptions& opt) {
  rt::Loop::Options lo;
  lo.buffer_count = opt.buffers;
  lo.buffer_size = opt.buffer_size;
  rt::Loop loop(lo);  // created on the thread that drives it (IORING_SETUP_SINGLE_ISSUER)
  SinkThread& st = w.state;
  rt::Listener listener(loop, w.listen_fd,
                        [&st, &loop](int fd) { loop.spawn(serve_sink(st, loop, fd)); });
  listener.start();
  loop.set_on_stop([&st, &listener] {
    // No new connections; sessions waiting for input return at once. A session busy
    // elsewhere (sending, fsync) sees loop.stopping() before its next read.
    listener.close();
    for (SinkSession* s = st.sessions; s; s = s->next()) s->interrupt();
  });
  w.loop.store(&loop, std::memory_order_release);
  loop.run();
  w.done.store(true, std::memory_order_release);
  // The Loop outlives nothing that points at it: main stops loops only before join.
}

}  // namespace

int run_sink(const SinkOptions& opt) {
  sockaddr_storage addr;
  socklen_t addr_len = 0;
  if (!parse_address(opt, addr, addr_len)) {
    std::fprintf(stderr, "ringbench sink: --address %s: not a numeric IPv4 or IPv6 address\n",
                 opt.address.c_str());
    return 2;
  }
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  // Signals are taken by this thread only; the loop threads inherit the blocked mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<std::unique_ptr<Worker>> workers;
  auto close_all = [&workers] {
    for (auto& x : workers) {
      if (x->listen_fd >= 0) ::close(x->listen_fd);
      if (x->state.file_fd >= 0) ::close(x->state.file_fd);
    }
  };
  for (unsigned i = 0; i < opt.threads; ++i) {
    auto w = std::make_unique<Worker>();
    // The file first: whoever sees the port listening (compare-postfix's relay cells
    // check only that) must not wait behind the zero-fill.
    if (opt.fsync) {
      w->state.fsync = true;
      w->state.group_commit = opt.group_commit;
      w->state.file_size = kStoreFileSize;
      w->state.file_fd = open_store_file(opt.fsync_dir);
      if (w->state.file_fd < 0) {
        std::fprintf(stderr, "ringbench sink: --fsync: cannot create a file in %s: %s\n",
                     opt.fsync_dir.c_str(), std::strerror(errno));
        close_all();
        return 1;
      }
    }
    auto fd = rt::listen_socket(reinterpret_cast<const sockaddr*>(&addr), addr_len);
    if (!fd) {
      std::fprintf(stderr, "ringbench sink: cannot listen on %s port %u: %s\n", opt.address.c_str(),
                   opt.port, fd.error().message.c_str());
      if (w->state.file_fd >= 0) ::close(w->state.file_fd);
      close_all();
      return 1;
    }
    w->listen_fd = *fd;
    workers.push_back(std::move(w));
  }
  for (auto& w : workers) {
    Worker* wp = w.get();
    wp->thread = std::thread([wp, &opt] { worker_main(*wp, opt); });
  }
  std::fprintf(stderr, "sink: listening on %s port %u, %u threads%s\n", opt.address.c_str(),
               opt.port, opt.threads,
               opt.fsync ? (std::string(opt.group_commit ? ", one fdatasync per group in "
                                                         : ", fdatasync per message in ") +
                            opt.fsync_dir)
                               .c_str()
                         : "");

  auto total = [&workers] {
    uint64_t n = 0;
    for (auto& w : workers) n += w->state.count.load(std::memory_order_relaxed);
    return n;
  };
  auto connections = [&workers] {
    uint64_t n = 0;
    for (auto& w : workers) n += w->state.connections.load(std::memory_order_relaxed);
    return n;
  };
  uint64_t last = 0;
  auto last_time = std::chrono::steady_clock::now();
  const auto expect_deadline = last_time + std::chrono::seconds(opt.expect_seconds);
  int rc = 0;
  bool reached = false;
  timespec reached_at{};
  for (;;) {
    // With --expect the count is polled every millisecond: the moment it is reached is
    // the end of an end-to-end run.
    timespec wait = opt.expect ? timespec{0, 1000000} : timespec{1, 0};
    int sig = sigtimedwait(&sigs, nullptr, &wait);
    if (sig == SIGTERM || sig == SIGINT) break;
    if (sig < 0 && errno != EAGAIN && errno != EINTR) {
      std::perror("sink: sigtimedwait");
      break;
    }
    auto now = std::chrono::steady_clock::now();
    if (opt.expect) {
      if (total() >= opt.expect) {
        clock_gettime(CLOCK_REALTIME, &reached_at);
        reached = true;
        break;
      }
      if (now >= expect_deadline) {
        std::fprintf(stderr, "sink: --expect %" PRIu64 ": only %" PRIu64 " after %u s\n",
                     opt.expect, total(), opt.expect_seconds);
        rc = 1;
        break;
      }
    }
    double dt = std::chrono::duration<double>(now - last_time).count();
    if (dt < 0.999) continue;  // woken early (EINTR, --expect polling): whole seconds
    uint64_t n = total();
    if (n != last) {
      std::fprintf(stderr, "sink: total=%" PRIu64 " rate=%.0f/s\n", n,
                   static_cast<double>(n - last) / dt);
      last = n;
    }
    last_time = now;
  }

  // A worker publishes its loop before it runs; wait for that so no stop() is missed.
  for (auto& w : workers) {
    while (!w->loop.load(std::memory_order_acquire) && !w->done.load(std::memory_order_acquire))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (rt::Loop* l = w->loop.load(std::memory_order_acquire)) l->stop();
  }
  for (auto& w : workers) {
    w->thread.join();
    if (w->state.file_fd >= 0) ::close(w->state.file_fd);
  }
  if (reached)
    std::printf("SINK messages=%" PRIu64 " connections=%" PRIu64 " reached_at=%lld.%09ld", total(),
                connections(), static_cast<long long>(reached_at.tv_sec), reached_at.tv_nsec);
  else
    std::printf("SINK messages=%" PRIu64 " connections=%" PRIu64, total(), connections());
  if (opt.fsync) {
    // Joined: the threads' counters are ours to read.
    uint64_t syncs = 0;
    for (auto& w : workers) syncs += w->state.syncs;
    std::printf(" syncs=%" PRIu64, syncs);
  }
  std::printf("\n");
  std::fflush(stdout);
  return rc;
}

}  // namespace ringbench
