// libFuzzer target: the DNS response reader (dns/message.h) and what the resolver makes
// of a response (dns/answer.h), since every byte of a response comes from the network.
//
// Invariants: parsing ends (no pointer loop), never reads out of bounds (ASan), and
// yields lower-case names no longer than an escaped 255-octet name; an outcome built
// from any response for the question it carries is well formed (an answer has records
// of the asked type only); an MX decision that succeeds lists valid host names in
// preference order, and a null MX is only ever a root target.
#include <ares.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <span>

#include "dns/answer.h"
#include "dns/domain.h"
#include "dns/message.h"

namespace {

using namespace ringmail;
using namespace ringmail::dns;

void check(bool ok) {
  if (!ok) std::abort();
}

void check_name(const std::string& n) {
  check(n.size() <= 255 * 4);
  for (char c : n) check(!(c >= 'A' && c <= 'Z'));
}

void outcome(std::span<const uint8_t> msg, int status, const std::string& qname, uint16_t type) {
  RRset r = rrset_from_response(status, msg, qname, type);
  if (r.kind == RRset::Kind::answer) {
    check(r.ttl.has_value());
    if (type == kTypeMx) {
      check(!r.mx.empty() && r.addresses.empty());
      for (const auto& m : r.mx) check_name(m.host);
    } else {
      check(!r.addresses.empty() && r.mx.empty());
      for (const Address& a : r.addresses)
        check(a.family == (type == kTypeA ? AF_INET : AF_INET6) && a.ttl >= *r.ttl);
    }
  }
  if (r.kind == RRset::Kind::temporary) check(!r.error.empty());
  if (type != kTypeMx) return;
  std::mt19937_64 rng(1);
  MxStep step = classify_mx(qname, r, rng);
  check(step.need_addresses == (r.kind == RRset::Kind::nodata));
  if (!step.done) return;
  if (step.done->ok()) {
    const MxAnswer& a = step.done->value();
    check(!a.hosts.empty() && !a.implicit);
    for (size_t i = 0; i < a.hosts.size(); ++i) {
      check(valid_domain(a.hosts[i].name, false));
      if (i) check(a.hosts[i - 1].preference <= a.hosts[i].preference);
    }
  } else if (step.done->error().code == kNullMx) {
    for (const auto& m : r.mx) check(m.host.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> msg(data, size);
  auto m = parse_message(msg);
  if (m.ok()) {
    check_name(m->question_name);
    for (const auto* section : {&m->answers, &m->authority}) {
      for (const Record& r : *section) {
        check_name(r.name);
        check(r.rdata_offset + r.rdata_length <= size);
        check(r.ttl <= 0x7fffffffu);
        if (auto mx = read_mx(msg, r); mx.ok()) check_name(mx->exchange);
        if (auto c = read_cname(msg, r); c.ok()) check_name(c.value());
        (void)read_soa(msg, r);
        (void)read_a(msg, r);
        (void)read_aaaa(msg, r);
      }
    }
  }
  // The question the response claims to answer, so the outcome code gets past the
  // question check and reads the records.
  std::string qname = m.ok() && !m->question_name.empty() ? m->question_name : "example.test";
  for (int status : {ARES_SUCCESS, ARES_ENODATA, ARES_ENOTFOUND}) {
    outcome(msg, status, qname, kTypeMx);
    outcome(msg, status, qname, kTypeA);
    outcome(msg, status, qname, kTypeAaaa);
  }
  return 0;
}
