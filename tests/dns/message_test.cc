// dns/message.h: the bounds-checked reader of DNS responses, against hand-built packets,
// including truncated and hostile ones (forward and looping compression pointers, forged
// counts, over-long names). A response comes from the network: nothing in it may crash
// the loop thread or make it spin.
#include "dns/message.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/support/dns_packet.h"

namespace ringmail::dns {
namespace {

using testing::Bytes;
using testing::Packet;

std::span<const uint8_t> span(const Bytes& b) {
  return {b.data(), b.size()};
}

TEST(DnsMessage, ParsesAnMxAnswer) {
  Bytes b = Packet()
                .question("example.test", kTypeMx)
                .answer("example.test", kTypeMx, 300, testing::mx_rdata(10, "mx1.example.test"))
                .answer("example.test", kTypeMx, 200, testing::mx_rdata(20, "mx2.example.test"))
                .authority("example.test", kTypeSoa, 600,
                           testing::soa_rdata("ns.example.test", "host.example.test", 60))
                .build();
  auto m = parse_message(span(b));
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->header.id, 0x1234);
  EXPECT_TRUE(m->header.response);
  EXPECT_EQ(m->header.rcode, kRcodeNoError);
  EXPECT_EQ(m->question_name, "example.test");
  EXPECT_EQ(m->question_type, kTypeMx);
  ASSERT_EQ(m->answers.size(), 2u);
  ASSERT_EQ(m->authority.size(), 1u);
  EXPECT_EQ(m->answers[0].ttl, 300u);
  EXPECT_EQ(m->answers[1].ttl, 200u);
  auto mx = read_mx(span(b), m->answers[1]);
  ASSERT_TRUE(mx.ok()) << mx.error().message;
  EXPECT_EQ(mx->preference, 20);
  EXPECT_EQ(mx->exchange, "mx2.example.test");
  auto soa = read_soa(span(b), m->authority[0]);
  ASSERT_TRUE(soa.ok()) << soa.error().message;
  EXPECT_EQ(soa->minimum, 60u);
}

TEST(DnsMessage, AddressesAndCname) {
  Bytes b = Packet()
                .question("www.example.test", kTypeA)
                .answer("www.example.test", kTypeCname, 30, testing::wire_name("h.example.test"))
                .answer("h.example.test", kTypeA, 30, testing::a_rdata("192.0.2.7"))
                .answer("h.example.test", kTypeAaaa, 30, testing::aaaa_rdata("2001:db8::7"))
                .build();
  auto m = parse_message(span(b));
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_EQ(m->answers.size(), 3u);
  auto cname = read_cname(span(b), m->answers[0]);
  ASSERT_TRUE(cname.ok());
  EXPECT_EQ(cname.value(), "h.example.test");
  auto a = read_a(span(b), m->answers[1]);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.value(), (std::array<uint8_t, 4>{192, 0, 2, 7}));
  auto aaaa = read_aaaa(span(b), m->answers[2]);
  ASSERT_TRUE(aaaa.ok());
  EXPECT_EQ(aaaa->at(0), 0x20);
  EXPECT_EQ(aaaa->at(15), 7);
  // Types are checked by length: an A decoder refuses the AAAA record and the reverse.
  EXPECT_FALSE(read_a(span(b), m->answers[2]).ok());
  EXPECT_FALSE(read_aaaa(span(b), m->answers[1]).ok());
}

// Header (12) + question "example.test" at offset 12, then records using pointers.
Bytes compressed_mx() {
  Bytes b = Packet().question("example.test", kTypeMx).build();
  b[7] = 1;  // ANCOUNT = 1
  // NAME: pointer to the question name at 12.
  b.insert(b.end(), {0xC0, 0x0C});
  testing::put16(b, kTypeMx);
  testing::put16(b, kClassIn);
  testing::put32(b, 3600);
  // RDATA: preference 5, "mx" + pointer to 12.
  testing::put16(b, 2 + 1 + 2 + 2);
  testing::put16(b, 5);
  b.insert(b.end(), {2, 'm', 'x', 0xC0, 0x0C});
  return b;
}

TEST(DnsMessage, FollowsBackwardCompressionPointers) {
  Bytes b = compressed_mx();
  auto m = parse_message(span(b));
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].name, "example.test");
  auto mx = read_mx(span(b), m->answers[0]);
  ASSERT_TRUE(mx.ok()) << mx.error().message;
  EXPECT_EQ(mx->preference, 5);
  EXPECT_EQ(mx->exchange, "mx.example.test");
}

