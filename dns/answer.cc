#include "dns/answer.h"

#include <ares.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <limits>

#include "dns/domain.h"
#include "dns/message.h"

namespace ringmail::dns {

namespace {

// Real chains are one or two links; a longer one is a loop or an attack.
constexpr int kMaxCnameLinks = 8;

std::string canonical(std::string_view name) {
  if (name.ends_with('.')) name.remove_suffix(1);
  return lower(name);
}

RRset temporary(std::string why) {
  RRset r;
  r.kind = RRset::Kind::temporary;
  r.error = std::move(why);
  return r;
}

// RFC 2308 5: a negative answer lives for min(SOA TTL, SOA MINIMUM) of the SOA the
// server put in the authority section; without one we cannot know.
std::optional<uint32_t> negative_ttl(std::span<const uint8_t> msg, const Message& m) {
  for (const Record& r : m.authority) {
    if (r.type != kTypeSoa || r.rclass != kClassIn) continue;
    auto soa = read_soa(msg, r);
    if (!soa) return std::nullopt;
    return std::min(r.ttl, soa->minimum);
  }
  return std::nullopt;
}

const char* status_text(int status) {
  switch (status) {
    case ARES_ESERVFAIL:
      return "server failure (SERVFAIL)";
    case ARES_EREFUSED:
      return "query refused (REFUSED)";
    case ARES_ETIMEOUT:
      return "timed out";
    case ARES_ECONNREFUSED:
      // c-ares 1.18 moves on to the next server after SERVFAIL, REFUSED or NOTIMP and,
      // once every server has failed, reports ECONNREFUSED for all of them alike (it
      // keeps no rcode). Failing over is worth more than the exact cause.
      return "no server answered (SERVFAIL, REFUSED or connection refused)";
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return "resolver shut down";
    default:
      return ares_strerror(status);
  }
}

}  // namespace

const char* enhanced_status(int code) {
  switch (code) {
    case kNxDomain:
      return "5.1.2";  // RFC 3463: bad destination system address
    case kNoData:
      return "5.4.4";  // unable to route
    case kNullMx:
      return "5.1.10";  // RFC 7505 3.1
    default:
      return "4.4.3";  // directory server failure
  }
}

std::string Address::text() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), buf, sizeof buf);
  return buf;
}

RRset temporary_rrset(std::string why) {
  return temporary(std::move(why));
}

RRset rrset_from_response(int ares_status, std::span<const uint8_t> response,
                          std::string_view qname, uint16_t qtype) {
  // ENODATA and ENOTFOUND are c-ares' names for an empty NOERROR answer and NXDOMAIN; it
  // passes the response along with them, and the SOA in it sets the negative TTL.
  if (ares_status == ARES_EBADNAME) {
    RRset r;
    r.kind = RRset::Kind::nxdomain;
    r.error = "not a valid domain name";
    return r;
  }
  if (ares_status != ARES_SUCCESS && ares_status != ARES_ENODATA && ares_status != ARES_ENOTFOUND)
    return temporary(status_text(ares_status));
  if (response.empty()) {
    if (ares_status == ARES_SUCCESS) return temporary("empty response");
    RRset r;
    r.kind = ares_status == ARES_ENOTFOUND ? RRset::Kind::nxdomain : RRset::Kind::nodata;
    return r;
  }
  auto parsed = parse_message(response);
  if (!parsed) return temporary(parsed.error().message);
  const Message& m = parsed.value();
  std::string name = canonical(qname);
  if (!m.header.response || m.question_name != name || m.question_type != qtype)
    return temporary("response does not match the question");
  if (m.header.rcode == kRcodeNxDomain) {
    RRset r;
    r.kind = RRset::Kind::nxdomain;
    r.ttl = negative_ttl(response, m);
    return r;
  }
  if (m.header.rcode != kRcodeNoError)
    return temporary("server answered with RCODE " + std::to_string(m.header.rcode));

  RRset out;
  uint32_t ttl = std::numeric_limits<uint32_t>::max();
  for (int links = 0;; ++links) {
    bool found = false;
    for (const Record& r : m.answers) {
      if (r.rclass != kClassIn || r.type != qtype || r.name != name) continue;
      found = true;
      ttl = std::min(ttl, r.ttl);
      if (qtype == kTypeMx) {
        auto mx = read_mx(response, r);
        if (!mx) return temporary(mx.error().message);
        out.mx.push_back({mx->preference, std::move(mx->exchange)});
      } else if (qtype == kTypeA) {
        auto a = read_a(response, r);
        if (!a) return temporary(a.error().message);
        Address addr;
        addr.family = AF_INET;
        std::copy(a->begin(), a->end(), addr.bytes.begin());
        addr.ttl = r.ttl;
        out.addresses.push_back(addr);
      } else if (qtype == kTypeAaaa) {
        auto a = read_aaaa(response, r);
        if (!a) return temporary(a.error().message);
        Address addr;
        addr.family = AF_INET6;
        addr.bytes = a.value();
        addr.ttl = r.ttl;
        out.addresses.push_back(addr);
      }
    }
    if (found) {
      out.kind = RRset::Kind::answer;
      out.ttl = ttl;
      return out;
    }
    const Record* cname = nullptr;
    for (const Record& r : m.answers)
      if (r.rclass == kClassIn && r.type == kTypeCname && r.name == name) cname = &r;
    if (!cname) break;
    if (links == kMaxCnameLinks) return temporary("CNAME chain too long");
    auto target = read_cname(response, *cname);
    if (!target) return temporary(target.error().message);
    ttl = std::min(ttl, cname->ttl);
    name = std::move(target.value());
  }
  // NOERROR without records of the type (maybe at the end of a CNAME chain): NODATA.
  out.kind = RRset::Kind::nodata;
  if (auto neg = negative_ttl(response, m)) out.ttl = std::min(ttl, *neg);
  return out;
}

