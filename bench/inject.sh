#!/usr/bin/env bash
# inject.sh - injection benchmark: how fast impetusd accepts mail onto its
# durable spool, next to the machine's single-hop ceiling.
#
#   bench/inject.sh [-n MESSAGES] [-c SESSIONS] [-s SIZE] [-r RCPTS] [-b BUILD_DIR]
#
# Runs, on loopback only:
#   ceiling  Postfix's smtp-source straight into smtp-sink (no relay, no disk)
#   impetus  smtp-source into impetusd (default durable spool: every 250 after
#            the message is synced), Event_Loops = one per core
# and prints, per run: messages/s, relay CPU seconds per 1,000 messages, peak
# RSS of the relay, and spool syncs per message (from impetusd's stop line).
# Results also go to bench/results/inject-<time>.jsonl. Delivery does not
# exist yet (queues and SMTP client come with later issues), so this is the
# reception half of the relay benchmark; the full comparison with Postfix
# comes with the Benchmark issue.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
N=20000 C=50 SIZE=4096 RCPTS=1 BUILD=$root/build
while getopts n:c:s:r:b: opt; do
    case $opt in
        n) N=$OPTARG ;; c) C=$OPTARG ;; s) SIZE=$OPTARG ;; r) RCPTS=$OPTARG ;; b) BUILD=$OPTARG ;;
        *) echo "usage: $0 [-n N] [-c C] [-s SIZE] [-r RCPTS] [-b BUILD_DIR]" >&2; exit 2 ;;
    esac
done
command -v smtp-source >/dev/null || { echo "needs smtp-source (apt-get install postfix)" >&2; exit 1; }
[ -x "$BUILD/impetusd" ] || { echo "build impetusd first ($BUILD/impetusd)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/impetus-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$here/results"
out="$here/results/inject-$(date +%Y%m%d-%H%M%S).jsonl"
port_sink=25251 port_imp=25252

calc() { awk "BEGIN { print $* }"; }

free_port() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
free_port $port_sink && free_port $port_imp || { echo "ports $port_sink/$port_imp busy" >&2; exit 1; }

rcpt_args=()
[ "$RCPTS" -gt 1 ] && rcpt_args=(-r "$RCPTS")

# 1. the ceiling: smtp-source -> smtp-sink
smtp-sink -c -u nobody 127.0.0.1:$port_sink 1000 >"$work/sink.out" 2>&1 & pids+=($!)
sleep 0.5
t0=$(date +%s.%N)
smtp-source -s "$C" -m "$N" -l "$SIZE" "${rcpt_args[@]}" -f s@bench.test -t r@d1.test 127.0.0.1:$port_sink
t1=$(date +%s.%N)
ceiling=$(calc "$N / ($t1 - $t0)")
printf '{"run":"ceiling","messages":%d,"sessions":%d,"size":%d,"rcpts":%d,"msgs_per_s":%.0f}\n' \
    "$N" "$C" "$SIZE" "$RCPTS" "$ceiling" | tee -a "$out"

# 2. impetusd
mkdir -p "$work/imp"
cat >"$work/imp/bench.conf" <<CONF
Spoolbase = "$work/imp/spool"
Pidfile = "$work/imp/impetusd.pid"
Max_Recipients_Per_Message = 0
ec_logger { Paniclog = "$work/imp/paniclog.ec" }
ESMTP_Listener {
  Relay_Hosts = ( "127.0.0.0/8" )
  Listen "127.0.0.1:$port_imp" { }
}
CONF
"$BUILD/impetusd" -c "$work/imp/bench.conf" 2>/dev/null & imp=$!; pids+=($imp)
for _ in $(seq 50); do [ -f "$work/imp/impetusd.pid" ] && break; sleep 0.1; done
sleep 0.3
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$imp/stat"; }
c0=$(cpu)
t0=$(date +%s.%N)
smtp-source -s "$C" -m "$N" -l "$SIZE" "${rcpt_args[@]}" -f s@bench.test -t r@d1.test 127.0.0.1:$port_imp
t1=$(date +%s.%N)
c1=$(cpu)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$imp/status")
kill -TERM "$imp"; wait "$imp" || true
syncs=$(grep -o 'stored with [0-9]* syncs' "$work/imp/paniclog.ec" | tail -1 | awk '{print $3}')
batches=$(grep -o 'spool: [0-9]* batches' "$work/imp/paniclog.ec" | tail -1 | awk '{print $2}')
rate=$(calc "$N / ($t1 - $t0)")
cpu_per_k=$(calc "($c1 - $c0) / $hz / $N * 1000")
sync_per_msg=$(calc "${syncs:-0} / ${batches:-1}")
printf '{"run":"impetus","messages":%d,"sessions":%d,"size":%d,"rcpts":%d,"msgs_per_s":%.0f,"cpu_s_per_1000":%.3f,"peak_rss_kib":%d,"batches":%d,"syncs":%d,"syncs_per_msg":%.4f,"ratio_to_ceiling":%.3f}\n' \
    "$N" "$C" "$SIZE" "$RCPTS" "$rate" "$cpu_per_k" "$rss" "${batches:-0}" "${syncs:-0}" "$sync_per_msg" \
    "$(calc "$rate / $ceiling")" | tee -a "$out"
echo "results: $out"
