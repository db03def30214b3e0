#!/usr/bin/env python3
"""Stage breakdown of the rollout's drain latency from the temporary drain
trace (bench/results/scale-<ts>-drain-trace.patch): python3 this.py DIR
[cluster size, default 100]. DIR holds harness.jsonl and <pid>.jsonl of
each controller process."""
import json, sys, glob, os
from datetime import datetime

def ts(s):
    # RFC3339 with ns; python handles us only
    if s is None or s.startswith('0001-'):
        return None
    s = s.replace('Z', '+00:00')
    if '.' in s:
        head, rest = s.split('.', 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
        s = head + '.' + (frac + '000000')[:6] + tz
    return datetime.fromisoformat(s).timestamp()

d = sys.argv[1]
size = int(sys.argv[2]) if len(sys.argv) > 2 else 100
dels, drains = {}, {}
for l in open(os.path.join(d, 'harness.jsonl')):
    r = json.loads(l)
    if r['K'] == 'del':
        dels.setdefault(r['Pod'], (ts(r['T0']), ts(r['T1'])))
    elif r['K'] == 'drain':
        drains.setdefault(r['Pod'], {})[r['Inst']] = ts(r['At'])
# clusters of deletions
order = sorted(dels.items(), key=lambda x: x[1][0])
clusters, cur, last = [], [], None
for name, (t0, t1) in order:
    if last is not None and t0 - last > 5:
        clusters.append(cur); cur = []
    cur.append(name); last = t0
if cur: clusters.append(cur)
pods = [c for c in clusters if len(c) >= 0.9 * size]
if not pods:
    sys.exit('no cluster of %d deletions: %s' % (size, [len(c) for c in clusters]))
pods = set(pods[-1])

evs, dns, fulls = {}, {}, {}
for f in glob.glob(os.path.join(d, '[0-9]*.jsonl')):
    for l in open(f):
        r = json.loads(l)
        if r.get('Pod') not in pods:
            continue
        role = 'serve' if r.get('DrainOnly') else 'rec'
        if r['K'] == 'ev':
            evs.setdefault((r['Pod'], role), ts(r['Recv']))
        elif r['K'] == 'full':
            fulls[(r['Pod'], role)] = True
        else:
            r['role'] = role
            dns.setdefault(r['Pod'], []).append(r)

def q(xs, p):
    xs = sorted(xs)
    if not xs: return float('nan')
    import math
    return xs[max(0, math.ceil(p * len(xs)) - 1)]

stages = {}
def add(k, v):
    stages.setdefault(k, []).append(v * 1000)

winners = {}
for pod in sorted(pods):
    t0, t1 = dels[pod]
    dr = drains.get(pod, {})
    if len(dr) < 2:
        continue
    add('total (bench drain latency)', max(dr.values()) - t0)
    add('delete call (API server)', t1 - t0)
    fe = min([evs[(pod, r)] for r in ('rec', 'serve') if (pod, r) in evs] or [float('nan')])
    add('delete call returned -> first event (either process)', fe - t1)
    add('first event (either process) -> drained everywhere', max(dr.values()) - fe)
    add('delete call returned -> drained everywhere', max(dr.values()) - t1)
    if (pod, 'rec') in evs:
        add('rec event -> drained everywhere', max(dr.values()) - evs[(pod, 'rec')])
    if (pod, 'rec') in fulls or (pod, 'serve') in fulls:
        add('drainNow skipped in some process (width full): event -> drained', max(dr.values()) - fe)
    else:
        add('drainNow ran in both: event -> drained', max(dr.values()) - fe)
    for role in ('rec', 'serve'):
        if (pod, role) in evs:
            add('deletion -> %s has the event' % role, evs[(pod, role)] - t0)
    # the last instance's drain: which record made it?
    inst = max(dr, key=dr.get)
    at = dr[inst]
    best = None
    for r in dns.get(pod, []):
        amap = {}
        for s in r['Steps'] or []:
            if s['Step'].startswith('map:'):
                amap[s['Step'][4:]] = s['Inst']
        for s in r['Steps'] or []:
            if s['Inst'] == inst and s['Step'] == 'set':
                e = ts(s['T1'])
                if best is None or e < best[0]:
                    best = (e, r, s, amap)
    if best is None:
        add('last drain made by: none traced', 0)
        continue
    e, r, s, amap = best
    who = '%s/%s' % (r['role'], r['K'])
    winners[who] = winners.get(who, 0) + 1
    add('ring line - set command end (HAProxy clock vs ours)', at - e)
    steps = [x for x in r['Steps'] if x['Inst'] == inst or amap.get(x['Inst']) == inst]
    conns = [x for x in r['Steps'] if x['Step'] == 'conn' and amap.get(x['Inst']) == inst]
    def connwait(st):
        a, b = ts(st['T0']), ts(st['T1'])
        return sum(ts(c['T1']) - ts(c['T0']) for c in conns if a <= ts(c['T0']) <= b)
    c0 = ts(r['C0'])
    if r['K'] == 'dn':
        ev = ts(r['Recv'])
        add('[%s] deletion -> event' % who, ev - t0)
        add('[%s] event -> drainNow starts' % who, ts(r['Go']) - ev)
        add('[%s] reads (binding, LB)' % who, ts(r['Gets']) - ts(r['Go']))
        add('[%s] lockCycle wait' % who, ts(r['Locked']) - ts(r['Gets']))
        add('[%s] locked -> SetDraining' % who, c0 - ts(r['Locked']))
    else:
        ev = evs.get((pod, r['role']))
        if ev: add('[%s] event -> cycle SetDraining starts' % who, c0 - ev)
    for st in steps:
        if st['Step'] in ('servers', 'servers2', 'check', 'hcheck', 'checkfail', 'set'):
            dd = ts(st['T1']) - ts(st['T0'])
            cw = connwait(st)
            add('[%s] %s' % (who, st['Step']), dd)
            add('[%s] %s: conn wait' % (who, st['Step']), cw)
    add('[%s] SetDraining start -> set ends (this instance)' % who, e - c0)

print('pods: %d, traced drain winners: %s, drainNow skipped (width full): rec %d serve %d' % (
    len(pods), winners, sum(1 for k in fulls if k[1] == 'rec'), sum(1 for k in fulls if k[1] == 'serve')))
print('%-62s %6s %8s %8s %8s' % ('stage (ms)', 'n', 'p50', 'p90', 'p99'))
for k in stages:
    xs = stages[k]
    print('%-62s %6d %8.1f %8.1f %8.1f' % (k, len(xs), q(xs, .5), q(xs, .9), q(xs, .99)))
# why did drainNow return early
whys = {}
for pod, rs in dns.items():
    for r in rs:
        if r['K'] == 'dn':
            whys[(r['role'], r['Why'], bool(r.get('Err')))] = whys.get((r['role'], r['Why'], bool(r.get('Err'))), 0) + 1
print('drainNow outcomes (role, why, err):', whys)
