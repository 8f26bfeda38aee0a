#include "auth/scram.h"

#include <openssl/mem.h>
#include <openssl/rand.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "auth/sasl.h"
#include "auth/scram_credentials.h"

namespace ringmail::auth {

namespace {

constexpr size_t kKeySize = 32;           // SHA-256 output
constexpr size_t kServerNonceBytes = 18;  // 144 bits, base64 to 24 printable characters
constexpr size_t kFakeSaltBytes = 16;     // as new_scram_credentials() makes them
// Neither RFC bounds these; the bounds keep AuthMessage small whatever the client sends.
constexpr size_t kMaxUsername = 255;
constexpr size_t kMaxClientNonce = 512;

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<uint8_t*>(out.data()), n);
  return out;
}

std::string random_nonce() {
  return encode_base64(random_bytes(kServerNonceBytes));
}

// RFC 5802 section 7: printable = %x21-2B / %x2D-7E (visible ASCII except ',').
bool printable(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < 0x21 || c > 0x7E || c == ',') return false;
  return true;
}

// RFC 5802 section 5.1: saslname, with ',' and '=' escaped as "=2C" and "=3D" and no other
// escape. The caller has already split on ','. Returns false on anything else.
bool decode_saslname(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '\0') return false;
    if (c != '=') {
      out += c;
      continue;
    }
    std::string_view esc = in.substr(i + 1, 2);
    if (esc == "2C")
      out += ',';
    else if (esc == "3D")
      out += '=';
    else
      return false;
    i += 2;
  }
  return !out.empty() && out.size() <= kMaxUsername && valid_utf8(out);
}

// Splits off the next ','-separated attribute "k=value" and checks its name.
bool take_attr(std::string_view& rest, char name, std::string_view& value) {
  size_t comma = rest.find(',');
  std::string_view attr = rest.substr(0, comma);
  rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  if (attr.size() < 2 || attr[0] != name || attr[1] != '=') return false;
  value = attr.substr(2);
  return true;
}

const std::string& process_secret() {
  static const std::string secret = random_bytes(kKeySize);
  return secret;
}

bool usable(const ScramCredentials& c) {
  return c.stored_key.size() == kKeySize && c.server_key.size() == kKeySize && c.iterations > 0 &&
         !c.salt.empty();
}

}  // namespace

ScramServer::ScramServer() : nonce_source_(random_nonce) {}

ScramServer::ScramServer(NonceSource nonce_source) : nonce_source_(std::move(nonce_source)) {}

Result<std::string> ScramServer::fail(std::string message) {
  state_ = State::failed;
  return Error{535, std::move(message)};
}

