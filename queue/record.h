// Binary encoding of queue records. Every record starts with a format version and is
// read with bounds checks, so a damaged or foreign record is an Error, never a crash.
#pragma once

#include <string>
#include <string_view>

#include "conf/result.h"
#include "queue/envelope.h"

namespace ringmail::queue {

// The envelope without its recipients (those are separate records, one per recipient,
// so a delivery attempt rewrites only the recipient it touched).
std::string encode_envelope(const Envelope& e);
Status decode_envelope(std::string_view data, Envelope& out);

std::string encode_recipient(const Recipient& r);
Result<Recipient> decode_recipient(std::string_view data);

// Big-endian fixed-width keys so LMDB's byte order is numeric order.
std::string key_id(uint64_t id);
std::string key_id_index(uint64_t id, uint32_t index);
std::string key_time_id(int64_t t, uint64_t id);
uint64_t read_be64(std::string_view s, size_t off = 0);
uint32_t read_be32(std::string_view s, size_t off = 0);

}  // namespace ringmail::queue
