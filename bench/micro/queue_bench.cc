// Micro-benchmarks: queue ids, the Received: header, and batched enqueue through the
// group-commit Committer on a real LMDB store (each commit fsyncs).
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mta/smtp/received.h"
#include "queue/committer.h"
#include "queue/store.h"

namespace {

using namespace ringmail;

void BM_QueueIdNext(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(queue::next_queue_id());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_QueueIdNext);
BENCHMARK(BM_QueueIdNext)->Threads(2);

void BM_QueueIdNextStr(benchmark::State& state) {
  for (auto _ : state) {
    std::string s = queue::next_queue_id().str();
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_QueueIdNextStr);

void BM_QueueIdParse(benchmark::State& state) {
  std::string s = queue::next_queue_id().str();
  for (auto _ : state) benchmark::DoNotOptimize(queue::QueueId::parse(s));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_QueueIdParse);

void BM_ReceivedHeader(benchmark::State& state) {
  smtp::TraceInfo t;
  t.helo = "mailout-17.bulk-sender.example";
  t.client_ip = "198.51.100.17";
  t.hostname = "mx.example.test";
  t.protocol = "ESMTPS";
  t.recipient = "first.last@example.test";
  t.unix_time = 1798342596;
  std::string id = queue::next_queue_id().str();
  t.queue_id = id;
  for (auto _ : state) {
    std::string h = smtp::received_header(t);
    benchmark::DoNotOptimize(h);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ReceivedHeader);

void BM_FindMessageId(benchmark::State& state) {
  std::string m;
  for (int i = 0; i < 20; ++i)
    m += "X-Header-" + std::to_string(i) + ": " + std::string(60, 'v') + "\r\n";
  m +=
      "Message-ID:\r\n <20261127033635.12345@bulk-sender.example>\r\n\r\n" + std::string(1000, 'b');
  for (auto _ : state) {
    std::string id = smtp::find_message_id(m);
    benchmark::DoNotOptimize(id);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_FindMessageId);

// --- batched enqueue -------------------------------------------------------------------

class Waiter {
 public:
  void reset(int n) {
    std::lock_guard lock(mu_);
    left_ = n;
  }
  void done() {
    std::lock_guard lock(mu_);
    if (--left_ == 0) cv_.notify_one();
  }
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return left_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_ = 0;
};

class BenchRequest final : public queue::EnqueueRequest {
 public:
  BenchRequest(Waiter& w, size_t size) : waiter_(w) {
    envelope.sender = "news@bulk-sender.example";
    envelope.client_address = "198.51.100.17";
    envelope.helo = "mailout-17.bulk-sender.example";
    envelope.message_id = "<20261127033635.12345@bulk-sender.example>";
    queue::Recipient r;
    r.address = "first.last@example.test";
    envelope.recipients.push_back(r);
    body.assign(size, 'x');
    for (size_t i = 70; i < size; i += 72) body.replace(i, 2, "\r\n");
    envelope.body_size = size;
  }
  ~BenchRequest() = default;
  void on_done() override {
    if (!status.ok()) failed.fetch_add(1, std::memory_order_relaxed);
    waiter_.done();
  }
  static inline std::atomic<int> failed{0};

 private:
  Waiter& waiter_;
};

void BM_Enqueue(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const size_t size = static_cast<size_t>(state.range(1));
  std::string tmpl = (std::filesystem::temp_directory_path() / "ringmail-bench-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  {
    queue::Store::Options o;
    o.dir = tmpl + "/queue";
    auto store = queue::Store::open(o);
    if (!store.ok()) {
      state.SkipWithError(store.error().message.c_str());
      return;
    }
    queue::Committer committer(*store.value());
    Waiter waiter;
    std::vector<std::unique_ptr<BenchRequest>> reqs;
    for (int i = 0; i < batch; ++i) reqs.push_back(std::make_unique<BenchRequest>(waiter, size));
    BenchRequest::failed = 0;
    for (auto _ : state) {
      waiter.reset(batch);
      for (auto& r : reqs) {
        r->id = queue::next_queue_id();
        r->envelope.arrival_us = static_cast<int64_t>(r->id.value >> 4);
        committer.submit(r.get());
      }
      waiter.wait();
    }
    committer.stop();
    if (BenchRequest::failed.load() != 0) state.SkipWithError("some enqueues failed");
    queue::CommitStats st = committer.stats();
    state.counters["avg_batch"] =
        st.batches ? static_cast<double>(st.messages) / static_cast<double>(st.batches) : 0.0;
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * batch *
                            static_cast<int64_t>(size));
  }
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
}
// Every iteration waits for one (or more) fsyncs: fixed iteration counts keep it bounded.
BENCHMARK(BM_Enqueue)
    ->Args({1, 1024})
    ->Iterations(300)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Enqueue)
    ->Args({8, 1024})
    ->Iterations(150)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Enqueue)
    ->Args({64, 1024})
    ->Iterations(60)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Enqueue)
    ->Args({8, 100 * 1024})
    ->Iterations(60)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