TEST(DnsMessage, NamesAreLowerCasedAndEscaped) {
  // A label holding a '.' must not read as two labels, or "a.b" in one label could pose
  // as a name in the zone.
  Bytes b = Packet().build();
  b[5] = 1;
  b.insert(b.end(), {3, 'A', '.', 'b', 4, 'T', 'e', 's', 't', 0});
  testing::put16(b, kTypeMx);
  testing::put16(b, kClassIn);
  auto m = parse_message(span(b));
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->question_name, "a\\046b.test");
  Bytes bin = Packet().build();
  bin[5] = 1;
  bin.insert(bin.end(), {2, 0x00, 0xff, 0});
  testing::put16(bin, kTypeA);
  testing::put16(bin, kClassIn);
  auto m2 = parse_message(span(bin));
  ASSERT_TRUE(m2.ok());
  EXPECT_EQ(m2->question_name, "\\000\\255");
}

TEST(DnsMessage, RootName) {
  Bytes b = Packet()
                .question("nullmx.test", kTypeMx)
                .answer("nullmx.test", kTypeMx, 300, testing::mx_rdata(0, ""))
                .build();
  auto m = parse_message(span(b));
  ASSERT_TRUE(m.ok());
  auto mx = read_mx(span(b), m->answers[0]);
  ASSERT_TRUE(mx.ok());
  EXPECT_EQ(mx->exchange, "");
}

TEST(DnsMessage, RejectsForwardAndLoopingPointers) {
  // A pointer to itself.
  Bytes self = Packet().build();
  self[5] = 1;
  self.insert(self.end(), {0xC0, 12, 0, 1, 0, 1});
  EXPECT_FALSE(parse_message(span(self)).ok());
  // A forward pointer (to the byte after it).
  Bytes fwd = Packet().build();
  fwd[5] = 1;
  fwd.insert(fwd.end(), {0xC0, 14, 0, 0, 1, 0, 1});
  EXPECT_FALSE(parse_message(span(fwd)).ok());
  // The question name made a pointer to the answer's pointer, which points back at it.
  Bytes loop = compressed_mx();
  loop[12] = 0xC0;
  loop[13] = 30;  // the answer's NAME, itself a pointer to 12
  EXPECT_FALSE(parse_message(span(loop)).ok());
  // A label, then a pointer to that label's start: "x" at 12, pointer to 12. Pointers
  // below their own position are not enough; they must fall below the name's start.
  Bytes back = Packet().build();
  back[5] = 1;
  back.insert(back.end(), {1, 'x', 0xC0, 12, 0, 1, 0, 1});
  EXPECT_FALSE(parse_message(span(back)).ok());
}

TEST(DnsMessage, RejectsOverlongNamesAndReservedLabels) {
  Bytes b = Packet().build();
  b[5] = 1;
  for (int i = 0; i < 5; ++i) {  // 5 x 64 octets > 255
    b.push_back(63);
    b.insert(b.end(), 63, 'a');
  }
  b.push_back(0);
  testing::put16(b, kTypeA);
  testing::put16(b, kClassIn);
  EXPECT_FALSE(parse_message(span(b)).ok());

  // 4 labels of 63 = 256 wire octets with the root: one too many.
  Bytes c = Packet().build();
  c[5] = 1;
  for (int i = 0; i < 4; ++i) {
    c.push_back(63);
    c.insert(c.end(), 63, 'a');
  }
  c.push_back(0);
  testing::put16(c, kTypeA);
  testing::put16(c, kClassIn);
  EXPECT_FALSE(parse_message(span(c)).ok());
  // 3 x 63 + 61 = 255 with length octets and root: the limit, accepted.
  Bytes d = Packet().build();
  d[5] = 1;
  for (int i = 0; i < 3; ++i) {
    d.push_back(63);
    d.insert(d.end(), 63, 'a');
  }
  d.push_back(61);
  d.insert(d.end(), 61, 'b');
  d.push_back(0);
  testing::put16(d, kTypeA);
  testing::put16(d, kClassIn);
  EXPECT_TRUE(parse_message(span(d)).ok());

  for (uint8_t bad : {0x40, 0x80}) {
    Bytes e = Packet().build();
    e[5] = 1;
    e.insert(e.end(), {bad, 'x', 0, 0, 1, 0, 1});
    EXPECT_FALSE(parse_message(span(e)).ok()) << int(bad);
  }
}

