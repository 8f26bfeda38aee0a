// Result<T>: errors as values where failure is normal (network, parse, disk).
//
// g++ 12 has no std::expected, so this is the small subset we need. It lives in conf/
// because conf is the bottom of the dependency graph (mta, queue, dns and auth all use
// it) and the design fixes the top-level folders. It never throws on the error path;
// calling value() on an error is a programmer error and aborts.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace ringmail {

struct Error {
  int code = 0;  // errno-style or a part-specific code; 0 when only the text matters
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    check();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check();
    return std::get<0>(v_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  void check() const {
    if (!ok()) {
      std::fprintf(stderr, "Result::value() on error: %s\n", std::get<1>(v_).message.c_str());
      std::abort();
    }
  }
  std::variant<T, Error> v_;
};

// Result<void> stand-in.
struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() {
  return Ok{};
}

}  // namespace ringmail
