// SMTP command-line parsing (RFC 5321 4.1, with the ESMTP parameters of RFC 1870 SIZE,
// 6152 8BITMIME, 6531 SMTPUTF8, 3461 DSN). Sans-IO: strings in, values or an exact
// reply out; nothing here reads a socket or allocates beyond the values it returns.
// Errors carry the SMTP reply code in Error::code and "x.y.z text" in Error::message.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "auth/address.h"
#include "conf/result.h"
#include "queue/envelope.h"

namespace ringmail::smtp {

enum class Verb {
  helo,
  ehlo,
  mail,
  rcpt,
  data,
  bdat,
  rset,
  noop,
  quit,
  vrfy,
  expn,
  help,
  starttls,
  auth,
  http,
  unknown
};

struct Command {
  Verb verb = Verb::unknown;
  std::string_view arg;  // after the verb and one space; may be empty
};

// `line` is one command line without its CRLF.
Command parse_command(std::string_view line);

struct MailFrom {
  auth::Path path;
  uint64_t size = 0;
  queue::BodyType body = queue::BodyType::unspecified;
  bool smtputf8 = false;
  queue::Ret ret = queue::Ret::unspecified;
  std::string envid;
  std::string auth;  // RFC 4954 AUTH= value ("<>" or xtext), informational only
};

struct RcptTo {
  auth::Path path;
  std::string orcpt;
  uint8_t notify = 0;
};

// `arg` is what follows "MAIL " / "RCPT ".
Result<MailFrom> parse_mail_from(std::string_view arg);
Result<RcptTo> parse_rcpt_to(std::string_view arg, bool smtputf8);

struct BdatArgs {
  uint64_t size = 0;
  bool last = false;
};
Result<BdatArgs> parse_bdat(std::string_view arg);

// RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+" and "=",
// hexchar = "+" 2(DIGIT / "A".."F").
bool valid_xtext(std::string_view s);

}  // namespace ringmail::smtp
