// libFuzzer target: the SMTP command-line parsers (mta/smtp/command_parser.h).
//
// The input is one command line without its CRLF. It goes through parse_command, and
// its argument (and the whole line, in case the verb split is wrong) through the MAIL,
// RCPT and BDAT parsers. Beyond "no crash, no UB", every result must be one the session
// can send as it is: an error is a 5xx SMTP code with an "x.y.z" enhanced status, and a
// success holds only values the parser promised to check.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mta/smtp/command_parser.h"

namespace {

using namespace ringmail;

void check(bool ok) {
  if (!ok) std::abort();
}

bool ascii_upper_free(std::string_view s) {
  for (char c : s)
    if (c >= 'A' && c <= 'Z') return false;
  return true;
}

void check_error(const Error& e) {
  check(e.code == 501 || e.code == 504 || e.code == 553 || e.code == 555);
  // "5.x.y text"
  check(e.message.size() >= 6 && e.message[0] == '5' && e.message[1] == '.');
}

void check_path(const auth::Path& p) {
  if (p.null) return;
  check(!p.mailbox.local.empty());
  check(!p.mailbox.domain.empty());
  check(ascii_upper_free(p.mailbox.domain));
  check(p.mailbox.local.size() <= 66);
}

void mail(std::string_view arg) {
  auto r = smtp::parse_mail_from(arg);
  if (!r.ok()) return check_error(r.error());
  const smtp::MailFrom& m = r.value();
  check_path(m.path);
  check(m.envid.size() <= 100 && smtp::valid_xtext(m.envid));
  check(m.body != queue::BodyType::binary_mime);
  // Without SMTPUTF8, a UTF-8 path is 553.
  if (!m.smtputf8) check(!m.path.utf8);
}

void rcpt(std::string_view arg, bool utf8) {
  auto r = smtp::parse_rcpt_to(arg, utf8);
  if (!r.ok()) return check_error(r.error());
  const smtp::RcptTo& t = r.value();
  check(!t.path.null);
  check_path(t.path);
  if (!utf8) check(!t.path.utf8);
  check(t.notify <= 15);
  if (t.notify & queue::kNotifyNever) check(t.notify == queue::kNotifyNever);
  check(t.orcpt.size() <= 500);
  if (!t.orcpt.empty()) {
    size_t semi = t.orcpt.find(';');
    check(semi != std::string::npos && semi > 0);
    check(smtp::valid_xtext(std::string_view(t.orcpt).substr(semi + 1)));
  }
}

void bdat(std::string_view arg) {
  auto r = smtp::parse_bdat(arg);
  if (!r.ok()) return check_error(r.error());
  // Only digits, optionally followed by " LAST".
  check(!arg.empty() && arg[0] >= '0' && arg[0] <= '9');
  check(r.value().last == (arg.find(' ') != std::string_view::npos));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  smtp::Command c = smtp::parse_command(line);
  // The argument is a view into the line, after the first space.
  if (!c.arg.empty()) {
    check(c.arg.data() > line.data() && c.arg.data() + c.arg.size() == line.data() + line.size());
    check(line[static_cast<size_t>(c.arg.data() - line.data()) - 1] == ' ');
  }
  if (c.verb != smtp::Verb::unknown) check(line.find(' ') != 0);
  mail(c.arg);
  mail(line);
  rcpt(c.arg, false);
  rcpt(c.arg, true);
  rcpt(line, false);
  bdat(c.arg);
  bdat(line);
  (void)smtp::valid_xtext(line);
  return 0;
}
