package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
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
//
// A ring line names a slot ("Server p-3/zd-slot12 enters drain state"),
// never an address (HAProxy 2.6 writes none, and does not log `set server
// addr` either), and the controller reuses a freed slot for the next pod
// at once. An event is therefore attributed to the address its slot had at
// the event's time: the controller changes a slot's address only while the
// slot is in maintenance, and the ring reports every entry into and exit
// from maintenance, so the lines cut each slot's life into occupancies of
// one address each; the state reads the recorder makes (`show servers
// state` of the event's backend, after the event) say which address each
// occupancy had. Reading the address right after the event is not enough:
// a light pod is drained, exits and its slot is reused by the next pod of
// a rollout before the read, and the drain would be credited to the new
// pod (ReadAfterMisses counts those).
type ScaleTimes struct {
	mu sync.Mutex
	// events: every verdict and drain line, in arrival order.
	events []slotEvent
	// slots: per instance, backend and slot, its maintenance bounds and
	// what the state reads saw.
	slots map[slotKey]*slotHistory
	// lastRead: per instance and backend, when its last state read began.
	lastRead map[slotKey]time.Time
	// ready: per pod, when it was seen Ready and at which address.
	ready     map[string]readyAt
	instances []string
	readErrs  int // state reads that failed
}

type readyAt struct {
	addr netip.Addr
	at   time.Time
}

type slotKey struct{ instance, pool, slot string }

type slotEventKind int

const (
	eventUp     slotEventKind = iota // "is UP": the instance's verdict
	eventDrain                       // "enters drain state": ready -> drain
	eventMaint                       // enters maintenance (a slot is freed through it)
	eventActive                      // leaves maintenance (a slot is claimed through it)
)

type slotEvent struct {
	slotKey
	kind slotEventKind
	at   time.Time // HAProxy's timestamp
}

// slotHistory is what the recorder learnt about one slot of one instance.
type slotHistory struct {
	// bounds: the times the slot entered (true) or left (false)
	// maintenance, in order.
	bounds []slotBound
	// seen: the state reads, as runs of reads that saw the same state.
	seen []sighting
}

type slotBound struct {
	at     time.Time
	enters bool
}

// sighting is a run of state reads that saw the slot with one address and
// maintenance state; first and last are the first and last read's spans
// (the state they report held at some moment within the span).
type sighting struct {
	addr        netip.Addr
	maint       bool
	first, last span
}

type span struct{ from, to time.Time }

// classify returns what a ring event says about its slot, if anything the
// recorder keeps.
func classify(ev provider.Event) (slotEventKind, bool) {
	switch {
	case ev.Kind == provider.EventVerdict && ev.Health == provider.HealthHealthy:
		return eventUp, true
	case ev.Kind != provider.EventAdmin:
		return 0, false
	// "enters drain state": ready -> drain. Registration's maint -> drain
	// ("is UP/DRAIN (leaving forced maintenance)", "remains in forced
	// drain mode") is not a drain.
	case strings.Contains(ev.Message, "enters drain state"):
		return eventDrain, true
	// "is UP/READY (leaving forced maintenance)", "is DOWN (leaving
	// maintenance)".
	case strings.Contains(ev.Message, "(leaving") && strings.Contains(ev.Message, "maintenance"):
		return eventActive, true
	// "is going DOWN for maintenance", "was DOWN and now enters
	// maintenance".
	case strings.Contains(ev.Message, "maintenance"):
		return eventMaint, true
	}
	return 0, false
}

// RecordTimes starts recording; stop ends it (and waits for it).
func (s *Scale) RecordTimes(ctx context.Context) (*ScaleTimes, func(), error) {
	hs := s.Lab.State().HAProxy
	t := newScaleTimes()
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
			kind, ok := classify(ev)
			if !ok {
				return
			}
			se := slotEvent{slotKey: slotKey{ev.Instance, ev.Pool, ev.Entry}, kind: kind, at: ev.At}
			t.note(se)
			if kind != eventUp && kind != eventDrain {
				return
			}
			select {
			case events <- se:
			case <-ctx.Done():
			}
		})
	})
	// After a verdict or a drain, the event's backend is read (unless a
	// read that began after the event already has it), so that each
	// occupancy of a slot is seen while it lasts.
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case se := <-events:
				if !t.readSince(se.instance, se.pool, se.at) {
					t.read(ctx, clients[se.instance], se.instance, se.pool)
				}
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

func newScaleTimes() *ScaleTimes {
	return &ScaleTimes{slots: map[slotKey]*slotHistory{}, lastRead: map[slotKey]time.Time{}, ready: map[string]readyAt{}}
}

