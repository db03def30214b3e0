package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// ScaleTimes records when things happened during a scale run: each
// HAProxy instance's verdicts and drains, read from its event ring with
// HAProxy's own timestamps, and when each pod was seen turning Ready (a
// watch: later than the API server's write by the watch's delivery).
type ScaleTimes struct {
	mu sync.Mutex
	// up: per address, per instance, every time the instance said UP.
	up map[netip.Addr]map[string][]time.Time
	// drain: per address, per instance, the first time it entered drain.
	drain map[netip.Addr]map[string]time.Time
	// ready: per pod, when it was seen Ready and at which address.
	ready     map[string]readyAt
	instances []string
	lost      int // events whose server's address could not be read
}

type readyAt struct {
	addr netip.Addr
	at   time.Time
}

type slotEvent struct {
	instance, pool, entry string
	drain                 bool
	at                    time.Time
}

// RecordTimes starts recording; stop ends it (and waits for it).
func (s *Scale) RecordTimes(ctx context.Context) (*ScaleTimes, func(), error) {
	hs := s.Lab.State().HAProxy
	t := &ScaleTimes{up: map[netip.Addr]map[string][]time.Time{}, drain: map[netip.Addr]map[string]time.Time{}, ready: map[string]readyAt{}}
	var ins []hapi.Instance
	clients := map[string]*hapi.Client{}
	for _, h := range hs {
		ins = append(ins, hapi.Instance{Name: h.Name, Address: h.Socket})
		c, err := hapi.NewClient(h.Socket)
		if err != nil {
			return nil, nil, fmt.Errorf("lab: scale times: %w", err)
		}
		clients[h.Name] = c
		t.instances = append(t.instances, h.Name)
	}
	p, err := hapi.New(hapi.Config{Instances: ins, Logger: s.log})
	if err != nil {
		return nil, nil, fmt.Errorf("lab: scale times: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	events := make(chan slotEvent, 1<<16)
	wg.Go(func() {
		_ = p.Watch(ctx, func(ev provider.Event) {
			se := slotEvent{instance: ev.Instance, pool: ev.Pool, entry: ev.Entry, at: ev.At}
			switch {
			case ev.Kind == provider.EventVerdict && ev.Health == provider.HealthHealthy:
			// "enters drain state": ready -> drain. Registration's maint ->
			// drain ("is UP/DRAIN (leaving forced maintenance)", "remains
			// in forced drain mode") is not a drain.
			case ev.Kind == provider.EventAdmin && strings.Contains(ev.Message, "enters drain state"):
				se.drain = true
			default:
				return
			}
			select {
			case events <- se:
			case <-ctx.Done():
			}
		})
	})
	// The event names a slot; its address is read right away (a slot is
	// reused only after its target was drained and removed).
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case se := <-events:
				t.resolve(ctx, clients[se.instance], se)
			}
		}
	})
	factory := informers.NewSharedInformerFactoryWithOptions(s.Client, 0, informers.WithNamespace(ScaleNamespace))
	inf := factory.Core().V1().Pods().Informer()
	seen := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || !podReady(p) {
			return
		}
		now := time.Now()
		a, _ := netip.ParseAddr(p.Status.PodIP)
		t.mu.Lock()
		if _, ok := t.ready[p.Name]; !ok {
			t.ready[p.Name] = readyAt{addr: a, at: now}
		}
		t.mu.Unlock()
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: seen, UpdateFunc: func(_, o any) { seen(o) }}); err != nil {
		cancel()
		return nil, nil, err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	stop := func() {
		cancel()
		factory.Shutdown()
		wg.Wait()
	}
	return t, stop, nil
}

func (t *ScaleTimes) resolve(ctx context.Context, c *hapi.Client, se slotEvent) {
	states, err := c.ShowServersState(ctx, se.pool)
	var addr netip.Addr
	for _, st := range states {
		if st.Name == se.entry {
			addr, _ = netip.ParseAddr(st.Addr)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil || !addr.IsValid() {
		t.lost++
		return
	}
	if se.drain {
		m := t.drain[addr]
		if m == nil {
			m = map[string]time.Time{}
			t.drain[addr] = m
		}
		if _, ok := m[se.instance]; !ok {
			m[se.instance] = se.at
		}
		return
	}
	m := t.up[addr]
	if m == nil {
		m = map[string][]time.Time{}
		t.up[addr] = m
	}
	m[se.instance] = append(m[se.instance], se.at)
}

// GateLatencies returns, for the named pods seen Ready, Ready minus the
// last instance's UP before it (the gate latency), and the pods seen Ready
// before some instance had said UP (a broken gate, when that instance's
// events were read: missing lists pods with no UP event from some instance
// at all, which proves nothing either way).
func (t *ScaleTimes) GateLatencies(pods []string) (lat []time.Duration, early, missing []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, name := range pods {
		r, ok := t.ready[name]
		if !ok {
			continue
		}
		var last time.Time
		broken := false
		for _, in := range t.instances {
			ups := t.up[r.addr][in]
			if len(ups) == 0 {
				missing = append(missing, name)
				broken = true
				break
			}
			var before time.Time
			for _, u := range ups {
				if !u.After(r.at) && u.After(before) {
					before = u
				}
			}
			if before.IsZero() {
				early = append(early, fmt.Sprintf("%s (%s): Ready at %s, %s said UP only at %s", name, r.addr, r.at.Format("15:04:05.000"), in, ups[0].Format("15:04:05.000")))
				broken = true
				break
			}
			if before.After(last) {
				last = before
			}
		}
		if !broken {
			lat = append(lat, r.at.Sub(last))
		}
	}
	return lat, early, missing
}

// DrainLatencies returns, for each pod deleted at deleted[name] whose
// address was addrs[name], the time from the deletion request to the
// moment the last instance set its server to drain; missing names pods
// some instance never reported draining.
func (t *ScaleTimes) DrainLatencies(deleted map[string]time.Time, addrs map[string]netip.Addr) (lat []time.Duration, missing []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, at := range deleted {
		m := t.drain[addrs[name]]
		var last time.Time
		ok := true
		for _, in := range t.instances {
			d, seen := m[in]
			if !seen {
				ok = false
				break
			}
			if d.After(last) {
				last = d
			}
		}
		if !ok {
			missing = append(missing, name)
			continue
		}
		lat = append(lat, last.Sub(at))
	}
	return lat, missing
}

// Lost is how many events named a server whose address could not be read.
func (t *ScaleTimes) Lost() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lost
}

// Quantile is the nearest-rank quantile of xs (0 for none).
func Quantile(xs []time.Duration, q float64) time.Duration { return quantile(xs, q) }
