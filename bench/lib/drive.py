#!/usr/bin/env python3
"""drive.py - one measured run of the relay benchmark: inject N messages with
bench/lib/inject (C, one thread per session, PIPELINING, latency of every
message), count their arrival at the smtp-sinks, and print one JSON line.

  t0        the injector's first connection (its CLOCK_MONOTONIC start)
  t_inject  the last 250 after DATA (injector exit)
  t_done    the sinks' transaction counters have grown by --expect
  inject_rate = N / (t_inject - t0);  e2e_rate = N / (t_done - t0)

Relay figures: CPU seconds of its cgroup (children included) during the run,
per 1,000 messages; peak memory (sampled sum of the Pss of its processes every
0.2 s; for impetusd also VmHWM of the process); fsync-family system calls of
its cgroup (perf stat -G with the syscalls tracepoints), per message.
With --verify-dir the sinks' dump files are read back and every token
TOKEN.0 .. TOKEN.N-1 must be there exactly once.
The run fails (exit 1) if a message is missing at the sinks or the injector
reported errors.  Loopback only.
"""
import argparse, glob, json, os, re, signal, subprocess, sys, threading, time

SYNC_EVENTS = ('fsync', 'fdatasync', 'syncfs', 'sync_file_range')


def cg_root():
    for p in ('/sys/fs/cgroup', '/sys/fs/cgroup/unified'):
        if os.path.exists(p + '/cgroup.controllers'):
            return 'v2', p
    if os.path.exists('/sys/fs/cgroup/cpuacct/cpuacct.usage'):
        return 'v1', '/sys/fs/cgroup/cpuacct'
    return None, None


CG_KIND, CG_ROOT = cg_root()
CG_PREFIX = os.environ.get('CG_PREFIX', 'impbench')


def cg_path(role):
    return os.path.join(CG_ROOT, '%s-%s' % (CG_PREFIX, role)) if CG_ROOT and role else None


def cg_cpu(role):
    d = cg_path(role)
    if not d:
        return None
    try:
        if CG_KIND == 'v2':
            st = dict(l.split() for l in open(d + '/cpu.stat'))
            return int(st['usage_usec']) / 1e6, int(st['user_usec']) / 1e6, int(st['system_usec']) / 1e6
        t = int(open(d + '/cpuacct.usage').read()) / 1e9
        return t, float('nan'), float('nan')
    except (OSError, KeyError, ValueError):
        return None


def cg_pids(role):
    d = cg_path(role)
    try:
        return [int(x) for x in open(d + '/cgroup.procs').read().split()]
    except (OSError, TypeError, ValueError):
        return []


def cg_enter(role):
    d = cg_path(role)
    if d:
        try:
            os.makedirs(d, exist_ok=True)
            open(d + '/cgroup.procs', 'w').write(str(os.getpid()))
        except OSError:
            pass


def proc_stat():
    v = [int(x) for x in open('/proc/stat').readline().split()[1:]] + [0] * 8
    idle = v[3] + v[4]
    tot = sum(v[:8])
    return tot - idle, tot, v[7]


class SinkCounter:
    def __init__(self, sink_dir):
        self.files = sorted(glob.glob(os.path.join(sink_dir, '*.out')))
        if not self.files:
            sys.exit('drive.py: no sink counter files in %s' % sink_dir)
        self.fds = [open(p, 'rb') for p in self.files]
        self.last = [0] * len(self.fds)

    def count(self):
        for i, f in enumerate(self.fds):
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - 160))
            data = f.read()
            j = data.rfind(b'mesg=')
            if j >= 0:
                k, n = j + 5, 0
                while k < len(data) and 48 <= data[k] <= 57:
                    n = n * 10 + data[k] - 48
                    k += 1
                if k < len(data):
                    self.last[i] = n
        return sum(self.last)


class MemSampler(threading.Thread):
    """Peak of the summed Pss (and Rss) of the relay cgroup's processes."""

    def __init__(self, role, period=0.2):
        super().__init__(daemon=True)
        self.role, self.period = role, period
        self.peak_pss = self.peak_rss = 0
        self.stop = threading.Event()

    def sample(self):
        pss = rss = 0
        for pid in cg_pids(self.role):
            try:
                for line in open('/proc/%d/smaps_rollup' % pid):
                    if line.startswith('Pss:'):
                        pss += int(line.split()[1])
                    elif line.startswith('Rss:'):
                        rss += int(line.split()[1])
            except OSError:
                pass
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_rss = max(self.peak_rss, rss)

    def run(self):
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.period)
        self.sample()


def perf_start(role, out):
    if not role or not CG_ROOT or CG_KIND != 'v2' or not shutil_which('perf'):
        return None
    cg = '%s-%s' % (CG_PREFIX, role)
    ev = ','.join('syscalls:sys_enter_' + e for e in SYNC_EVENTS)
    cmd = ['perf', 'stat', '-x', ',', '-o', out, '-a', '-e', ev, '-G', ','.join([cg] * len(SYNC_EVENTS))]
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    time.sleep(0.3)  # perf attaches its counters
    return p if p.poll() is None else None


