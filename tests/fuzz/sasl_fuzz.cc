// libFuzzer target: the SASL pieces of SMTP AUTH (auth/sasl.h) and the SCRAM-SHA-256
// server (auth/scram.h).
//
// The whole input goes to the base64, PLAIN, UTF-8 and mechanism-name parsers; split at
// the first '\n' it is a client-first and a client-final message for one exchange.
// Invariants: base64 is canonical (what decodes re-encodes to the same text); an
// accepted PLAIN message is exactly its three fields with two NULs between them; every
// client-first message that is accepted leads to an exchange a correct client completes,
// with the server signature that client expects; a proof the server accepts is correct.
#include <openssl/digest.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "auth/sasl.h"
#include "auth/scram.h"
#include "auth/scram_credentials.h"

namespace {

using namespace ringmail;

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";  // RFC 7677

std::string salt() {
  return auth::decode_base64("W22ZaJ0SNY7soEsUEjb6gQ==").value();
}

// PBKDF2 once per process, not per input.
const auth::ScramCredentials& pencil() {
  static const auth::ScramCredentials c = auth::scram_credentials("pencil", salt(), 4096);
  return c;
}

const std::string& salted_pencil() {
  static const std::string s = [] {
    uint8_t out[32];
    std::string sa = salt();
    PKCS5_PBKDF2_HMAC("pencil", 6, reinterpret_cast<const uint8_t*>(sa.data()), sa.size(), 4096,
                      EVP_sha256(), sizeof out, out);
    return std::string(reinterpret_cast<char*>(out), sizeof out);
  }();
  return s;
}

auth::ScramServer server() {
  return auth::ScramServer([] { return std::string(kServerNonce); });
}

char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

void fuzz_base64(std::string_view s) {
  Result<std::string> r = auth::decode_base64(s);
  if (r.ok()) {
    check(s.size() % 4 == 0);
    check(r.value().size() <= s.size() / 4 * 3);
    check(auth::encode_base64(r.value()) == s);
    auth::ClientResponse resp = auth::parse_response(s);
    check(resp.kind == auth::ResponseKind::data && resp.data == r.value());
  } else {
    check(r.error().code == 501);
    auth::ClientResponse resp = auth::parse_response(s);
    check(resp.kind == (s == "*" ? auth::ResponseKind::cancel : auth::ResponseKind::bad_base64));
  }
  auth::ClientResponse init = auth::parse_initial_response(s);
  if (init.kind == auth::ResponseKind::data)
    check(s == "=" ? init.data.empty() : (r.ok() && !s.empty() && init.data == r.value()));
  else
    check(init.kind == auth::ResponseKind::bad_base64 && (s.empty() || !r.ok()));
  // Anything encodes to something that decodes back to it.
  std::string enc = auth::encode_base64(s);
  Result<std::string> back = auth::decode_base64(enc, enc.size());
  check(back.ok() && back.value() == s);
}

void fuzz_plain(std::string_view s) {
  Result<auth::PlainCredentials> p = auth::decode_plain(s);
  if (!p.ok()) {
    check(p.error().code == 535);
    return;
  }
  check(!p->authcid.empty() && !p->password.empty());
  for (const std::string* f : {&p->authzid, &p->authcid, &p->password}) {
    check(f->size() <= 255);
    check(auth::valid_utf8(*f));
    check(f->find('\0') == std::string::npos);
  }
  check(p->authzid + '\0' + p->authcid + '\0' + p->password == s);
  Result<auth::PlainCredentials> l = auth::login_credentials(p->authcid, p->password);
  check(l.ok() && l->authcid == p->authcid && l->password == p->password);
}

void fuzz_mechanism(std::string_view s) {
  std::optional<auth::Mechanism> m = auth::parse_mechanism(s);
  if (!m) return;
  std::string_view name = auth::mechanism_name(*m);
  check(name.size() == s.size());
  for (size_t i = 0; i < s.size(); ++i) check(upper(s[i]) == name[i]);
  check(auth::advertised_mechanisms().find(name) != std::string_view::npos);
}

// The final message a correct client sends, and the signature it expects back.
std::string client_final_for(std::string_view first, std::string_view server_first,
                             std::string* server_signature) {
  // gs2-header is everything up to the second ',' (an authzid has no ',' in it).
  size_t gs2_end = first.find(',', first.find(',') + 1) + 1;
  std::string nonce(server_first.substr(2, server_first.find(',') - 2));
  std::string without_proof = "c=" + auth::encode_base64(first.substr(0, gs2_end)) + ",r=" + nonce;
  std::string auth_message =
      std::string(first.substr(gs2_end)) + "," + std::string(server_first) + "," + without_proof;
  std::string client_key = auth::hmac_sha256(salted_pencil(), "Client Key");
  std::string signature = auth::hmac_sha256(auth::sha256(client_key), auth_message);
  std::string proof = client_key;
  for (size_t i = 0; i < proof.size(); ++i) proof[i] ^= signature[i];
  *server_signature =
      auth::hmac_sha256(auth::hmac_sha256(salted_pencil(), "Server Key"), auth_message);
  return without_proof + ",p=" + auth::encode_base64(proof);
}

void fuzz_scram(std::string_view s) {
  size_t nl = s.find('\n');
  std::string_view first = s.substr(0, nl);
  std::string_view final_msg = nl == std::string_view::npos ? s : s.substr(nl + 1);

  auth::ScramServer a = server();
  Result<std::string> user = a.client_first(first);
  if (!user.ok()) {
    check(user.error().code == 535);
    check(!a.client_first(first).ok());  // one refusal ends the exchange
    return;
  }
  check(!user.value().empty() && user.value().size() <= 255);
  check(auth::valid_utf8(user.value()));
  check(user.value().find('\0') == std::string::npos);
  check(a.username() == user.value());
  std::string server_first = a.server_first(pencil());
  check(server_first.rfind("r=", 0) == 0);
  check(server_first.find(std::string(kServerNonce) + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096") !=
        std::string::npos);

  std::string expected_signature;
  std::string good = client_final_for(first, server_first, &expected_signature);
  Result<std::string> v = a.client_final(final_msg);
  if (v.ok()) {
    // Only the correct proof can pass (anything else means a forgery).
    check(final_msg == good);
    check(v.value() == "v=" + auth::encode_base64(expected_signature));
  } else {
    check(v.error().code == 535);
  }

  // Every first message we accept can be completed by a correct client.
  auth::ScramServer b = server();
  check(b.client_first(first).ok());
  check(b.server_first(pencil()) == server_first);
  Result<std::string> w = b.client_final(good);
  check(w.ok() && w.value() == "v=" + auth::encode_base64(expected_signature));

  // And unknown users get a challenge of the same shape that always fails.
  auth::ScramServer c = server();
  check(c.client_first(first).ok());
  std::string fake_first = c.server_first(auth::ScramCredentials{});
  check(fake_first.substr(0, fake_first.find(",s=")) ==
        server_first.substr(0, server_first.find(",s=")));
  check(!c.client_final(good).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  fuzz_base64(s);
  fuzz_plain(s);
  fuzz_mechanism(s);
  check(auth::valid_utf8(auth::encode_base64(s)));
  fuzz_scram(s);
  return 0;
}
