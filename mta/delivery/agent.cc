#include "mta/delivery/agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "auth/address.h"
#include "auth/user_db.h"
#include "dns/domain.h"
#include "mta/delivery/dsn.h"
#include "mta/delivery/service.h"
#include "mta/runtime/ops.h"
#include "mta/runtime/worker_pool.h"
#include "mta/store/mail_store.h"

namespace ringmail::delivery {

namespace {

// route()'s Error::code when every address is one of ours (beside dns::FailureCode).
constexpr int kLoopsBack = 100;

// How long a connection with nothing left to send waits for another job to the same
// destination before QUIT: long enough to catch the next message of a burst, short
// enough not to hold a remote server's connection slot idle.
constexpr auto kIdleWait = std::chrono::milliseconds(1000);

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Response local_response(Outcome o, std::string status, std::string text) {
  Response r;
  r.outcome = o;
  r.code = 0;
  r.status = std::move(status);
  r.text = std::move(text);
  return r;
}

// A failed greet/connect/starttls as the recipients' Response.
Response from_error(const Error& e, std::string_view when) {
  Response r;
  r.outcome = outcome_of(e);
  r.code = e.code >= 200 && e.code < 600 ? e.code : 0;
  r.status = r.outcome == Outcome::failed ? "5.0.0" : "4.4.2";
  r.text = std::string(when) + ": " + e.message;
  return r;
}

socklen_t to_sockaddr(const dns::Address& a, uint16_t port, sockaddr_storage& ss) {
  std::memset(&ss, 0, sizeof ss);
  if (a.family == AF_INET6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    std::memcpy(&s6->sin6_addr, a.bytes.data(), 16);
    return sizeof(sockaddr_in6);
  }
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  s4->sin_family = AF_INET;
  s4->sin_port = htons(port);
  std::memcpy(&s4->sin_addr, a.bytes.data(), 4);
  return sizeof(sockaddr_in);
}

// "host:port", "a.b.c.d:port", "[v6]:port" (validated by the config loader).
void split_hostport(std::string_view hp, std::string& host, uint16_t& port) {
  size_t colon = hp.rfind(':');
  host = std::string(hp.substr(0, colon));
  port = static_cast<uint16_t>(std::stoi(std::string(hp.substr(colon + 1))));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
}

std::optional<dns::Address> ip_literal(const std::string& host) {
  dns::Address a;
  if (inet_pton(AF_INET, host.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (inet_pton(AF_INET6, host.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return std::nullopt;
}

// RFC 5321 6.3: a message that has passed this many MTAs is looping; Postfix's
// hopcount_limit is 50, sendmail's MaxHopCount 25. Ours is generous, never endless.
constexpr int kMaxHops = 100;

// Received: fields in the header section (case-insensitive, at line starts).
int hop_count(std::string_view message) {
  std::string_view head = header_section(message);
  int n = 0;
  size_t pos = 0;
  while (pos < head.size()) {
    size_t eol = head.find('\n', pos);
    std::string_view line =
        head.substr(pos, eol == std::string_view::npos ? head.size() - pos : eol - pos);
    if (line.size() >= 9 && strncasecmp(line.data(), "received:", 9) == 0) ++n;
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  return n;
}

bool is_local_address(const dns::Address& a) {
  if (a.family == AF_INET)
    return a.bytes[0] == 127 || (a.bytes[0] | a.bytes[1] | a.bytes[2] | a.bytes[3]) == 0;
  static const uint8_t loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return std::memcmp(a.bytes.data(), loop6, 16) == 0;
}

// Whether (address, port) is one of our own SMTP listeners: delivering there would hand
// the message back to ourselves ("mail loops back to myself").
bool is_our_listener(const conf::Config& c, const dns::Address& a, uint16_t port) {
  for (const conf::Listen& l : c.listen) {
    if (l.protocol != conf::Protocol::smtp && l.protocol != conf::Protocol::submission) continue;
    if (l.sockaddr.ss_family == AF_INET && a.family == AF_INET) {
      const auto& s4 = reinterpret_cast<const sockaddr_in&>(l.sockaddr);
      if (ntohs(s4.sin_port) != port) continue;
      if (s4.sin_addr.s_addr == INADDR_ANY ? is_local_address(a)
                                           : std::memcmp(&s4.sin_addr, a.bytes.data(), 4) == 0)
        return true;
    } else if (l.sockaddr.ss_family == AF_INET6) {
      const auto& s6 = reinterpret_cast<const sockaddr_in6&>(l.sockaddr);
      if (ntohs(s6.sin6_port) != port) continue;
      static const uint8_t any[16] = {};
      bool wildcard = std::memcmp(&s6.sin6_addr, any, 16) == 0;
      if (wildcard ? is_local_address(a)
                   : a.family == AF_INET6 && std::memcmp(&s6.sin6_addr, a.bytes.data(), 16) == 0)
        return true;
    }
  }
  return false;
}

}  // namespace

// --- Job / OutcomeRequest --------------------------------------------------------------

void Job::run() {
  agent->accept(this);
}

int OutcomeRequest::apply(queue::Store& store, MDB_txn* txn) {
  for (const Notice& n : decision.notices)
    if (int rc = store.put_message(txn, n.id, n.envelope, n.body)) return rc;
  return store.update_recipients(txn, id, decision.changes, decision.events);
}

void OutcomeRequest::log_lines(std::string& out) const {
  for (const auto& e : decision.events) {
    out += e.json;
    out += '\n';
  }
  for (const Notice& n : decision.notices)
    for (const auto& r : n.envelope.recipients) {
      out += queue::event_json("received", n.envelope.arrival_us, n.id, n.envelope, &r);
      out += '\n';
    }
}

size_t OutcomeRequest::bytes() const {
  size_t b = 0;
  for (const Notice& n : decision.notices) b += n.body.size();
  for (const auto& e : decision.events) b += e.json.size();
  return b;
}

void OutcomeRequest::on_done() {
  service->job_done(this);
}

// --- Agent -----------------------------------------------------------------------------

Agent::Agent(Service& service, rt::Loop& loop, std::unique_ptr<dns::LoopResolver> resolver)
    : service_(service), loop_(loop), resolver_(std::move(resolver)), tls_(rt::make_client_tls()) {
  const auto& d = service_.config().delivery;
  retry_.intervals = d.retry_intervals;
  retry_.max_lifetime = d.max_lifetime;
  retry_.delay_notice_after = d.delay_notice_after;
}

Agent::~Agent() = default;

Timeouts Agent::timeouts() const {
  const auto& d = service_.config().delivery;
  Timeouts t;
  t.connect = d.connect_timeout;
  t.greeting = d.command_timeout;
  t.command = d.command_timeout;
  t.mail = d.command_timeout;
  t.rcpt = d.command_timeout;
  t.data_init = std::min<rt::Duration>(d.command_timeout, std::chrono::minutes(2));
  t.data_block = std::min<rt::Duration>(d.command_timeout, std::chrono::minutes(3));
  t.data_final = d.data_timeout;
  return t;
}

void Agent::accept(Job* job) {
  if (stopping_) {
    finish(job, {});  // not attempted: still due in the queue, the next start sends it
    return;
  }
  auto& slot = destinations_[job->destination];
  if (!slot) {
    slot = std::make_shared<Destination>();
    slot->key = job->destination;
    const auto& cfg = service_.config().delivery;
    slot->policy = job->destination == kLocalDestination || job->destination == kRelayDestination
                       ? cfg.defaults
                       : cfg.policy_for(job->destination);
  }
  std::shared_ptr<Destination> d = slot;
  d->queue.push_back(job);
  // An idle connection to this destination takes it at once (its wait is cancelled).
  if (!d->idlers.empty()) {
    rt::Sleep* s = d->idlers.back();
    d->idlers.pop_back();
    s->cancel();
  }
  // A new connection only when the waiting jobs outnumber the connections idle for work.
  if (d->connections < d->policy.max_connections && d->queue.size() > d->idle) {
    d->connections++;
    if (d->key == kLocalDestination)
      loop_.spawn(local(d));
    else
      loop_.spawn(remote(d));
  }
}

Job* Agent::take(Destination& d) {
  if (d.queue.empty() || stopping_) return nullptr;
  Job* j = d.queue.front();
  d.queue.pop_front();
  return j;
}

rt::Task<Job*> Agent::next_job(Destination& d) {
  Job* j = take(d);
  if (j || stopping_) co_return j;
  d.idle++;
  auto deadline = rt::Clock::now() + kIdleWait;
  for (auto now = rt::Clock::now(); !stopping_ && d.queue.empty() && now < deadline;
       now = rt::Clock::now()) {
    // Until the deadline, unless accept() (a new job) or shutdown() cancels the wait.
    rt::Sleep nap(loop_, deadline - now);
    d.idlers.push_back(&nap);
    co_await nap;
    std::erase(d.idlers, &nap);  // still listed when the time ran out
  }
  d.idle--;
  co_return take(d);
}

void Agent::release(const std::shared_ptr<Destination>& d) {
  d->connections--;
  if (d->connections == 0 && d->queue.empty()) {
    auto it = destinations_.find(d->key);
    if (it != destinations_.end() && it->second == d) destinations_.erase(it);
  } else if (d->connections == 0 && !stopping_) {
    // Jobs arrived while the last connection was closing: start again.
    d->connections++;
    if (d->key == kLocalDestination)
      loop_.spawn(local(d));
    else
      loop_.spawn(remote(d));
  }
}

rt::Task<void> Agent::pace(Destination& d) {
  uint32_t rate = d.policy.max_messages_per_minute;
  if (rate == 0) co_return;
  auto interval = std::chrono::duration_cast<rt::Duration>(std::chrono::minutes(1)) / rate;
  auto now = rt::Clock::now();
  // In steps, so a shutdown is not held up by a slow rate (one a minute = 60 s waits).
  while (d.next_send > now && !stopping_) {
    rt::Sleep wait(loop_,
                   std::min<rt::Duration>(d.next_send - now, std::chrono::milliseconds(100)));
    co_await wait;
    now = rt::Clock::now();
  }
  d.next_send = std::max(now, d.next_send) + interval;
}

void Agent::finish_all(Job* job, const Response& r, const std::string& mx,
                       const std::string& address) {
  std::vector<RecipientResult> results;
  for (uint32_t i : job->recipients) {
    RecipientResult rr;
    rr.index = i;
    rr.response = r;
    rr.mx = mx;
    rr.address = address;
    results.push_back(std::move(rr));
  }
  finish(job, std::move(results));
}

void Agent::finish(Job* job, std::vector<RecipientResult> results) {
  std::shared_ptr<Dispatch> dispatch = std::move(job->dispatch);
  dispatch->slots[job->slot] = std::move(results);
  delete job;
  // acq_rel: the last job sees every other job's slot.
  if (dispatch->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  std::vector<RecipientResult> all;
  for (auto& slot : dispatch->slots)
    for (auto& r : slot) all.push_back(std::move(r));
  const auto& cfg = service_.config();
  DecideParams p;
  p.hostname = cfg.server.hostname;
  p.now_us = now_us();
  p.new_id = [] { return queue::next_queue_id(); };
  auto* req = new OutcomeRequest;
  req->id = dispatch->id;
  req->service = &service_;
  req->decision = decide(dispatch->id, *dispatch->envelope, *dispatch->body, all, retry_, p);
  service_.deps().committer->submit(req);
}

rt::Task<Result<std::vector<Agent::Target>>> Agent::route(const Destination& d) {
  std::vector<Target> out;
  const auto& cfg = service_.config().delivery;
  std::vector<std::string> hosts;
  uint16_t port = cfg.smtp_port;
  if (d.key == kRelayDestination) {
    std::string host;
    split_hostport(cfg.relayhost, host, port);
    if (auto ip = ip_literal(host))
      out.push_back({host, *ip, port});
    else
      hosts.push_back(host);
  } else if (d.key.size() > 2 && d.key.front() == '[' && d.key.back() == ']') {
    // An address literal (RFC 5321 4.1.3): no MX lookup, that host directly.
    std::string lit = d.key.substr(1, d.key.size() - 2);
    if (lit.rfind("ipv6:", 0) == 0) lit = lit.substr(5);
    auto ip = ip_literal(lit);
    if (!ip) co_return Error{dns::kNxDomain, "bad address literal " + d.key};
    out.push_back({lit, *ip, port});
  } else {
    // A named awaiter, not a temporary inside co_await (GCC 12: see runtime notes).
    auto lookup = resolver_->mx(d.key);
    Result<dns::MxAnswer> mx = co_await lookup;
    if (!mx) {
      int code = mx.error().code;
      co_return Error{code, mx.error().message};
    }
    for (const auto& h : mx->hosts) hosts.push_back(h.name);
  }
  Error last{dns::kTemporary, "no address for any mail exchanger"};
  for (const std::string& h : hosts) {
    if (stopping_) break;
    auto lookup = resolver_->addresses(h);
    Result<std::vector<dns::Address>> addrs = co_await lookup;
    if (!addrs) {
      last = Error{dns::kTemporary, h + ": " + addrs.error().message};
      continue;
    }
    for (const auto& a : *addrs) out.push_back({h, a, port});
  }
  // Addresses that are our own listeners would loop the mail back to us.
  size_t before = out.size();
  std::erase_if(
      out, [&](const Target& t) { return is_our_listener(service_.config(), t.address, t.port); });
  if (out.empty() && before > 0)
    co_return Error{kLoopsBack, "mail for " + d.key + " loops back to myself"};
  if (out.empty()) co_return last;
  co_return out;
}

rt::Task<Result<std::unique_ptr<SmtpClient>>> Agent::open(const Destination& d,
                                                          const std::vector<Target>& targets,
                                                          Target& used, bool& permanent) {
  const auto& cfg = service_.config();
  Error last{0, "no address to try"};
  bool all_permanent = true;
  for (const Target& t : targets) {
    if (stopping_) break;
    used = t;  // on failure: the last one tried, for the log and the DSN
    sockaddr_storage ss;
    socklen_t len = to_sockaddr(t.address, t.port, ss);
    Result<int> fd = co_await connect_to(loop_, reinterpret_cast<sockaddr*>(&ss), len,
                                         cfg.delivery.connect_timeout);
    if (!fd) {
      last = Error{0, t.host + "[" + t.address.text() + "]: " + fd.error().message};
      all_permanent = false;
      continue;
    }
    auto client = std::make_unique<SmtpClient>(loop_, *fd, timeouts());
    clients_.insert(client.get());
    bool auth_failed = false;
    Result<Capabilities> caps = co_await client->greet(cfg.server.hostname);
    if (caps.ok() && d.policy.tls != conf::Config::TlsPolicy::none && caps->starttls) {
      Status s = co_await client->starttls(tls_.get(), t.host);
      if (!s.ok()) {
        if (d.policy.tls == conf::Config::TlsPolicy::required || !client->usable()) {
          caps = Error{s.error().code, "STARTTLS: " + s.error().message};
        }
        // Opportunistic TLS refused before the handshake: carry on in plaintext.
      }
    } else if (caps.ok() && d.policy.tls == conf::Config::TlsPolicy::required) {
      caps = Error{0, "TLS required by policy but STARTTLS not offered"};
    }
    if (caps.ok() && d.key == kRelayDestination && !cfg.delivery.relayhost_username.empty()) {
      // A password goes in plaintext only where the operator set tls = "none".
      Status a = co_await client->auth_plain(cfg.delivery.relayhost_username,
                                             cfg.delivery.relayhost_password,
                                             d.policy.tls == conf::Config::TlsPolicy::none);
      // A refused password is the operator's mistake, not the message's: defer (as
      // Postfix's smtp_sasl_auth_soft_bounce) so fixing the config delivers the mail.
      if (!a.ok()) {
        caps = Error{a.error().code, "AUTH: " + a.error().message};
        auth_failed = true;
      }
    }
    if (!caps.ok()) {
      last =
          Error{caps.error().code, t.host + "[" + t.address.text() + "]: " + caps.error().message};
      if (outcome_of(caps.error()) != Outcome::failed || auth_failed) all_permanent = false;
      co_await client->quit();
      clients_.erase(client.get());
      continue;
    }
    used = t;
    service_.connections_.fetch_add(1, std::memory_order_relaxed);
    co_return client;
  }
  // Only when every host refused for good (5xx greetings) is it a bounce.
  permanent = all_permanent && last.code >= 500;
  co_return last;
}

rt::Task<std::vector<RecipientResult>> Agent::send(SmtpClient& c, const Destination& d,
                                                   const Job& job, const Target& t) {
  std::vector<RecipientResult> results;
  const queue::Envelope& env = job.envelope();
  MailParams mail = mail_params(env);
  size_t per = std::max<uint32_t>(1, d.policy.max_recipients_per_transaction);
  std::string address = t.address.text();
  for (size_t start = 0; start < job.recipients.size(); start += per) {
    size_t end = std::min(job.recipients.size(), start + per);
    std::vector<RcptParams> rcpts;
    for (size_t i = start; i < end; ++i)
      rcpts.push_back(rcpt_params(env.recipients[job.recipients[i]]));
    TransactionResult tr = co_await c.send(mail, rcpts, job.body());
    service_.transactions_.fetch_add(1, std::memory_order_relaxed);
    for (size_t i = start; i < end; ++i) {
      RecipientResult rr;
      rr.index = job.recipients[i];
      rr.response = tr.recipients[i - start];
      rr.mx = t.host;
      rr.address = address;
      rr.dsn_passed_on = tr.dsn_passed_on;
      results.push_back(std::move(rr));
    }
  }
  co_return results;
}

rt::Task<void> Agent::remote(std::shared_ptr<Destination> d) {
  Job* job = take(*d);
  while (job) {
    Result<std::vector<Target>> targets = co_await route(*d);
    if (!targets) {
      int code = targets.error().code;
      Response r =
          code == kLoopsBack
              ? local_response(Outcome::failed, "5.4.6", targets.error().message)
              : local_response(dns::is_permanent(code) ? Outcome::failed : Outcome::deferred,
                               dns::enhanced_status(code), "DNS: " + targets.error().message);
      // Every job waiting for this destination would get the same answer.
      finish_all(job, r);
      while ((job = take(*d))) finish_all(job, r);
      break;
    }
    Target used;
    bool permanent = false;
    Result<std::unique_ptr<SmtpClient>> opened = co_await open(*d, *targets, used, permanent);
    if (!opened) {
      Response r = from_error(opened.error(), "no connection");
      r.outcome = permanent ? Outcome::failed : Outcome::deferred;
      r.status = permanent ? "5.4.0" : "4.4.1";
      std::string address = used.address.family ? used.address.text() : std::string();
      finish_all(job, r, used.host, address);
      // The destination is unreachable now: the rest of its queue waits for a retry too.
      while ((job = take(*d))) finish_all(job, r, used.host, address);
      break;
    }
    std::unique_ptr<SmtpClient> client = std::move(*opened);
    uint32_t sent = 0;
    while (job) {
      if (hop_count(job->body()) > kMaxHops) {
        finish_all(job, local_response(Outcome::failed, "5.4.6",
                                       "too many hops (" + std::to_string(kMaxHops) +
                                           " Received: fields): mail loop"));
        job = co_await next_job(*d);
        continue;
      }
      co_await pace(*d);
      std::vector<RecipientResult> results = co_await send(*client, *d, *job, used);
      finish(job, std::move(results));
      job = nullptr;
      if (!client->usable() || ++sent >= d->policy.max_messages_per_connection || stopping_) break;
      job = co_await next_job(*d);
      // The server may have closed the connection while it waited: then the job goes
      // out on a fresh one (below) instead of failing on this one.
      if (job && !client->idle_ok()) break;
    }
    co_await client->quit();
    clients_.erase(client.get());
    client.reset();
    if (!job) job = take(*d);  // more arrived: a fresh connection for them
  }
  release(d);
}

rt::Task<void> Agent::local(std::shared_ptr<Destination> d) {
  const ServiceDeps& deps = service_.deps();
  while (Job* job = take(*d)) {
    if (!deps.users || !deps.mail || !deps.workers) {
      finish_all(job, local_response(Outcome::deferred, "4.3.0", "no mailbox store"));
      continue;
    }
    auto work = [&deps, job]() {
      std::vector<RecipientResult> results;
      int64_t now = now_us() / 1000000;
      // One copy per mailbox: a user named twice (directly and through an alias) gets
      // the message once, as Postfix's duplicate elimination does.
      std::vector<std::pair<std::string, Response>> done;
      for (uint32_t i : job->recipients) {
        const std::string& addr = job->envelope().recipients[i].address;
        RecipientResult rr;
        rr.index = i;
        rr.local = true;
        rr.mx = "local";
        auto owner = deps.users->find_owner(addr);
        // The mailbox (account) and its quota; empty when there is none.
        std::string account;
        uint64_t quota = 0;
        if (owner && owner->has_value()) {
          account = (*owner)->address;
          quota = (*owner)->quota;
        } else if (owner && auth::is_postmaster(addr)) {
          // RFC 5321 4.5.1: postmaster must work for every domain we take mail for.
          // Without a user or alias of that name it gets a mailbox of its own
          // (`ringctl mailbox list postmaster@...` reads it) rather than a bounce.
          account = dns::lower(addr);
        }
        if (!owner) {
          rr.response =
              local_response(Outcome::deferred, "4.3.0", "user database: " + owner.error().message);
        } else if (account.empty()) {
          rr.response = local_response(Outcome::failed, "5.1.1",
                                       "550 5.1.1 <" + addr + ">: no such user here");
          rr.response.code = 550;
        } else {
          auto same = std::find_if(done.begin(), done.end(),
                                   [&](const auto& d) { return d.first == account; });
          if (same != done.end()) {
            rr.response = same->second;
          } else {
            // RFC 5321 4.4: the final delivery adds Return-Path; Delivered-To lets the
            // user (and loop detection) see which address brought it here.
            std::string message = "Return-Path: <" + job->envelope().sender + ">\r\n" +
                                  "Delivered-To: " + account + "\r\n" + job->body();
            Result<uint32_t> uid = deps.mail->deliver(account, message, quota, now);
            if (uid) {
              rr.response = local_response(
                  Outcome::delivered, "2.0.0",
                  "delivered to mailbox " + account + " uid " + std::to_string(*uid));
            } else if (uid.error().code == 452) {
              rr.response = local_response(Outcome::deferred, "4.2.2", uid.error().message);
            } else {
              rr.response = local_response(Outcome::deferred, "4.3.0", uid.error().message);
            }
            done.emplace_back(account, rr.response);
          }
        }
        results.push_back(std::move(rr));
      }
      return results;
    };
    auto op = deps.workers->run(loop_, work);
    std::vector<RecipientResult> results = co_await op;
    finish(job, std::move(results));
  }
  release(d);
}

rt::Task<void> Agent::shutdown() {
  stopping_ = true;
  for (auto& [key, d] : destinations_) {
    for (rt::Sleep* s : d->idlers) s->cancel();  // idle connections QUIT now
    d->idlers.clear();
    while (!d->queue.empty()) {
      finish(d->queue.front(), {});  // not attempted: stays due
      d->queue.pop_front();
    }
  }
  // A stalled server must not hold the shutdown: cut the sockets; the pending reads end
  // at once and those recipients are deferred (they stay due in the queue anyway).
  for (SmtpClient* c : clients_) c->abort();
  co_await resolver_->close();
  loop_.stop();
}

}  // namespace ringmail::delivery
