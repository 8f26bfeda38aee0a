#include "bench/ringbench/client.h"

#include <netdb.h>
#include <openssl/base64.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/ringbench/slot.h"
#include "bench/ringbench/stats.h"
#include "mta/runtime/loop.h"
#include "mta/runtime/tls.h"

namespace ringbench {

namespace rt = ringmail::rt;

namespace {

bool resolve(const ClientOptions& opt, Run& run) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(opt.port);
  int r = getaddrinfo(opt.host.c_str(), port.c_str(), &hints, &res);
  if (r != 0 || !res) {
    std::fprintf(stderr, "ringbench: %s: %s\n", opt.host.c_str(), gai_strerror(r));
    return false;
  }
  std::memcpy(&run.addr, res->ai_addr, res->ai_addrlen);
  run.addr_len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

unsigned pow2_at_least(unsigned n) {
  unsigned p = 1;
  while (p < n) p <<= 1;
  return p;
}

// One thread: its loop, its slots, until the last slot is done.
void thread_main(Run& run, Counters& c, unsigned first, unsigned count) {
  rt::Loop::Options lo;
  // Replies are small and taken as soon as they arrive: a few 4 KiB receive buffers per
  // connection are plenty.
  lo.buffer_size = 4096;
  lo.buffer_count = std::clamp(pow2_at_least(count * 2), 256u, 32768u);
  lo.entries = std::clamp(pow2_at_least(count * 4), 256u, 4096u);
  rt::Loop loop(lo);
  c.latency_us.reserve(run.opt.messages / run.opt.threads + 1024);
  std::vector<std::unique_ptr<Slot>> slots;
  c.live = count;
  for (unsigned i = 0; i < count; ++i) {
    slots.push_back(std::make_unique<Slot>(run, c, loop, first + i));
    loop.spawn(slots.back()->run());
  }
  loop.run();
}

std::string mode_text(const ClientOptions& o) {
  std::string s = o.bdat         ? "BDAT LAST, pipelined with MAIL/RCPT"
                  : o.pipelining ? "DATA, pipelined MAIL/RCPT/DATA"
                                 : "DATA, one command per round trip";
  s += ", ";
  s += o.per_connection ? std::to_string(o.per_connection) + " per connection"
                        : "all messages per connection";
  if (o.starttls) s += "; STARTTLS";
  if (o.tls_on_connect) s += "; TLS on connect";
  if (o.auth()) s += "; AUTH PLAIN as " + o.auth_user;
  if (o.tls() || o.auth()) s += " on every connection";
  return s;
}

// "AUTH PLAIN <base64(\0user\0password)>\r\n" (RFC 4616: empty authorization identity).
std::string auth_plain_line(const ClientOptions& o) {
  std::string raw;
  raw.push_back('\0');
  raw += o.auth_user;
  raw.push_back('\0');
  raw += o.auth_password;
  size_t len = 0;
  EVP_EncodedLength(&len, raw.size());
  std::string b64(len, '\0');
  size_t n = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(b64.data()),
                             reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  b64.resize(n);
  return "AUTH PLAIN " + b64 + "\r\n";
}

void print_times(const char* what, std::vector<uint32_t>& us) {
  if (us.empty()) return;
  const Latency l = summarize(us);
  std::printf("  %s ms: min %.3f  mean %.3f  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", what,
              l.min_ms, l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms);
}

}  // namespace

int run_client(const ClientOptions& opt) {
  Run run(opt);
  if (!resolve(opt, run)) return 2;
  run.spec.from = opt.from;
  run.spec.to = opt.to;
  run.spec.size = opt.size;
  char id[32];
  std::snprintf(id, sizeof id, "%" PRIx64 ".%x",
                static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()),
                static_cast<unsigned>(getpid()));
  run.spec.run_id = id;
  run.content = build_content(run.spec);
  run.ehlo = "EHLO " + opt.helo + "\r\n";
  if (opt.tls()) {
    // No certificate check (bench servers use self-signed certificates) and no client
    // session cache, so every connection pays for a full handshake.
    run.tls = ringmail::rt::make_client_tls();
    if (!run.tls) {
      std::fprintf(stderr, "ringbench: cannot create a TLS context: %s\n",
                   ringmail::rt::tls_error_text().c_str());
      return 2;
    }
    SSL_CTX_set_verify(run.tls.get(), SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(run.tls.get(), SSL_SESS_CACHE_OFF);
  }
  if (opt.auth()) run.auth = auth_plain_line(opt);

  // Every connection is an fd; the soft limit (often 1024) is too low for big runs.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  std::printf("ringbench: %s port %u: %" PRIu64
              " messages of %zu bytes over %u connections, %u thread%s\n",
              opt.host.c_str(), opt.port, opt.messages, run.content.text.size(), opt.connections,
              opt.threads, opt.threads == 1 ? "" : "s");
  std::printf("  mode: %s\n", mode_text(opt).c_str());
  std::fflush(stdout);

