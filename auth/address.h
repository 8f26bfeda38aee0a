// auth: who may send what where. This header: strict RFC 5321 path parsing.
//
// Every relay decision starts from a recipient parsed here, so the parser is strict and
// keeps the facts the policy needs (source route present, quoted local part, '%' or '!'
// in the local part) instead of normalising them away. It never looks anything up and
// never decides policy itself (relay_policy.h does).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "conf/result.h"

namespace ringmail::auth {

struct Mailbox {
  std::string local;   // exactly as written, quotes included for a quoted local part
  std::string domain;  // lower-cased ASCII (U-labels kept as UTF-8); "[...]" for literals
  bool quoted_local = false;
  bool address_literal = false;
  // No domain only for RCPT TO:<Postmaster> (RFC 5321 4.1.1.3): just the local part.
  std::string str() const { return domain.empty() ? local : local + "@" + domain; }
};

struct Path {
  bool null = false;          // "<>"
  bool source_route = false;  // "<@a,@b:user@c>" (RFC 5321 4.1.2; accepted, never local)
  bool utf8 = false;          // non-ASCII octets in the mailbox (needs SMTPUTF8)
  Mailbox mailbox;
  std::string str() const { return null ? std::string() : mailbox.str(); }
};

// Parses a Reverse-path / Forward-path at the start of `s` ("<...>"). On success
// *consumed is the length up to and including '>'. Errors carry the reply code 501 and
// an enhanced status + text ("5.1.3 Bad recipient address syntax" style is the caller's).
// `allow_utf8`: SMTPUTF8 was given, so UTF-8 is allowed in local part and domain
// (RFC 6531); without it a non-ASCII octet is an error.
Result<Path> parse_path(std::string_view s, bool allow_null, bool allow_utf8, size_t* consumed);

// "postmaster" or "postmaster@<domain>", any case: RFC 5321 4.5.1 requires it to work for
// every domain the server takes mail for, user or not.
bool is_postmaster(std::string_view address);

}  // namespace ringmail::auth
