// dns: the c-ares resolver driven by the event loop, and what it needs to read answers.
//
// This header: a bounds-checked reader for DNS messages in wire format (RFC 1035 4.1).
// It owns nothing but the parse: given the bytes of one response it returns the header,
// the question and the answer and authority records, with names decompressed, and it
// decodes the RDATA of the types mail routing uses (A, AAAA, MX, CNAME, SOA). It never
// does I/O, never trusts a count or a length it has not checked against the buffer, and
// never follows a compression pointer forwards, so any input ends in bounded time. The
// resolver uses it instead of c-ares' ares_parse_*_reply because c-ares 1.18 gives MX
// records without their TTL and never hands out the SOA of a negative answer, and a
// cache must know both (RFC 2181 5.2, RFC 2308 5).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "conf/result.h"

namespace ringmail::dns {

// RR types and the one class we read (RFC 1035 3.2.2, RFC 3596).
inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeCname = 5;
inline constexpr uint16_t kTypeSoa = 6;
inline constexpr uint16_t kTypeMx = 15;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kClassIn = 1;

// RCODEs (RFC 1035 4.1.1).
inline constexpr uint8_t kRcodeNoError = 0;
inline constexpr uint8_t kRcodeServFail = 2;
inline constexpr uint8_t kRcodeNxDomain = 3;
inline constexpr uint8_t kRcodeRefused = 5;

struct Header {
  uint16_t id = 0;
  bool response = false;
  bool truncated = false;
  uint8_t opcode = 0;
  uint8_t rcode = 0;
  uint16_t qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
};

// One resource record. The name is in presentation form, lower-cased, without the final
// dot (the root is ""); label octets that are not letters, digits, '-' or '_' are
// written as \DDD so that no label can smuggle in a '.' and every name compares as text.
struct Record {
  std::string name;
  uint16_t type = 0;
  uint16_t rclass = 0;
  uint32_t ttl = 0;
  // RDATA as offsets into the message: names inside it may point anywhere before it.
  size_t rdata_offset = 0;
  size_t rdata_length = 0;
};

struct Message {
  Header header;
  std::string question_name;  // "" when the message has no question
  uint16_t question_type = 0;
  std::vector<Record> answers;
  std::vector<Record> authority;  // the additional section is never read
};

// Parses header, question (at most one is allowed, as every server sends), answer and
// authority sections. Fails on anything out of bounds or malformed.
Result<Message> parse_message(std::span<const uint8_t> msg);

// Reads the (possibly compressed) name at `offset` and advances `offset` past its
// in-place part. Names are at most 255 octets on the wire (RFC 1035 2.3.4).
Result<std::string> read_name(std::span<const uint8_t> msg, size_t& offset);

// RDATA decoders; each checks that the RDATA is exactly as long as its type says.
struct MxRdata {
  uint16_t preference = 0;
  std::string exchange;  // "" is the root: a null MX (RFC 7505)
};
struct SoaRdata {
  uint32_t minimum = 0;  // the negative-caching TTL (RFC 2308 4)
};
Result<MxRdata> read_mx(std::span<const uint8_t> msg, const Record& r);
Result<std::string> read_cname(std::span<const uint8_t> msg, const Record& r);
Result<SoaRdata> read_soa(std::span<const uint8_t> msg, const Record& r);
Result<std::array<uint8_t, 4>> read_a(std::span<const uint8_t> msg, const Record& r);
Result<std::array<uint8_t, 16>> read_aaaa(std::span<const uint8_t> msg, const Record& r);

}  // namespace ringmail::dns
