#!/usr/bin/env bash
# bench/run.sh - the relay benchmark: impetus against Postfix, end to end, on loopback.
#
#   bench/run.sh [--quick] [--workload LIST] [--pinned | --unpinned] [--reps N]
#                [--verify] [--mem-n N] [--keep]
#
#   --workload LIST  comma-separated, from:
#       a        20,000 messages of 4 KB, 1 recipient, 100 domains, 50 sessions
#       b        10,000 messages of 4 KB, 10 recipients each (one domain per message:
#                one transaction per message at the sink)
#       c        1,000 messages of 100 KB
#       direct   only the direct line (injector straight into the sinks) for a, b, c
#                (a, b and c run their direct line too: the machine's single-hop ceiling)
#       scaling  workload a through impetus with Event_Loops = 1 and 2, alternating
#       memory   N queued messages with the sinks down (default 1,000,000): resident
#                memory per queued message, then the time to stop, restart on that
#                spool and resume delivery
#       default: a,b,c,scaling (memory is long: ask for it)
#   --pinned / --unpinned  only that placement (default: both). Pinned: the relay on
#                CPU 1 (impetus with Event_Loops = 1), injector, sinks and dnsmasq on CPU 0
#   --reps N     repetitions, impetus and Postfix alternating (default 2; --quick 1)
#   --quick      small N (a 2,000, b 1,000, c 200, memory 20,000): a smoke run of minutes
#   --verify     the sinks also dump what they receive; every message's token must be
#                there exactly once (costs sink I/O: for checking, not for figures)
#   --mem-n N    messages queued by the memory workload
#   --profile    perf record impetusd during its workload-a runs (call graphs; the
#                report goes to bench/results/relay-<time>-profile-<label>.txt)
#   --keep       keep the run directory (spools, logs, Postfix instance) afterwards
# Environment: IMPETUS_BUILD=DIR reuses a build of impetusd (else build-bench/ is
# configured and built); BENCH_RUN=DIR for the run directory (default a new one
# under /var/tmp).
#
# Installs what is missing (scripts/deps.sh for the build; postfix with "No
# configuration", dnsmasq-base, linux-perf for the fsync counts), starts its own
# dnsmasq (127.0.0.53:53, dN.test MX -> 127.0.0.2-5), smtp-sinks on 127.0.0.2-5:2525,
# a private Postfix (own config and queue directories under the run directory) on
# 127.0.0.1:10025 and impetusd on 127.0.0.1:10026, and stops all of them at the end.
# Writes bench/results/relay-<time>.jsonl (one line per run) and .md (the table).
# Exits non-zero if any message is missing at the sinks.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$BENCH_LIB/services.sh"

QUICK=0 WORKLOADS=a,b,c,scaling PINNINGS="unpinned pinned" REPS= VERIFY=0 KEEP=0 MEM_N= PROFILE=0
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --workload|--workloads) WORKLOADS=$2; shift ;;
        --pinned) PINNINGS=pinned ;;
        --unpinned) PINNINGS=unpinned ;;
        --reps) REPS=$2; shift ;;
        --verify) VERIFY=1 ;;
        --mem-n) MEM_N=$2; shift ;;
        --keep) KEEP=1 ;;
        --profile) PROFILE=1 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || die "run as root: the bench starts its own Postfix, binds 127.0.0.53:53 and uses cgroups"

if [ "$QUICK" = 1 ]; then
    N_A=${N_A:-2000} N_B=${N_B:-1000} N_C=${N_C:-200} REPS=${REPS:-1} MEM_N=${MEM_N:-20000} WARMUP=${WARMUP:-100}
else
    N_A=${N_A:-20000} N_B=${N_B:-10000} N_C=${N_C:-1000} REPS=${REPS:-2} MEM_N=${MEM_N:-1000000} WARMUP=${WARMUP:-300}
fi
SESSIONS=${SESSIONS:-50}
MEM_SIZE=${MEM_SIZE:-1024}
MEM_WINDOW=${MEM_WINDOW:-30}

has() { case ",$WORKLOADS," in *",$1,"*) return 0 ;; esac; return 1; }

