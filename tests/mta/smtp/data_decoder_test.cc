// mta/smtp/data_decoder.h: the DATA phase state machine. The end of data is CRLF "." CRLF
// and nothing else (SMTP smuggling), dot-stuffing is undone exactly, and every limit is
// enforced while the decoder keeps scanning to the real end.
#include "mta/smtp/data_decoder.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace ringmail::smtp {
namespace {

using Fault = DataDecoder::Fault;

DataDecoder::Limits limits(bool reject_bare_lf = true, size_t max_line = 1000,
                           uint64_t max_size = 52428800) {
  DataDecoder::Limits l;
  l.max_size = max_size;
  l.max_line = max_line;
  l.reject_bare_lf = reject_bare_lf;
  return l;
}

struct Outcome {
  size_t consumed = 0;
  bool done = false;
  Fault fault = Fault::none;
  uint64_t size = 0;
  std::string out;
};

// Feeds `in` in pieces of at most `step` bytes (0: all at once), the way a session does:
// stop feeding once the decoder is done.
Outcome run(std::string_view in, const DataDecoder::Limits& l, size_t step = 0) {
  DataDecoder d(l);
  Outcome o;
  size_t pos = 0;
  do {
    size_t n = step == 0 ? in.size() - pos : std::min(step, in.size() - pos);
    size_t used = d.feed(in.substr(pos, n), o.out);
    EXPECT_LE(used, n);
    o.consumed += used;
    pos += n;
    if (d.done()) break;
    EXPECT_EQ(used, n) << "a decoder that is not done must use all of its input";
  } while (pos < in.size());
  o.done = d.done();
  o.fault = d.fault();
  o.size = d.size();
  return o;
}

bool has_bare_cr_or_lf(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return true;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return true;
  }
  return false;
}

const char* fault_name(Fault f) {
  switch (f) {
    case Fault::none:
      return "none";
    case Fault::bare_lf:
      return "bare_lf";
    case Fault::bare_cr:
      return "bare_cr";
    case Fault::line_too_long:
      return "line_too_long";
    case Fault::too_big:
      return "too_big";
  }
  return "?";
}

// --- the end of data ------------------------------------------------------------------

TEST(DataDecoder, SimpleMessage) {
  std::string in = "Subject: hi\r\n\r\nbody line\r\n.\r\n";
  Outcome o = run(in, limits());
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_EQ(o.consumed, in.size());
  EXPECT_EQ(o.out, "Subject: hi\r\n\r\nbody line\r\n");
  EXPECT_EQ(o.size, o.out.size());
}

TEST(DataDecoder, EmptyMessage) {
  Outcome o = run(".\r\n", limits());
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_EQ(o.consumed, 3u);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.size, 0u);
}

TEST(DataDecoder, NotDoneWithoutTerminator) {
  for (const char* in : {"", "a", "a\r\n", "a\r\n.", "a\r\n.\r", "a\r\n. \r\n", "a\r\n..\r\n",
                         "a.\r\n", "a\r\n.a\r\n", "a\r\n\r\n", ".", ".\r", "x.\r\n.x\r\n"}) {
    Outcome o = run(in, limits());
    EXPECT_FALSE(o.done) << in;
    EXPECT_EQ(o.consumed, std::string_view(in).size()) << in;
  }
}

TEST(DataDecoder, EndsOnlyAtCrLfDotCrLf) {
  Outcome o = run("line\r\n. \r\nmore\r\n.\r\n", limits());
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_EQ(o.out, "line\r\n \r\nmore\r\n");
}

