// dns: the asynchronous resolver over one c-ares channel.
//
// A Resolver owns one c-ares channel, the TTL cache in front of it and the queries in
// flight, and answers the two questions mail routing asks: where does mail for this
// domain go (MX, with implicit and null MX), and what are this host's addresses (A and
// AAAA). It never does I/O scheduling itself: whoever drives it (mta/dns/loop_resolver.h
// on an io_uring loop; a test with poll(2)) is told through the socket-state callback
// which sockets to watch, asks next_timeout() when to call process_timeouts(), and calls
// process() when a socket is ready. It is single-threaded (one per loop thread) and
// never locks.
//
// Callbacks never run inside c-ares: a c-ares completion only records its outcome, and
// the user callbacks run afterwards from process()/process_timeouts()/lookup_*() once
// c-ares has returned, so a callback may start new lookups or resume a coroutine. A
// lookup answered from the cache calls back before lookup_*() returns. Identical queries
// in flight at the same time are sent once and answer every caller.
//
// Addresses come from A and AAAA queries, not ares_getaddrinfo(): that one consults
// /etc/hosts and the search list, which have no say in where mail goes, and hides TTLs.
#pragma once

#include <ares.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "conf/result.h"
#include "dns/answer.h"
#include "dns/cache.h"

namespace ringmail::dns {

class Resolver {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  struct Options {
    // `dns.servers`: "127.0.0.1:5353", "[::1]:53"; empty = /etc/resolv.conf.
    std::vector<std::string> servers;
    // Per try and server; c-ares doubles it on each later round. Three seconds with two
    // tries bounds a dead resolver at about nine seconds per lookup, short enough that a
    // delivery attempt defers instead of holding its slot.
    std::chrono::milliseconds timeout{3000};
    int tries = 2;
    Cache::Limits cache;
    // IPv4 first by default: big mailbox providers hold IPv6 senders to stricter rules
    // (reverse DNS, authentication) and many hosts have IPv6 addresses without a working
    // IPv6 route, so IPv4 first fails less; the SMTP client tries every address anyway.
    bool ipv6_first = false;
    uint64_t seed = 0;               // shuffles equal MX preferences; 0 = random_device
    std::function<TimePoint()> now;  // empty = steady_clock::now (tests inject a clock)
  };

  struct Stats {
    uint64_t queries_sent = 0;  // ares_query calls: what the network saw
    uint64_t cache_hits = 0;
    uint64_t coalesced = 0;  // lookups that joined an identical query in flight
  };

  // Called when c-ares opens, changes interest in, or closes a socket (both false).
  using SocketStateFn = std::function<void(int fd, bool want_read, bool want_write)>;
  using MxCallback = std::function<void(Result<MxAnswer>)>;
  using AddressCallback = std::function<void(Result<std::vector<Address>>)>;

  static Result<std::unique_ptr<Resolver>> create(const Options& o, SocketStateFn on_socket);
  // Pending lookups are dropped without their callbacks: call cancel_all() first if
  // anyone waits. REQUIRES: not called from inside one of this resolver's callbacks.
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Errors carry a FailureCode (dns/answer.h) in Error::code.
  void lookup_mx(std::string_view domain, MxCallback cb);
  // A and AAAA, both asked at once, merged (see Options::ipv6_first).
  void lookup_addresses(std::string_view host, AddressCallback cb);

  // A watched socket is ready (-1 for "not this direction"); runs due callbacks.
  void process(int read_fd, int write_fd);
  // Time has passed: retries and timeouts; runs due callbacks.
  void process_timeouts();
  // How long until process_timeouts() is due; nullopt when nothing is in flight.
  std::optional<std::chrono::nanoseconds> next_timeout();

  // Shutdown: every pending lookup calls back with kTemporary ("resolver shut down"), and
  // so does every later one; the channel stays until destruction.
  void cancel_all();
  bool closed() const { return closing_; }

  const Stats& stats() const { return stats_; }
  Cache& cache() { return cache_; }

 private:
  using RRsetPtr = std::shared_ptr<const RRset>;
  using Waiter = std::function<void(const RRsetPtr&)>;
  struct Pending;
  struct Ready {
    Waiter waiter;
    RRsetPtr rrset;
  };
  struct MxLookup;
  struct AddressLookup;

  Resolver(const Options& o, SocketStateFn on_socket);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable);

  // Answers `w` from the cache, by joining a query in flight, or by sending one.
  void query(const std::string& name, uint16_t type, Waiter w);
  void run_callbacks();
  TimePoint now() const { return now_ ? now_() : std::chrono::steady_clock::now(); }

  ares_channel channel_ = nullptr;
  SocketStateFn on_socket_;
  std::function<TimePoint()> now_;
  bool ipv6_first_;
  std::mt19937_64 rng_;
  Cache cache_;
  std::unordered_map<std::string, std::unique_ptr<Pending>> inflight_;
  std::deque<Ready> ready_;
  bool draining_ = false;
  bool closing_ = false;
  bool destroying_ = false;
  Stats stats_;
};

}  // namespace ringmail::dns
