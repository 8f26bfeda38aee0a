// The load generator: N messages over C SMTP connections spread over T threads, each
// thread one rt::Loop. Prints a summary and the RESULT line; returns the exit status
// (0 only if every message was accepted and nothing failed).
#pragma once

#include "bench/ringbench/options.h"

namespace ringbench {

int run_client(const ClientOptions& opt);

}  // namespace ringbench
