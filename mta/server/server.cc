#include "mta/server/server.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>

#include "conf/thread_name.h"
#include "mta/runtime/listener.h"
#include "mta/runtime/loop.h"
#include "mta/server/tls_setup.h"

namespace ringmail::server {

struct Server::Worker {
  struct Bound {
    int fd;
    smtp::Role role;
  };
  std::vector<Bound> fds;  // bound listening sockets, handed to the thread's Loop
  std::thread thread;
  std::atomic<rt::Loop*> loop{nullptr};
  std::unique_ptr<rt::Loop> loop_owner;  // freed by stop() after join: posts never dangle
  std::atomic<bool> done{false};
  smtp::LoopState ls;

  // Posted to the loop when the shutdown timeout has passed.
  struct Force final : rt::Posted {
    Worker* w = nullptr;
    void run() override { w->ls.shutdown(/*force=*/true); }
  } force;
};

namespace {
// Carries a new TLS context to one loop (SIGHUP); runs, swaps, deletes itself there.
struct TlsSwap final : rt::Posted {
  smtp::LoopState* ls;
  rt::TlsContextPtr ctx;
  void run() override {
    ls->tls = std::move(ctx);
    delete this;
  }
};

std::optional<smtp::Role> smtp_role(conf::Protocol p) {
  switch (p) {
    case conf::Protocol::smtp:
      return smtp::Role::smtp;
    case conf::Protocol::submission:
      return smtp::Role::submission;
    case conf::Protocol::submissions:
      return smtp::Role::submissions;
    default:
      return std::nullopt;
  }
}
}  // namespace

Server::Server(const conf::Config& config, queue::Committer& committer, smtp::AuthServices auth)
    : config_(config),
      limits_(config.limits.max_connections, config.limits.max_connections_per_ip),
      ctx_(config, committer, limits_, auth) {}

Result<rt::TlsContextPtr> Server::load_tls(const conf::Config& c) {
  auto files = server::ensure_tls_files(c);
  if (!files) return files.error();
  return rt::make_server_tls(files->cert, files->key);
}

Status Server::reload_tls(const conf::Config& fresh) {
  auto ctx = load_tls(fresh);
  if (!ctx) return ctx.error();
  for (auto& w : workers_) {
    rt::Loop* l = w->loop.load(std::memory_order_acquire);
    if (!l || w->done.load()) continue;
    auto* swap = new TlsSwap;
    swap->ls = &w->ls;
    SSL_CTX_up_ref(ctx->get());
    swap->ctx.reset(ctx->get());
    l->post(swap);
  }
  return ok_status();
}

Server::~Server() {
  stop();
}

Status Server::start() {
  auto tls = load_tls(config_);
  if (!tls) return tls.error();
  unsigned threads = config_.server.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->force.w = w.get();
    SSL_CTX_up_ref(tls->get());
    w->ls.tls.reset(tls->get());
    workers_.push_back(std::move(w));
  }
  size_t served = 0;
  for (const auto& l : config_.listen) {
    auto role = smtp_role(l.protocol);
    if (!role) {
      std::fprintf(stderr, "ringmaild: %s (%s): protocol not served yet, listener skipped\n",
                   l.address.c_str(), std::string(conf::protocol_name(l.protocol)).c_str());
      continue;
    }
    if (auto free =
            rt::check_port_free(reinterpret_cast<const sockaddr*>(&l.sockaddr), l.sockaddr_len);
        !free)
      return Error{free.error().code,
                   "cannot listen on " + l.address + ": " + free.error().message};
    for (auto& w : workers_) {
      auto fd = rt::listen_socket(reinterpret_cast<const sockaddr*>(&l.sockaddr), l.sockaddr_len);
      if (!fd)
        return Error{fd.error().code, "cannot listen on " + l.address + ": " + fd.error().message};
      w->fds.push_back({*fd, *role});
    }
    std::fprintf(stderr, "ringmaild: listening on %s (%s), %u threads\n", l.address.c_str(),
                 std::string(conf::protocol_name(l.protocol)).c_str(), threads);
    ++served;
  }
  if (served == 0)
    return Error{0,
                 "no listener to serve: add a [[listen]] table with protocol = \"smtp\", "
                 "\"submission\" or \"submissions\""};
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker* wp = workers_[i].get();
    wp->thread = std::thread([this, wp, i] {
      name_this_thread("rm-smtp" + std::to_string(i));
      run_worker(*wp);
    });
  }
  return ok_status();
}

void Server::run_worker(Worker& w) {
  // The ring is created on the thread that drives it (IORING_SETUP_SINGLE_ISSUER).
  w.loop_owner = std::make_unique<rt::Loop>();
  rt::Loop& loop = *w.loop_owner;
  std::vector<std::unique_ptr<rt::Listener>> listeners;
  for (auto b : w.fds) {
    listeners.push_back(
        std::make_unique<rt::Listener>(loop, b.fd, [this, &w, &loop, role = b.role](int cfd) {
          loop.spawn(smtp::serve(ctx_, w.ls, loop, cfd, role));
        }));
    listeners.back()->start();
  }
  loop.set_on_stop([&] {
    for (auto& l : listeners) l->close();
    w.ls.shutdown(/*force=*/false);
  });
  w.loop.store(&loop, std::memory_order_release);
  loop.run();
  listeners.clear();
  w.done.store(true, std::memory_order_release);
}

void Server::stop() {
  if (workers_.empty()) return;
  // A worker publishes its loop as it starts; wait for that so stop() cannot miss one.
  for (auto& w : workers_) {
    while (w->thread.joinable() && !w->loop.load() && !w->done.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (rt::Loop* l = w->loop.load()) l->stop();
  }
  auto deadline = std::chrono::steady_clock::now() + config_.limits.shutdown_timeout;
  bool forced = false;
  for (;;) {
    bool all = true;
    for (auto& w : workers_) all = all && (w->done.load() || !w->thread.joinable());
    if (all) break;
    if (!forced && std::chrono::steady_clock::now() >= deadline) {
      std::fprintf(stderr, "ringmaild: shutdown timeout: closing open transactions\n");
      for (auto& w : workers_)
        if (rt::Loop* l = w->loop.load()) l->post(&w->force);
      forced = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  workers_.clear();
}

}  // namespace ringmail::server
