// AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN and SCRAM-SHA-256 (RFC 7677).
//
// The mechanisms themselves are sans-IO (auth/sasl.h, auth/scram.h); this file reads the
// client's lines, and sends every user lookup and password check to the worker pool: a
// yescrypt verification costs tens of milliseconds and must never stall a loop thread.
// Unknown users cost the same as wrong passwords (a dummy hash is verified; SCRAM gets
// fake verifiers), so replies and timing do not tell which addresses exist.
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "auth/auth_throttle.h"
#include "auth/password.h"
#include "auth/sasl.h"
#include "auth/scram.h"
#include "auth/user_db.h"
#include "auth/verified_cache.h"
#include "mta/runtime/ops.h"
#include "mta/runtime/worker_pool.h"
#include "mta/smtp/session.h"

namespace ringmail::smtp {

// What the worker pool answers (declared in session.h as incomplete types).
struct Found {
  std::optional<auth::User> user;
};

struct Verdict {
  bool ok = false;
  bool busy = false;               // not checked: too many checks waiting (454)
  std::string address;             // canonical login address
  std::vector<std::string> owned;  // address + aliases
  std::string note;                // why it failed (log only)
};

namespace {

// A yescrypt hash of a random password nobody knows: verified for unknown users so that
// a failure takes as long as for a real one.
const std::string& dummy_hash() {
  static const std::string h = [] {
    auto r = auth::hash_password("ringmail-dummy-password-never-valid");
    return r ? *r : std::string();
  }();
  return h;
}

std::string lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

// More checks than this per hash thread waiting: AUTH says 454 rather than queueing without
// bound (at ~70 ms a check, 64 per thread is already seconds of wait).
constexpr size_t kMaxQueuedPerThread = 64;

// Worker thread: look the user up and check the password.
Verdict check_password(auth::UserDb* db, auth::VerifiedCache* cache, const std::string& login,
                       const std::string& password) {
  Verdict v;
  auto u = db->find(lower(login));
  if (!u || !*u) {
    auth::verify_password(password, dummy_hash());
    v.note = u ? "unknown user" : "user database error: " + u.error().message;
    return v;
  }
  const auth::User& user = **u;
  auto now = std::chrono::steady_clock::now();
  bool cached = cache && cache->hit(user.address, password, user.password_hash, now);
  if (!cached) {
    if (!auth::verify_password(password, user.password_hash)) {
      v.note = "wrong password";
      return v;
    }
    if (cache) cache->remember(user.address, password, user.password_hash, now);
  }
  if (!user.enabled) {
    v.note = "user disabled";
    return v;
  }
  v.ok = true;
  v.address = user.address;
  v.owned.push_back(user.address);
  for (const auto& a : user.aliases) v.owned.push_back(a);
  return v;
}

}  // namespace

rt::Task<std::optional<std::string>> Session::read_sasl_line() {
  const auto& host = ctx_.config.server.hostname;
  std::string_view line;
  size_t used = 0;
  ReadStatus st = co_await read_line(line, used);
  if (st == ReadStatus::line) {
    std::string out(line);
    stream_.consume(used);
    co_return out;
  }
  if (st == ReadStatus::too_long) co_return std::string("*");  // ends as a cancelled exchange
  if (st == ReadStatus::timeout) reply("421 4.4.2 " + host + " Error: timeout exceeded");
  if (st == ReadStatus::shutdown) reply("421 4.3.2 " + host + " Service shutting down");
  co_return std::nullopt;
}

bool Session::auth_busy() {
  // RFC 4954 6: 454 is a temporary failure; not the client's fault, so not counted.
  std::fprintf(stderr, "ringmaild: AUTH from %s deferred: password checks overloaded\n",
               peer_ip_.c_str());
  reply("454 4.7.0 Temporary authentication failure, try again later");
  return true;
}

rt::Task<bool> Session::auth_failed(std::string_view user, std::string_view mech) {
  const auto& a = ctx_.config.auth;
  uint32_t n = ctx_.auth.throttle->record_failure(peer_ip_, std::chrono::steady_clock::now());
  std::fprintf(stderr, "ringmaild: AUTH %.*s failed for user \"%.*s\" from %s (%u of %u)\n",
               static_cast<int>(mech.size()), mech.data(), static_cast<int>(user.size()),
               user.data(), peer_ip_.c_str(), n, a.max_failures);
  count_error();
  if (n >= a.max_failures) {
    reply("421 4.7.0 " + ctx_.config.server.hostname + " Error: too many authentication failures");
    co_return false;
  }
  // Slow guessing down without holding a thread: the session just sleeps on the loop.
  auto delay = a.failure_delay * std::min<uint32_t>(n, 5);
  if (delay.count() > 0) {
    rt::Sleep pause(loop_, std::chrono::duration_cast<rt::Duration>(delay));
    co_await pause;
  }
  reply("535 5.7.8 Authentication credentials invalid");
  co_return true;
}

// Named ops, not temporaries inside co_await: GCC 12 destroys a temporary awaiter's
// captures twice when the coroutine resumes from another thread's post.
rt::Task<Verdict> Session::check(std::string login, std::string password) {
  if (ctx_.auth.pool->queued() >= kMaxQueuedPerThread * ctx_.auth.pool->threads()) {
    Verdict busy;
    busy.busy = true;
    co_return busy;
  }
  auto job = [db = ctx_.auth.users, cache = ctx_.auth.cache, &login, &password] {
    return check_password(db, cache, login, password);
  };
  auto op = ctx_.auth.pool->run(loop_, job);
  co_return co_await op;
}

rt::Task<Found> Session::lookup(std::string login) {
  auto job = [db = ctx_.auth.users, l = lower(login)] {
    Found r;
    auto u = db->find(l);
    if (u && *u) r.user = std::move(**u);
    return r;
  };
  auto op = ctx_.auth.pool->run(loop_, job);
  co_return co_await op;
}

rt::Task<bool> Session::cmd_auth(std::string arg) {
  const auto& host = ctx_.config.server.hostname;
  if (helo_.empty() || !esmtp_) {
    reply("503 5.5.1 Error: send EHLO first");
    count_error();
    co_return true;
  }
  if (authenticated_) {
    reply("503 5.5.1 Error: already authenticated");
    count_error();
    co_return true;
  }
  if (has_mail_) {
    reply("503 5.5.1 Error: AUTH not permitted during a mail transaction");
    count_error();
    co_return true;
  }
  if (!ctx_.auth.users) {
    reply("502 5.5.1 Error: authentication not enabled");
    count_error();
    co_return true;
  }
  if (!stream_.tls() && !ctx_.config.auth.allow_plaintext) {
    reply("538 5.7.11 Encryption required for requested authentication mechanism");
    count_error();
    co_return true;
  }
  if (ctx_.auth.throttle->blocked(peer_ip_, std::chrono::steady_clock::now())) {
    std::fprintf(stderr, "ringmaild: AUTH refused for %s: too many recent failures\n",
                 peer_ip_.c_str());
    reply("421 4.7.0 " + host + " Error: too many authentication failures");
    co_return false;
  }
  size_t sp = arg.find(' ');
  std::string mech_name = arg.substr(0, sp);
  std::optional<std::string> initial;
  if (sp != std::string::npos) initial = arg.substr(sp + 1);
  auto mech = auth::parse_mechanism(mech_name);
  if (!mech) {
    reply("504 5.5.4 Unrecognized authentication type");
    count_error();
    co_return true;
  }

  // One client response: the initial response if given, else a line after `challenge`
  // (RFC 4954 4). nullopt: the exchange is over, with `keep` false if the session must end
  // and a 501 already sent for "*" or bad base64.
  bool keep = true;
  auto respond = [&](std::optional<std::string>& given,
                     std::string_view challenge) -> rt::Task<std::optional<std::string>> {
    auth::ClientResponse r;
    if (given) {
      r = auth::parse_initial_response(*given);
      given.reset();
    } else {
      reply("334 " + std::string(challenge));
      auto line = co_await read_sasl_line();
      if (!line) {
        keep = false;
        co_return std::nullopt;
      }
      r = auth::parse_response(*line);
    }
    switch (r.kind) {
      case auth::ResponseKind::data:
        co_return std::move(r.data);
      case auth::ResponseKind::cancel:
        reply("501 5.7.0 Authentication cancelled");
        break;
      case auth::ResponseKind::bad_base64:
        reply("501 5.5.2 Cannot decode base64 response");
        break;
    }
    count_error();
    co_return std::nullopt;
  };

  Verdict v;
  std::string login;
  switch (*mech) {
    case auth::Mechanism::plain: {
      auto raw = co_await respond(initial, "");
      if (!raw) co_return keep;
      auto creds = auth::decode_plain(*raw);
      if (!creds) co_return co_await auth_failed("", "PLAIN");
      login = creds->authcid;
      // No proxy authorization: an authzid, if given, must name the same user.
      if (!creds->authzid.empty() && lower(creds->authzid) != lower(creds->authcid))
        co_return co_await auth_failed(login, "PLAIN");
      v = co_await check(login, creds->password);
      if (v.busy) co_return auth_busy();
      if (!v.ok) co_return co_await auth_failed(login, "PLAIN");
      break;
    }
    case auth::Mechanism::login: {
      auto user = co_await respond(initial, auth::kLoginUsernamePrompt);
      if (!user) co_return keep;
      login = *user;
      std::optional<std::string> none;
      auto pass = co_await respond(none, auth::kLoginPasswordPrompt);
      if (!pass) co_return keep;
      // The same checks as PLAIN (no NUL, UTF-8, lengths) before anything is looked up.
      auto creds = auth::login_credentials(*user, *pass);
      if (!creds) co_return co_await auth_failed(login, "LOGIN");
      v = co_await check(creds->authcid, creds->password);
      if (v.busy) co_return auth_busy();
      if (!v.ok) co_return co_await auth_failed(login, "LOGIN");
      break;
    }
    case auth::Mechanism::scram_sha256: {
      auth::ScramServer scram;
      auto first = co_await respond(initial, "");
      if (!first) co_return keep;
      auto name = scram.client_first(*first);
      if (!name) co_return co_await auth_failed("", "SCRAM-SHA-256");
      login = *name;
      Found f = co_await lookup(login);
      // Unknown users, users without SCRAM verifiers (imported hashes) and disabled users
      // go through the same exchange with fake verifiers and fail at the proof.
      bool usable = f.user && f.user->enabled && !f.user->scram.empty();
      auth::ScramCredentials cred =
          usable ? f.user->scram : auth::ScramServer::fake_credentials(lower(login), dummy_hash());
      std::optional<std::string> none;
      auto final_msg = co_await respond(none, auth::encode_base64(scram.server_first(cred)));
      if (!final_msg) co_return keep;
      auto server_final = scram.client_final(*final_msg);
      if (!server_final || !usable) co_return co_await auth_failed(login, "SCRAM-SHA-256");
      // RFC 4954 4: the server's proof goes in a last challenge; the client answers empty.
      auto ack = co_await respond(none, auth::encode_base64(*server_final));
      if (!ack) co_return keep;
      if (!ack->empty()) co_return co_await auth_failed(login, "SCRAM-SHA-256");
      v.ok = true;
      v.address = f.user->address;
      v.owned.push_back(f.user->address);
      for (const auto& a : f.user->aliases) v.owned.push_back(a);
      break;
    }
  }
  authenticated_ = true;
  auth_user_ = v.address;
  owned_ = std::move(v.owned);
  reply("235 2.7.0 Authentication successful");
  co_return true;
}

}  // namespace ringmail::smtp
