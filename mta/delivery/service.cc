#include "mta/delivery/service.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <functional>
#include <future>
#include <unordered_set>

#include "conf/thread_name.h"
#include "dns/domain.h"
#include "mta/delivery/agent.h"
#include "mta/dns/loop_resolver.h"
#include "mta/runtime/loop.h"

namespace ringmail::delivery {

namespace {

// A job whose outcome could not be written (queue unavailable) is not retried before this.
constexpr int64_t kCooldownSeconds = 30;

std::string destination_for(const conf::Config& c, std::string_view address) {
  size_t at = address.rfind('@');
  std::string domain = at == std::string_view::npos ? "" : dns::lower(address.substr(at + 1));
  // RFC 5321 4.5.1: a bare "postmaster" is ours.
  if (domain.empty()) return std::string(kLocalDestination);
  for (const auto& d : c.relay.local_domains)
    if (d == domain) return std::string(kLocalDestination);
  if (!c.delivery.relayhost.empty()) return std::string(kRelayDestination);
  return domain;
}

// Posted to a delivery loop to run Agent::shutdown() there.
struct StopAgent final : rt::Posted {
  Agent* agent;
  rt::Loop* loop;
  void run() override { loop->spawn(agent->shutdown()); }
};

// Deletes old delivery events in bounded steps, through the committer like every write.
class PruneRequest final : public queue::WriteRequest {
 public:
  PruneRequest(int64_t before_us, std::atomic<bool>& running, std::atomic<bool>& more)
      : before_us_(before_us), running_(running), more_(more) {}
  int apply(queue::Store& store, MDB_txn* txn) override {
    int64_t n = store.prune_events(txn, before_us_, kStep);
    if (n < 0) return static_cast<int>(-n);
    deleted_ = n;
    return 0;
  }
  void log_lines(std::string&) const override {}
  size_t bytes() const override { return 0; }
  void on_done() override {
    more_.store(status && deleted_ == static_cast<int64_t>(kStep));
    running_.store(false);
    delete this;
  }

