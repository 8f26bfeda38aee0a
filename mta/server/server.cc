#include "mta/server/server.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "mta/runtime/listener.h"
#include "mta/runtime/loop.h"

namespace ringmail::server {

struct Server::Worker {
  std::vector<int> smtp_fds;  // bound listening sockets, handed to the thread's Loop
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

Server::Server(const conf::Config& config, queue::Committer& committer)
    : config_(config),
      limits_(config.limits.max_connections, config.limits.max_connections_per_ip),
      ctx_(config, committer, limits_) {}

Server::~Server() {
  stop();
}

Status Server::start() {
  unsigned threads = config_.server.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->force.w = w.get();
    workers_.push_back(std::move(w));
  }
  size_t served = 0;
  for (const auto& l : config_.listen) {
    if (l.protocol != conf::Protocol::smtp) {
      std::fprintf(stderr, "ringmaild: %s (%s): protocol not served yet, listener skipped\n",
                   l.address.c_str(), std::string(conf::protocol_name(l.protocol)).c_str());
      continue;
    }
    for (auto& w : workers_) {
      auto fd = rt::listen_socket(reinterpret_cast<const sockaddr*>(&l.sockaddr), l.sockaddr_len);
      if (!fd)
        return Error{fd.error().code, "cannot listen on " + l.address + ": " + fd.error().message};
      w->smtp_fds.push_back(*fd);
    }
    std::fprintf(stderr, "ringmaild: listening on %s (smtp), %u threads\n", l.address.c_str(),
                 threads);
    ++served;
  }
  if (served == 0)
    return Error{0, "no listener to serve: add a [[listen]] table with protocol = \"smtp\""};
  for (auto& w : workers_) {
    Worker* wp = w.get();
    wp->thread = std::thread([this, wp] { run_worker(*wp); });
  }
  return ok_status();
}

void Server::run_worker(Worker& w) {
  // The ring is created on the thread that drives it (IORING_SETUP_SINGLE_ISSUER).
  w.loop_owner = std::make_unique<rt::Loop>();
  rt::Loop& loop = *w.loop_owner;
  std::vector<std::unique_ptr<rt::Listener>> listeners;
  for (int fd : w.smtp_fds) {
    listeners.push_back(std::make_unique<rt::Listener>(
        loop, fd, [this, &w, &loop](int cfd) { loop.spawn(smtp::serve(ctx_, w.ls, loop, cfd)); }));
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
