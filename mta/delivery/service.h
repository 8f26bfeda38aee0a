// Delivery service: takes due recipients out of the queue and delivers them.
//
// It owns the delivery threads (delivery.threads, each with its own io_uring Loop, DNS
// resolver and Agent) and one scheduler thread. The scheduler reads the queue's schedule
// index (woken by the committer after new mail, and at least once a second so retries,
// `ringctl queue flush` and restarts are noticed), loads each due message once, splits
// its due recipients by destination (recipient domain, the relayhost, or "local" for
// relay.local_domains) and posts one Job per destination to the Agent that owns that
// destination (a hash picks it, so per-destination limits need no locks). It keeps the
// ids of messages with jobs out in memory, so nothing is sent twice while in flight;
// after a crash the schedule simply says they are due again (at least once).
//
// The Agent (agent.h) delivers and hands the result to outcome.h's decide(); the new
// recipient states, events and notices go to disk through the Committer in one write
// request, and only after that commit does the scheduler forget the job. The service
// never parses SMTP itself, never decides retry times (outcome.h) and never writes the
// queue outside the committer.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "conf/config.h"
#include "conf/mpsc.h"
#include "conf/result.h"
#include "queue/committer.h"
#include "queue/store.h"

namespace ringmail::auth {
class UserDb;
}
namespace ringmail::store {
class MailStore;
}
namespace ringmail::rt {
class Loop;
class WorkerPool;
}  // namespace ringmail::rt

namespace ringmail::delivery {

class Agent;

struct ServiceDeps {
  const conf::Config* config = nullptr;
  queue::Store* store = nullptr;
  queue::Committer* committer = nullptr;
  auth::UserDb* users = nullptr;      // who the local recipients are
  store::MailStore* mail = nullptr;   // where their mail goes
  rt::WorkerPool* workers = nullptr;  // blocking mail store writes
};

struct ServiceStats {
  uint64_t jobs = 0;          // jobs handed to agents
  uint64_t outcomes = 0;      // outcome writes committed
  uint64_t connections = 0;   // outbound SMTP connections that greeted
  uint64_t transactions = 0;  // messages sent over them (delivered or not)
  std::string summary() const;
};

class Service {
 public:
  explicit Service(ServiceDeps deps);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  Status start();
  // Any thread: something may be due now (new mail committed, a flush).
  void wake();
  // Stops taking work, cuts open deliveries short (their recipients stay due in the
  // queue), joins every thread. The committer must still be running.
  void stop();
  ServiceStats stats() const;

  // --- for agents (their loop threads) --------------------------------------------
  // A job's outcome request was committed (or failed); `node` is handed back for freeing.
  void job_done(MpscNode* node);
  const conf::Config& config() const { return *deps_.config; }
  const ServiceDeps& deps() const { return deps_; }
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> transactions_{0};

 private:
  struct Worker;
  void run_scheduler();
  void drain_done();
  void scan(int64_t now);
  size_t agent_for(const std::string& destination) const;

  ServiceDeps deps_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::thread scheduler_;
  int wake_fd_ = -1;
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> stopping_{false};
  MpscStack done_;
  // Scheduler thread only: jobs out per message id, and ids whose last outcome could not
  // be written (retried after a pause rather than every second).
  struct InFlight {
    uint32_t jobs = 0;
    uint64_t bytes = 0;
  };
  std::unordered_map<uint64_t, InFlight> inflight_;
  uint64_t inflight_bytes_ = 0;  // message bodies held for jobs out
  std::unordered_map<uint64_t, int64_t> cooldown_;
  // Event pruning (delivery.event_retention): one request at a time, from this thread.
  void maybe_prune(int64_t now);
  std::atomic<bool> prune_running_{false};
  int64_t next_prune_ = 0;
  std::atomic<bool> prune_more_{false};
  std::atomic<uint64_t> jobs_{0};
  std::atomic<uint64_t> outcomes_{0};
};

}  // namespace ringmail::delivery
