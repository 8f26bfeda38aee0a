#include "mta/smtp/command_parser.h"

#include <cctype>
#include <charconv>

namespace ringmail::smtp {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(a[i])) !=
        std::toupper(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

Error err(int code, std::string text) {
  return Error{code, std::move(text)};
}

bool parse_u64(std::string_view s, uint64_t& v) {
  if (s.empty() || s.size() > 20) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

// Splits "KEY[=VALUE] KEY[=VALUE] ..." one parameter at a time.
class Params {
 public:
  explicit Params(std::string_view s) : s_(s) {}
  // false at the end; sets key/value/has_value. Returns an error via bad() on syntax.
  bool next(std::string_view& key, std::string_view& value, bool& has_value) {
    while (!s_.empty() && s_.front() == ' ') s_.remove_prefix(1);
    if (s_.empty()) return false;
    size_t end = s_.find(' ');
    std::string_view p = s_.substr(0, end);
    s_.remove_prefix(end == std::string_view::npos ? s_.size() : end);
    size_t eq = p.find('=');
    key = p.substr(0, eq);
    has_value = eq != std::string_view::npos;
    value = has_value ? p.substr(eq + 1) : std::string_view();
    return true;
  }

 private:
  std::string_view s_;
};

// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool valid_keyword(std::string_view k) {
  if (k.empty() || !std::isalnum(static_cast<unsigned char>(k[0]))) return false;
  for (char c : k)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 under SMTPUTF8 (RFC 6531)
bool valid_value(std::string_view v) {
  if (v.empty()) return false;
  for (unsigned char c : v)
    if (c < 33 || c == '=' || c == 127) return false;
  return true;
}

// Strips the "FROM:" / "TO:" keyword; tolerates spaces after the colon, which many
// clients send although RFC 5321 has none there.
bool strip_keyword(std::string_view& arg, std::string_view kw) {
  if (!istarts_with(arg, kw)) return false;
  arg.remove_prefix(kw.size());
  while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
  return true;
}

}  // namespace

Command parse_command(std::string_view line) {
  size_t sp = line.find(' ');
  std::string_view verb = line.substr(0, sp);
  Command c;
  c.arg = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  static constexpr struct {
    std::string_view name;
    Verb verb;
  } kVerbs[] = {
      {"EHLO", Verb::ehlo},
      {"HELO", Verb::helo},
      {"MAIL", Verb::mail},
      {"RCPT", Verb::rcpt},
      {"DATA", Verb::data},
      {"BDAT", Verb::bdat},
      {"RSET", Verb::rset},
      {"NOOP", Verb::noop},
      {"QUIT", Verb::quit},
      {"VRFY", Verb::vrfy},
      {"EXPN", Verb::expn},
      {"HELP", Verb::help},
      {"STARTTLS", Verb::starttls},
      {"AUTH", Verb::auth},
      // A browser or proxy talking to the SMTP port: cross-protocol attacks start this way.
      {"GET", Verb::http},
      {"POST", Verb::http},
      {"HEAD", Verb::http},
      {"PUT", Verb::http},
      {"CONNECT", Verb::http},
      {"OPTIONS", Verb::http},
  };
  for (const auto& v : kVerbs) {
    if (iequals(verb, v.name)) {
      c.verb = v.verb;
      return c;
    }
  }
  c.verb = Verb::unknown;
  return c;
}

bool valid_xtext(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '+') {
      if (i + 2 >= s.size()) return false;
      for (int k = 1; k <= 2; ++k) {
        char h = s[i + static_cast<size_t>(k)];
        if (!((h >= '0' && h <= '9') || (h >= 'A' && h <= 'F'))) return false;
      }
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return false;
    }
  }
  return true;
}

Result<MailFrom> parse_mail_from(std::string_view arg) {
  if (!strip_keyword(arg, "FROM:")) return err(501, "5.5.4 Syntax: MAIL FROM:<address>");
  // SMTPUTF8 follows the path but decides whether the path may be UTF-8: parse the path
  // permissively, read the parameters, then apply the rule (RFC 6531 3.4).
  size_t used = 0;
  auto path = auth::parse_path(arg, /*allow_null=*/true, /*allow_utf8=*/true, &used);
  if (!path) return err(501, "5.1.7 Bad sender address syntax: " + path.error().message);
  MailFrom m;
  m.path = std::move(path.value());
  std::string_view rest = arg.substr(used);
  if (!rest.empty() && rest.front() != ' ') return err(501, "5.5.4 Syntax: MAIL FROM:<address>");
  Params params(rest);
  std::string_view k, v;
  bool hv;
  bool seen_size = false, seen_body = false, seen_ret = false, seen_envid = false,
       seen_utf8 = false, seen_auth = false;
  while (params.next(k, v, hv)) {
    if (!valid_keyword(k) || (hv && !valid_value(v)))
      return err(501, "5.5.4 Bad MAIL parameter syntax");
    if (iequals(k, "SIZE")) {
      if (seen_size) return err(501, "5.5.4 Duplicate SIZE parameter");
      seen_size = true;
      if (!hv || !parse_u64(v, m.size)) return err(501, "5.5.4 Bad SIZE parameter value");
    } else if (iequals(k, "BODY")) {
      if (seen_body) return err(501, "5.5.4 Duplicate BODY parameter");
      seen_body = true;
      if (iequals(v, "7BIT"))
        m.body = queue::BodyType::seven_bit;
      else if (iequals(v, "8BITMIME"))
        m.body = queue::BodyType::eight_bit_mime;
      else if (iequals(v, "BINARYMIME"))
        return err(504, "5.5.4 BODY=BINARYMIME is not supported");
      else
        return err(501, "5.5.4 Bad BODY parameter value");
    } else if (iequals(k, "SMTPUTF8")) {
      if (seen_utf8 || hv) return err(501, "5.5.4 Bad SMTPUTF8 parameter");
      seen_utf8 = true;
      m.smtputf8 = true;
    } else if (iequals(k, "RET")) {
      if (seen_ret) return err(501, "5.5.4 Duplicate RET parameter");
      seen_ret = true;
      if (iequals(v, "FULL"))
        m.ret = queue::Ret::full;
      else if (iequals(v, "HDRS"))
        m.ret = queue::Ret::hdrs;
      else
        return err(501, "5.5.4 Bad RET parameter value");
    } else if (iequals(k, "ENVID")) {
      if (seen_envid) return err(501, "5.5.4 Duplicate ENVID parameter");
      seen_envid = true;
      // RFC 3461 4.4: at most 100 characters of xtext.
      if (!hv || v.size() > 100 || !valid_xtext(v))
        return err(501, "5.5.4 Bad ENVID parameter value");
      m.envid = std::string(v);
    } else if (iequals(k, "AUTH")) {
      // RFC 4954 5: a server that offers AUTH must accept the parameter. Its value is only
      // ever trusted from an authenticated relay, which we are not: it is checked, kept
      // for the record, and never passed on.
      if (seen_auth) return err(501, "5.5.4 Duplicate AUTH parameter");
      seen_auth = true;
      if (!hv || v.size() > 500 || (v != "<>" && !valid_xtext(v)))
        return err(501, "5.5.4 Bad AUTH parameter value");
      m.auth = std::string(v);
    } else {
      return err(555, "5.5.4 Unsupported MAIL parameter: " + std::string(k.substr(0, 32)));
    }
  }
  if (m.path.utf8 && !m.smtputf8) return err(553, "5.6.7 non-ASCII address needs SMTPUTF8");
  return m;
}

