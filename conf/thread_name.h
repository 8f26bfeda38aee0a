// Names the calling thread for `top -H`, `ps -L`, perf and gdb (Linux keeps 15 bytes).
// Every long-lived thread of the daemon calls it first, so an operator can tell the loop
// threads from the log writer, the LMDB writer, the delivery loops and the workers.
#pragma once

#include <pthread.h>

#include <string>

namespace ringmail {

inline void name_this_thread(std::string name) {
  if (name.size() > 15) name.resize(15);
  pthread_setname_np(pthread_self(), name.c_str());
}

}  // namespace ringmail
