// libFuzzer target: RFC 5321 path parsing (auth/address.h) and the relay decision made
// from its result (auth/relay_policy.h).
//
// Invariants: a parse reports how much it used and that ends in '>'; a parsed mailbox
// has a non-empty local part and a lower-case domain; without SMTPUTF8 nothing
// non-ASCII gets through; allowing more (null path, UTF-8) never rejects what a
// stricter parse accepted, nor changes it; and nothing that can route mail elsewhere
// (source route, literal, quotes, '%', '!', '@' in the local part) is ever "local".
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "auth/address.h"
#include "auth/relay_policy.h"

namespace {

using namespace ringmail;

void check(bool ok) {
  if (!ok) std::abort();
}

bool non_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return true;
  return false;
}

bool same(const auth::Path& a, const auth::Path& b) {
  return a.null == b.null && a.source_route == b.source_route && a.utf8 == b.utf8 &&
         a.mailbox.local == b.mailbox.local && a.mailbox.domain == b.mailbox.domain &&
         a.mailbox.quoted_local == b.mailbox.quoted_local &&
         a.mailbox.address_literal == b.mailbox.address_literal;
}

const auth::RelayPolicy& policy() {
  static const auth::RelayPolicy p({"example.test", "localhost", "xn--bcher-kva.example"}, {});
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  Result<auth::Path> results[4] = {Error{}, Error{}, Error{}, Error{}};
  for (int mode = 0; mode < 4; ++mode) {
    bool allow_null = mode & 1, allow_utf8 = mode & 2;
    size_t used = 0;
    Result<auth::Path> r = auth::parse_path(s, allow_null, allow_utf8, &used);
    if (r.ok()) {
      const auth::Path& p = r.value();
      check(used >= 2 && used <= s.size());
      check(s[0] == '<' && s[used - 1] == '>');
      // 256 octets of path plus the brackets, as the parser counts (RFC 5321 says 256
      // including them; see the unit tests).
      check(used <= 258);
      if (p.null) {
        check(allow_null && used == 2);
      } else {
        check(!p.mailbox.local.empty() && !p.mailbox.domain.empty());
        check(p.mailbox.local.size() <= 66);
        for (char c : p.mailbox.domain) check(!(c >= 'A' && c <= 'Z'));
        if (p.mailbox.quoted_local)
          check(p.mailbox.local.size() >= 2 && p.mailbox.local.front() == '"' &&
                p.mailbox.local.back() == '"');
        if (p.mailbox.address_literal)
          check(p.mailbox.domain.front() == '[' && p.mailbox.domain.back() == ']');
        // utf8 covers the whole path, source route included.
        check(p.utf8 == non_ascii(s.substr(0, used)));
        if (!allow_utf8) check(!p.utf8);
        // What the relay policy calls local can route nowhere else.
        bool local = policy().is_local_recipient(p);
        if (local) {
          check(!p.source_route && !p.mailbox.address_literal && !p.mailbox.quoted_local);
          check(p.mailbox.local.find_first_of("%!@\"") == std::string::npos);
          check(policy().is_local_domain(p.mailbox.domain));
        }
        auth::RcptDecision d = policy().check(p, nullptr, false);
        check(d == (local ? auth::RcptDecision::local : auth::RcptDecision::denied));
        check(policy().check(p, nullptr, true) != auth::RcptDecision::denied);
      }
    } else {
      check(r.error().code == 501 || r.error().code == 553);
      if (r.error().code == 553) check(!allow_utf8);
    }
    results[mode] = std::move(r);
  }
  // Allowing more never takes anything away.
  for (int mode = 0; mode < 4; ++mode) {
    if (!results[mode].ok()) continue;
    for (int wider = 0; wider < 4; ++wider) {
      if ((wider & mode) != mode) continue;
      check(results[wider].ok());
      check(same(results[mode].value(), results[wider].value()));
    }
  }
  return 0;
}