func (t *ScaleTimes) history(k slotKey) *slotHistory {
	h := t.slots[k]
	if h == nil {
		h = &slotHistory{}
		t.slots[k] = h
	}
	return h
}

// note keeps a ring event: a maintenance bound in its slot's history, a
// verdict or drain in the events.
func (t *ScaleTimes) note(se slotEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch se.kind {
	case eventMaint, eventActive:
		h := t.history(se.slotKey)
		h.bounds = append(h.bounds, slotBound{at: se.at, enters: se.kind == eventMaint})
	default:
		t.events = append(t.events, se)
	}
}

// readSince reports whether a state read of the backend began after at.
func (t *ScaleTimes) readSince(instance, pool string, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastRead[slotKey{instance: instance, pool: pool}].After(at)
}

// read reads the backend's state and keeps what it saw of every slot.
func (t *ScaleTimes) read(ctx context.Context, c *hapi.Client, instance, pool string) {
	from := time.Now()
	t.mu.Lock()
	t.lastRead[slotKey{instance: instance, pool: pool}] = from
	t.mu.Unlock()
	states, err := c.ShowServersState(ctx, pool)
	sp := span{from, time.Now()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.readErrs++
		return
	}
	for _, st := range states {
		addr, _ := netip.ParseAddr(st.Addr)
		t.history(slotKey{instance, pool, st.Name}).saw(addr, st.Admin.Maint(), sp)
	}
}

// saw adds a state read: it extends the last run when the state is the
// same, else starts a new one.
func (h *slotHistory) saw(addr netip.Addr, maint bool, sp span) {
	if n := len(h.seen); n > 0 && h.seen[n-1].addr == addr && h.seen[n-1].maint == maint {
		h.seen[n-1].last = sp
		return
	}
	h.seen = append(h.seen, sighting{addr: addr, maint: maint, first: sp, last: sp})
}

// addrAt returns the address the slot had at time at, and why not when it
// cannot tell. The occupancy holding at is bounded by the last exit from
// maintenance before it and the next entry after it (the controller changes
// an address only in maintenance); a read out of maintenance whose span
// ends within the occupancy (and began after the maintenance before it)
// saw the occupancy's address.
func (h *slotHistory) addrAt(at time.Time) (netip.Addr, string) {
	if h == nil {
		return netip.Addr{}, "slot never read"
	}
	var start, before, end time.Time // zero: unbounded
	for _, b := range h.bounds {
		if !b.at.After(at) {
			if b.enters {
				before = b.at
				start = time.Time{}
			} else {
				start = b.at
			}
			continue
		}
		if b.enters {
			end = b.at
			break
		}
	}
	if !before.IsZero() && start.IsZero() {
		return netip.Addr{}, "slot in maintenance at the event"
	}
	within := func(sp span) bool {
		return sp.from.After(before) && (start.IsZero() || sp.to.After(start)) && (end.IsZero() || sp.to.Before(end))
	}
	var found netip.Addr
	for _, sg := range h.seen {
		if sg.maint || !sg.addr.IsValid() || sg.addr.IsUnspecified() || !(within(sg.first) || within(sg.last)) {
			continue
		}
		if found.IsValid() && found != sg.addr {
			return netip.Addr{}, fmt.Sprintf("reads saw %s and %s in one occupancy", found, sg.addr)
		}
		found = sg.addr
	}
	if !found.IsValid() {
		return netip.Addr{}, "no read during the occupancy"
	}
	return found, ""
}

// addrReadAfter is the address the first state read that began after at
// saw: what the recorder credited an event to before it kept histories.
func (h *slotHistory) addrReadAfter(at time.Time) netip.Addr {
	if h == nil {
		return netip.Addr{}
	}
	for _, sg := range h.seen {
		if sg.last.from.After(at) {
			return sg.addr
		}
	}
	return netip.Addr{}
}

// attributed returns, per address, per instance, the times of the events
// of kind, attributed with addrAt; and the events it could not attribute.
func (t *ScaleTimes) attributed(kind slotEventKind) (byAddr map[netip.Addr]map[string][]time.Time, lost []string) {
	byAddr = map[netip.Addr]map[string][]time.Time{}
	for _, e := range t.events {
		if e.kind != kind {
			continue
		}
		addr, why := t.slots[e.slotKey].addrAt(e.at)
		if why != "" {
			lost = append(lost, fmt.Sprintf("%s %s/%s at %s: %s", e.instance, e.pool, e.slot, e.at.Format("15:04:05.000000"), why))
			continue
		}
		m := byAddr[addr]
		if m == nil {
			m = map[string][]time.Time{}
			byAddr[addr] = m
		}
		m[e.instance] = append(m[e.instance], e.at)
	}
	return byAddr, lost
}