TEST(DataDecoder, BytesAfterTheTerminatorAreNotConsumed) {
  std::string msg = "Subject: x\r\n\r\nhello\r\n.\r\n";
  std::string in = msg + "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n";
  DataDecoder d(limits());
  std::string out;
  EXPECT_EQ(d.feed(in, out), msg.size());
  EXPECT_TRUE(d.done());
  EXPECT_EQ(out, "Subject: x\r\n\r\nhello\r\n");
  // Once done, nothing more is taken and nothing more is written.
  EXPECT_EQ(d.feed("more bytes\r\n.\r\n", out), 0u);
  EXPECT_EQ(d.feed(std::string_view(in).substr(msg.size()), out), 0u);
  EXPECT_EQ(out, "Subject: x\r\n\r\nhello\r\n");
}

TEST(DataDecoder, TerminatorSplitAcrossFeeds) {
  DataDecoder d(limits());
  std::string out;
  EXPECT_EQ(d.feed("abc\r", out), 4u);
  EXPECT_EQ(d.feed("\n", out), 1u);
  EXPECT_EQ(d.feed(".", out), 1u);
  EXPECT_FALSE(d.done());
  EXPECT_EQ(d.feed("\r", out), 1u);
  EXPECT_FALSE(d.done());
  EXPECT_EQ(d.feed("\nQUIT\r\n", out), 1u);
  EXPECT_TRUE(d.done());
  EXPECT_EQ(out, "abc\r\n");
}

// --- dot-stuffing (RFC 5321 4.5.2) -----------------------------------------------------

TEST(DataDecoder, DotUnstuffing) {
  Outcome o = run("..leading dot\r\n...two dots\r\n..\r\n. space\r\nmid.dot.\r\n.\r\n", limits());
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_EQ(o.out, ".leading dot\r\n..two dots\r\n.\r\n space\r\nmid.dot.\r\n");
}

TEST(DataDecoder, DotAtTheStartOfTheMessageIsStuffingToo) {
  Outcome o = run("..\r\n.\r\n", limits());
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.out, ".\r\n");
  Outcome x = run(".x\r\n.\r\n", limits());
  EXPECT_TRUE(x.done);
  EXPECT_EQ(x.out, "x\r\n");
}

TEST(DataDecoder, EmptyLinesAreKept) {
  Outcome o = run("\r\n\r\n\r\n.\r\n", limits());
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.out, "\r\n\r\n\r\n");
}

TEST(DataDecoder, BinaryOctetsPassThrough) {
  std::string in("\x00\x01\xff\x80 \t\x7f\r\n.\r\n", 12);
  Outcome o = run(in, limits());
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_EQ(o.out, std::string("\x00\x01\xff\x80 \t\x7f\r\n", 9));
}

// --- SMTP smuggling: lookalike terminators never end the data ------------------------

// Each is something a lenient receiver has taken for the end of data.
const char* const kSmuggle[] = {
    "\n.\n",    // bare LF on both sides
    "\r\n.\n",  // proper line end, then ".\n"
    "\n.\r\n",  // bare LF line end, then ".\r\n" (Postfix before 3.8.4)
    "\r.\r",    // bare CR on both sides
    ".\r\r\n",  // lone dot followed by CR CR LF (after a proper line end)
    "\r.\r\n",  // bare CR line end, then ".\r\n"
    "\r\n.\r",  // proper line end, then ".\r" + more
    "\n.\r",   "\r.\n",
};

std::string smuggling_input(std::string_view trick) {
  // "x" + trick + a smuggled transaction + the real end.
  std::string in = "Subject: s\r\n\r\nx";
  if (trick.front() == '.') in += "\r\n";
  in += trick;
  in +=
      "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
      "Subject: smuggled\r\n";
  return in;
}

TEST(DataDecoderSmuggling, LookalikeTerminatorsNeverEndAndAreFaults) {
  for (const char* trick : kSmuggle) {
    std::string head = smuggling_input(trick);
    std::string in = head + "\r\n.\r\n";
    SCOPED_TRACE(testing::PrintToString(std::string(trick)));
    for (size_t step : {size_t{0}, size_t{1}, size_t{3}}) {
      Outcome prefix = run(head, limits(true), step);
      EXPECT_FALSE(prefix.done) << "step " << step;
      EXPECT_EQ(prefix.consumed, head.size()) << "step " << step;
      Outcome o = run(in, limits(true), step);
      EXPECT_TRUE(o.done) << "step " << step;
      EXPECT_EQ(o.consumed, in.size()) << "step " << step;
      EXPECT_TRUE(o.fault == Fault::bare_lf || o.fault == Fault::bare_cr)
          << "step " << step << " fault " << fault_name(o.fault);
    }
  }
}

