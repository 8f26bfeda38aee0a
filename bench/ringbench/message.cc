#include "bench/ringbench/message.h"

#include <ctime>

namespace ringbench {

namespace {

constexpr std::string_view kWords[] = {
    "Lorem",      "ipsum",     "dolor",     "sit",       "amet,",   "consectetur",  "adipiscing",
    "elit,",      "sed",       "do",        "eiusmod",   "tempor",  "incididunt",   "ut",
    "labore",     "et",        "dolore",    "magna",     "aliqua.", "Ut",           "enim",
    "ad",         "minim",     "veniam,",   "quis",      "nostrud", "exercitation", "ullamco",
    "laboris",    "nisi",      "ut",        "aliquip",   "ex",      "ea",           "commodo",
    "consequat.", "Duis",      "aute",      "irure",     "dolor",   "in",           "reprehenderit",
    "in",         "voluptate", "velit",     "esse",      "cillum",  "dolore",       "eu",
    "fugiat",     "nulla",     "pariatur.", "Excepteur", "sint",    "occaecat",     "cupidatat",
    "non",        "proident,", "sunt",      "in",        "culpa",   "qui",          "officia",
    "deserunt",   "mollit",    "anim",      "id",        "est",     "laborum."};
constexpr size_t kWordCount = sizeof kWords / sizeof kWords[0];
constexpr size_t kMaxLine = 78;  // RFC 5322 2.1.1: SHOULD be no more than 78 characters
// Every this many lines, one starts with '.', so DATA needs dot-stuffing.
constexpr size_t kDotEvery = 16;

// Text lines wrapped at word boundaries.
class Words {
 public:
  // A line of exactly `len` characters: whole words, then (only on a message's last
  // line, which must fill the size exactly) letters of the next word.
  void line(std::string& out, size_t len, bool dot) {
    size_t start = out.size();
    if (dot) out += ". ";
    bool first = true;
    for (;;) {
      std::string_view w = kWords[next_ % kWordCount];
      size_t add = (first ? 0 : 1) + w.size();
      if (out.size() - start + add > len) break;
      if (!first) out += ' ';
      out += w;
      first = false;
      ++next_;
    }
    size_t cur = out.size() - start;
    if (cur < len) {
      if (!first && len - cur >= 2) {
        out += ' ';
        ++cur;
      }
      std::string_view w = kWords[next_ % kWordCount];
      for (size_t i = 0; cur < len; ++i, ++cur) out += w[i % w.size()];
    }
    out.resize(start + len);
  }
  // A naturally wrapped line: as many words as fit in kMaxLine.
  size_t natural_length() {
    size_t len = 0;
    for (size_t i = next_;; ++i) {
      size_t w = kWords[i % kWordCount].size();
      size_t add = len ? w + 1 : w;
      if (len + add > kMaxLine - 2) return len;  // room for a leading ". "
      len += add;
    }
  }

 private:
  size_t next_ = 0;
};

std::string domain_of(std::string_view addr) {
  size_t at = addr.rfind('@');
  return at == std::string_view::npos ? std::string("bench.test")
                                      : std::string(addr.substr(at + 1));
}

}  // namespace

void write_seq(char* at, uint64_t seq) {
  for (size_t i = kSeqDigits; i-- > 0;) {
    at[i] = static_cast<char>('0' + seq % 10);
    seq /= 10;
  }
}

Content build_content(const MessageSpec& spec) {
  Content c;
  std::string& t = c.text;
  char date[64];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  t.reserve(spec.size + 512);
  t += "From: Bench Sender <" + spec.from + ">\r\n";
  t += "To: Bench Recipient <" + spec.to + ">\r\n";
  t += "Subject: ringbench load test message\r\n";
  t += std::string("Date: ") + date + "\r\n";
  t += "Message-ID: <" + spec.run_id + ".";
  c.seq_offset = t.size();
  t.append(kSeqDigits, '0');
  t += "@" + domain_of(spec.from) + ">\r\n";
  t += "MIME-Version: 1.0\r\n";
  t += "Content-Type: text/plain; charset=us-ascii\r\n";
  t += "Content-Transfer-Encoding: 7bit\r\n";
  t += "\r\n";
  if (t.size() >= spec.size) return c;  // the headers alone are what was asked for or more
  if (spec.size - t.size() == 1) {
    // One byte left cannot be a line (CRLF is two, and a bare LF is refused): the
    // Subject takes it instead. It comes before the Message-ID.
    size_t subject_end = t.find("\r\n", t.find("Subject: "));
    t.insert(subject_end, "!");
    ++c.seq_offset;
    return c;
  }

  Words words;
  size_t n = 0;
  for (;;) {
    size_t remaining = spec.size - t.size();
    if (remaining == 0) break;
    bool dot = ++n % kDotEvery == 0;
    size_t len;
    if (remaining <= kMaxLine + 2) {
      len = remaining - 2;  // the last line, exactly filling the size
    } else if (remaining == kMaxLine + 3) {
      len = kMaxLine - 1;  // leaves 2: one empty line after it
    } else {
      len = words.natural_length() + (dot ? 2 : 0);
      if (remaining - (len + 2) == 1) --len;  // never leave a single byte
    }
    words.line(t, len, dot);
    t += "\r\n";
  }
  return c;
}

std::string dot_stuff(std::string_view content, size_t& seq_offset) {
  std::string out;
  out.reserve(content.size() + content.size() / 40 + 8);
  size_t moved = 0;
  bool line_start = true;
  for (size_t i = 0; i < content.size(); ++i) {
    char ch = content[i];
    if (line_start && ch == '.') {
      out += '.';
      if (i < seq_offset) ++moved;
    }
    out += ch;
    line_start = ch == '\n';
  }
  if (!line_start) out += "\r\n";
  out += ".\r\n";
  seq_offset += moved;
  return out;
}

Wire::Wire(const Content& c, const MessageSpec& spec, bool bdat, bool size_param) {
  std::string size = size_param ? " SIZE=" + std::to_string(c.text.size()) : "";
  cmds_ = "MAIL FROM:<" + spec.from + ">" + size + "\r\n";
  mail_len_ = cmds_.size();
  cmds_ += "RCPT TO:<" + spec.to + ">\r\n";
  rcpt_len_ = cmds_.size() - mail_len_;
  if (bdat) {
    cmds_ += "BDAT " + std::to_string(c.text.size()) + " LAST\r\n";
    payload_.reserve(cmds_.size() + c.text.size());
    payload_ = cmds_;
    seq_offset_ = payload_.size() + c.seq_offset;
    payload_ += c.text;
  } else {
    cmds_ += "DATA\r\n";
    seq_offset_ = c.seq_offset;
    payload_ = dot_stuff(c.text, seq_offset_);
  }
}

}  // namespace ringbench
