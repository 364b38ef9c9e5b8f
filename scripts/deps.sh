#!/usr/bin/env bash
# deps.sh [run|test] - install the Debian packages impetus needs.
#   run:  what building and running impetusd needs
#   test: that, plus the compilers and the real peers the tests start
#         (clang for the sanitizer and fuzz builds, dnsmasq, Postfix's smtp-sink, swaks,
#         the openssl CLI that makes the TLS tests' certificates)
# Only missing packages are installed; as root, or through sudo.
set -euo pipefail

mode=${1:-run}
pkgs=(build-essential cmake ninja-build pkg-config libevent-dev libssl-dev libcrypt-dev libc-ares-dev)
if [ "$mode" = test ]; then
    pkgs+=(clang libclang-rt-14-dev llvm python3 dnsmasq-base postfix swaks openssl)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix is installed only for its smtp-sink test server: never configure
# or start a system mail service.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
