#include "bench/ringbench/client.h"

#include <netdb.h>
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
  return s;
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
  std::printf("RESULT messages=%" PRIu64 " errors=%" PRIu64
              " seconds=%.3f msgs_per_sec=%.1f mb_per_sec=%.2f p50_ms=%.3f p99_ms=%.3f\n",
              all.accepted, errors, seconds, rate, mbps, lat.p50_ms, lat.p99_ms);
  std::fflush(stdout);
  return errors == 0 && all.accepted == opt.messages ? 0 : 1;
}

}  // namespace ringbench