  std::vector<Counters> counters(opt.threads);
  std::vector<std::thread> threads;
  const auto start = rt::Clock::now();
  run.deadline = start + std::chrono::seconds(opt.timeout_seconds);
  unsigned first = 0;
  for (unsigned t = 0; t < opt.threads; ++t) {
    unsigned count = opt.connections / opt.threads + (t < opt.connections % opt.threads ? 1 : 0);
    threads.emplace_back(thread_main, std::ref(run), std::ref(counters[t]), first, count);
    first += count;
  }
  for (auto& th : threads) th.join();
  const double seconds = std::chrono::duration<double>(rt::Clock::now() - start).count();

  Counters all;
  for (auto& c : counters) {
    all.accepted += c.accepted;
    all.failed += c.failed;
    all.rejected += c.rejected;
    all.lost += c.lost;
    all.timeouts += c.timeouts;
    all.connects += c.connects;
    all.connect_failures += c.connect_failures;
    all.gave_up += c.gave_up;
  }
  all.latency_us.reserve(all.accepted);
  for (auto& c : counters) {
    all.latency_us.insert(all.latency_us.end(), c.latency_us.begin(), c.latency_us.end());
    std::vector<uint32_t>().swap(c.latency_us);
    all.handshake_us.insert(all.handshake_us.end(), c.handshake_us.begin(), c.handshake_us.end());
    all.auth_us.insert(all.auth_us.end(), c.auth_us.begin(), c.auth_us.end());
    all.setup_us.insert(all.setup_us.end(), c.setup_us.begin(), c.setup_us.end());
    if (all.tls_params.empty()) all.tls_params = c.tls_params;
  }
  // Messages never tried (time or retries ran out) are failures too.
  const uint64_t unsent = opt.messages - std::min(opt.messages, all.accepted + all.failed);
  const uint64_t errors = all.failed + unsent + all.connect_failures;
  const Latency lat = summarize(all.latency_us);
  const double bytes =
      static_cast<double>(all.accepted) * static_cast<double>(run.content.text.size());
  const double rate = seconds > 0 ? static_cast<double>(all.accepted) / seconds : 0;
  const double mbps = seconds > 0 ? bytes / 1e6 / seconds : 0;

  std::printf("  accepted %" PRIu64 " of %" PRIu64 " in %.3f s: %.1f msgs/s, %.2f MB/s\n",
              all.accepted, opt.messages, seconds, rate, mbps);
  std::printf("  errors %" PRIu64 ": %" PRIu64 " messages failed (%" PRIu64 " rejected, %" PRIu64
              " connection lost, %" PRIu64 " timed out), %" PRIu64 " never sent, %" PRIu64
              " connection failures, %" PRIu64 " connections gave up\n",
              errors, all.failed, all.rejected, all.lost, all.timeouts, unsent,
              all.connect_failures, all.gave_up);
  std::printf("  connections opened %" PRIu64 "\n", all.connects);
  std::printf(
      "  latency ms (MAIL to final reply): min %.3f  mean %.3f  p50 %.3f  p90 %.3f  p99 %.3f  "
      "p99.9 %.3f  max %.3f\n",
      lat.min_ms, lat.mean_ms, lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.p999_ms, lat.max_ms);
  if (opt.tls() || opt.auth()) {
    const double per_sec = seconds > 0 ? 1.0 / seconds : 0;
    // The client's own CPU: with TLS it does a handshake per connection too, on the same
    // cores as the server under test.
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    std::printf("  client CPU: %.3f s user+sys, %.3f ms per accepted message\n", cpu,
                all.accepted ? cpu * 1000.0 / static_cast<double>(all.accepted) : 0.0);
    print_times("connection setup (connect to ready for MAIL)", all.setup_us);
    if (opt.tls()) {
      std::printf("  TLS: %zu handshakes, %.1f/s; %s\n", all.handshake_us.size(),
                  static_cast<double>(all.handshake_us.size()) * per_sec,
                  all.tls_params.empty() ? "no handshake completed" : all.tls_params.c_str());
      print_times("TLS handshake (client side, ClientHello to done)", all.handshake_us);
    }
    if (opt.auth()) {
      std::printf("  AUTH: %zu accepted, %.1f/s\n", all.auth_us.size(),
                  static_cast<double>(all.auth_us.size()) * per_sec);
      print_times("AUTH PLAIN (command to 235)", all.auth_us);
    }
    std::printf(
        "SETUP handshakes=%zu handshakes_per_sec=%.1f auths=%zu auths_per_sec=%.1f "
        "client_cpu_ms_per_msg=%.3f\n",
        all.handshake_us.size(), static_cast<double>(all.handshake_us.size()) * per_sec,
        all.auth_us.size(), static_cast<double>(all.auth_us.size()) * per_sec,
        all.accepted ? cpu * 1000.0 / static_cast<double>(all.accepted) : 0.0);
  }
  std::printf("RESULT messages=%" PRIu64 " errors=%" PRIu64
              " seconds=%.3f msgs_per_sec=%.1f mb_per_sec=%.2f p50_ms=%.3f p99_ms=%.3f\n",
              all.accepted, errors, seconds, rate, mbps, lat.p50_ms, lat.p99_ms);
  std::fflush(stdout);
  return errors == 0 && all.accepted == opt.messages ? 0 : 1;
}

}  // namespace ringbench
