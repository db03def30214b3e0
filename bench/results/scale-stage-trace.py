import json, glob, sys, re, statistics
from datetime import datetime
d = sys.argv[1] if len(sys.argv) > 1 else '/tmp/zdtrace'
def T(s):
    if not s or s.startswith('0001'): return None
    s = s.replace('Z', '+00:00')
    m = re.match(r'(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)', s)
    frac = (m.group(2) or '.0')[:7]
    return datetime.fromisoformat(m.group(1) + frac + m.group(3)).timestamp()
harness = {}
for l in open(f'{d}/harness.jsonl'):
    h = json.loads(l); harness[h['pod']] = h
files = {}
for f in glob.glob(f'{d}/[0-9]*.jsonl'):
    lines = [json.loads(l) for l in open(f) if l.strip()]
    files[f] = lines
lo, hi = int(sys.argv[2]) if len(sys.argv) > 2 else 1000, int(sys.argv[3]) if len(sys.argv) > 3 else 1100
def kof(pod): return int(pod.rsplit('-', 1)[1])
rows = []
cycles_by_b = {}
evs = []
for f, lines in files.items():
    leader = any(x['k'] == 'gate' for x in lines)
    for x in lines:
        if x['k'] == 'cyc' and leader: cycles_by_b.setdefault(x['c']['B'], []).append((f, x))
        if x['k'] == 'ev' and x.get('kind') == 'Verdict': evs.append(x)
for f, lines in files.items():
    for x in lines:
        if x['k'] != 'gate' or x['status'] != 'True': continue
        pod = x['pod']
        try: k = kof(pod)
        except: continue
        if not (lo <= k < hi) or pod not in harness: continue
        h = harness[pod]; c = x['c']
        up, ready = T(h['up']), T(h['ready'])
        evrecv, evat = T(c['Ev']['Recv']), T(c['Ev']['At'])
        start, rs, re_, rst, pe, p0, p1 = T(c['Start']), T(c['ReadStart']), T(c['ReadEnd']), T(c['ReadStarted']), T(c['PlanEnd']), T(x['p0']), T(x['p1'])
        wake = T(c['Wake']['At'])
        rows.append(dict(pod=pod, total=ready-up, ev_delivery=(evrecv-up) if evrecv else None, evat_minus_up=(evat-up) if evat else None,
            ev_to_start=(start-evrecv) if evrecv else None, wake_to_start=(start-wake) if wake else None, inflight=c['Wake']['Inflight'],
            observe=rs-start, read=re_-rs, shared=c['Shared'], read_started_minus_ev=(rst-evrecv) if evrecv else None,
            connwait=x['connWaitMax'] / 1e9, plan=pe-re_, to_patch=p0-pe, patch=p1-p0, after_patch=ready-p1, ev_to_readstarted=(rst-evrecv) if evrecv else None,
            up_to_patchend=p1-up, b=c['B'], start=start, evrecv=evrecv))
def q(xs, p):
    xs = sorted(v for v in xs if v is not None)
    if not xs: return float('nan')
    return xs[min(len(xs)-1, int(round(p*(len(xs)-1))))]
print(f'rollout gates traced: {len(rows)}')
for key in ['total','ev_delivery','evat_minus_up','ev_to_start','wake_to_start','observe','read','connwait','ev_to_readstarted','plan','to_patch','patch','after_patch','up_to_patchend']:
    vals=[r[key] for r in rows]
    vv=[v for v in vals if v is not None]
    print(f'{key:20s} p50 {q(vals,.5)*1000:8.1f}  p90 {q(vals,.9)*1000:8.1f}  p99 {q(vals,.99)*1000:8.1f}  mean {statistics.mean(vv)*1000 if vv else float("nan"):8.1f} ms  n={len(vv)}')
print('shared reads:', sum(r['shared'] for r in rows), 'inflight wakes:', sum(bool(r['inflight']) for r in rows))
# cycles of the binding between event recv and gate cycle start
n_behind = []
for r in rows:
    cs = [x for f, x in cycles_by_b.get(r['b'], []) if r['evrecv'] and T(x['c']['Start']) < r['start'] and T(x['c']['End']) > r['evrecv']]
    n_behind.append(len(cs))
    r['behind'] = cs
print('cycles of the same binding overlapping/after the event before the gate cycle: ', {n: n_behind.count(n) for n in set(n_behind)})
# for pods where a prior cycle was in flight: how long did its rest take (end - ev)
waits=[T(cs[-1]['c']['End'])-r['evrecv'] for r in rows for cs in [r['behind']] if cs]
if waits: print('in-flight own cycle remaining after event: p50 %.1f p99 %.1f ms n=%d' % (q(waits,.5)*1000, q(waits,.99)*1000, len(waits)))
durs=[T(cs[-1]['c']['End'])-T(cs[-1]['c']['Start']) for r in rows for cs in [r['behind']] if cs]
if durs: print('those cycles duration p50 %.1f p99 %.1f ms' % (q(durs,.5)*1000, q(durs,.99)*1000))
if '-v' in sys.argv:
    for r in sorted(rows, key=lambda r: -r['total'])[:15]:
        print({k: (round(v*1000) if isinstance(v, float) and k not in ('start','evrecv') else v) for k, v in r.items() if k not in ('behind','start','evrecv')})
if '-x' in sys.argv:
    cls = {}
    for r in rows:
        for x in r['behind']:
            c = x['c']; st = T(c['Start']); en = T(c['End']); rs = T(c['ReadStart']) or st
            key = ('started-before-event' if st < r['evrecv'] else 'started-after-event') + '/' + ('read-before-event' if rs < r['evrecv'] else 'read-after-event')
            cls.setdefault(key, []).append((en - r['evrecv'], en - st))
    for k, v in cls.items():
        print(k, 'n=%d' % len(v), 'remaining after event p50 %.0f ms, cycle duration p50 %.0f ms' % (q([a for a, b in v], .5)*1000, q([b for a, b in v], .5)*1000))
    print('min ev_to_readstarted ms', min(r['ev_to_readstarted'] for r in rows)*1000)