// GateLatencies returns, for the named pods seen Ready, Ready minus the
// last instance's UP before it (the gate latency), and the pods seen Ready
// before some instance had said UP (a broken gate, when that instance's
// events were read: missing lists pods with no UP event from some instance
// at all, which proves nothing either way).
func (t *ScaleTimes) GateLatencies(pods []string) (lat []time.Duration, early, missing []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	up, _ := t.attributed(eventUp)
	for _, name := range pods {
		r, ok := t.ready[name]
		if !ok {
			continue
		}
		var last time.Time
		broken := false
		for _, in := range t.instances {
			ups := up[r.addr][in]
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

// Undrained is a deleted pod some instance was never seen draining.
type Undrained struct {
	Pod      string // namespace/name
	Addr     netip.Addr
	Instance string
	// Slots are the instance's slots ("backend/slot") state reads saw
	// holding the address (none: never seen registered there).
	Slots []string
}

func (u Undrained) String() string {
	slots := "no slot seen holding it"
	if len(u.Slots) > 0 {
		slots = "slot " + strings.Join(u.Slots, ", ")
	}
	return fmt.Sprintf("%s (%s): no drain on %s (%s)", u.Pod, u.Addr, u.Instance, slots)
}

// DrainLatencies returns, for each pod deleted at deleted[name] whose
// address was addrs[name], the time from the deletion request to the
// moment the last instance set its server to drain (the first drain after
// the deletion); undrained names the pods some instance never reported
// draining, with the instance and the slots that held the address.
func (t *ScaleTimes) DrainLatencies(deleted map[string]time.Time, addrs map[string]netip.Addr) (lat []time.Duration, undrained []Undrained) {
	t.mu.Lock()
	defer t.mu.Unlock()
	drains, _ := t.attributed(eventDrain)
	names := make([]string, 0, len(deleted))
	for name := range deleted {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		at := deleted[name]
		addr := addrs[name]
		var last time.Time
		ok := true
		for _, in := range t.instances {
			var d time.Time
			for _, x := range drains[addr][in] {
				if x.After(at) && (d.IsZero() || x.Before(d)) {
					d = x
				}
			}
			if d.IsZero() {
				undrained = append(undrained, Undrained{Pod: ScaleNamespace + "/" + name, Addr: addr, Instance: in, Slots: t.slotsHolding(in, addr)})
				ok = false
				break
			}
			if d.After(last) {
				last = d
			}
		}
		if ok {
			lat = append(lat, last.Sub(at))
		}
	}
	return lat, undrained
}

// slotsHolding lists the slots of instance that state reads saw holding
// addr out of maintenance.
func (t *ScaleTimes) slotsHolding(instance string, addr netip.Addr) []string {
	var out []string
	for k, h := range t.slots {
		if k.instance != instance {
			continue
		}
		for _, sg := range h.seen {
			if sg.addr == addr && !sg.maint {
				out = append(out, k.pool+"/"+k.slot)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// Attribution says how the ring's verdict and drain events were credited
// to addresses.
type Attribution struct {
	// Unattributed lists the events whose slot's address at the event's
	// time could not be told, with why.
	Unattributed []string
	// ReadAfterMisses counts the drain events for which a state read made
	// right after the event saw another address (or a freed slot) than the
	// slot had at the event: those the recorder used to credit to the
	// wrong pod.
	ReadAfterMisses int
	// ReadErrors counts failed state reads.
	ReadErrors int
}

// Attribution reports how the events were attributed so far.
func (t *ScaleTimes) Attribution() Attribution {
	t.mu.Lock()
	defer t.mu.Unlock()
	var a Attribution
	for _, kind := range []slotEventKind{eventUp, eventDrain} {
		_, lost := t.attributed(kind)
		a.Unattributed = append(a.Unattributed, lost...)
	}
	for _, e := range t.events {
		if e.kind != eventDrain {
			continue
		}
		h := t.slots[e.slotKey]
		addr, why := h.addrAt(e.at)
		if why == "" && h.addrReadAfter(e.at) != addr {
			a.ReadAfterMisses++
		}
	}
	a.ReadErrors = t.readErrs
	return a
}

// Quantile is the nearest-rank quantile of xs (0 for none).
func Quantile(xs []time.Duration, q float64) time.Duration { return quantile(xs, q) }