 private:
  // One step stays a small part of a commit, so accepted mail never waits long on it.
  static constexpr size_t kStep = 5000;
  int64_t before_us_;
  int64_t deleted_ = 0;
  std::atomic<bool>& running_;
  std::atomic<bool>& more_;
};

}  // namespace

std::string ServiceStats::summary() const {
  char buf[200];
  std::snprintf(
      buf, sizeof buf,
      "jobs=%llu outcomes=%llu connections=%llu transactions=%llu per_connection=%.1f",
      static_cast<unsigned long long>(jobs), static_cast<unsigned long long>(outcomes),
      static_cast<unsigned long long>(connections), static_cast<unsigned long long>(transactions),
      connections ? static_cast<double>(transactions) / static_cast<double>(connections) : 0.0);
  return buf;
}

struct Service::Worker {
  std::thread thread;
  std::unique_ptr<rt::Loop> loop;
  std::unique_ptr<Agent> agent;
  StopAgent stop;
};

Service::Service(ServiceDeps deps) : deps_(deps) {}

Service::~Service() {
  stop();
  // Outcome requests the committer finished after the scheduler stopped.
  drain_done();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status Service::start() {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return Error{errno, "eventfd failed"};
  const conf::Config& c = *deps_.config;
  dns::Resolver::Options ro;
  ro.servers = c.dns.servers;
  ro.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(c.dns.timeout);
  ro.tries = static_cast<int>(c.dns.attempts);
  ro.ipv6_first = c.dns.prefer_ipv6;
  ro.cache.max_entries = c.dns.cache_size;
  for (unsigned i = 0; i < std::max(1u, c.delivery.threads); ++i) {
    auto w = std::make_unique<Worker>();
    Worker* wp = w.get();
    std::promise<Status> started;
    std::future<Status> ready = started.get_future();
    wp->thread = std::thread([this, wp, ro, &started, i] {
      name_this_thread("rm-deliver" + std::to_string(i));
      wp->loop = std::make_unique<rt::Loop>();
      auto resolver = dns::LoopResolver::create(*wp->loop, ro);
      if (!resolver) {
        started.set_value(Error{0, "delivery: DNS resolver: " + resolver.error().message});
        return;
      }
      wp->agent = std::make_unique<Agent>(*this, *wp->loop, std::move(*resolver));
      started.set_value(ok_status());
      wp->loop->run();
    });
    Status s = ready.get();
    workers_.push_back(std::move(w));
    if (!s) {
      stop();
      return s;
    }
  }
  scheduler_ = std::thread([this] {
    name_this_thread("rm-schedule");
    run_scheduler();
  });
  return ok_status();
}

void Service::wake() {
  if (wake_fd_ < 0 || wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof one);
  (void)n;  // EAGAIN only when the counter is huge: a wake-up is pending anyway
}

void Service::stop() {
  if (stopping_.exchange(true)) return;
  if (scheduler_.joinable()) {
    wake_pending_.store(false);
    wake();
    scheduler_.join();
  }
  for (auto& w : workers_) {
    if (w->agent) {
      w->stop.agent = w->agent.get();
      w->stop.loop = w->loop.get();
      w->loop->post(&w->stop);
    }
  }
  for (auto& w : workers_)
    if (w->thread.joinable()) w->thread.join();
  for (auto& w : workers_) {
    w->agent.reset();
    w->loop.reset();
  }
  // Outcomes of the cut-short deliveries are still with the committer; their requests
  // come back through job_done() and are freed there or by the caller's committer stop.
}

void Service::job_done(MpscNode* node) {
  if (done_.push(node)) wake();
}

ServiceStats Service::stats() const {
  ServiceStats s;
  s.jobs = jobs_.load();
  s.outcomes = outcomes_.load();
  s.connections = connections_.load();
  s.transactions = transactions_.load();
  return s;
}

size_t Service::agent_for(const std::string& destination) const {
  return std::hash<std::string>{}(destination) % workers_.size();
}

void Service::drain_done() {
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  for (MpscNode* n = done_.take_all(); n;) {
    MpscNode* next = n->mpsc_next;
    auto* req = static_cast<OutcomeRequest*>(static_cast<queue::WriteRequest*>(n));
    auto it = inflight_.find(req->id.value);
    if (it != inflight_.end() && --it->second.jobs == 0) {
      inflight_bytes_ -= it->second.bytes;
      inflight_.erase(it);
    }
    if (!req->status) {
      std::fprintf(stderr, "delivery: outcome for %s not written: %s\n", req->id.str().c_str(),
                   req->status.error().message.c_str());
      cooldown_[req->id.value] = now + kCooldownSeconds;
    }
    outcomes_.fetch_add(1, std::memory_order_relaxed);
    delete req;
    n = next;
  }
  for (auto it = cooldown_.begin(); it != cooldown_.end();)
    it = it->second <= now ? cooldown_.erase(it) : std::next(it);
}

void Service::scan(int64_t now) {
  const conf::Config& c = *deps_.config;
  const size_t cap = c.delivery.max_inflight;
  const uint64_t byte_cap = c.delivery.max_inflight_bytes;
  if (inflight_.size() >= cap || inflight_bytes_ >= byte_cap) return;
  std::vector<queue::QueueId> due;
  std::unordered_set<uint64_t> seen;
  Status s = deps_.store->for_each_due(now, [&](int64_t, queue::QueueId id) {
    if (inflight_.count(id.value) || cooldown_.count(id.value)) return true;
    if (!seen.insert(id.value).second) return true;
    due.push_back(id);
    return inflight_.size() + due.size() < cap;
  });
  if (!s) {
    std::fprintf(stderr, "delivery: cannot read the schedule: %s\n", s.error().message.c_str());
    return;
  }
  for (queue::QueueId id : due) {
    // Bodies are held in memory while their jobs are out: bound the total (the rest
    // stays due in the queue and goes out as earlier jobs finish).
    if (inflight_bytes_ >= byte_cap) break;
    Result<queue::Envelope> env = deps_.store->load(id);
    if (!env) continue;  // deleted meanwhile (ringctl queue delete)
    auto body = std::make_shared<std::string>();
    body->reserve(env->body_size);
    if (!deps_.store->read_body(id, [&](std::string_view part) { body->append(part); })) continue;
    auto dispatch = std::make_shared<Dispatch>();
    dispatch->id = id;
    dispatch->envelope = std::make_shared<const queue::Envelope>(std::move(*env));
    dispatch->body = body;
    std::vector<Job*> jobs;
    const queue::Envelope& e = *dispatch->envelope;
    for (uint32_t i = 0; i < e.recipients.size(); ++i) {
      const queue::Recipient& r = e.recipients[i];
      if (!queue::is_pending(r.state) || r.next_attempt > now) continue;
      std::string dest = destination_for(c, r.address);
      auto j = std::find_if(jobs.begin(), jobs.end(),
                            [&](const Job* x) { return x->destination == dest; });
      if (j == jobs.end()) {
        Job* job = new Job;
        job->dispatch = dispatch;
        job->slot = jobs.size();
        job->destination = std::move(dest);
        jobs.push_back(job);
        j = jobs.end() - 1;
      }
      (*j)->recipients.push_back(i);
    }
    if (jobs.empty()) continue;
    dispatch->slots.resize(jobs.size());
    dispatch->remaining.store(jobs.size(), std::memory_order_relaxed);
    // One outcome write per message, whatever the number of destinations.
    inflight_[id.value] = {1, body->size()};
    inflight_bytes_ += body->size();
    jobs_.fetch_add(jobs.size(), std::memory_order_relaxed);
    for (Job* job : jobs) {
      Worker& w = *workers_[agent_for(job->destination)];
      job->agent = w.agent.get();
      w.loop->post(job);
    }
  }
}

void Service::maybe_prune(int64_t now) {
  int64_t keep = deps_.config->delivery.event_retention.count();
  if (keep == 0 || prune_running_.load()) return;
  // Once a minute, or at once while a backlog is being worked off.
  if (now < next_prune_ && !prune_more_.load()) return;
  next_prune_ = now + 60;
  prune_running_.store(true);
  deps_.committer->submit(new PruneRequest((now - keep) * 1000000, prune_running_, prune_more_));
}

void Service::run_scheduler() {
  int64_t last_scan = 0;
  while (!stopping_.load(std::memory_order_acquire)) {
    pollfd p{wake_fd_, POLLIN, 0};
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    // At least once a second (at the turn of each second, as the schedule is kept in
    // seconds): retries come due, ringctl flushes, other writers.
    int timeout_ms = ts.tv_sec > last_scan ? 0 : static_cast<int>(1000 - ts.tv_nsec / 1000000) + 1;
    int r = ::poll(&p, 1, timeout_ms);
    if (r > 0) {
      uint64_t v;
      ssize_t n = ::read(wake_fd_, &v, sizeof v);
      (void)n;
      wake_pending_.store(false, std::memory_order_release);
    }
    if (stopping_.load(std::memory_order_acquire)) break;
    drain_done();
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    scan(now);
    maybe_prune(now);
    last_scan = now;
  }
}

}  // namespace ringmail::delivery
