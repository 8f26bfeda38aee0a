#include "auth/sasl.h"

#include <openssl/base64.h>

#include <array>
#include <cstdint>

namespace ringmail::auth {

namespace {

// RFC 4616 section 2: "each of authzid, authcid and passwd ... up to 255 octets".
constexpr size_t kMaxPlainField = 255;

char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (upper(a[i]) != upper(b[i])) return false;
  return true;
}

bool base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

Status check_field(std::string_view value, std::string_view what, bool required) {
  if (required && value.empty()) return Error{535, std::string(what) + " is empty"};
  if (value.size() > kMaxPlainField)
    return Error{535, std::string(what) + " longer than 255 octets"};
  if (value.find('\0') != std::string_view::npos)
    return Error{535, std::string(what) + " contains NUL"};
  if (!valid_utf8(value)) return Error{535, std::string(what) + " is not valid UTF-8"};
  return ok_status();
}

}  // namespace

std::optional<Mechanism> parse_mechanism(std::string_view name) {
  for (Mechanism m : {Mechanism::plain, Mechanism::login, Mechanism::scram_sha256})
    if (iequals(name, mechanism_name(m))) return m;
  return std::nullopt;
}

std::string_view mechanism_name(Mechanism m) {
  switch (m) {
    case Mechanism::plain:
      return "PLAIN";
    case Mechanism::login:
      return "LOGIN";
    case Mechanism::scram_sha256:
      return "SCRAM-SHA-256";
  }
  return "";
}

std::string_view advertised_mechanisms() {
  return "PLAIN LOGIN SCRAM-SHA-256";
}

Result<std::string> decode_base64(std::string_view text, size_t max_length) {
  if (text.size() > max_length) return Error{501, "base64 text too long"};
  if (text.empty()) return std::string();
  if (text.size() % 4 != 0) return Error{501, "base64 length not a multiple of 4"};
  // BoringSSL's decoder is strict too, but its exact rules are not documented; checking
  // the alphabet and pad placement here keeps "strict" a property of this file.
  size_t pad = 0;
  if (text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  for (size_t i = 0; i < text.size() - pad; ++i)
    if (!base64_char(text[i])) return Error{501, "invalid base64 character"};
  std::string out;
  size_t max_out = 0;
  if (!EVP_DecodedLength(&max_out, text.size())) return Error{501, "invalid base64 length"};
  out.resize(max_out);
  size_t len = 0;
  if (!EVP_DecodeBase64(reinterpret_cast<uint8_t*>(out.data()), &len, out.size(),
                        reinterpret_cast<const uint8_t*>(text.data()), text.size()))
    return Error{501, "invalid base64"};
  out.resize(len);
  // Section 3.5: non-zero pad bits would give one byte string many encodings. Re-encoding
  // is the check that does not depend on the library's choice.
  if (encode_base64(out) != text) return Error{501, "non-canonical base64"};
  return out;
}

std::string encode_base64(std::string_view raw) {
  size_t len = 0;
  EVP_EncodedLength(&len, raw.size());
  std::string out(len, '\0');
  size_t n = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()),
                             reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  out.resize(n);
  return out;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;  // continuation byte, C0/C1 (always overlong) or F5..FF
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr std::array<uint32_t, 4> kMin = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

Result<PlainCredentials> decode_plain(std::string_view raw) {
  size_t first = raw.find('\0');
  if (first == std::string_view::npos) return Error{535, "PLAIN message has no NUL"};
  size_t second = raw.find('\0', first + 1);
  if (second == std::string_view::npos) return Error{535, "PLAIN message has one NUL"};
  if (raw.find('\0', second + 1) != std::string_view::npos)
    return Error{535, "PLAIN message has more than two NULs"};
  PlainCredentials c;
  std::string_view authzid = raw.substr(0, first);
  std::string_view authcid = raw.substr(first + 1, second - first - 1);
  std::string_view password = raw.substr(second + 1);
  if (Status s = check_field(authzid, "authzid", false); !s) return s.error();
  if (Status s = check_field(authcid, "authcid", true); !s) return s.error();
  if (Status s = check_field(password, "password", true); !s) return s.error();
  c.authzid = std::string(authzid);
  c.authcid = std::string(authcid);
  c.password = std::string(password);
  return c;
}

Result<PlainCredentials> login_credentials(std::string_view username, std::string_view password) {
  if (Status s = check_field(username, "username", true); !s) return s.error();
  if (Status s = check_field(password, "password", true); !s) return s.error();
  PlainCredentials c;
  c.authcid = std::string(username);
  c.password = std::string(password);
  return c;
}

ClientResponse parse_response(std::string_view line) {
  if (line == "*") return {ResponseKind::cancel, {}};
  Result<std::string> r = decode_base64(line);
  if (!r) return {ResponseKind::bad_base64, {}};
  return {ResponseKind::data, std::move(r).value()};
}

ClientResponse parse_initial_response(std::string_view arg) {
  if (arg == "=") return {ResponseKind::data, {}};
  // RFC 4954's initial-response grammar has no empty base64, and "=" is the only way to
  // send nothing; "AUTH PLAIN " with a trailing space is malformed, not empty.
  if (arg.empty()) return {ResponseKind::bad_base64, {}};
  Result<std::string> r = decode_base64(arg);
  if (!r) return {ResponseKind::bad_base64, {}};
  return {ResponseKind::data, std::move(r).value()};
}

}  // namespace ringmail::auth