TEST(DataDecoderSmuggling, LookalikeTerminatorsNeverEndWhenNormalising) {
  for (const char* trick : kSmuggle) {
    std::string head = smuggling_input(trick);
    std::string in = head + "\r\n.\r\n";
    SCOPED_TRACE(testing::PrintToString(std::string(trick)));
    for (size_t step : {size_t{0}, size_t{1}}) {
      Outcome prefix = run(head, limits(false), step);
      EXPECT_FALSE(prefix.done) << "step " << step;
      EXPECT_EQ(prefix.consumed, head.size()) << "step " << step;
      Outcome o = run(in, limits(false), step);
      EXPECT_TRUE(o.done) << "step " << step;
      EXPECT_EQ(o.consumed, in.size()) << "step " << step;
      EXPECT_EQ(o.fault, Fault::none) << "step " << step;
      EXPECT_FALSE(has_bare_cr_or_lf(o.out)) << testing::PrintToString(o.out);
      EXPECT_NE(o.out.find("Subject: smuggled\r\n"), std::string::npos);
    }
  }
}

TEST(DataDecoderSmuggling, BareLfIsAFaultButScanningGoesOnToTheRealEnd) {
  std::string in = "a\nb\r\n.\r\n";
  Outcome o = run(in, limits(true));
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::bare_lf);
  EXPECT_EQ(o.consumed, in.size());
  Outcome cr = run("a\rb\r\n.\r\n", limits(true));
  EXPECT_TRUE(cr.done);
  EXPECT_EQ(cr.fault, Fault::bare_cr);
  // The first fault is the one reported.
  EXPECT_EQ(run("a\nb\rc\r\n.\r\n", limits(true)).fault, Fault::bare_lf);
  EXPECT_EQ(run("a\rb\nc\r\n.\r\n", limits(true)).fault, Fault::bare_cr);
}

TEST(DataDecoderSmuggling, BareCrAtTheVeryEndOfAFeedIsNotYetAFault) {
  DataDecoder d(limits(true));
  std::string out;
  d.feed("abc\r", out);
  EXPECT_EQ(d.fault(), Fault::none);
  d.feed("\n.\r\n", out);
  EXPECT_TRUE(d.done());
  EXPECT_EQ(d.fault(), Fault::none);
  EXPECT_EQ(out, "abc\r\n");
}

// --- normalisation (reject_bare_lf = false) -------------------------------------------

TEST(DataDecoderNormalise, BareLineEndsBecomeCrLf) {
  Outcome o = run("a\nb\rc\r\n\n\r\n.\r\n", limits(false));
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_EQ(o.out, "a\r\nb\r\nc\r\n\r\n\r\n");
  EXPECT_EQ(o.size, o.out.size());
}

TEST(DataDecoderNormalise, CrCrLf) {
  Outcome o = run("a\r\r\nb\r\n.\r\n", limits(false));
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_EQ(o.out, "a\r\n\r\nb\r\n");
}

TEST(DataDecoderNormalise, DotLinesWithBareLineEnds) {
  Outcome o = run("a\r\n.\nb\r\n.\r\n", limits(false));
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_FALSE(has_bare_cr_or_lf(o.out)) << testing::PrintToString(o.out);
  EXPECT_EQ(o.out, "a\r\n.\r\nb\r\n");
}

// --- line length (RFC 5321 4.5.3.1.6: 1000 octets including CRLF) ----------------------

