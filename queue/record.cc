#include "queue/record.h"

#include <cstdint>

#include "conf/record_codec.h"

namespace ringmail::queue {

namespace {
constexpr uint8_t kEnvelopeVersion = 1;
// Version 2 appended last_status, last_mx, last_attempt and delay_notified; version 1
// records (queues written before delivery existed) still decode, with those empty.
constexpr uint8_t kRecipientVersion = 2;
constexpr uint64_t kMaxRecipients = 1000000;  // far above limits.max_recipients' ceiling

using Writer = RecordWriter;
using Reader = RecordReader;

uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t unzigzag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

void put_be(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
}  // namespace

std::string encode_envelope(const Envelope& e) {
  Writer w;
  w.u8(kEnvelopeVersion);
  w.str(e.sender);
  w.varint(e.declared_size);
  w.u8(static_cast<uint8_t>(e.body));
  w.u8(e.smtputf8 ? 1 : 0);
  w.u8(static_cast<uint8_t>(e.ret));
  w.str(e.envid);
  w.str(e.client_address);
  w.str(e.helo);
  w.str(e.auth_user);
  w.str(e.message_id);
  w.varint(zigzag(e.arrival_us));
  w.varint(e.body_size);
  w.varint(e.recipients.size());
  return w.take();
}

Status decode_envelope(std::string_view data, Envelope& e) {
  Reader r(data);
  uint8_t version = 0, body = 0, utf8 = 0, ret = 0;
  uint64_t arrival = 0, nrcpt = 0;
  r.u8(version);
  if (!r.ok() || version != kEnvelopeVersion)
    return Error{0, "envelope record: unknown version " + std::to_string(version)};
  r.str(e.sender);
  r.varint(e.declared_size);
  r.u8(body);
  r.u8(utf8);
  r.u8(ret);
  r.str(e.envid);
  r.str(e.client_address);
  r.str(e.helo);
  r.str(e.auth_user);
  r.str(e.message_id);
  r.varint(arrival);
  r.varint(e.body_size);
  r.varint(nrcpt);
  // The recipient count sizes a vector: a damaged count must not become a huge allocation.
  if (!r.done() || body > 3 || ret > 2 || nrcpt > kMaxRecipients)
    return Error{0, "envelope record: damaged"};
  e.body = static_cast<BodyType>(body);
  e.smtputf8 = utf8 != 0;
  e.ret = static_cast<Ret>(ret);
  e.arrival_us = unzigzag(arrival);
  e.recipients.resize(nrcpt);
  return ok_status();
}

std::string encode_recipient(const Recipient& rc) {
  Writer w;
  w.u8(kRecipientVersion);
  w.str(rc.address);
  w.str(rc.orcpt);
  w.u8(rc.notify);
  w.u8(static_cast<uint8_t>(rc.state));
  w.varint(rc.attempts);
  w.varint(zigzag(rc.next_attempt));
  w.str(rc.last_response);
  w.str(rc.last_status);
  w.str(rc.last_mx);
  w.varint(zigzag(rc.last_attempt));
  w.u8(rc.delay_notified ? 1 : 0);
  return w.take();
}

Result<Recipient> decode_recipient(std::string_view data) {
  Reader r(data);
  Recipient rc;
  uint8_t version = 0, state = 0;
  uint64_t attempts = 0, next = 0, last = 0;
  uint8_t notified = 0;
  r.u8(version);
  if (!r.ok() || version < 1 || version > kRecipientVersion)
    return Error{0, "recipient record: unknown version " + std::to_string(version)};
  r.str(rc.address);
  r.str(rc.orcpt);
  r.u8(rc.notify);
  r.u8(state);
  r.varint(attempts);
  r.varint(next);
  r.str(rc.last_response);
  if (version >= 2) {
    r.str(rc.last_status);
    r.str(rc.last_mx);
    r.varint(last);
    r.u8(notified);
  }
  if (!r.done() || state > static_cast<uint8_t>(RcptState::expired) || attempts > UINT32_MAX ||
      notified > 1)
    return Error{0, "recipient record: damaged"};
  rc.state = static_cast<RcptState>(state);
  rc.attempts = static_cast<uint32_t>(attempts);
  rc.next_attempt = unzigzag(next);
  rc.last_attempt = unzigzag(last);
  rc.delay_notified = notified != 0;
  return rc;
}

void encode_message_op(std::string& out, QueueId id, const Envelope& e, std::string_view body) {
  Writer w;
  w.varint(id.value);
  w.str(encode_envelope(e));
  for (const auto& r : e.recipients) w.str(encode_recipient(r));
  out += w.take();
  out += body;
}

Status decode_message_op(std::string_view data, MessageOp& out) {
  Reader r(data);
  std::string env, rcpt;
  r.varint(out.id.value);
  r.str(env);
  if (!r.ok()) return Error{0, "message record: damaged"};
  if (Status s = decode_envelope(env, out.envelope); !s) return s;
  for (auto& rc : out.envelope.recipients) {
    if (!r.str(rcpt)) return Error{0, "message record: damaged recipient"};
    auto d = decode_recipient(rcpt);
    if (!d) return d.error();
    rc = std::move(*d);
  }
  out.body = r.rest();
  return ok_status();
}

std::string key_id(uint64_t id) {
  std::string k;
  put_be(k, id, 8);
  return k;
}

std::string key_id_index(uint64_t id, uint32_t index) {
  std::string k;
  put_be(k, id, 8);
  put_be(k, index, 4);
  return k;
}

std::string key_time_id(int64_t t, uint64_t id) {
  std::string k;
  // Offset so negative times (never expected) still sort before positive ones.
  put_be(k, static_cast<uint64_t>(t) ^ (1ULL << 63), 8);
  put_be(k, id, 8);
  return k;
}

uint64_t read_be64(std::string_view s, size_t off) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && off + i < s.size(); ++i)
    v = (v << 8) | static_cast<uint8_t>(s[off + i]);
  return v;
}

uint32_t read_be32(std::string_view s, size_t off) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4 && off + i < s.size(); ++i)
    v = (v << 8) | static_cast<uint8_t>(s[off + i]);
  return v;
}

}  // namespace ringmail::queue
