#include "dns/message.h"

namespace ringmail::dns {

namespace {

constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxWireName = 255;  // RFC 1035 2.3.4, counting length octets and the root

Error malformed(const char* what) {
  return Error{0, std::string("malformed DNS message: ") + what};
}

uint16_t get16(std::span<const uint8_t> m, size_t at) {
  return static_cast<uint16_t>(m[at] << 8 | m[at + 1]);
}

uint32_t get32(std::span<const uint8_t> m, size_t at) {
  return static_cast<uint32_t>(m[at]) << 24 | static_cast<uint32_t>(m[at + 1]) << 16 |
         static_cast<uint32_t>(m[at + 2]) << 8 | m[at + 3];
}

void append_label(std::string& out, std::span<const uint8_t> label) {
  for (uint8_t c : label) {
    if (c >= 'A' && c <= 'Z') {
      out += static_cast<char>(c - 'A' + 'a');
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
      out += static_cast<char>(c);
    } else {
      // RFC 1035 5.1 \DDD: a '.' inside a label must not read as a label boundary.
      out += '\\';
      out += static_cast<char>('0' + c / 100);
      out += static_cast<char>('0' + c / 10 % 10);
      out += static_cast<char>('0' + c % 10);
    }
  }
}

Result<Record> read_record(std::span<const uint8_t> msg, size_t& offset) {
  auto name = read_name(msg, offset);
  if (!name) return name.error();
  if (msg.size() - offset < 10) return malformed("record header runs past the end");
  Record r;
  r.name = std::move(name.value());
  r.type = get16(msg, offset);
  r.rclass = get16(msg, offset + 2);
  r.ttl = get32(msg, offset + 4);
  // RFC 2181 8: a TTL with the top bit set is to be read as zero.
  if (r.ttl > 0x7fffffffu) r.ttl = 0;
  r.rdata_length = get16(msg, offset + 8);
  r.rdata_offset = offset + 10;
  if (msg.size() - r.rdata_offset < r.rdata_length) return malformed("RDATA runs past the end");
  offset = r.rdata_offset + r.rdata_length;
  return r;
}

// A name inside RDATA must end inside that RDATA (its pointers may go anywhere before).
Result<std::string> rdata_name(std::span<const uint8_t> msg, const Record& r, size_t& offset) {
  std::span<const uint8_t> upto = msg.first(r.rdata_offset + r.rdata_length);
  return read_name(upto, offset);
}

bool rdata_in_bounds(std::span<const uint8_t> msg, const Record& r) {
  return r.rdata_offset <= msg.size() && msg.size() - r.rdata_offset >= r.rdata_length;
}

}  // namespace

Result<std::string> read_name(std::span<const uint8_t> msg, size_t& offset) {
  std::string out;
  size_t pos = offset;
  // Every pointer must go below the previous one (and below the name's start): encoders
  // only point at names already written, and a strictly falling target cannot loop.
  size_t limit = offset;
  size_t wire = 0;
  bool jumped = false;
  bool first = true;
  for (;;) {
    if (pos >= msg.size()) return malformed("name runs past the end");
    uint8_t len = msg[pos];
    if ((len & 0xC0) == 0xC0) {
      if (pos + 1 >= msg.size()) return malformed("truncated compression pointer");
      size_t target = static_cast<size_t>(len & 0x3F) << 8 | msg[pos + 1];
      if (target >= limit) return malformed("compression pointer does not point backwards");
      if (!jumped) offset = pos + 2;
      jumped = true;
      limit = target;
      pos = target;
      continue;
    }
    if (len & 0xC0) return malformed("reserved label type");
    wire += len + 1u;
    if (wire > kMaxWireName) return malformed("name longer than 255 octets");
    ++pos;
    if (len == 0) break;
    if (msg.size() - pos < len) return malformed("label runs past the end");
    if (!first) out += '.';
    first = false;
    append_label(out, msg.subspan(pos, len));
    pos += len;
  }
  if (!jumped) offset = pos;
  return out;
}

Result<Message> parse_message(std::span<const uint8_t> msg) {
  if (msg.size() < kHeaderSize) return malformed("shorter than a header");
  Message m;
  Header& h = m.header;
  h.id = get16(msg, 0);
  h.response = (msg[2] & 0x80) != 0;
  h.opcode = (msg[2] >> 3) & 0x0F;
  h.truncated = (msg[2] & 0x02) != 0;
  h.rcode = msg[3] & 0x0F;
  h.qdcount = get16(msg, 4);
  h.ancount = get16(msg, 6);
  h.nscount = get16(msg, 8);
  h.arcount = get16(msg, 10);
  if (h.qdcount > 1) return malformed("more than one question");
  size_t off = kHeaderSize;
  if (h.qdcount == 1) {
    auto q = read_name(msg, off);
    if (!q) return q.error();
    if (msg.size() - off < 4) return malformed("question runs past the end");
    m.question_name = std::move(q.value());
    m.question_type = get16(msg, off);
    off += 4;
  }
  // Each record takes at least 11 octets, so a count larger than the bytes left is a lie;
  // checking it first keeps a forged count from reserving memory.
  auto section = [&](uint16_t count, std::vector<Record>& out) -> Status {
    if (count > (msg.size() - off) / 11) return malformed("record count exceeds the message");
    out.reserve(count);
    for (uint16_t i = 0; i < count; ++i) {
      auto r = read_record(msg, off);
      if (!r) return r.error();
      out.push_back(std::move(r.value()));
    }
    return ok_status();
  };
  if (auto s = section(h.ancount, m.answers); !s) return s.error();
  if (auto s = section(h.nscount, m.authority); !s) return s.error();
  return m;
}

Result<MxRdata> read_mx(std::span<const uint8_t> msg, const Record& r) {
  if (!rdata_in_bounds(msg, r) || r.rdata_length < 3) return malformed("short MX RDATA");
  MxRdata mx;
  mx.preference = get16(msg, r.rdata_offset);
  size_t off = r.rdata_offset + 2;
  auto name = rdata_name(msg, r, off);
  if (!name) return name.error();
  if (off != r.rdata_offset + r.rdata_length) return malformed("MX RDATA has trailing octets");
  mx.exchange = std::move(name.value());
  return mx;
}

Result<std::string> read_cname(std::span<const uint8_t> msg, const Record& r) {
  if (!rdata_in_bounds(msg, r) || r.rdata_length < 1) return malformed("short CNAME RDATA");
  size_t off = r.rdata_offset;
  auto name = rdata_name(msg, r, off);
  if (!name) return name.error();
  if (off != r.rdata_offset + r.rdata_length) return malformed("CNAME RDATA has trailing octets");
  return name;
}

Result<SoaRdata> read_soa(std::span<const uint8_t> msg, const Record& r) {
  if (!rdata_in_bounds(msg, r)) return malformed("SOA RDATA out of bounds");
  size_t off = r.rdata_offset;
  for (int i = 0; i < 2; ++i) {  // MNAME, RNAME
    auto name = rdata_name(msg, r, off);
    if (!name) return name.error();
  }
  if (r.rdata_offset + r.rdata_length - off != 20) return malformed("SOA RDATA has a bad length");
  SoaRdata soa;
  soa.minimum = get32(msg, off + 16);  // after SERIAL, REFRESH, RETRY, EXPIRE
  if (soa.minimum > 0x7fffffffu) soa.minimum = 0;
  return soa;
}

Result<std::array<uint8_t, 4>> read_a(std::span<const uint8_t> msg, const Record& r) {
  if (!rdata_in_bounds(msg, r) || r.rdata_length != 4) return malformed("A RDATA is not 4 octets");
  std::array<uint8_t, 4> a;
  for (size_t i = 0; i < 4; ++i) a[i] = msg[r.rdata_offset + i];
  return a;
}

Result<std::array<uint8_t, 16>> read_aaaa(std::span<const uint8_t> msg, const Record& r) {
  if (!rdata_in_bounds(msg, r) || r.rdata_length != 16)
    return malformed("AAAA RDATA is not 16 octets");
  std::array<uint8_t, 16> a;
  for (size_t i = 0; i < 16; ++i) a[i] = msg[r.rdata_offset + i];
  return a;
}

}  // namespace ringmail::dns
