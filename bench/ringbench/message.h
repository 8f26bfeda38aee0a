// The message the load generator sends, and its wire forms.
//
// Built once per connection, then only a fixed-width sequence number inside the
// Message-ID is rewritten for each message: sending allocates and copies nothing.
// Content looks like real mail (RFC 5322 headers, text lines of at most 78 characters,
// CRLF) and deliberately has lines starting with '.', so the DATA form exercises
// dot-stuffing (RFC 5321 4.5.2) on both sides.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ringbench {

struct MessageSpec {
  std::string from;
  std::string to;
  std::string run_id;  // makes Message-IDs unique across runs
  size_t size = 1024;  // content bytes wanted (headers + body, before dot-stuffing)
};

constexpr size_t kSeqDigits = 12;

// Headers + body, CRLF lines, exactly spec.size bytes when that is at least a minimal
// header block; `seq_offset` is where the kSeqDigits digits of the sequence number are.
struct Content {
  std::string text;
  size_t seq_offset = 0;
};
Content build_content(const MessageSpec& spec);

// RFC 5321 4.5.2: a '.' at the start of a line is doubled; then the terminating
// ".\r\n" (the content ends with CRLF). `seq_offset` is moved to the stuffed text.
std::string dot_stuff(std::string_view content, size_t& seq_offset);

// Writes `seq` as kSeqDigits decimal digits at `at` (the number wraps silently).
void write_seq(char* at, uint64_t seq);

// What one connection sends: its command lines and its payload, with the sequence
// number patched in place before each message.
class Wire {
 public:
  // `pipelined`: MAIL, RCPT, DATA leave in one write; `bdat`: MAIL, RCPT, "BDAT n LAST"
  // and the content leave in one write. `size_param`: the server advertised SIZE.
  Wire(const Content& c, const MessageSpec& spec, bool bdat, bool size_param);

  void set_seq(uint64_t seq) { write_seq(payload_.data() + seq_offset_, seq); }

  // Command lines, one round trip each (ignored with bdat).
  std::string_view mail() const { return std::string_view(cmds_).substr(0, mail_len_); }
  std::string_view rcpt() const { return std::string_view(cmds_).substr(mail_len_, rcpt_len_); }
  std::string_view data() const { return std::string_view(cmds_).substr(mail_len_ + rcpt_len_); }
  // MAIL + RCPT + DATA together (RFC 2920).
  std::string_view pipelined() const { return cmds_; }
  // DATA: the stuffed content and ".\r\n". BDAT: MAIL + RCPT + BDAT line + content.
  std::string_view payload() const { return payload_; }

 private:
  std::string cmds_;
  size_t mail_len_ = 0;
  size_t rcpt_len_ = 0;
  std::string payload_;
  size_t seq_offset_ = 0;
};

}  // namespace ringbench
