#!/bin/sh
# Fresh Debian 12 machine -> ringmaild running on its embedded default config
# (data in ./ringmail-data, SMTP on 127.0.0.1:2525). Run from the repository root as root.
set -eu
cd "$(dirname "$0")/.."
tools/setup-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target ringmaild ringctl ringbench
exec build/bin/ringmaild "$@"
