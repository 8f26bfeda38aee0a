// libFuzzer target: the DATA decoder (mta/smtp/data_decoder.h).
//
// The first bytes of the input choose the limits and a split point; the rest is fed
// in two pieces (as TCP might deliver it) and, for comparison, all at once and byte by
// byte. Both reject_bare_lf modes run. Invariants:
//   - feed() never uses more than it was given, and all of it unless it is done;
//   - once done, feed() uses nothing and writes nothing;
//   - without a fault the output is at most max_size bytes and equals size();
//   - with reject_bare_lf = false the output has no bare CR or LF, and no bare-LF fault;
//   - how the input is split changes neither where the message ends nor, when nothing
//     was faulted, what was decoded.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mta/smtp/data_decoder.h"

namespace {

using ringmail::smtp::DataDecoder;

void check(bool ok) {
  if (!ok) std::abort();
}

bool has_bare_cr_or_lf(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return true;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return true;
  }
  return false;
}

struct Outcome {
  size_t consumed = 0;
  bool done = false;
  DataDecoder::Fault fault = DataDecoder::Fault::none;
  uint64_t size = 0;
  std::string out;
};

// Feeds `in` in pieces cut at `cuts` (ascending offsets), checking the per-feed rules.
template <class Cuts>
Outcome feed_pieces(const DataDecoder::Limits& l, std::string_view in, const Cuts& cuts) {
  DataDecoder d(l);
  Outcome o;
  size_t pos = 0;
  auto piece = [&](size_t end) {
    std::string_view p = in.substr(pos, end - pos);
    size_t before = o.out.size();
    bool was_done = d.done();
    size_t used = d.feed(p, o.out);
    check(used <= p.size());
    if (was_done) {
      check(used == 0);
      check(o.out.size() == before);
    } else if (!d.done()) {
      check(used == p.size());
    }
    o.consumed += used;
    pos = end;
  };
  for (size_t c : cuts) piece(c < pos ? pos : (c > in.size() ? in.size() : c));
  piece(in.size());
  // Once done, more input is refused.
  if (d.done()) {
    size_t before = o.out.size();
    check(d.feed("more\r\n.\r\n", o.out) == 0);
    check(o.out.size() == before);
  }
  o.done = d.done();
  o.fault = d.fault();
  o.size = d.size();
  return o;
}

struct None {
  const size_t* begin() const { return nullptr; }
  const size_t* end() const { return nullptr; }
};

void run(const DataDecoder::Limits& l, std::string_view in, size_t split) {
  size_t one[1] = {split};
  Outcome two = feed_pieces(l, in, one);
  Outcome whole = feed_pieces(l, in, None{});
  check(two.consumed <= in.size());
  check(two.consumed == whole.consumed);
  check(two.done == whole.done);
  check(two.size == whole.size);
  check((two.fault == DataDecoder::Fault::none) == (whole.fault == DataDecoder::Fault::none));
  if (whole.fault == DataDecoder::Fault::none) {
    check(whole.out == two.out);
    check(whole.out.size() <= l.max_size);
    check(whole.out.size() == whole.size);
  }
  check(whole.out.size() <= whole.size);
  if (!l.reject_bare_lf) {
    check(whole.fault != DataDecoder::Fault::bare_lf && whole.fault != DataDecoder::Fault::bare_cr);
    if (whole.fault == DataDecoder::Fault::none) check(!has_bare_cr_or_lf(whole.out));
  }
  // The end of data is always CRLF "." CRLF as the last five octets used (or ".\r\n"
  // when the message is empty).
  if (whole.done) {
    std::string_view used = in.substr(0, whole.consumed);
    check(used.size() >= 3 && used.substr(used.size() - 3) == ".\r\n");
    check(used.size() == 3 || used.substr(used.size() - 5) == "\r\n.\r\n");
  }
  // Byte by byte, for short inputs.
  if (in.size() <= 512) {
    size_t cuts[512];
    for (size_t i = 0; i < in.size(); ++i) cuts[i] = i + 1;
    struct Span {
      const size_t* b;
      const size_t* e;
      const size_t* begin() const { return b; }
      const size_t* end() const { return e; }
    } span{cuts, cuts + in.size()};
    Outcome bytes = feed_pieces(l, in, span);
    check(bytes.consumed == whole.consumed);
    check(bytes.done == whole.done);
    check(bytes.size == whole.size);
    if (whole.fault == DataDecoder::Fault::none && bytes.fault == DataDecoder::Fault::none)
      check(bytes.out == whole.out);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  // data[0]: line limit, data[1]: size limit, data[2]: split point (as a fraction).
  static const size_t kLines[] = {1000, 3, 4, 8, 16, 80, 998, 1 << 20};
  static const uint64_t kSizes[] = {52428800, 0, 1, 5, 16, 64, 1000, 1 << 20};
  DataDecoder::Limits l;
  l.max_line = kLines[data[0] & 7];
  l.max_size = kSizes[(data[1]) & 7];
  std::string_view in(reinterpret_cast<const char*>(data) + 3, size - 3);
  size_t split = in.size() * data[2] / 255;
  l.reject_bare_lf = true;
  run(l, in, split);
  l.reject_bare_lf = false;
  run(l, in, split);
  return 0;
}