# ---- 1. what is needed
install_missing() {
    "$ROOT/scripts/deps.sh" run || die "scripts/deps.sh failed"
    local p missing=() opt=()
    for p in postfix dnsmasq-base python3; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    command -v perf >/dev/null || opt+=(linux-perf)
    [ ${#missing[@]} -eq 0 ] && [ ${#opt[@]} -eq 0 ] && return 0
    export DEBIAN_FRONTEND=noninteractive
    # only smtp-source/smtp-sink and a private instance: never a system mail service
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
    fi
    if [ ${#opt[@]} -gt 0 ]; then
        apt-get install -y -qq --no-install-recommends "${opt[@]}" >/dev/null 2>&1 \
            || log "warning: ${opt[*]} not installed: fsyncs per message will not be counted"
    fi
}
install_missing

# ---- 2. build
if [ -n "${IMPETUS_BUILD:-}" ]; then
    IMPETUSD=$IMPETUS_BUILD/impetusd
    [ -x "$IMPETUSD" ] || die "IMPETUS_BUILD=$IMPETUS_BUILD has no impetusd"
else
    log "building impetusd (Release) in $ROOT/build-bench"
    cmake -S "$ROOT" -B "$ROOT/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIMPETUS_INTEGRATION=OFF >/dev/null \
        && ninja -C "$ROOT/build-bench" impetusd >/dev/null || die "build failed"
    IMPETUSD=$ROOT/build-bench/impetusd
fi

# ---- 3. run directory, cleanup
if [ -z "$BENCH_RUN" ]; then BENCH_RUN=$(mktemp -d /var/tmp/impetus-relay-bench.XXXXXX); fi
mkdir -p "$BENCH_RUN"
chmod 755 "$BENCH_RUN"
export BENCH_RUN CG_PREFIX
INJECT=$BENCH_RUN/inject
cc -O2 -pthread -o "$INJECT" "$BENCH_LIB/inject.c" || die "cannot build bench/lib/inject.c"
mkdir -p "$BENCH_DIR/results"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/relay-$STAMP.jsonl
TABLE=$BENCH_DIR/results/relay-$STAMP.md
: > "$RESULTS"
FAILED=0

cleanup() {
    local d
    for d in "$BENCH_RUN"/impetus-*; do [ -d "$d" ] && imp_stop "${d##*/impetus-}" 20; done
    pf_stop
    dns_stop
    sinks_stop
    cg_cleanup
    if [ "$KEEP" = 1 ]; then log "kept $BENCH_RUN"; else rm -rf "$BENCH_RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $IMP_PORT $PF_PORT; do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && die "127.0.0.1:$port is already in use"
done
for a in $SINK_ADDRS; do
    (exec 3<>/dev/tcp/$a/$SINK_PORT) 2>/dev/null && die "$a:$SINK_PORT is already in use"
done
ss -Hlnu "src $DNS_ADDR:53" 2>/dev/null | grep -q . && die "$DNS_ADDR:53 is already in use"

HOSTS_SINKS=$(echo $SINK_ADDRS | tr ' ' ',')

# run_one RELAY WORKLOAD PINNING REP [LOOPS]: one measured run, appends to $RESULTS
run_one() {
    local relay=$1 wl=$2 pinning=$3 rep=$4 loops=${5:-} n r s cpus_relay= cpus_h= hosts port cg= pid= label extra
    case $wl in
        a|scaling) n=$N_A r=1 s=4096 ;;
        b) n=$N_B r=10 s=4096 ;;
        c) n=$N_C r=1 s=102400 ;;
    esac
    if [ "$pinning" = pinned ]; then cpus_relay=1 cpus_h=0; fi
    if [ -z "$loops" ]; then if [ "$pinning" = pinned ]; then loops=1; else loops=0; fi; fi
    label="$wl-$pinning-$relay-$rep"
    extra="{\"rep\": $rep"
    case $relay in
        direct) hosts=$HOSTS_SINKS port=$SINK_PORT ;;
        postfix) hosts=127.0.0.1 port=$PF_PORT cg=relay-postfix; pf_wait_empty ;;
        impetus)
            hosts=127.0.0.1 port=$IMP_PORT cg=relay-impetus
            [ "$wl" = scaling ] && label="$wl-loops$loops-$rep"
            rm -rf "$BENCH_RUN/impetus-run"
            imp_start run "$loops" "$cpus_relay"
            pid=$(imp_pid run)
            extra="$extra, \"event_loops\": $loops"
            ;;
    esac
    extra="$extra}"
    log "$label: $n messages x $r rcpt, $s bytes, $SESSIONS sessions -> $hosts:$port"
    local args=(--label "$label" --relay "$relay" --workload "$wl" --pinning "$pinning" --hosts "$hosts" --port "$port"
                -n "$n" -c "$SESSIONS" -r "$r" -s "$s" -D "$BENCH_DOMAINS" --injector "$INJECT"
                --sink-dir "$BENCH_RUN/sink" --warmup "$WARMUP" --results "$RESULTS" --extra "$extra"
                --timeout $(( 120 + n / 50 )))
    [ -n "$cg" ] && args+=(--relay-cgroup "$cg")
    [ -n "$pid" ] && args+=(--relay-pid "$pid")
    [ -n "$cpus_h" ] && args+=(--inject-cpus "$cpus_h")
    [ "$VERIFY" = 1 ] && args+=(--verify-dir "$BENCH_RUN/sink")
    local perfpid=
    if [ "$PROFILE" = 1 ] && [ "$relay" = impetus ] && [ "$wl" = a ] && command -v perf >/dev/null; then
        perf record -q -F 499 -g -p "$pid" -o "$BENCH_RUN/perf-$label.data" >/dev/null 2>&1 &
        perfpid=$!
    fi
    "$PYTHON" "$BENCH_LIB/drive.py" "${args[@]}" | "$PYTHON" -c '
