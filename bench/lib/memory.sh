# bench/lib/memory.sh - the memory profile (sourced by bench/run.sh):
#   1. impetusd (default spool, Event_Loops = one per core) with the sinks DOWN,
#      dnsmasq up: mail is accepted, delivery attempts are refused, mail stays queued
#   2. inject N messages of SIZE bytes over 100 domains, wait for the RSS to settle:
#      resident bytes per queued message = (RSS queued - RSS idle) / N
#   3. SIGTERM (time to stop), start the sinks, start impetusd again on the same spool:
#      time until it accepts connections, until the spool is read back (paniclog
#      "read back" line), until the first delivery, and what arrived within WINDOW s.
# One JSON line ("kind": "memory") goes to $RESULTS.
# MEM_SUSPEND=1 holds the mail with Suspend_Delivery in step 1 instead of letting
# every attempt fail (the retry schedule then does not delay the resume).

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

now_s() { date +%s.%N; }

memory_profile() {
    local n=$1 size=$2 window=$3 d="$BENCH_RUN/impetus-mem" pid rss0 rss1 prev i inj t0 t1 tl ts tf cnt extra=
    log "memory: $n messages of $size bytes, sinks down"
    sinks_stop
    dns_start ""
    rm -rf "$d"
    [ "${MEM_SUSPEND:-0}" = 1 ] && extra="Suspend_Delivery = true"
    imp_start mem 0 "" "$extra"
    pid=$(imp_pid mem)
    sleep 2
    rss0=$(rss_kib "$pid")
    inj=$("$INJECT" -H 127.0.0.1 -p "$IMP_PORT" -n "$n" -c "$SESSIONS" -s "$size" -D "$BENCH_DOMAINS" -T mem -q)
    log "memory: injected: $inj"
    # let the queue settle: RSS stable for 3 s (at most 120 s)
    prev=0
    for i in $(seq 1 40); do
        sleep 3
        rss1=$(rss_kib "$pid")
        [ "$rss1" = "$prev" ] && break
        prev=$rss1
    done
    rss1=$(rss_kib "$pid")
    local hwm spool_mib cpu_fill
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    spool_mib=$(du -sm "$d/spool" | cut -f1)
    log "memory: RSS idle $rss0 KiB, queued $rss1 KiB (peak $hwm KiB), spool $spool_mib MiB"
    t0=$(now_s)
    imp_stop mem 600
    t1=$(now_s)
    local stop_s
    stop_s=$(awk "BEGIN {print $t1 - $t0}")
    log "memory: stopped in $stop_s s; restarting on the spool with the sinks up"
    sinks_start "" 0
    [ "${MEM_SUSPEND:-0}" = 1 ] && : > /dev/null
    : > "$d/log/paniclog.ec"
    t0=$(now_s)
    imp_start mem 0 ""
    tl=$(now_s)
    ts= tf=
    while :; do
        t1=$(now_s)
        [ -z "$ts" ] && grep -q 'read back' "$d/log/paniclog.ec" 2>/dev/null && ts=$t1
        [ -z "$tf" ] && [ "$(sinks_count)" -gt 0 ] && tf=$t1
        awk "BEGIN {exit !($t1 - $t0 >= $window)}" && break
        sleep 0.05
    done
    cnt=$(sinks_count)
    local rss2
    rss2=$(rss_kib "$(imp_pid mem)")
    imp_stop mem 120
    "$PYTHON" - "$RESULTS" <<EOF
import json, sys
inj = json.loads('''$inj''' or '{}')
r = {'kind': 'memory', 'label': 'memory', 'queued': $n, 'size': $size, 'suspend': ${MEM_SUSPEND:-0} == 1,
     'injected': inj.get('sent'), 'inject_rate': inj.get('inject_rate'), 'lat_ms_p99': inj.get('lat_ms_p99'),
     'rss_idle_mib': round($rss0 / 1024, 1), 'rss_queued_mib': round($rss1 / 1024, 1),
     'vmhwm_mib': round($hwm / 1024, 1), 'spool_mib': $spool_mib,
     'bytes_per_queued_msg': round(($rss1 - $rss0) * 1024 / $n, 1),
     'stop_s': round($stop_s, 2), 'restart_listen_s': round($tl - $t0, 3),
     'restart_scan_s': round(${ts:-0} - $t0, 2) if '${ts}' else None,
     'restart_first_delivery_s': round(${tf:-0} - $t0, 2) if '${tf}' else None,
     'window_s': $window, 'delivered_after_window': $cnt, 'rss_after_restart_mib': round(${rss2:-0} / 1024, 1)}
r['ok'] = r['injected'] == $n and r['restart_scan_s'] is not None
print(json.dumps(r))
open(sys.argv[1], 'a').write(json.dumps(r) + '\n')
sys.exit(0 if r['ok'] else 1)
EOF
    local rc=$?
    log "memory: removing the spool"
    rm -rf "$d"
    sinks_stop
    dns_stop
    return $rc
}
