#include "dns/domain.h"

#include <cctype>

namespace ringmail::dns {

namespace {
constexpr size_t kMaxDomain = 255;
}

bool valid_domain(std::string_view d, bool allow_utf8) {
  if (d.empty() || d.size() > kMaxDomain) return false;
  size_t label = 0;
  unsigned char prev = '.';
  for (unsigned char c : d) {
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else {
      bool ok = std::isalnum(c) || (c == '-' && label > 0) || (allow_utf8 && c >= 0x80);
      if (!ok || ++label > 63) return false;
    }
    prev = c;
  }
  return label > 0 && prev != '-';
}

std::string lower(std::string_view d) {
  std::string out(d);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace ringmail::dns
