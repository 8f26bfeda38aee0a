// ringctl user ...: the user database from the command line (auth/user_db.h).
//
// Passwords come from standard input only, never from argv (argv is visible to every
// user through ps and /proc): the first line, or two prompts with echo off on a terminal.
// Works while ringmaild runs: LMDB serialises writers across processes and the daemon's
// readers see each commit at once.
#pragma once

#include <string>
#include <vector>

#include "conf/config.h"

namespace ringmail::ringctl {

// `args` are the words after "user". Returns the exit status: 0 done, 1 refused or
// failed (message on stderr), 2 usage error.
int user_command(const conf::Config& cfg, const std::vector<std::string>& args);

// The `user` lines of ringctl's usage text.
const char* user_usage();

}  // namespace ringmail::ringctl