def perf_stop(p, out):
    if p is None:
        return None
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        return None
    total = 0
    found = False
    try:
        for line in open(out):
            f = line.strip().split(',')
            if len(f) > 2 and 'sys_enter_' in f[2]:
                try:
                    total += int(f[0])
                    found = True
                except ValueError:
                    pass
    except OSError:
        return None
    return total if found else None


def shutil_which(x):
    import shutil
    return shutil.which(x)


def vm_hwm(pid):
    try:
        for line in open('/proc/%d/status' % pid):
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    except (OSError, TypeError):
        pass
    return None


def inject_cmd(args, n, token):
    cmd = [args.injector, '-H', args.hosts, '-p', str(args.port), '-n', str(n), '-c', str(args.concurrency),
           '-r', str(args.rcpts), '-s', str(args.size), '-D', str(args.domains), '-T', token, '-q']
    if args.inject_cpus:
        cmd = ['taskset', '-c', args.inject_cpus] + cmd
    return cmd


def wait_count(counter, target, deadline, poll):
    got = counter.count()
    while got < target and time.monotonic() < deadline:
        time.sleep(poll)
        got = counter.count()
    return got


def verify_tokens(vdir, token, n):
    pat = re.compile(rb'^X-Bench-Token: ' + re.escape(token.encode()) + rb'\.(\d+)\r?$', re.M)
    seen = {}
    for path in glob.glob(os.path.join(vdir, '*.dump')):
        with open(path, 'rb') as f:
            for m in pat.finditer(f.read()):
                i = int(m.group(1))
                seen[i] = seen.get(i, 0) + 1
    missing = [i for i in range(n) if i not in seen]
    dups = sum(c - 1 for c in seen.values() if c > 1)
    return {'verified': not missing and not dups, 'missing': len(missing), 'duplicates': dups,
            'missing_first': missing[:10]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--label', required=True)
    ap.add_argument('--relay', required=True, help='impetus | postfix | direct')
    ap.add_argument('--workload', default='a')
    ap.add_argument('--pinning', default='unpinned')
    ap.add_argument('--hosts', default='127.0.0.1')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('-n', '--messages', type=int, required=True)
    ap.add_argument('-c', '--concurrency', type=int, default=50)
    ap.add_argument('-r', '--rcpts', type=int, default=1)
    ap.add_argument('-s', '--size', type=int, default=4096)
    ap.add_argument('-D', '--domains', type=int, default=100)
    ap.add_argument('--expect', type=int, help='transactions the sinks must count (default: messages)')
    ap.add_argument('--relay-cgroup', help='role of the relay cgroup (relay-impetus, relay-postfix)')
    ap.add_argument('--relay-pid', type=int, help='impetusd pid, for VmHWM')
    ap.add_argument('--inject-cpus', default=None)
    ap.add_argument('--injector', required=True)
    ap.add_argument('--sink-dir', required=True)
    ap.add_argument('--verify-dir', default=None, help='read the sinks\' dump files back and check every token')
    ap.add_argument('--warmup', type=int, default=0)
    ap.add_argument('--timeout', type=float, default=300)
    ap.add_argument('--poll', type=float, default=0.005)
    ap.add_argument('--results', default=None)
    ap.add_argument('--extra', default='{}', help='JSON object merged into the result')
    args = ap.parse_args()
    for h in args.hosts.split(','):
        if not h.startswith('127.'):
            sys.exit('drive.py: refusing non-loopback host %s' % h)
    cg_enter('inject')
    counter = SinkCounter(args.sink_dir)
    token = '%s.%x' % (re.sub(r'[^A-Za-z0-9-]', '-', args.label), int(time.time() * 1000) & 0xffffff)

    if args.warmup:
        base = counter.count()
        w = subprocess.run(inject_cmd(args, args.warmup, token + 'w'), stdout=subprocess.PIPE)
        wexp = args.warmup * (args.expect or args.messages) // args.messages
        got = wait_count(counter, base + wexp, time.monotonic() + 60, 0.02)
        if w.returncode != 0 or got < base + wexp:
            sys.exit('drive.py: warm-up failed (%d of %d at the sinks): %s' % (got - base, wexp, w.stdout.decode()[-300:]))
        time.sleep(0.3)

    n = args.messages
    expect = args.expect or n
    perf_out = os.path.join(args.sink_dir, 'perf-%d.txt' % os.getpid())
    perf = perf_start(args.relay_cgroup, perf_out)
    mem = MemSampler(args.relay_cgroup) if args.relay_cgroup else None
    base = counter.count()
    target = base + expect
    roles = {'relay': args.relay_cgroup, 'inject': 'inject', 'sink': 'sink', 'dns': 'dns'}
    cpu0 = {k: cg_cpu(v) for k, v in roles.items()}
    ps0 = proc_stat()
    if mem:
        mem.start()
    proc = subprocess.Popen(inject_cmd(args, n, token), stdout=subprocess.PIPE)
    t_first = None
    got = base
    # count while injecting, then until everything arrived
    while proc.poll() is None:
        got = counter.count()
        if t_first is None and got > base:
            t_first = time.monotonic()
        time.sleep(args.poll)
    inj = json.loads(proc.stdout.read().decode() or '{}')
    t_inject_seen = time.monotonic()
    deadline = time.monotonic() + args.timeout
    t_done = None
    while True:
        now = time.monotonic()
        got = counter.count()
        if t_first is None and got > base:
            t_first = now
        if got >= target:
            t_done = now
            break
        if now > deadline:
            break
        time.sleep(args.poll)
    ps1 = proc_stat()
    cpu1 = {k: cg_cpu(v) for k, v in roles.items()}
    if mem:
        mem.stop.set()
        mem.join()
    syncs = perf_stop(perf, perf_out)
    # a relay may deliver duplicates after the count is reached: look again shortly
    time.sleep(0.2)
    extra_at_sink = counter.count() - target

    t0 = inj.get('t_start', t_inject_seen)
    res = {'label': args.label, 'relay': args.relay, 'workload': args.workload, 'pinning': args.pinning,
           'time': time.strftime('%Y-%m-%dT%H:%M:%S'), 'messages': n, 'rcpts': args.rcpts, 'size': args.size,
           'concurrency': args.concurrency, 'domains': args.domains, 'expected_at_sink': expect,
           'delivered': got - base, 'extra_at_sink': max(0, extra_at_sink), 'inject_errors': inj.get('errors'),
           'injected': inj.get('sent'), 'complete': t_done is not None}
    if inj.get('t_end'):
        res['inject_s'] = round(inj['t_end'] - t0, 3)
        res['inject_rate'] = round(inj.get('sent', 0) / max(1e-9, inj['t_end'] - t0), 1)
    for k in ('lat_ms_mean', 'lat_ms_p50', 'lat_ms_p90', 'lat_ms_p99', 'lat_ms_max'):
        if k in inj:
            res[k] = inj[k]
    if inj.get('first_error'):
        res['first_error'] = inj['first_error']
    if t_first is not None:
        res['first_delivery_s'] = round(t_first - t0, 3)
    end = t_done if t_done is not None else time.monotonic()
    res['e2e_s'] = round(end - t0, 3)
    if t_done is not None:
        res['e2e_rate'] = round(n / (t_done - t0), 1)
    el = end - t0
    for k in roles:
        a, b = cpu0[k], cpu1[k]
        if a and b:
            res['cpu_%s_s' % k] = round(b[0] - a[0], 3)
            if k == 'relay':
                res['cpu_relay_user_s'] = round(b[1] - a[1], 3)
                res['cpu_relay_sys_s'] = round(b[2] - a[2], 3)
                res['relay_cpu_s_per_1000'] = round(1000 * (b[0] - a[0]) / n, 3)
                res['relay_cpu_pct'] = round(100 * (b[0] - a[0]) / el, 1)
    if 'cpu_inject_s' in res and 'cpu_sink_s' in res:
        res['harness_cpu_s_per_1000'] = round(1000 * (res['cpu_inject_s'] + res['cpu_sink_s']) / n, 3)
    if mem:
        res['relay_peak_pss_mib'] = round(mem.peak_pss / 1024, 1)
        res['relay_peak_rss_sum_mib'] = round(mem.peak_rss / 1024, 1)
    if args.relay_pid:
        h = vm_hwm(args.relay_pid)
        if h:
            res['relay_vmhwm_mib'] = round(h / 1024, 1)
    if args.relay == 'direct':
        res['relay_peak_rss_mib'] = None
    else:
        res['relay_peak_rss_mib'] = res.get('relay_vmhwm_mib', res.get('relay_peak_pss_mib'))
    if syncs is not None:
        res['relay_syncs'] = syncs
        res['syncs_per_msg'] = round(syncs / n, 4)
    busy, tot, st = ps1[0] - ps0[0], ps1[1] - ps0[1], ps1[2] - ps0[2]
    res['machine_busy_pct'] = round(100 * busy / tot, 1) if tot else None
    res['steal_pct'] = round(100 * st / tot, 1) if tot else None
    res['loadavg'] = open('/proc/loadavg').read().split()[0]
    if args.verify_dir:
        time.sleep(0.5)
        res.update(verify_tokens(args.verify_dir, token, n))
    res.update(json.loads(args.extra))
    ok = res['complete'] and not res['inject_errors'] and res['injected'] == n and res.get('verified', True)
    res['ok'] = bool(ok)
    line = json.dumps(res)
    print(line, flush=True)
    if args.results:
        with open(args.results, 'a') as f:
            f.write(line + '\n')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
