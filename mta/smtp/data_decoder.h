// DataDecoder: the DATA phase as a sans-IO state machine (RFC 5321 4.1.1.4, 4.5.2).
//
// Fed raw bytes, it undoes dot-stuffing exactly and stops at CRLF "." CRLF and at nothing
// else: "\n.\n", "\r.\r" and friends are not an end (SMTP smuggling). A bare CR or LF is
// a fault by default; so is a line over the limit or a message over the size limit. After
// a fault it stops storing but keeps scanning to the real end, so the session stays in
// step with the client and answers once, after the terminator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ringmail::smtp {

class DataDecoder {
 public:
  enum class Fault { none, bare_lf, bare_cr, line_too_long, too_big };

  struct Limits {
    uint64_t max_size = 52428800;  // decoded message bytes
    size_t max_line = 1000;        // octets on the wire including CRLF
    bool reject_bare_lf = true;    // false: a bare CR or LF becomes CRLF
  };

  explicit DataDecoder(const Limits& l) : limits_(l) {}

  // Consumes from `in`, appending decoded message bytes to `out`. Returns how many
  // bytes of `in` were used: all of them, or up to and including the terminator.
  size_t feed(std::string_view in, std::string& out);

  bool done() const { return state_ == State::done; }
  Fault fault() const { return fault_; }
  uint64_t size() const { return size_; }

 private:
  enum class State { line_start, in_line, cr, dot, dot_cr, done };
  void set_fault(Fault f) {
    if (fault_ == Fault::none) fault_ = f;
  }
  void emit(std::string& out, const char* p, size_t n);

  Limits limits_;
  State state_ = State::line_start;
  Fault fault_ = Fault::none;
  size_t line_len_ = 0;  // octets of the current line on the wire, CRLF excluded
  // The current line began after a real CRLF (or at the start of DATA): only then can
  // "." CRLF end the message.
  bool after_crlf_ = true;
  uint64_t size_ = 0;
};

}  // namespace ringmail::smtp
