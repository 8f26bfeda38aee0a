#include <cstdlib>
#include <new>
#include <vector>

#include "mta/runtime/task.h"

#if defined(__SANITIZE_ADDRESS__)
#define RINGMAIL_FRAME_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RINGMAIL_FRAME_POOL 0
#endif
#endif
#ifndef RINGMAIL_FRAME_POOL
#define RINGMAIL_FRAME_POOL 1
#endif

namespace ringmail::rt::detail {

#if RINGMAIL_FRAME_POOL
namespace {
constexpr std::size_t kGranule = 64;
constexpr std::size_t kClasses = 32;         // frames up to 2 KiB are pooled
constexpr std::size_t kKeepPerClass = 1024;  // bound what an idle thread holds

struct Pool {
  std::vector<void*> free[kClasses];
  ~Pool() {
    for (auto& list : free)
      for (void* p : list) ::operator delete(p);
  }
};
thread_local Pool t_pool;

std::size_t size_class(std::size_t n) {
  return (n + kGranule - 1) / kGranule - 1;
}
}  // namespace

void* frame_alloc(std::size_t n) {
  std::size_t c = size_class(n);
  if (c >= kClasses) return ::operator new(n);
  auto& list = t_pool.free[c];
  if (!list.empty()) {
    void* p = list.back();
    list.pop_back();
    return p;
  }
  return ::operator new((c + 1) * kGranule);
}

void frame_free(void* p, std::size_t n) noexcept {
  std::size_t c = size_class(n);
  if (c >= kClasses) {
    ::operator delete(p);
    return;
  }
  // A frame freed on another thread joins that thread's list: any thread may reuse any
  // block, they all come from ::operator new.
  auto& list = t_pool.free[c];
  if (list.size() >= kKeepPerClass) {
    ::operator delete(p);
    return;
  }
  try {
    list.push_back(p);
  } catch (...) {
    ::operator delete(p);
  }
}
#else
void* frame_alloc(std::size_t n) {
  return ::operator new(n);
}
void frame_free(void* p, std::size_t) noexcept {
  ::operator delete(p);
}
#endif

}  // namespace ringmail::rt::detail
