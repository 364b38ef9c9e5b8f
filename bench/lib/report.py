#!/usr/bin/env python3
"""report.py RESULTS.jsonl - the short table of a bench/run.sh run: one row per
(workload, pinning, relay) with medians over the repetitions, then the
ratios impetus/Postfix and impetus/direct, the scaling and memory figures,
and the targets of the benchmark issue checked."""
import json, statistics, sys
from collections import OrderedDict


def med(rs, key):
    v = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(v) if v else None


def f(v, nd=0):
    if v is None:
        return '-'
    return '{:,.{}f}'.format(v, nd)


def spread(rs, key, nd=0):
    v = [r[key] for r in rs if r.get(key) is not None]
    if not v:
        return '-'
    if len(v) == 1:
        return f(v[0], nd)
    return '%s (%s–%s)' % (f(statistics.median(v), nd), f(min(v), nd), f(max(v), nd))


def main():
    runs, scaling, memory = [], [], []
    for path in sys.argv[1:]:
        for line in open(path):
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get('kind') == 'memory':
                memory.append(r)
            elif r.get('workload') == 'scaling':
                scaling.append(r)
            else:
                runs.append(r)
    groups = OrderedDict()
    for r in runs:
        groups.setdefault((r['workload'], r['pinning'], r['relay']), []).append(r)
    print('| workload | pinning | relay | runs ok | inject msg/s | e2e msg/s | inject p99 ms | relay CPU s/1000 msg | relay peak RSS MiB | fsyncs/msg | harness CPU s/1000 | machine busy % |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for (w, p, rel), rs in groups.items():
        print('| %s | %s | %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            w, p, rel, sum(1 for r in rs if r.get('ok')), len(rs),
            spread(rs, 'inject_rate'), spread(rs, 'e2e_rate'), spread(rs, 'lat_ms_p99', 1),
            spread(rs, 'relay_cpu_s_per_1000', 3) if rel != 'direct' else '-',
            spread(rs, 'relay_peak_rss_mib', 1) if rel != 'direct' else '-',
            spread(rs, 'syncs_per_msg', 3) if rel != 'direct' else '-',
            spread(rs, 'harness_cpu_s_per_1000', 3), spread(rs, 'machine_busy_pct')))
    # ratios
    print()
    print('| workload | pinning | e2e impetus/Postfix | e2e impetus/direct | inject impetus/Postfix | CPU/1000 Postfix/impetus |')
    print('|---|---|---|---|---|---|')
    seen = OrderedDict()
    for (w, p, rel) in groups:
        seen[(w, p)] = 1
    for (w, p) in seen:
        imp, pf, dr = (groups.get((w, p, x), []) for x in ('impetus', 'postfix', 'direct'))
        def ratio(a, b, key):
            x, y = med(a, key), med(b, key)
            return '%.2f×' % (x / y) if x and y else '-'
        cpu = '-'
        if med(imp, 'relay_cpu_s_per_1000') and med(pf, 'relay_cpu_s_per_1000'):
            cpu = '%.1f×' % (med(pf, 'relay_cpu_s_per_1000') / med(imp, 'relay_cpu_s_per_1000'))
        print('| %s | %s | %s | %s | %s | %s |' % (w, p, ratio(imp, pf, 'e2e_rate'), ratio(imp, dr, 'e2e_rate'),
                                               ratio(imp, pf, 'inject_rate'), cpu))
    if scaling:
        print()
        by = OrderedDict()
        for r in scaling:
            by.setdefault(r.get('event_loops'), []).append(r)
        print('| scaling (workload a, impetus) | runs ok | e2e msg/s | inject msg/s | relay CPU s/1000 |')
        print('|---|---|---|---|---|')
        for k, rs in sorted(by.items()):
            print('| Event_Loops = %s | %d/%d | %s | %s | %s |' % (k, sum(1 for r in rs if r.get('ok')), len(rs),
                  spread(rs, 'e2e_rate'), spread(rs, 'inject_rate'), spread(rs, 'relay_cpu_s_per_1000', 3)))
        if by.get(1) and by.get(2) and med(by[1], 'e2e_rate'):
            print('\nscaling 2 loops / 1 loop (e2e): %.2f×' % (med(by[2], 'e2e_rate') / med(by[1], 'e2e_rate')))
    for m in memory:
        print()
        print('memory profile: %s queued messages of %s bytes (sinks down): %.0f bytes resident per queued message '
              '(RSS %s MiB idle -> %s MiB queued, spool %s MiB on disk); injected at %s msg/s; '
              'stop %.1f s; restart: accepting after %.2f s, spool read back after %s s, first delivery after %s s, '
              '%s delivered %s s after the start' % (
                  f(m.get('queued')), m.get('size'), m.get('bytes_per_queued_msg', 0), f(m.get('rss_idle_mib'), 1),
                  f(m.get('rss_queued_mib'), 1), f(m.get('spool_mib')), f(m.get('inject_rate')),
                  m.get('stop_s', 0), m.get('restart_listen_s', 0), f(m.get('restart_scan_s'), 2),
                  f(m.get('restart_first_delivery_s'), 2), f(m.get('delivered_after_window')),
                  f(m.get('window_s'))))
    # targets
    print()
    def get(w, p, rel, key):
        return med(groups.get((w, p, rel), []), key)
    for p in ('unpinned', 'pinned'):
        a_imp, a_pf = get('a', p, 'impetus', 'e2e_rate'), get('a', p, 'postfix', 'e2e_rate')
        b_imp, b_pf = get('b', p, 'impetus', 'e2e_rate'), get('b', p, 'postfix', 'e2e_rate')
        cpu = get('a', p, 'impetus', 'relay_cpu_s_per_1000')
        out = []
        if a_imp and a_pf:
            out.append('(a) e2e %.1f× Postfix (target ≥ 5×): %s, %.0f msg/s (target ≈ 2,200): %s' % (
                a_imp / a_pf, 'met' if a_imp >= 5 * a_pf else 'MISSED', a_imp, 'met' if a_imp >= 2200 else 'MISSED'))
        if cpu is not None:
            out.append('(a) relay CPU %.3f s/1000 (target ≤ 0.5): %s' % (cpu, 'met' if cpu <= 0.5 else 'MISSED'))
        if b_imp and b_pf:
            out.append('(b) e2e %.1f× Postfix (target ≥ 5×): %s' % (b_imp / b_pf, 'met' if b_imp >= 5 * b_pf else 'MISSED'))
        if out:
            print('targets, %s: %s' % (p, '; '.join(out)))
    for m in memory:
        print('targets, memory: %.0f B per queued message (target ≤ 1,024): %s; restart on %s messages read back in %s s (target ≤ 30 s): %s' % (
            m.get('bytes_per_queued_msg', 0), 'met' if m.get('bytes_per_queued_msg', 1e9) <= 1024 else 'MISSED', f(m.get('queued')),
            f(m.get('restart_scan_s'), 2), 'met' if m.get('restart_scan_s') is not None and m['restart_scan_s'] <= 30 else 'MISSED'))
    if scaling:
        by = {}
        for r in scaling:
            by.setdefault(r.get('event_loops'), []).append(r)
        if by.get(1) and by.get(2) and med(by[1], 'e2e_rate') and med(by[2], 'e2e_rate'):
            x = med(by[2], 'e2e_rate') / med(by[1], 'e2e_rate')
            print('targets, scaling: 2 loops / 1 loop %.2f× (target ≥ 1.6×): %s' % (x, 'met' if x >= 1.6 else 'MISSED'))
    bad = [r['label'] for r in runs + scaling if not r.get('ok')]
    if bad:
        print('\nFAILED runs (missing messages or injection errors): ' + ', '.join(bad))


if __name__ == '__main__':
    main()
