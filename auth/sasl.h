// SASL for SMTP AUTH (RFC 4954): mechanism names, the base64 framing of challenges and
// responses, and the PLAIN message (RFC 4616). LOGIN needs no parser of its own: each of
// its two responses is one base64 line (a user name, then a password).
//
// Everything here is pure: no I/O, no state, no user lookup and no password hashing, so
// it is safe on a loop thread. The SCRAM-SHA-256 exchange is auth/scram.h; throttling
// repeated failures is auth/auth_throttle.h. The session owns the dialogue: it reads the
// lines, calls these functions and sends the replies.
//
// Error codes are the SMTP reply the session should send: 501 (RFC 4954 section 4: a
// response that is not base64, or a cancelled exchange) or 535 (the mechanism's message
// is malformed, which the client must not be able to tell from bad credentials). Error
// messages are for the log, never for the client.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "conf/result.h"

namespace ringmail::auth {

enum class Mechanism { plain, login, scram_sha256 };

// Case-insensitive, as RFC 4954 section 4 requires of the AUTH argument.
std::optional<Mechanism> parse_mechanism(std::string_view name);
// The upper-case IANA name, e.g. "SCRAM-SHA-256".
std::string_view mechanism_name(Mechanism m);
// For the EHLO keyword: "AUTH " + this. SCRAM first would be nicer, but clients choose.
std::string_view advertised_mechanisms();

// Twelve kilobytes is what RFC 4954 section 4 lets a client send in one AUTH line; a
// little more leaves room for a continuation line without ever buffering much.
inline constexpr size_t kMaxBase64Length = 16384;

// RFC 4648 section 4, strictly: the standard alphabet, length a multiple of 4, '=' only
// as one or two final pad characters, zero pad bits (section 3.5, so each byte string
// has exactly one accepted encoding), no whitespace or line breaks. Empty text decodes
// to an empty string. Longer than max_length characters is an error. Errors are 501.
Result<std::string> decode_base64(std::string_view text, size_t max_length = kMaxBase64Length);
std::string encode_base64(std::string_view raw);

// RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. NUL is
// valid UTF-8; callers that must refuse it check for it themselves.
bool valid_utf8(std::string_view s);

// RFC 4616 section 2: message = [authzid] NUL authcid NUL passwd.
struct PlainCredentials {
  std::string authzid;  // may be empty: act as authcid
  std::string authcid;  // the login name as the client sent it (not normalised)
  std::string password;
};
// Exactly two NULs; authcid and password non-empty; each field at most 255 octets and
// valid UTF-8. SASLprep (RFC 4013) is not applied: names are compared after the user
// database's own normalisation, and the password goes to crypt(3) byte for byte.
// Errors are 535. The session must refuse a non-empty authzid that differs from authcid.
Result<PlainCredentials> decode_plain(std::string_view raw);
// LOGIN's two decoded responses under the same rules (no NUL anywhere), so both
// mechanisms hand the session the same checked value. authzid is left empty.
Result<PlainCredentials> login_credentials(std::string_view username, std::string_view password);

// One client response of RFC 4954 section 4, decoded.
enum class ResponseKind {
  data,        // `data` holds the decoded bytes (possibly empty)
  cancel,      // "*": reply 501 and end the exchange
  bad_base64,  // reply 501 and end the exchange
};
struct ClientResponse {
  ResponseKind kind = ResponseKind::bad_base64;
  std::string data;
};
// A line sent after a 334 challenge, without its CRLF. An empty line is an empty
// response; "=" is not valid here (it only means "empty" as an initial response).
ClientResponse parse_response(std::string_view line);
// The optional second argument of AUTH (RFC 4954 section 4, initial-response). "=" is
// an empty response. Call this only when the argument is present: without one the
// mechanism starts with an empty "334 " challenge. "*" is not a cancel here.
ClientResponse parse_initial_response(std::string_view arg);

// The de-facto LOGIN mechanism (draft-murchison-sasl-login): the server prompts with
// these base64 challenges and takes one base64 line for each.
inline constexpr std::string_view kLoginUsernamePrompt = "VXNlcm5hbWU6";  // "Username:"
inline constexpr std::string_view kLoginPasswordPrompt = "UGFzc3dvcmQ6";  // "Password:"

}  // namespace ringmail::auth