TEST(DataDecoderLimits, LineExactlyAtTheLimit) {
  std::string line(998, 'a');
  Outcome o = run(line + "\r\n.\r\n", limits());
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_EQ(o.out, line + "\r\n");
}

TEST(DataDecoderLimits, LineOneOverTheLimit) {
  std::string in = std::string(999, 'a') + "\r\nnext\r\n.\r\n";
  for (size_t step : {size_t{0}, size_t{1}, size_t{7}}) {
    Outcome o = run(in, limits(), step);
    EXPECT_TRUE(o.done) << step;
    EXPECT_EQ(o.consumed, in.size()) << step;
    EXPECT_EQ(o.fault, Fault::line_too_long) << step;
  }
}

TEST(DataDecoderLimits, StuffedDotCountsOnTheWire) {
  // "." + 997 octets is a 998-octet line on the wire: fine; one more is too long.
  Outcome ok = run("." + std::string(997, 'b') + "\r\n.\r\n", limits());
  EXPECT_EQ(ok.fault, Fault::none);
  EXPECT_EQ(ok.out, std::string(997, 'b') + "\r\n");
  Outcome over = run("." + std::string(998, 'b') + "\r\n.\r\n", limits());
  EXPECT_TRUE(over.done);
  EXPECT_EQ(over.fault, Fault::line_too_long);
}

TEST(DataDecoderLimits, SmallLineLimitAndManyLines) {
  // max_line 10: 8 octets + CRLF.
  Outcome ok = run("12345678\r\n12345678\r\n.\r\n", limits(true, 10));
  EXPECT_EQ(ok.fault, Fault::none);
  EXPECT_EQ(ok.out, "12345678\r\n12345678\r\n");
  Outcome over = run("12345678\r\n123456789\r\n.\r\n", limits(true, 10));
  EXPECT_TRUE(over.done);
  EXPECT_EQ(over.fault, Fault::line_too_long);
  // The count restarts on every line; a long message of short lines is fine.
  std::string many;
  for (int i = 0; i < 1000; ++i) many += "12345678\r\n";
  Outcome m = run(many + ".\r\n", limits(true, 10));
  EXPECT_EQ(m.fault, Fault::none);
  EXPECT_EQ(m.out, many);
}

TEST(DataDecoderLimits, SizeLimit) {
  // "abc\r\n" decodes to 5 octets.
  Outcome at = run("abc\r\n.\r\n", limits(true, 1000, 5));
  EXPECT_TRUE(at.done);
  EXPECT_EQ(at.fault, Fault::none);
  EXPECT_EQ(at.out, "abc\r\n");
  Outcome over = run("abc\r\n.\r\n", limits(true, 1000, 4));
  EXPECT_TRUE(over.done);
  EXPECT_EQ(over.fault, Fault::too_big);
  EXPECT_LE(over.out.size(), 4u);
  EXPECT_EQ(over.size, 5u);
}

TEST(DataDecoderLimits, StorageStopsAfterAFaultButScanningContinues) {
  std::string body;
  for (int i = 0; i < 5000; ++i) body += "0123456789012345678901234567890123456789\r\n";
  std::string in = body + ".\r\nQUIT\r\n";
  for (size_t step : {size_t{0}, size_t{1000}}) {
    Outcome o = run(in, limits(true, 1000, 4096), step);
    EXPECT_TRUE(o.done);
    EXPECT_EQ(o.fault, Fault::too_big);
    EXPECT_EQ(o.consumed, in.size() - 6);
    EXPECT_LE(o.out.size(), 4096u);
    EXPECT_EQ(o.size, body.size());
  }
}

TEST(DataDecoderLimits, SizeCountsDecodedOctets) {
  // Stuffing dots do not count; normalised line ends count as CRLF.
  Outcome o = run("..x\r\n.\r\n", limits(true, 1000, 4));
  EXPECT_EQ(o.fault, Fault::none);
  EXPECT_EQ(o.size, 4u);
  Outcome n = run("ab\ncd\r\n.\r\n", limits(false, 1000, 8));
  EXPECT_EQ(n.fault, Fault::none);
  EXPECT_EQ(n.size, 8u);
  EXPECT_EQ(n.out, "ab\r\ncd\r\n");
}

