// Micro-benchmarks: SMTP command parsing and DATA scanning, the per-byte hot paths of
// an SMTP session.
#include <benchmark/benchmark.h>

#include <string>
#include <string_view>
#include <vector>

#include "mta/smtp/command_parser.h"
#include "mta/smtp/data_decoder.h"

namespace {

using namespace ringmail::smtp;

// One transaction as a bulk sender pipelines it.
const std::vector<std::string_view>& transaction_lines() {
  static const std::vector<std::string_view> lines = {
      "EHLO mailout-17.bulk-sender.example",
      "MAIL FROM:<bounces+1234567-abcd-user=example.test@bulk-sender.example> SIZE=48213 "
      "BODY=8BITMIME RET=HDRS ENVID=campaign-2026-11+2B0001",
      "RCPT TO:<first.last@example.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;first.last@example.test",
      "RCPT TO:<j.doe+newsletter@mail.example.org>",
      "RCPT TO:<\"quoted user\"@example.net> NOTIFY=NEVER",
      "DATA",
      "QUIT",
  };
  return lines;
}

void BM_ParseTransaction(benchmark::State& state) {
  const auto& lines = transaction_lines();
  size_t bytes = 0;
  for (auto l : lines) bytes += l.size() + 2;
  for (auto _ : state) {
    for (std::string_view line : lines) {
      Command c = parse_command(line);
      switch (c.verb) {
        case Verb::mail: {
          auto m = parse_mail_from(c.arg);
          benchmark::DoNotOptimize(m);
          break;
        }
        case Verb::rcpt: {
          auto r = parse_rcpt_to(c.arg, false);
          benchmark::DoNotOptimize(r);
          break;
        }
        default:
          benchmark::DoNotOptimize(c);
      }
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * lines.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_ParseTransaction);

void BM_ParseCommandVerb(benchmark::State& state) {
  const auto& lines = transaction_lines();
  for (auto _ : state)
    for (std::string_view line : lines) benchmark::DoNotOptimize(parse_command(line));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * lines.size()));
}
BENCHMARK(BM_ParseCommandVerb);

void BM_ParseMailFrom(benchmark::State& state) {
  std::string_view arg =
      "FROM:<bounces+1234567-abcd-user=example.test@bulk-sender.example> SIZE=48213 "
      "BODY=8BITMIME RET=HDRS ENVID=campaign-2026-11+2B0001";
  for (auto _ : state) {
    auto m = parse_mail_from(arg);
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseMailFrom);

void BM_ParseRcptTo(benchmark::State& state) {
  std::string_view arg =
      "TO:<first.last@example.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;first.last@example.test";
  for (auto _ : state) {
    auto r = parse_rcpt_to(arg, false);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseRcptTo);

// A realistic message on the wire: headers, a text body of ~72-column lines, some of
// them dot-stuffed, CRLF line ends, then the terminator.
std::string wire_message(size_t body_bytes) {
  std::string m =
      "Received: from mailout-17.bulk-sender.example ([198.51.100.17])\r\n"
      "\tby mx.example.test (ringmail) with ESMTPS id 0H2K4M6P8R0T2\r\n"
      "\tfor <first.last@example.test>; Fri, 27 Nov 2026 03:36:36 +0000\r\n"
      "From: \"Bulk Sender\" <news@bulk-sender.example>\r\n"
      "To: first.last@example.test\r\n"
      "Subject: Your November newsletter\r\n"
      "Date: Fri, 27 Nov 2026 03:36:35 +0000\r\n"
      "Message-ID: <20261127033635.12345@bulk-sender.example>\r\n"
      "MIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n"
      "Content-Transfer-Encoding: 8bit\r\n"
      "\r\n";
  static const char* kWords[] = {"lorem",      "ipsum", "dolor", "sit", "amet,",   "consectetur",
                                 "adipiscing", "elit.", "Sed",   "do",  "eiusmod", "tempor"};
  size_t w = 0, line = 0;
  while (m.size() < body_bytes) {
    std::string l;
    if (++line % 25 == 0) l = "..";  // a line that starts with a dot, stuffed
    while (l.size() < 70) {
      l += kWords[w++ % 12];
      l += ' ';
    }
    m += l;
    m += "\r\n";
  }
  m += ".\r\n";
  return m;
}

void BM_DataDecoder(benchmark::State& state) {
  const std::string wire = wire_message(static_cast<size_t>(state.range(0)));
  const size_t chunk = static_cast<size_t>(state.range(1));  // how the bytes arrive
  DataDecoder::Limits limits;
  std::string out;
  out.reserve(wire.size());
  for (auto _ : state) {
    DataDecoder d(limits);
    out.clear();
    std::string_view in = wire;
    while (!in.empty() && !d.done()) {
      size_t used = d.feed(in.substr(0, chunk), out);
      in.remove_prefix(used);
    }
    if (!d.done() || d.fault() != DataDecoder::Fault::none) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * wire.size()));
  state.counters["msg_bytes"] = static_cast<double>(wire.size());
}
// 1 KB and 100 KB messages, delivered whole or in 16 KiB receive buffers.
BENCHMARK(BM_DataDecoder)
    ->Args({1024, 1 << 30})
    ->Args({100 * 1024, 1 << 30})
    ->Args({100 * 1024, 16384});

}  // namespace
