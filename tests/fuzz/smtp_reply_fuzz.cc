// libFuzzer target: the delivery client's reply parser and EHLO keyword parser
// (mta/delivery/smtp_reply.h).
//
// The input is what a hostile or broken server sends. It is fed twice, all at once and in
// chunks of a size taken from the first byte, with the unconsumed rest kept the way
// rt::Stream keeps it; both runs must give the same replies and the same verdict. Beyond
// "no crash, no UB", every reply must be one the client can log and put in a DSN as it
// is: a 2xx-5xx code, bounded lines without control characters, an enhanced code of the
// reply's own class or none.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "mta/delivery/smtp_reply.h"

namespace {

using namespace ringmail;
using namespace ringmail::delivery;

void check(bool ok) {
  if (!ok) std::abort();
}

struct Run {
  std::vector<Reply> replies;
  bool failed = false;
};

Run feed(std::string_view wire, size_t step, const ReplyLimits& limits) {
  ReplyParser p(limits);
  Run run;
  std::string buf;
  size_t fed = 0;
  for (;;) {
    size_t used = 0;
    Result<bool> r = p.parse(buf, used);
    check(used <= buf.size());
    if (!r.ok()) {
      check(!r.error().message.empty());
      run.failed = true;
      return run;
    }
    buf.erase(0, used);
    if (r.value()) {
      run.replies.push_back(p.take());
      continue;
    }
    // Asking for more, it leaves at most one partial line unconsumed.
    check(buf.size() < limits.max_line + 2 && buf.find('\n') == std::string::npos);
    if (fed == wire.size()) return run;
    size_t n = std::min(step, wire.size() - fed);
    buf.append(wire.substr(fed, n));
    fed += n;
  }
}

void check_reply(const Reply& r, const ReplyLimits& limits) {
  check(r.code >= 200 && r.code <= 599);
  check(!r.lines.empty() && r.lines.size() <= limits.max_lines);
  for (const auto& l : r.lines) {
    check(l.empty() || l.size() + 4 <= limits.max_line);
    for (char c : l) check(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
  }
  if (!r.enhanced.empty()) {
    check(enhanced_code(r.enhanced) == r.enhanced);
    check(r.enhanced[0] == static_cast<char>('0' + r.code / 100));
  }
  std::string s = r.summary();
  check(s.size() >= 3 && s.compare(0, 3, std::to_string(r.code)) == 0);
  check(s.find('\r') == std::string::npos && s.find('\n') == std::string::npos);
  Capabilities caps = parse_ehlo(r);
  check(caps.esmtp);
  for (const auto& m : caps.auth) {
    check(!m.empty() && m.size() <= 20);
    check(caps.has_auth(m));
  }
  if (!caps.size) check(caps.size_limit == 0);
}

void both_ways(std::string_view wire, size_t step, const ReplyLimits& limits) {
  Run whole = feed(wire, wire.size() + 1, limits);
  Run chunked = feed(wire, step, limits);
  check(whole.failed == chunked.failed);
  check(whole.replies.size() == chunked.replies.size());
  for (size_t i = 0; i < whole.replies.size(); ++i) {
    check(whole.replies[i].code == chunked.replies[i].code);
    check(whole.replies[i].lines == chunked.replies[i].lines);
    check(whole.replies[i].enhanced == chunked.replies[i].enhanced);
    check_reply(whole.replies[i], limits);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t step = data[0] % 16 + 1;
  std::string_view wire(reinterpret_cast<const char*>(data + 1), size - 1);
  both_ways(wire, step, ReplyLimits{});
  // Small limits, so the bounds themselves are reached by short inputs.
  both_ways(wire, step, ReplyLimits{16, 4});
  (void)enhanced_code(wire);
  return 0;
}
