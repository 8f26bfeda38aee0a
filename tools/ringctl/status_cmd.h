// ringctl status, stats and queue flush: the operator's questions about the queue, as
// text for people and grep, or JSON for programs. The output formats are documented in
// docs/ringctl-status.md; scripts depend on them, so change them only together.
//
// The queries themselves live in queue/admin.h; this file only parses arguments and
// prints. All three work while ringmaild runs.
#pragma once

#include <string>
#include <vector>

#include "queue/store.h"

namespace ringmail::ringctl {

// `args` are the words after the command ("status", "stats", or "queue flush").
// Exit status: 0 done, 1 nothing matched / unknown id / failure (message on stderr),
// 2 usage error.
int status_command(queue::Store& store, const std::vector<std::string>& args);
int stats_command(queue::Store& store, const std::vector<std::string>& args);
int flush_command(queue::Store& store, const std::vector<std::string>& args);

// The lines of ringctl's usage text for these commands.
const char* status_usage();

}  // namespace ringmail::ringctl
