// The counting sink: an SMTP receiver that accepts every message and keeps nothing
// (unless --fsync), one rt::Loop per thread on SO_REUSEPORT listeners. It is the
// "no-queue bound" the daemon is compared against, so it does as little as SMTP allows:
// replies to a pipelined batch leave in one send, message content is scanned in the
// kernel-provided receive buffers and never copied.
//
// The main thread takes SIGTERM/SIGINT with sigtimedwait (the loop threads block them),
// prints `sink: total=N rate=R/s` to stderr each second the count moved, and on a signal
// stops every loop and prints `SINK messages=N` to stdout.
#pragma once

#include "bench/ringbench/options.h"

namespace ringbench {

int run_sink(const SinkOptions& opt);

}  // namespace ringbench
