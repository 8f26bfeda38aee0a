// ringctl mailbox ...: what the mailbox store (mta/store/mail_store.h) holds for a local
// user, read while ringmaild runs. Read-only: mailbox changes belong to POP3/IMAP.
#pragma once

#include <string>
#include <vector>

#include "conf/config.h"

namespace ringmail::ringctl {

// `args` are the words after "mailbox". Returns the exit status: 0 done, 1 failed
// (message on stderr), 2 usage error.
int mailbox_command(const conf::Config& cfg, const std::vector<std::string>& args);

// The `mailbox` lines of ringctl's usage text.
const char* mailbox_usage();

}  // namespace ringmail::ringctl
