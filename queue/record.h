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

// The write-ahead log's record of an accepted message (wal.h, Wal::kTypeMessage): the
// id, the envelope, each recipient, then the stored message itself as the rest, so the
// body is appended once and read back as a view.
void encode_message_op(std::string& out, QueueId id, const Envelope& e, std::string_view body);
struct MessageOp {
  QueueId id;
  Envelope envelope;      // recipients included
  std::string_view body;  // points into the decoded data
};
Status decode_message_op(std::string_view data, MessageOp& out);

// Big-endian fixed-width keys so LMDB's byte order is numeric order.
std::string key_id(uint64_t id);
std::string key_id_index(uint64_t id, uint32_t index);
std::string key_time_id(int64_t t, uint64_t id);
uint64_t read_be64(std::string_view s, size_t off = 0);
uint32_t read_be32(std::string_view s, size_t off = 0);

}  // namespace ringmail::queue
