#include "mta/runtime/buffer_ring.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ringmail::rt {

BufferRing::BufferRing(io_uring* ring, unsigned count, unsigned size)
    : ring_(ring), count_(count), size_(size) {
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768) {
    std::fprintf(stderr, "BufferRing: count must be a power of two <= 32768\n");
    std::abort();
  }
  br_bytes_ = count * sizeof(io_uring_buf);
  void* mem = mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    std::perror("BufferRing: mmap");
    std::abort();
  }
  br_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(br_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br_);
  reg.ring_entries = count;
  reg.bgid = kGroup;
  if (int r = io_uring_register_buf_ring(ring_, &reg, 0); r != 0) {
    std::fprintf(stderr, "BufferRing: register_buf_ring: %s (kernel 5.19+ needed)\n",
                 std::strerror(-r));
    std::abort();
  }
  // Anonymous mapping: pages are only paid for once a receive touches them.
  void* bufs = mmap(nullptr, static_cast<size_t>(count) * size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (bufs == MAP_FAILED) {
    std::perror("BufferRing: mmap buffers");
    std::abort();
  }
  base_ = static_cast<char*>(bufs);
  int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i)
    io_uring_buf_ring_add(br_, data(static_cast<uint16_t>(i)), size, static_cast<uint16_t>(i), mask,
                          static_cast<int>(i));
  io_uring_buf_ring_advance(br_, static_cast<int>(count));
}

BufferRing::~BufferRing() {
  io_uring_unregister_buf_ring(ring_, kGroup);
  munmap(br_, br_bytes_);
  munmap(base_, static_cast<size_t>(count_) * size_);
}

void BufferRing::give_back(uint16_t bid) {
  io_uring_buf_ring_add(br_, data(bid), size_, bid, io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

}  // namespace ringmail::rt
