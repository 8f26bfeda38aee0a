// BufferRing: the kernel-provided receive buffers of one loop (IORING_REGISTER_PBUF_RING).
//
// A receive picks a buffer only when data arrives, so an idle connection holds none:
// that is what keeps 10,000 idle SMTP sessions cheap. liburing 2.3 has no
// io_uring_setup_buf_ring(), so the ring memory is mapped and registered here.
// Buffers go back with give_back() as soon as their bytes are parsed or copied.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>

namespace ringmail::rt {

class BufferRing {
 public:
  static constexpr uint16_t kGroup = 0;

  BufferRing(io_uring* ring, unsigned count, unsigned size);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  char* data(uint16_t bid) const { return base_ + static_cast<size_t>(bid) * size_; }
  unsigned buffer_size() const { return size_; }
  void give_back(uint16_t bid);

 private:
  io_uring* ring_;
  io_uring_buf_ring* br_ = nullptr;
  size_t br_bytes_ = 0;
  char* base_ = nullptr;
  unsigned count_;
  unsigned size_;
};

}  // namespace ringmail::rt
