#include "mta/smtp/data_decoder.h"

#include <cstring>

namespace ringmail::smtp {

void DataDecoder::emit(std::string& out, const char* p, size_t n) {
  size_ += n;
  if (size_ > limits_.max_size) set_fault(Fault::too_big);
  // Once faulted nothing more is stored: memory stays bounded by the limits.
  if (fault_ == Fault::none) out.append(p, n);
}

size_t DataDecoder::feed(std::string_view in, std::string& out) {
  const char* p = in.data();
  const char* end = p + in.size();
  const size_t max_content = limits_.max_line - 2;
  static constexpr char kCrlf[] = "\r\n";
  while (p < end && state_ != State::done) {
    switch (state_) {
      case State::line_start:
        if (*p == '.') {
          state_ = State::dot;
          ++line_len_;
          ++p;
          break;
        }
        state_ = State::in_line;
        [[fallthrough]];
      case State::in_line: {
        // Fast path: copy the run up to the next CR or LF in one append.
        const char* q = p;
        while (q < end && *q != '\r' && *q != '\n') ++q;
        size_t run = static_cast<size_t>(q - p);
        if (run) {
          // Which limit this run crosses first must not depend on how the input was
          // split, so compare where each would be crossed (ties: the line check comes
          // first, as it would byte by byte).
          uint64_t line_room = max_content > line_len_ ? max_content - line_len_ : 0;
          uint64_t size_room = limits_.max_size > size_ ? limits_.max_size - size_ : 0;
          bool line_over = run > line_room;
          if (line_over && line_room <= size_room) set_fault(Fault::line_too_long);
          line_len_ += run;
          emit(out, p, run);
          if (line_over) set_fault(Fault::line_too_long);
          p = q;
        }
        if (p == end) break;
        if (*p == '\r') {
          state_ = State::cr;
        } else {  // bare LF
          if (limits_.reject_bare_lf) set_fault(Fault::bare_lf);
          emit(out, kCrlf, 2);
          line_len_ = 0;
          after_crlf_ = false;
          state_ = State::line_start;
        }
        ++p;
        break;
      }
      case State::cr:
        if (*p == '\n') {
          emit(out, kCrlf, 2);
          after_crlf_ = true;
          ++p;
        } else {  // bare CR: the byte after it starts a new line
          if (limits_.reject_bare_lf) set_fault(Fault::bare_cr);
          emit(out, kCrlf, 2);
          after_crlf_ = false;
        }
        line_len_ = 0;
        state_ = State::line_start;
        break;
      case State::dot:
        if (*p == '\r') {
          state_ = State::dot_cr;
          ++p;
        } else if (*p == '\n') {
          // ".\n" is not the end of data: only CRLF.CRLF is.
          if (limits_.reject_bare_lf) set_fault(Fault::bare_lf);
          emit(out, ".\r\n", 3);
          line_len_ = 0;
          after_crlf_ = false;
          state_ = State::line_start;
          ++p;
        } else {
          // A leading dot was stuffed by the client (RFC 5321 4.5.2): drop it.
          state_ = State::in_line;
        }
        break;
      case State::dot_cr:
        if (*p == '\n' && after_crlf_) {
          state_ = State::done;
          ++p;
        } else if (*p == '\n') {
          // LF "." CRLF or CR "." CRLF: the line before ended badly (already a fault), so
          // this is not CRLF.CRLF and not the end; other servers disagree on exactly this.
          emit(out, ".\r\n", 3);
          line_len_ = 0;
          after_crlf_ = true;
          state_ = State::line_start;
          ++p;
        } else {
          // ".\r" + something: a bare CR after a lone dot. The dot was not stuffing.
          if (limits_.reject_bare_lf) set_fault(Fault::bare_cr);
          emit(out, ".\r\n", 3);
          line_len_ = 0;
          after_crlf_ = false;
          state_ = State::line_start;
        }
        break;
      case State::done:
        break;
    }
  }
  return static_cast<size_t>(p - in.data());
}

}  // namespace ringmail::smtp