Result<RcptTo> parse_rcpt_to(std::string_view arg, bool smtputf8) {
  if (!strip_keyword(arg, "TO:")) return err(501, "5.5.4 Syntax: RCPT TO:<address>");
  RcptTo r;
  size_t used = 0;
  if (istarts_with(arg, "<postmaster>")) {
    // RFC 5321 4.1.1.3: "<Postmaster>" without a domain is a valid recipient, the
    // postmaster of this server (4.5.1: any case). The domain stays empty.
    r.path.mailbox.local = std::string(arg.substr(1, 10));
    used = 12;
  } else {
    auto path = auth::parse_path(arg, /*allow_null=*/false, smtputf8, &used);
    if (!path) {
      if (path.error().code == 553) return err(553, "5.6.7 " + path.error().message);
      return err(501, "5.1.3 Bad recipient address syntax: " + path.error().message);
    }
    r.path = std::move(path.value());
  }
  std::string_view rest = arg.substr(used);
  if (!rest.empty() && rest.front() != ' ') return err(501, "5.5.4 Syntax: RCPT TO:<address>");
  Params params(rest);
  std::string_view k, v;
  bool hv;
  bool seen_notify = false, seen_orcpt = false;
  while (params.next(k, v, hv)) {
    if (!valid_keyword(k) || (hv && !valid_value(v)))
      return err(501, "5.5.4 Bad RCPT parameter syntax");
    if (iequals(k, "NOTIFY")) {
      if (seen_notify || !hv) return err(501, "5.5.4 Bad NOTIFY parameter");
      seen_notify = true;
      // NEVER alone, or a list of SUCCESS / FAILURE / DELAY (RFC 3461 4.1).
      std::string_view list = v;
      while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        uint8_t bit = iequals(item, "NEVER")     ? queue::kNotifyNever
                      : iequals(item, "SUCCESS") ? queue::kNotifySuccess
                      : iequals(item, "FAILURE") ? queue::kNotifyFailure
                      : iequals(item, "DELAY")   ? queue::kNotifyDelay
                                                 : 0;
        if (bit == 0 || (r.notify & bit)) return err(501, "5.5.4 Bad NOTIFY parameter value");
        r.notify |= bit;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
        if (list.empty()) return err(501, "5.5.4 Bad NOTIFY parameter value");
      }
      if ((r.notify & queue::kNotifyNever) && r.notify != queue::kNotifyNever)
        return err(501, "5.5.4 NOTIFY=NEVER cannot be combined");
    } else if (iequals(k, "ORCPT")) {
      if (seen_orcpt || !hv) return err(501, "5.5.4 Bad ORCPT parameter");
      seen_orcpt = true;
      // orcpt-parameter = addr-type ";" xtext (RFC 3461 4.2), at most 500 characters.
      size_t semi = v.find(';');
      if (semi == std::string_view::npos || semi == 0 || v.size() > 500 ||
          !valid_keyword(v.substr(0, semi)) || !valid_xtext(v.substr(semi + 1)))
        return err(501, "5.5.4 Bad ORCPT parameter value");
      r.orcpt = std::string(v);
    } else {
      return err(555, "5.5.4 Unsupported RCPT parameter: " + std::string(k.substr(0, 32)));
    }
  }
  return r;
}

Result<BdatArgs> parse_bdat(std::string_view arg) {
  BdatArgs b;
  size_t sp = arg.find(' ');
  std::string_view size = arg.substr(0, sp);
  if (!parse_u64(size, b.size)) return err(501, "5.5.4 Syntax: BDAT size [LAST]");
  if (sp != std::string_view::npos) {
    std::string_view rest = arg.substr(sp + 1);
    if (!iequals(rest, "LAST")) return err(501, "5.5.4 Syntax: BDAT size [LAST]");
    b.last = true;
  }
  return b;
}

}  // namespace ringmail::smtp
