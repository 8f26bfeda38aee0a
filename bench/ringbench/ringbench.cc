// ringbench: the SMTP load generator (default) and the counting sink (`ringbench sink`).
// See bench/ringbench/README.md for usage and measured numbers.
#include <cstdio>
#include <string_view>

#include "bench/ringbench/client.h"
#include "bench/ringbench/options.h"
#include "bench/ringbench/sink.h"

int main(int argc, char** argv) {
  using namespace ringbench;
  if (argc > 1 && (std::string_view(argv[1]) == "-h" || std::string_view(argv[1]) == "--help")) {
    print_usage();
    return 0;
  }
  if (argc > 1 && std::string_view(argv[1]) == "sink") {
    auto o = parse_sink_options(argc - 2, argv + 2);
    if (!o) {
      std::fprintf(stderr, "ringbench sink: %s\n", o.error().message.c_str());
      print_usage();
      return 2;
    }
    return run_sink(*o);
  }
  auto o = parse_client_options(argc - 1, argv + 1);
  if (!o) {
    std::fprintf(stderr, "ringbench: %s\n", o.error().message.c_str());
    print_usage();
    return 2;
  }
  return run_client(*o);
}
