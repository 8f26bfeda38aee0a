// CRC-32C (Castagnoli), the checksum of write-ahead-log records (wal.h). Uses the SSE4.2
// crc32 instruction where the CPU has it and a table otherwise; both give the same value
// (the check value of "123456789" is 0xE3069283). No I/O, no state.
#pragma once

#include <cstdint>
#include <string_view>

namespace ringmail::queue {

// `crc` continues an earlier value (0 to start).
uint32_t crc32c(std::string_view data, uint32_t crc = 0);

}  // namespace ringmail::queue