// --- property: how the input is split does not change the result ---------------------

std::string random_input(std::mt19937& rng) {
  static const char kAlphabet[] = {'a', 'b', '.', '.', '\r', '\n', '\r', '\n', ' ', 'Z', '\0'};
  std::uniform_int_distribution<size_t> len(0, 120);
  std::uniform_int_distribution<size_t> pick(0, sizeof kAlphabet - 1);
  std::uniform_int_distribution<int> coin(0, 3);
  std::string s;
  size_t n = len(rng);
  for (size_t i = 0; i < n; ++i) {
    int c = coin(rng);
    if (c == 0)
      s += "\r\n";
    else if (c == 1 && i % 17 == 0)
      s += "\r\n.\r\n";
    else
      s.push_back(kAlphabet[pick(rng)]);
  }
  if (coin(rng) != 0) s += "\r\n.\r\nNEXT\r\n";
  return s;
}

void expect_same(const Outcome& a, const Outcome& b, std::string_view in, const char* how) {
  SCOPED_TRACE(testing::PrintToString(std::string(in)) + " " + how);
  EXPECT_EQ(a.consumed, b.consumed);
  EXPECT_EQ(a.done, b.done);
  EXPECT_EQ(fault_name(a.fault), std::string(fault_name(b.fault)));
  EXPECT_EQ(a.size, b.size);
  if (a.fault == Fault::none && b.fault == Fault::none) {
    EXPECT_EQ(a.out, b.out);
  }
}

TEST(DataDecoderProperty, ByteByByteEqualsOneFeed) {
  std::mt19937 rng(20240611);
  const DataDecoder::Limits kLimits[] = {
      limits(true),
      limits(false),
      limits(true, 8, 1 << 20),
      limits(false, 8, 1 << 20),
      limits(true, 1000, 40),
      limits(false, 1000, 40),
  };
  int failures = 0;
  for (int iter = 0; iter < 3000 && failures < 5; ++iter) {
    std::string in = random_input(rng);
    const DataDecoder::Limits& l = kLimits[static_cast<size_t>(iter) % std::size(kLimits)];
    Outcome whole = run(in, l, 0);
    Outcome bytes = run(in, l, 1);
    std::uniform_int_distribution<size_t> step(2, 9);
    Outcome chunks = run(in, l, step(rng));
    expect_same(whole, bytes, in, "byte by byte");
    expect_same(whole, chunks, in, "chunks");
    // Invariants that hold however it was fed.
    EXPECT_LE(whole.consumed, in.size());
    if (whole.fault == Fault::none) {
      EXPECT_LE(whole.out.size(), l.max_size);
      EXPECT_EQ(whole.size, whole.out.size());
      if (!l.reject_bare_lf) {
        EXPECT_FALSE(has_bare_cr_or_lf(whole.out));
      }
    }
    if (!l.reject_bare_lf) {
      EXPECT_NE(whole.fault, Fault::bare_lf);
    }
    if (testing::Test::HasFailure()) ++failures;
  }
}

TEST(DataDecoderProperty, FirstFaultDoesNotDependOnSegmentation) {
  // A line that is both too long and pushes the message over its size limit: the fault
  // reported (and so the reply) must not depend on how TCP split the bytes.
  std::string in = std::string(30, 'a') + "\r\n.\r\n";
  auto l = limits(true, 20, 10);
  Outcome whole = run(in, l, 0);
  Outcome bytes = run(in, l, 1);
  EXPECT_TRUE(whole.done);
  EXPECT_TRUE(bytes.done);
  EXPECT_EQ(fault_name(whole.fault), std::string(fault_name(bytes.fault)));
}

}  // namespace
}  // namespace ringmail::smtp
