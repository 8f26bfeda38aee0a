// Server: the loop threads of ringmaild and their listeners.
//
// One thread per core (server.threads), each with its own io_uring Loop and its own
// SO_REUSEPORT listener on every configured address; a connection lives and dies on the
// thread that accepted it. Shutdown is two-phase: stop() closes the listeners and tells
// idle sessions to say 421; sessions inside DATA/BDAT finish (and get their 250 or error)
// unless limits.shutdown_timeout passes first, then they are cut off too.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "conf/config.h"
#include "conf/result.h"
#include "mta/runtime/tls.h"
#include "mta/server/conn_limits.h"
#include "mta/smtp/session.h"
#include "queue/committer.h"

namespace ringmail::server {

class Server {
 public:
  Server(const conf::Config& config, queue::Committer& committer, smtp::AuthServices auth);
  ~Server();

  // Loads the TLS certificate (making the self-signed one if needed), binds every listener
  // (errors name the address) and starts the threads.
  Status start();
  // SIGHUP: loads the certificate and key again and hands the new context to every loop.
  // Connections keep running; new handshakes use the new certificate. On error the old
  // one stays.
  // Certificate paths come from `fresh` (the re-read config).
  Status reload_tls(const conf::Config& fresh);
  // Graceful stop; returns when every thread has ended.
  void stop();

  const ConnLimits& limits() const { return limits_; }

 private:
  struct Worker;
  void run_worker(Worker& w);
  static Result<rt::TlsContextPtr> load_tls(const conf::Config& c);

  const conf::Config& config_;
  ConnLimits limits_;
  smtp::Context ctx_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace ringmail::server
