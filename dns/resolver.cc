#include "dns/resolver.h"

#include <sys/socket.h>

#include <cstring>
#include <mutex>

#include "dns/domain.h"
#include "dns/message.h"
#include "dns/servers.h"

namespace ringmail::dns {

namespace {

std::string canonical(std::string_view name) {
  if (name.ends_with('.')) name.remove_suffix(1);
  return lower(name);
}

std::string inflight_key(const std::string& name, uint16_t type) {
  return std::to_string(type) + ' ' + name;
}

}  // namespace

// One c-ares query and everyone waiting for it. Owned by inflight_ until c-ares calls
// back; c-ares holds a raw pointer as its callback argument.
struct Resolver::Pending {
  Resolver* self = nullptr;
  std::string key;
  std::string name;
  uint16_t type = 0;
  std::vector<Waiter> waiters;
};

struct Resolver::MxLookup {
  Resolver* self;
  std::string domain;
  MxCallback cb;
  RRsetPtr mx, a, aaaa;

  void on_mx(const std::shared_ptr<MxLookup>& me, const RRsetPtr& r) {
    MxStep step = classify_mx(domain, *r, self->rng_);
    if (!step.need_addresses) {
      cb(std::move(*step.done));
      return;
    }
    // RFC 5321 5.1: no MX records, so the domain itself is the implicit MX if it has an
    // address; asking for both families now saves a round trip later, since the router
    // asks for them next and finds them cached.
    mx = r;
    self->query(domain, kTypeA, [me](const RRsetPtr& x) {
      me->a = x;
      me->maybe_done();
    });
    self->query(domain, kTypeAaaa, [me](const RRsetPtr& x) {
      me->aaaa = x;
      me->maybe_done();
    });
  }
  void maybe_done() {
    if (a && aaaa) cb(implicit_mx(domain, *mx, *a, *aaaa));
  }
};

struct Resolver::AddressLookup {
  std::string host;
  bool ipv6_first;
  AddressCallback cb;
  RRsetPtr a, aaaa;
  void maybe_done() {
    if (a && aaaa) cb(merge_addresses(host, *a, *aaaa, ipv6_first));
  }
};

Result<std::unique_ptr<Resolver>> Resolver::create(const Options& o, SocketStateFn on_socket) {
  static std::once_flag lib_once;
  static int lib_status = ARES_SUCCESS;
  std::call_once(lib_once, [] { lib_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (lib_status != ARES_SUCCESS)
    return Error{0, std::string("c-ares library init: ") + ares_strerror(lib_status)};

  auto servers = parse_servers(o.servers);
  if (!servers) return servers.error();
  if (o.timeout.count() <= 0 || o.tries <= 0)
    return Error{EINVAL, "dns timeout and tries must be positive"};

  std::unique_ptr<Resolver> r(new Resolver(o, std::move(on_socket)));
  ares_options opts;
  std::memset(&opts, 0, sizeof opts);
  // NOALIASES: HOSTALIASES in the daemon's environment must not reroute mail.
  opts.flags = ARES_FLAG_NOALIASES | ARES_FLAG_NOSEARCH;
  opts.timeout = static_cast<int>(o.timeout.count());
  opts.tries = o.tries;
  opts.sock_state_cb = &Resolver::on_socket_state;
  opts.sock_state_cb_data = r.get();
  int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  int st = ares_init_options(&r->channel_, &opts, mask);
  if (st != ARES_SUCCESS) {
    r->channel_ = nullptr;
    return Error{0, std::string("c-ares init: ") + ares_strerror(st)};
  }
  if (!servers->empty()) {
    std::vector<ares_addr_port_node> nodes(servers->size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      const Server& s = (*servers)[i];
      ares_addr_port_node& n = nodes[i];
      std::memset(&n, 0, sizeof n);
      n.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
      n.family = s.family;
      if (s.family == AF_INET) {
        std::memcpy(&n.addr.addr4, s.addr.data(), 4);
      } else {
        std::memcpy(&n.addr.addr6, s.addr.data(), 16);
      }
      n.udp_port = s.port;
      n.tcp_port = s.port;
    }
    st = ares_set_servers_ports(r->channel_, nodes.data());
    if (st != ARES_SUCCESS) return Error{0, std::string("c-ares servers: ") + ares_strerror(st)};
  }
  return r;
}

Resolver::Resolver(const Options& o, SocketStateFn on_socket)
    : on_socket_(std::move(on_socket)),
      now_(o.now),
      ipv6_first_(o.ipv6_first),
      rng_(o.seed ? o.seed : std::random_device{}()),
      cache_(o.cache) {}

Resolver::~Resolver() {
  destroying_ = true;
  // c-ares calls back every pending query with ARES_EDESTRUCTION; on_answer drops them.
  if (channel_) ares_destroy(channel_);
  inflight_.clear();
  ready_.clear();
}

void Resolver::on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<Resolver*>(data);
  if (self->on_socket_) self->on_socket_(fd, readable != 0, writable != 0);
}

void Resolver::on_answer(void* arg, int status, int, unsigned char* abuf, int alen) {
  auto* p = static_cast<Pending*>(arg);
  Resolver* self = p->self;
  auto node = self->inflight_.extract(p->key);
  if (self->destroying_ || status == ARES_EDESTRUCTION) return;
  std::span<const uint8_t> response;
  if (abuf && alen > 0) response = {abuf, static_cast<size_t>(alen)};
  auto r = std::make_shared<const RRset>(rrset_from_response(status, response, p->name, p->type));
  self->cache_.put(p->name, p->type, r, self->now());
  // Only recorded here: user code must not run while c-ares is on the stack.
  for (Waiter& w : p->waiters) self->ready_.push_back({std::move(w), r});
}

void Resolver::query(const std::string& name, uint16_t type, Waiter w) {
  if (closing_) {
    ready_.push_back(
        {std::move(w), std::make_shared<const RRset>(temporary_rrset("resolver shut down"))});
    return;
  }
  if (RRsetPtr hit = cache_.get(name, type, now())) {
    ++stats_.cache_hits;
    ready_.push_back({std::move(w), std::move(hit)});
    return;
  }
  std::string key = inflight_key(name, type);
  if (auto it = inflight_.find(key); it != inflight_.end()) {
    ++stats_.coalesced;
    it->second->waiters.push_back(std::move(w));
    return;
  }
  auto p = std::make_unique<Pending>();
  p->self = this;
  p->key = key;
  p->name = name;
  p->type = type;
  p->waiters.push_back(std::move(w));
  Pending* raw = p.get();
  inflight_.emplace(std::move(key), std::move(p));
  ++stats_.queries_sent;
  // May call on_answer before returning (bad name, no memory): raw is not used after.
  ares_query(channel_, raw->name.c_str(), 1 /* C_IN */, type, &Resolver::on_answer, raw);
}

void Resolver::lookup_mx(std::string_view domain, MxCallback cb) {
  std::string d = canonical(domain);
  if (!valid_domain(d, false)) {
    ready_.push_back({[cb = std::move(cb), d](const RRsetPtr&) {
                        cb(Error{kNxDomain, "\"" + d + "\" is not a valid domain name"});
                      },
                      nullptr});
  } else {
    auto st = std::make_shared<MxLookup>(MxLookup{this, d, std::move(cb), {}, {}, {}});
    query(d, kTypeMx, [st](const RRsetPtr& r) { st->on_mx(st, r); });
  }
  run_callbacks();
}

void Resolver::lookup_addresses(std::string_view host, AddressCallback cb) {
  std::string h = canonical(host);
  if (!valid_domain(h, false)) {
    ready_.push_back({[cb = std::move(cb), h](const RRsetPtr&) {
                        cb(Error{kNxDomain, "\"" + h + "\" is not a valid host name"});
                      },
                      nullptr});
  } else {
    auto st = std::make_shared<AddressLookup>(AddressLookup{h, ipv6_first_, std::move(cb), {}, {}});
    query(h, kTypeA, [st](const RRsetPtr& r) {
      st->a = r;
      st->maybe_done();
    });
    query(h, kTypeAaaa, [st](const RRsetPtr& r) {
      st->aaaa = r;
      st->maybe_done();
    });
  }
  run_callbacks();
}

void Resolver::process(int read_fd, int write_fd) {
  ares_process_fd(channel_, read_fd < 0 ? ARES_SOCKET_BAD : read_fd,
                  write_fd < 0 ? ARES_SOCKET_BAD : write_fd);
  run_callbacks();
}

void Resolver::process_timeouts() {
  ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  run_callbacks();
}

std::optional<std::chrono::nanoseconds> Resolver::next_timeout() {
  timeval tv{};
  timeval* t = ares_timeout(channel_, nullptr, &tv);
  if (!t) return std::nullopt;
  return std::chrono::seconds(t->tv_sec) + std::chrono::microseconds(t->tv_usec);
}

void Resolver::cancel_all() {
  closing_ = true;
  // Pending queries call back with ARES_ECANCELLED: temporary outcomes, never cached.
  ares_cancel(channel_);
  run_callbacks();
}

void Resolver::run_callbacks() {
  // A callback may start lookups whose answers land in ready_ again; the outermost call
  // drains them all, so nesting never recurses deeper than one level.
  if (draining_) return;
  draining_ = true;
  while (!ready_.empty()) {
    Ready r = std::move(ready_.front());
    ready_.pop_front();
    r.waiter(r.rrset);
  }
  draining_ = false;
}

}  // namespace ringmail::dns
