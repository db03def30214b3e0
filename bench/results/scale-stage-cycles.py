import json, sys, re
from datetime import datetime
sys.path.insert(0,'/tmp')
def T(s):
    if not s or s.startswith('0001'): return None
    s = s.replace('Z', '+00:00')
    m = re.match(r'(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)', s)
    return datetime.fromisoformat(m.group(1) + (m.group(2) or '.0')[:7] + m.group(3)).timestamp()
f = sys.argv[1]; lo, hi = int(sys.argv[2]), int(sys.argv[3])
L = [json.loads(l) for l in open(f) if l.strip()]
gates = [x for x in L if x['k']=='gate']
def k(p):
    try: return int(p.rsplit('-',1)[1])
    except: return -1
rg = [x for x in gates if lo <= k(x['pod']) < hi]
t0 = min(T(x['c']['Start']) for x in rg) - 3; t1 = max(T(x['p1']) for x in rg)
# window: from first rollout gate write (False probably) to last True
print('window', t1-t0)
cyc = [x for x in L if x['k']=='cyc' and t0 <= T(x['c']['Start']) <= t1]
gkey = {}
for x in gates:
    gkey.setdefault((x['c']['B'], x['c']['Start']), []).append(x)
busy = sum(T(x['c']['End'])-T(x['c']['Start']) for x in cyc)
print('cycles', len(cyc), 'worker-busy s', round(busy,2), 'utilisation of 8 workers', round(busy/(8*(t1-t0)),2))
cats = {}
for x in cyc:
    c = x['c']; g = gkey.get((c['B'], c['Start']), [])
    st = T(c['Start']); ce = T(c['CallsEnd']) or st; en = T(c['End'])
    kind = ('verdict-wake' if c['Wake']['At'] and not c['Wake']['At'].startswith('0001') else 'other') + '/' + ('gate:' + ','.join(sorted(set(y['status']+':'+y['reason'] for y in g))) if g else 'nogate')
    a = cats.setdefault(kind, [0, 0.0, 0.0, 0.0, 0.0])
    a[0] += 1; a[1] += en-st; a[2] += (ce-st); a[3] += en-ce
    a[4] += (T(c['ReadEnd']) or st) - (T(c['ReadStart']) or st)
for kd, a in sorted(cats.items(), key=lambda kv: -kv[1][1]):
    print(f'{kd:70s} n={a[0]:4d} busy={a[1]:7.2f}s mean={a[1]/a[0]*1000:6.0f}ms  start->callsEnd mean={a[2]/a[0]*1000:6.0f}  callsEnd->end mean={a[3]/a[0]*1000:6.0f}  read mean={a[4]/a[0]*1000:5.0f}')
