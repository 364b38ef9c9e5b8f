# bench/lib/common.sh - settings and helpers shared by bench/run.sh and its
# services (sourced). Everything stays on 127.0.0.0/8 and under $BENCH_RUN.

BENCH_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(cd "$BENCH_LIB/.." && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

# Runtime state: spools, Postfix instance, sink counters, logs (removed at the
# end unless --keep). On disk (not tmpfs): fsync must cost what it costs.
BENCH_RUN=${BENCH_RUN:-}
BENCH_DOMAINS=${BENCH_DOMAINS:-100}
SINK_PORT=${SINK_PORT:-2525}
SINK_ADDRS=${SINK_ADDRS:-"127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5"}
SINK_MAXCONN=${SINK_MAXCONN:-2048}
SINK_BACKLOG=${SINK_BACKLOG:-4096}
SINK_USER=${SINK_USER:-nobody}
DNS_ADDR=${DNS_ADDR:-127.0.0.53}     # port 53: glibc (Postfix) cannot use another
IMP_PORT=${IMP_PORT:-10026}
PF_PORT=${PF_PORT:-10025}
PYTHON=${PYTHON:-python3}
CG_PREFIX=${CG_PREFIX:-impbench}

die() { echo "bench: ERROR: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

pid_alive() {
    local f=$1 p
    [ -s "$f" ] || return 1
    p=$(head -n1 "$f" | tr -dc 0-9)
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

# stop_pidfile FILE NAME: TERM that one pid, wait up to WAIT seconds (default 10), then KILL.
stop_pidfile() {
    local f=$1 name=${2:-process} wait=${3:-10} p i
    if pid_alive "$f"; then
        p=$(head -n1 "$f" | tr -dc 0-9)
        kill "$p" 2>/dev/null
        for ((i = 0; i < wait * 10; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then log "$name ($p) ignored TERM; KILL"; kill -9 "$p" 2>/dev/null; fi
    fi
    rm -f "$f"
}

# ---- cgroups: one per role, for CPU time (children included) and perf -G
cg_root() {
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo /sys/fs/cgroup
    elif [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then echo /sys/fs/cgroup/unified
    elif [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then echo /sys/fs/cgroup/cpuacct
    else echo ""; fi
}
CG_ROOT=$(cg_root)

# cg_enter ROLE: move this (sub)shell into cgroup $CG_PREFIX-ROLE
cg_enter() {
    [ -n "$CG_ROOT" ] || return 0
    local d="$CG_ROOT/$CG_PREFIX-$1"
    mkdir -p "$d" 2>/dev/null && echo "$BASHPID" > "$d/cgroup.procs" 2>/dev/null \
        || log "warning: cannot enter cgroup $d (CPU of $1 not measured)"
}

cg_cleanup() {
    [ -n "$CG_ROOT" ] || return 0
    local d
    for d in "$CG_ROOT/$CG_PREFIX"-*; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
    return 0
}

# with_local_resolver CMD...: CMD in a private mount namespace whose
# /etc/resolv.conf names only the local dnsmasq (the machine's file is untouched).
with_local_resolver() {
    local rc="$BENCH_RUN/dns/resolv.conf"
    mkdir -p "$BENCH_RUN/dns"
    printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$DNS_ADDR" > "$rc"
    unshare --mount --propagation private -- /bin/sh -c 'mount --bind "$0" /etc/resolv.conf && shift && exec "$@"' "$rc" _ "$@"
}

# taskset prefix for a CPU list (empty: no pinning)
pin() { [ -n "${1:-}" ] && echo "taskset -c $1"; }