TEST(DnsMessage, EveryTruncationFails) {
  Bytes full = Packet()
                   .question("example.test", kTypeMx)
                   .answer("example.test", kTypeMx, 300, testing::mx_rdata(10, "mx1.example.test"))
                   .authority("example.test", kTypeSoa, 600,
                              testing::soa_rdata("ns.example.test", "h.example.test", 60))
                   .build();
  ASSERT_TRUE(parse_message(span(full)).ok());
  for (size_t n = 0; n < full.size(); ++n) {
    Bytes cut(full.begin(), full.begin() + static_cast<long>(n));
    EXPECT_FALSE(parse_message(span(cut)).ok()) << n;
  }
  Bytes c = compressed_mx();
  for (size_t n = 0; n < c.size(); ++n) {
    Bytes cut(c.begin(), c.begin() + static_cast<long>(n));
    EXPECT_FALSE(parse_message(span(cut)).ok()) << n;
  }
}

TEST(DnsMessage, ForgedCountsAndQuestions) {
  Bytes b = Packet().question("example.test", kTypeMx).build();
  b[6] = 0xff;  // ANCOUNT = 65535 with no records behind it
  b[7] = 0xff;
  EXPECT_FALSE(parse_message(span(b)).ok());
  Bytes two = Packet().question("example.test", kTypeMx).build();
  two[5] = 2;
  EXPECT_FALSE(parse_message(span(two)).ok());
  Bytes none = Packet().build();
  auto m = parse_message(span(none));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->question_name, "");
}

TEST(DnsMessage, RdataLengthsAreChecked) {
  // MX whose name runs past its RDATA into the next bytes.
  Bytes b = Packet()
                .question("example.test", kTypeMx)
                .answer("example.test", kTypeMx, 300, testing::mx_rdata(10, "mx1.example.test"))
                .build();
  auto m = parse_message(span(b));
  ASSERT_TRUE(m.ok());
  Record r = m->answers[0];
  r.rdata_length -= 1;
  EXPECT_FALSE(read_mx(span(b), r).ok());
  r = m->answers[0];
  r.rdata_length = 2;
  EXPECT_FALSE(read_mx(span(b), r).ok());
  // Trailing octets after the MX name.
  Bytes rd = testing::mx_rdata(10, "mx1.example.test");
  rd.push_back(0);
  Bytes t =
      Packet().question("example.test", kTypeMx).answer("example.test", kTypeMx, 1, rd).build();
  auto mt = parse_message(span(t));
  ASSERT_TRUE(mt.ok());
  EXPECT_FALSE(read_mx(span(t), mt->answers[0]).ok());
  // A record claiming more RDATA than the message holds.
  Bytes over = Packet()
                   .question("example.test", kTypeA)
                   .answer("example.test", kTypeA, 1, testing::a_rdata("192.0.2.1"))
                   .build();
  over[over.size() - 5] = 0x10;  // RDLENGTH 16 with 4 octets left
  EXPECT_FALSE(parse_message(span(over)).ok());
  // SOA with a short fixed part.
  Bytes soa = testing::soa_rdata("ns.example.test", "h.example.test", 60);
  soa.pop_back();
  Bytes s = Packet().question("x.test", kTypeA).authority("x.test", kTypeSoa, 1, soa).build();
  auto ms = parse_message(span(s));
  ASSERT_TRUE(ms.ok());
  EXPECT_FALSE(read_soa(span(s), ms->authority[0]).ok());
  // A decoders given a record from another message whose offsets lie past this one.
  Record far;
  far.rdata_offset = 1000;
  far.rdata_length = 4;
  EXPECT_FALSE(read_a(span(b), far).ok());
  EXPECT_FALSE(read_mx(span(b), far).ok());
  EXPECT_FALSE(read_cname(span(b), far).ok());
  EXPECT_FALSE(read_soa(span(b), far).ok());
}

TEST(DnsMessage, TtlWithTheTopBitSetIsZero) {
  Bytes b = Packet()
                .question("example.test", kTypeA)
                .answer("example.test", kTypeA, 0x80000001u, testing::a_rdata("192.0.2.1"))
                .build();
  auto m = parse_message(span(b));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->answers[0].ttl, 0u);  // RFC 2181 8
}

TEST(DnsMessage, ReadNameAdvancesPastThePointer) {
  Bytes b = compressed_mx();
  size_t off = 12 + 14 + 4;  // the answer's NAME
  auto n = read_name(span(b), off);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(n.value(), "example.test");
  EXPECT_EQ(off, 12u + 14 + 4 + 2);
}

}  // namespace
}  // namespace ringmail::dns
