#!/bin/sh
# Installs everything ringmail needs to build, run and test on Debian 12 (run as root).
# Idempotent: packages already present are left alone.
set -eu
PKGS="build-essential cmake g++ pkg-config liburing-dev android-libboringssl-dev libc-ares-dev
liblmdb-dev libgtest-dev libgmock-dev libbenchmark-dev libtomlplusplus-dev python3 swaks
clang-14 libclang-rt-14-dev lmdb-utils libcrypt-dev libnet-ssleay-perl libio-socket-ssl-perl
libauthen-sasl-perl nsd"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup-deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
fi
# nsd is only a test fixture (tests start their own instance on a loopback port). If this
# script installed it, stop the system service the package starts, so setting up ringmail
# never leaves a DNS server listening on port 53.
case " $missing " in
  *" nsd "*)
    if command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now nsd >/dev/null 2>&1 || true
    fi
    ;;
esac