void order_mx(std::vector<MxHost>& hosts, std::mt19937_64& rng) {
  std::stable_sort(hosts.begin(), hosts.end(),
                   [](const MxHost& a, const MxHost& b) { return a.preference < b.preference; });
  for (auto it = hosts.begin(); it != hosts.end();) {
    auto end = std::find_if(it, hosts.end(),
                            [&](const MxHost& h) { return h.preference != it->preference; });
    std::shuffle(it, end, rng);
    it = end;
  }
}

MxStep classify_mx(std::string_view domain, const RRset& mx, std::mt19937_64& rng) {
  std::string d = canonical(domain);
  MxStep step;
  switch (mx.kind) {
    case RRset::Kind::temporary:
      step.done = Error{kTemporary, "MX lookup for " + d + " failed: " + mx.error};
      return step;
    case RRset::Kind::nxdomain:
      step.done = Error{kNxDomain, "domain " + d + " does not exist (NXDOMAIN)"};
      return step;
    case RRset::Kind::nodata:
      step.need_addresses = true;
      return step;
    case RRset::Kind::answer:
      break;
  }
  // RFC 7505 3: "0 ." alone says the domain takes no mail. A root target mixed with real
  // hosts breaks that RFC's "MUST NOT advertise any other MX"; the real hosts are still
  // the domain owner's stated route, so only the unusable root entries are dropped.
  bool all_root =
      std::all_of(mx.mx.begin(), mx.mx.end(), [](const RRset::Mx& r) { return r.host.empty(); });
  if (all_root) {
    step.done = Error{kNullMx, d + " does not accept mail (null MX, RFC 7505)"};
    return step;
  }
  std::vector<MxHost> hosts;
  for (const RRset::Mx& r : mx.mx) {
    if (r.host.empty() || !valid_domain(r.host, false)) continue;
    auto same =
        std::find_if(hosts.begin(), hosts.end(), [&](const MxHost& h) { return h.name == r.host; });
    // A host listed twice is tried once, at its best preference.
    if (same != hosts.end()) {
      same->preference = std::min(same->preference, r.preference);
    } else {
      hosts.push_back({r.host, r.preference});
    }
  }
  if (hosts.empty()) {
    // RFC 5321 5.1: MX records present but none usable "MUST be reported as an error".
    step.done = Error{kNoData, "no usable MX host for " + d};
    return step;
  }
  order_mx(hosts, rng);
  MxAnswer ans;
  ans.hosts = std::move(hosts);
  ans.ttl = mx.ttl.value_or(0);
  step.done = std::move(ans);
  return step;
}

Result<MxAnswer> implicit_mx(std::string_view domain, const RRset& mx, const RRset& a,
                             const RRset& aaaa) {
  std::string d = canonical(domain);
  auto addrs = merge_addresses(d, a, aaaa, false);
  if (!addrs) {
    const Error& e = addrs.error();
    if (e.code == kNoData) return Error{kNoData, d + " has no MX and no A/AAAA records"};
    if (e.code == kNxDomain) return Error{kNxDomain, "domain " + d + " does not exist (NXDOMAIN)"};
    return Error{e.code, "implicit MX for " + d + ": " + e.message};
  }
  MxAnswer ans;
  ans.implicit = true;
  ans.hosts.push_back({d, 0});
  uint32_t ttl = mx.ttl.value_or(std::numeric_limits<uint32_t>::max());
  for (const Address& x : addrs.value()) ttl = std::min(ttl, x.ttl);
  ans.ttl = ttl;
  return ans;
}

Result<std::vector<Address>> merge_addresses(std::string_view host, const RRset& a,
                                             const RRset& aaaa, bool ipv6_first) {
  std::string h = canonical(host);
  const RRset& first = ipv6_first ? aaaa : a;
  const RRset& second = ipv6_first ? a : aaaa;
  std::vector<Address> out;
  if (first.kind == RRset::Kind::answer) out = first.addresses;
  if (second.kind == RRset::Kind::answer)
    out.insert(out.end(), second.addresses.begin(), second.addresses.end());
  if (!out.empty()) return out;
  using K = RRset::Kind;
  if (a.kind == K::temporary || aaaa.kind == K::temporary) {
    const std::string& why = a.kind == K::temporary ? a.error : aaaa.error;
    return Error{kTemporary, "address lookup for " + h + " failed: " + why};
  }
  if (a.kind == K::nxdomain || aaaa.kind == K::nxdomain)
    return Error{kNxDomain, "host " + h + " does not exist (NXDOMAIN)"};
  return Error{kNoData, "host " + h + " has no A or AAAA records"};
}

}  // namespace ringmail::dns
