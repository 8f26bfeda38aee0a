// Agent: the deliveries of one delivery thread.
//
// It owns, on its loop, the destinations the scheduler hashed to it: per destination a
// queue of jobs, its open connections (at most max_connections; each carries up to
// max_messages_per_connection messages, reusing the connection across messages and
// waiting a moment for more before QUIT), and its rate limit. A connection resolves the
// route (MX hosts in preference order with equal preferences shuffled, implicit MX, null
// MX; or the relayhost), tries each address of each host until one greets, applies the
// TLS policy (none, opportunistic, required) and AUTH PLAIN to a relayhost, and sends
// with SmtpClient. Local destinations go to the MailStore on a worker thread. Every job
// ends in outcome.h's decide() and one OutcomeRequest to the committer. It never reads
// the queue and never decides retry times or notices itself.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "conf/config.h"
#include "mta/delivery/outcome.h"
#include "mta/delivery/smtp_client.h"
#include "mta/dns/loop_resolver.h"
#include "mta/runtime/loop.h"
#include "mta/runtime/task.h"
#include "mta/runtime/tls.h"
#include "queue/committer.h"

namespace ringmail::rt {
class Sleep;
}

namespace ringmail::delivery {

class Service;
class Agent;

// Destination keys other than a domain.
inline constexpr std::string_view kLocalDestination = "local:";
inline constexpr std::string_view kRelayDestination = "relayhost:";

// One pass over a message's due recipients: one Job per destination, possibly on
// different agent threads. Each job leaves its results in its own slot; the job that
// finishes last decides for the whole message, so one notice of each kind covers all its
// recipients (RFC 3464 per message, as Postfix's bounce daemon does per queue file pass)
// and the message gets one outcome write.
struct Dispatch {
  queue::QueueId id;
  std::shared_ptr<const queue::Envelope> envelope;
  std::shared_ptr<const std::string> body;
  std::vector<std::vector<RecipientResult>> slots;  // one per job
  std::atomic<size_t> remaining{0};
};

// Due recipients of one message for one destination.
struct Job final : rt::Posted {
  std::shared_ptr<Dispatch> dispatch;
  size_t slot = 0;
  std::vector<uint32_t> recipients;  // indexes into envelope->recipients
  std::string destination;
  Agent* agent = nullptr;
  void run() override;
  const queue::Envelope& envelope() const { return *dispatch->envelope; }
  const std::string& body() const { return *dispatch->body; }
};

// The decision about one job, written by the committer; then back to the scheduler.
class OutcomeRequest final : public queue::WriteRequest {
 public:
  queue::QueueId id;
  Decision decision;
  Service* service = nullptr;

  int apply(queue::Store& store, MDB_txn* txn) override;
  void log_lines(std::string& out) const override;
  size_t bytes() const override;
  void on_done() override;
};

class Agent {
 public:
  Agent(Service& service, rt::Loop& loop, std::unique_ptr<dns::LoopResolver> resolver);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Loop thread: a new job from the scheduler.
  void accept(Job* job);
  // Loop thread: stop taking jobs, cut connections short, close the resolver, stop the loop.
  rt::Task<void> shutdown();

 private:
  struct Destination {
    std::string key;
    conf::Config::DestinationPolicy policy;
    std::deque<Job*> queue;
    unsigned connections = 0;
    unsigned idle = 0;                  // connections waiting for another job
    std::vector<rt::Sleep*> idlers;     // their waits: a new job cuts one short
    rt::Clock::time_point next_send{};  // rate limit
  };
  struct Target {
    std::string host;  // MX host name (or the relayhost)
    dns::Address address;
    uint16_t port = 25;
  };

  rt::Task<void> remote(std::shared_ptr<Destination> d);
  rt::Task<void> local(std::shared_ptr<Destination> d);
  // The addresses to try, in order; an error is the Response every recipient gets.
  rt::Task<Result<std::vector<Target>>> route(const Destination& d);
  // A connected, greeted, TLS'd (per policy), authenticated client, or why not;
  // `permanent` says whether that is a bounce (every host refused for good).
  rt::Task<Result<std::unique_ptr<SmtpClient>>> open(const Destination& d,
                                                     const std::vector<Target>& targets,
                                                     Target& used, bool& permanent);
  rt::Task<std::vector<RecipientResult>> send(SmtpClient& c, const Destination& d, const Job& job,
                                              const Target& t);
  rt::Task<void> pace(Destination& d);
  rt::Task<Job*> next_job(Destination& d);
  Job* take(Destination& d);
  // Every recipient of `job` gets `r`.
  void finish_all(Job* job, const Response& r, const std::string& mx = {},
                  const std::string& address = {});
  // Records the job's results (none: not attempted, e.g. at shutdown: those recipients
  // stay due) and frees it; the last job of its dispatch submits the outcome.
  void finish(Job* job, std::vector<RecipientResult> results);
  void release(const std::shared_ptr<Destination>& d);
  Timeouts timeouts() const;

  Service& service_;
  rt::Loop& loop_;
  std::unique_ptr<dns::LoopResolver> resolver_;
  rt::TlsContextPtr tls_;
  RetryPolicy retry_;  // from the config, once (decide() runs per message)
  std::unordered_map<std::string, std::shared_ptr<Destination>> destinations_;
  std::unordered_set<SmtpClient*> clients_;  // open now: shutdown() cuts them
  bool stopping_ = false;
};

}  // namespace ringmail::delivery
