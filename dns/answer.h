// dns: what one DNS answer means for mail routing.
//
// This header owns the decisions, as pure functions over parsed answers so they are
// tested without a network: turning one c-ares completion into an RRset outcome
// (records, no data, no such name, or a temporary failure), following the CNAME chain in
// the answer, and turning the MX, A and AAAA outcomes into what a mail router does:
// deliver to these hosts in this order, bounce (no such domain, null MX, no route) or
// defer. It never queries, caches or keeps state; the RNG that shuffles equal MX
// preferences is passed in.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"

namespace ringmail::dns {

// Error::code of a failed lookup, labelled at the source (STYLE 4) so the router does not
// have to know DNS. enhanced_status() gives the RFC 3463 code it bounces or defers with.
enum FailureCode : int {
  kNxDomain = 1,   // the name does not exist (NXDOMAIN): bounce 5.1.2
  kNoData = 2,     // it exists but has no usable MX and no address: bounce 5.4.4
  kNullMx = 3,     // the domain accepts no mail (RFC 7505 null MX): bounce 5.1.10
  kTemporary = 4,  // SERVFAIL, REFUSED, timeout, network, shutdown: defer 4.4.3
};
const char* enhanced_status(int code);
inline bool is_permanent(int code) {
  return code == kNxDomain || code == kNoData || code == kNullMx;
}

struct Address {
  int family = 0;                   // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};  // the first 4 for AF_INET
  uint32_t ttl = 0;
  std::string text() const;  // "192.0.2.1", "2001:db8::1"
  bool operator==(const Address& o) const { return family == o.family && bytes == o.bytes; }
};

// The outcome of one query (one name, one type).
struct RRset {
  enum class Kind { answer, nodata, nxdomain, temporary };
  Kind kind = Kind::temporary;
  // answer: the smallest TTL of the records and of the CNAMEs that led to them.
  // nodata/nxdomain: RFC 2308 5, min(SOA TTL, SOA MINIMUM) when the server sent its SOA.
  std::optional<uint32_t> ttl;
  struct Mx {
    uint16_t preference = 0;
    std::string host;  // "" is the root (null MX)
  };
  std::vector<Mx> mx;              // type MX
  std::vector<Address> addresses;  // type A or AAAA
  std::string error;               // temporary: what went wrong, for the delivery log
};

// Turns a c-ares query completion (status, raw response or empty) into an RRset for
// `qname`/`qtype`. The response is read with dns/message.h and checked against the
// question; the answer's CNAME chain is followed from qname (at most 8 links). A response
// that does not parse is a temporary failure: a broken server must not bounce mail.
RRset rrset_from_response(int ares_status, std::span<const uint8_t> response,
                          std::string_view qname, uint16_t qtype);

// A temporary outcome with `why` (shutdown, bad server list, ...).
RRset temporary_rrset(std::string why);

struct MxHost {
  std::string name;
  uint16_t preference = 0;
};

// Where mail for a domain goes (RFC 5321 5.1): hosts to try in order.
struct MxAnswer {
  std::vector<MxHost> hosts;  // preference order; equal preferences shuffled
  bool implicit = false;      // no MX records: the domain itself, preference 0
  uint32_t ttl = 0;           // smallest TTL of the records this answer rests on
};

// What the MX outcome alone decides. `done` holds the final result unless the domain has
// no MX records, in which case the router needs its A/AAAA outcomes (implicit MX).
struct MxStep {
  bool need_addresses = false;
  std::optional<Result<MxAnswer>> done;
};
MxStep classify_mx(std::string_view domain, const RRset& mx, std::mt19937_64& rng);

// RFC 5321 5.1 implicit MX: `mx` had no records; the domain's own addresses decide.
Result<MxAnswer> implicit_mx(std::string_view domain, const RRset& mx, const RRset& a,
                             const RRset& aaaa);

// Sorts by preference and shuffles each run of equal preferences (RFC 5321 5.1: "the
// sender-SMTP MUST randomize them to spread the load").
void order_mx(std::vector<MxHost>& hosts, std::mt19937_64& rng);

// A and AAAA outcomes of one host merged into one address list. Any address is a success
// (a host reachable one way is reachable); otherwise a temporary failure of either query
// wins over a negative answer, because the missing family might have had addresses.
// IPv4 first unless ipv6_first: see Resolver::Options::ipv6_first for why.
Result<std::vector<Address>> merge_addresses(std::string_view host, const RRset& a,
                                             const RRset& aaaa, bool ipv6_first);

}  // namespace ringmail::dns
