// dns: names and (from issue 4) the c-ares resolver driven by the event loop.
//
// This header: domain-name syntax shared by the SMTP parser, the relay policy and the
// config loader. Pure functions; no lookups.
#pragma once

#include <string>
#include <string_view>

namespace ringmail::dns {

// RFC 5321 4.1.2 Domain: labels of letters, digits and inner hyphens, 1-63 octets each,
// 255 in all. With allow_utf8, octets >= 0x80 are allowed in labels (RFC 6531 U-labels).
bool valid_domain(std::string_view d, bool allow_utf8);

// ASCII lower-casing (DNS names compare case-insensitively; UTF-8 octets are kept).
std::string lower(std::string_view d);

}  // namespace ringmail::dns
