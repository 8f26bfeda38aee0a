// ScramServer: the server side of one SCRAM-SHA-256 exchange (RFC 5802, RFC 7677).
//
// It parses the client's two messages, makes the server's two, and checks the proof
// against the stored verifiers (auth/user.h). It never does I/O, never looks a user up
// and never runs PBKDF2: the proof check is three HMAC/SHA-256 calls, cheap enough for a
// loop thread. Channel binding is not offered (no SCRAM-SHA-256-PLUS), so a client
// asking for it ("p=") is refused; "n" and "y" are accepted.
//
// Messages in and out are the raw SCRAM text; the SMTP framing (base64, 334 lines, 501
// on "*") is auth/sasl.h and the session. One exchange per object, in this order:
//
//   client_first(response)     -> user name; the session looks the user up
//   server_first(credentials)  -> send as "334 " + base64
//   client_final(response)     -> "v=...": send as "334 " + base64, then wait for the
//                                 client's empty line before "235" (RFC 4954 section 4
//                                 has no "success with data")
//
// Every error is code 535 and its message is for the log: a failed proof and a
// malformed message must look the same to the client.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "auth/user.h"
#include "conf/result.h"

namespace ringmail::auth {

class ScramServer {
 public:
  // Returns the server's part of the nonce: printable ASCII except ','. Tests inject a
  // fixed one to replay RFC 7677's example; production uses random bytes.
  using NonceSource = std::function<std::string()>;

  ScramServer();
  explicit ScramServer(NonceSource nonce_source);

  // Parses client-first-message; returns the user name (=2C and =3D decoded, not
  // otherwise normalised: the user database applies its own rules).
  Result<std::string> client_first(std::string_view msg);

  // REQUIRES: client_first succeeded and server_first was not called yet.
  // `c` is the user's verifiers. For an unknown user, a user without SCRAM verifiers
  // (imported hash) or a disabled one, pass fake_credentials() or an empty
  // ScramCredentials (which gets fake ones from a per-process secret): the exchange then
  // looks the same and fails at the proof.
  std::string server_first(const ScramCredentials& c);

  // Parses client-final-message and checks the proof. Success returns
  // server-final-message ("v=" ServerSignature); the client is authenticated as the name
  // client_first returned.
  Result<std::string> client_final(std::string_view msg);

  // Verifiers nobody can log in with: the salt is derived from HMAC(secret, username),
  // so repeated attempts for one unknown name see the same salt, as they would for a
  // real user; the keys are random. Iterations are kScramDefaultIterations.
  static ScramCredentials fake_credentials(std::string_view username, std::string_view secret);

  // The name client_first returned; empty before that.
  const std::string& username() const { return username_; }

 private:
  enum class State { start, first_seen, challenged, done, failed };

  Result<std::string> fail(std::string message);

  NonceSource nonce_source_;
  State state_ = State::start;
  std::string gs2_header_;         // "n,," etc., as c= must repeat it
  std::string client_first_bare_;  // for AuthMessage
  std::string server_first_;       // for AuthMessage
  std::string nonce_;              // client nonce + server nonce
  std::string username_;
  ScramCredentials creds_;
};

}  // namespace ringmail::auth
