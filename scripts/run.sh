#!/usr/bin/env bash
# run.sh [impetusd arguments] - install what is needed, build, and run impetusd
# in the foreground. Without arguments it uses the embedded default
# configuration: loopback only, spool, pidfile and logs under ./var/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh" run
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMPETUS_INTEGRATION=OFF >/dev/null
ninja -C "$root/build" impetusd impetus-sendmail impetus-spool impetusctl
exec "$root/build/impetusd" "$@"