Result<std::string> ScramServer::client_first(std::string_view msg) {
  if (state_ != State::start) return fail("client-first-message out of order");
  // gs2-header = gs2-cbind-flag "," [ authzid ] ","
  if (msg.empty()) return fail("empty client-first-message");
  if (msg[0] == 'p') return fail("channel binding requested but not offered");
  if (msg.size() < 2 || (msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',')
    return fail("bad gs2-cbind-flag");
  size_t authzid_end = msg.find(',', 2);
  if (authzid_end == std::string_view::npos) return fail("gs2-header not terminated");
  std::string_view authzid_attr = msg.substr(2, authzid_end - 2);
  std::string authzid;
  if (!authzid_attr.empty()) {
    if (authzid_attr.size() < 2 || authzid_attr.substr(0, 2) != "a=" ||
        !decode_saslname(authzid_attr.substr(2), authzid))
      return fail("bad authzid");
  }
  std::string_view bare = msg.substr(authzid_end + 1);

  // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
  // Section 5.1: a server that sees "m" MUST fail. No other extension is defined, so one
  // here is from a client we do not understand.
  if (bare.substr(0, 2) == "m=") return fail("mandatory extension not supported");
  std::string_view rest = bare, user_attr, nonce;
  if (!take_attr(rest, 'n', user_attr)) return fail("username expected");
  std::string user;
  if (!decode_saslname(user_attr, user)) return fail("bad username");
  if (!take_attr(rest, 'r', nonce)) return fail("nonce expected");
  if (!printable(nonce) || nonce.size() > kMaxClientNonce) return fail("bad client nonce");
  if (!rest.empty() || bare.back() == ',') return fail("extensions not supported");
  // We do not let one user act for another (no admin proxy logins).
  if (!authzid.empty() && authzid != user) return fail("authzid differs from username");

  gs2_header_ = std::string(msg.substr(0, authzid_end + 1));
  client_first_bare_ = std::string(bare);
  nonce_ = std::string(nonce);
  username_ = user;
  state_ = State::first_seen;
  return user;
}

std::string ScramServer::server_first(const ScramCredentials& c) {
  if (state_ != State::first_seen) {
    std::fprintf(stderr, "ScramServer::server_first out of order\n");
    std::abort();
  }
  // An empty or damaged record fails closed through the same path as an unknown user.
  creds_ = usable(c) ? c : fake_credentials(username_, process_secret());
  std::string suffix = nonce_source_();
  if (!printable(suffix)) {
    std::fprintf(stderr, "ScramServer: nonce source returned a non-printable nonce\n");
    std::abort();
  }
  nonce_ += suffix;
  server_first_ = "r=" + nonce_ + ",s=" + encode_base64(creds_.salt) +
                  ",i=" + std::to_string(creds_.iterations);
  state_ = State::challenged;
  return server_first_;
}

Result<std::string> ScramServer::client_final(std::string_view msg) {
  if (state_ != State::challenged) return fail("client-final-message out of order");
  // client-final-message = "c=" base64 "," "r=" nonce ["," extensions] "," "p=" base64,
  // and we take no extensions: exactly these three attributes in this order.
  std::string_view rest = msg, cbind, nonce, proof_b64;
  if (!take_attr(rest, 'c', cbind)) return fail("channel-binding expected");
  if (!take_attr(rest, 'r', nonce)) return fail("nonce expected");
  if (!take_attr(rest, 'p', proof_b64)) return fail("proof expected (extensions not supported)");
  if (!rest.empty() || msg.back() == ',') return fail("data after proof");

  // Without channel binding c= is just the gs2-header again (section 5.1, "c").
  Result<std::string> cb = decode_base64(cbind);
  if (!cb || cb.value() != gs2_header_) return fail("channel-binding does not match gs2-header");
  if (nonce != nonce_) return fail("nonce does not match");
  Result<std::string> proof = decode_base64(proof_b64);
  if (!proof || proof.value().size() != kKeySize) return fail("bad proof encoding");

  // Section 3: AuthMessage = client-first-message-bare "," server-first-message ","
  //                          client-final-message-without-proof
  std::string_view without_proof = msg.substr(0, msg.size() - proof_b64.size() - 3);
  std::string auth_message = client_first_bare_;
  auth_message += ',';
  auth_message += server_first_;
  auth_message += ',';
  auth_message += without_proof;

  std::string signature = hmac_sha256(creds_.stored_key, auth_message);
  std::string client_key = proof.value();
  for (size_t i = 0; i < kKeySize; ++i) client_key[i] ^= signature[i];
  std::string stored = sha256(client_key);
  // Constant time, so the comparison says nothing about how close the proof came.
  if (CRYPTO_memcmp(stored.data(), creds_.stored_key.data(), kKeySize) != 0)
    return fail("invalid proof");

  state_ = State::done;
  return "v=" + encode_base64(hmac_sha256(creds_.server_key, auth_message));
}

ScramCredentials ScramServer::fake_credentials(std::string_view username, std::string_view secret) {
  ScramCredentials c;
  c.salt = hmac_sha256(secret, username).substr(0, kFakeSaltBytes);
  c.iterations = kScramDefaultIterations;
  c.stored_key = random_bytes(kKeySize);
  c.server_key = random_bytes(kKeySize);
  return c;
}

}  // namespace ringmail::auth