import json, sys
r = json.loads(sys.stdin.read() or "{}")
if r:
    print("   inject %s msg/s (p99 %s ms)  e2e %s msg/s  relay CPU %s s/1000  peak RSS %s MiB  fsyncs/msg %s  %s%s" % (
        r.get("inject_rate"), r.get("lat_ms_p99"), r.get("e2e_rate"), r.get("relay_cpu_s_per_1000", "-"),
        r.get("relay_peak_rss_mib", "-"), r.get("syncs_per_msg", "-"), "ok" if r.get("ok") else "FAILED: %s of %s at the sinks, injected %s, %s" % (
        r.get("delivered"), r.get("expected_at_sink"), r.get("injected"), r.get("first_error", "")),
        "" if "verified" not in r else "  verify: %d missing, %d duplicates" % (r["missing"], r["duplicates"])), file=sys.stderr)'
    local rc=${PIPESTATUS[0]}
    if [ -n "$perfpid" ]; then
        kill -INT "$perfpid" 2>/dev/null; wait "$perfpid" 2>/dev/null
        perf report -i "$BENCH_RUN/perf-$label.data" --stdio --no-children --percent-limit 0.7 --sort dso,sym -g none \
            > "$BENCH_DIR/results/relay-$STAMP-profile-$label.txt" 2>/dev/null
        log "profile: $BENCH_DIR/results/relay-$STAMP-profile-$label.txt"
    fi
    [ "$rc" = 0 ] || { FAILED=1; log "$label FAILED"; }
    if [ "$relay" = impetus ]; then
        imp_stop run 30
        [ "$rc" = 0 ] || cp "$BENCH_RUN/impetus-run/log/paniclog.ec" "$BENCH_DIR/results/relay-$STAMP-$label.paniclog" 2>/dev/null
        rm -rf "$BENCH_RUN/impetus-run"
    fi
    return 0
}

# ---- 4. the comparison, per placement
infra_up() {
    local cpus_h=$1 with_pf=$2
    sinks_start "$cpus_h" "$VERIFY"
    dns_start "$cpus_h"
    [ "$with_pf" = 1 ] && pf_start "${3:-}"
    return 0
}

REL_WORKLOADS=()
for w in a b c; do has $w && REL_WORKLOADS+=($w); done
DIRECT_ONLY=0
if has direct && [ ${#REL_WORKLOADS[@]} -eq 0 ]; then DIRECT_ONLY=1; REL_WORKLOADS=(a b c); fi

log "run directory $BENCH_RUN; results $RESULTS"
log "workloads $WORKLOADS, placements $PINNINGS, $REPS repetition(s); a=$N_A b=$N_B c=$N_C"
if [ ${#REL_WORKLOADS[@]} -gt 0 ]; then
    for pinning in $PINNINGS; do
        if [ "$pinning" = pinned ]; then infra_up 0 $((1 - DIRECT_ONLY)) 1; else infra_up "" $((1 - DIRECT_ONLY)); fi
        for rep in $(seq 1 "$REPS"); do
            for wl in "${REL_WORKLOADS[@]}"; do
                run_one direct "$wl" "$pinning" "$rep"
                [ "$DIRECT_ONLY" = 1 ] && continue
                # alternate which relay goes first
                if [ $((rep % 2)) = 1 ]; then
                    run_one impetus "$wl" "$pinning" "$rep"; run_one postfix "$wl" "$pinning" "$rep"
                else
                    run_one postfix "$wl" "$pinning" "$rep"; run_one impetus "$wl" "$pinning" "$rep"
                fi
            done
        done
        pf_stop
        sinks_stop
        dns_stop
    done
fi

# ---- 5. scaling: Event_Loops 1 and 2 on workload a (unpinned: the relay may use both cores)
if has scaling; then
    infra_up "" 0
    for rep in $(seq 1 "$REPS"); do
        if [ $((rep % 2)) = 1 ]; then order="1 2"; else order="2 1"; fi
        for loops in $order; do run_one impetus scaling unpinned "$rep" "$loops"; done
    done
    sinks_stop
    dns_stop
fi

# ---- 6. memory profile and restart on a big spool
if has memory; then
    . "$BENCH_LIB/memory.sh"
    memory_profile "$MEM_N" "$MEM_SIZE" "$MEM_WINDOW" || FAILED=1
fi

# ---- 7. the table
{
    echo "# impetus vs Postfix, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r)"
    echo
    echo "workloads: a = $N_A × 4 KB × 1 rcpt; b = $N_B × 4 KB × 10 rcpts; c = $N_C × 100 KB; $SESSIONS sessions, $BENCH_DOMAINS domains;" \
         "medians (min–max) of $REPS run(s). Raw: $(basename "$RESULTS")"
    echo
    "$PYTHON" "$BENCH_LIB/report.py" "$RESULTS"
} > "$TABLE"
echo
cat "$TABLE"
echo
echo "results: $RESULTS"
echo "table:   $TABLE"
if [ "$FAILED" = 1 ]; then log "some runs FAILED (messages missing at the sinks or injection errors)"; exit 1; fi
exit 0
