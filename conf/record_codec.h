// RecordWriter / RecordReader: the compact binary encoding of LMDB records (queue
// envelopes and recipients, user accounts): u8, LEB128 varints, length-prefixed strings.
//
// Every read is bounds-checked against what is left, so a damaged length can never make
// it read past the end or allocate more than the record holds; after the first failure
// every read fails. It lives in conf/ (the bottom of the dependency graph) because queue/
// and auth/ both store records and may not include each other. No I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ringmail {

class RecordWriter {
 public:
  void u8(uint8_t v) { s_.push_back(static_cast<char>(v)); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      s_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    s_.push_back(static_cast<char>(v));
  }
  void str(std::string_view v) {
    varint(v.size());
    s_.append(v);
  }
  std::string take() { return std::move(s_); }

 private:
  std::string s_;
};

class RecordReader {
 public:
  explicit RecordReader(std::string_view s) : s_(s) {}
  bool u8(uint8_t& v) {
    if (!ok_ || pos_ >= s_.size()) return fail();
    v = static_cast<uint8_t>(s_[pos_++]);
    return true;
  }
  bool varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!u8(b)) return false;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return fail();
  }
  bool str(std::string& v) {
    uint64_t n;
    if (!varint(n)) return false;
    if (n > remaining()) return fail();
    v.assign(s_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  size_t remaining() const { return s_.size() - pos_; }
  // What is left unread (a trailing blob stored without a length).
  std::string_view rest() const { return ok_ ? s_.substr(pos_) : std::string_view(); }
  bool done() const { return ok_ && pos_ == s_.size(); }
  bool ok() const { return ok_; }

 private:
  bool fail() {
    ok_ = false;
    return false;
  }
  std::string_view s_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace ringmail
