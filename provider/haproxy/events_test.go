package haproxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// eventLog collects a watcher's events with the time each arrived.
type eventLog struct {
	mu  sync.Mutex
	evs []received
	ch  chan struct{} // signalled on every event
}

type received struct {
	provider.Event
	got time.Time
}

func watch(t *testing.T, w provider.Watcher) *eventLog {
	t.Helper()
	l := &eventLog{ch: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Watch(ctx, func(ev provider.Event) {
			l.mu.Lock()
			l.evs = append(l.evs, received{ev, time.Now()})
			l.mu.Unlock()
			select {
			case l.ch <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	})
	return l
}

// await returns the first event after from that matches, or fails after
// guard.
func (l *eventLog) await(t *testing.T, from int, guard time.Duration, what string, match func(provider.Event) bool) (received, int) {
	t.Helper()
	deadline := time.After(guard)
	for {
		l.mu.Lock()
		for i := from; i < len(l.evs); i++ {
			if match(l.evs[i].Event) {
				ev := l.evs[i]
				l.mu.Unlock()
				return ev, i
			}
		}
		l.mu.Unlock()
		select {
		case <-l.ch:
		case <-deadline:
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("no %s within %s; events: %+v", what, guard, l.evs)
		}
	}
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

func isKind(k provider.EventKind, instance string) func(provider.Event) bool {
	return func(ev provider.Event) bool { return ev.Kind == k && (instance == "" || ev.Instance == instance) }
}

func verdict(pool, entry string, h provider.Health) func(provider.Event) bool {
	return func(ev provider.Event) bool {
		return ev.Kind == provider.EventVerdict && ev.Pool == pool && ev.Entry == entry && ev.Health == h
	}
}

// nthCheck returns when the probe answered its n-th health check with
// status (counting from the first), zero if it has not yet.
func (p *probe) lastCheckAt(status int) time.Time {
	var at time.Time
	for _, e := range p.snapshot() {
		if e.check && e.status == status {
			at = e.at
		}
	}
	return at
}

// Event-driven verdicts, the HAProxy side: a target registered through the
// provider turns UP by HAProxy's own checks, and the watcher reports it
// within milliseconds of the check that made it UP (the poll it replaces
// runs every 250 ms); when its checks then fail, the DOWN verdict arrives
// as promptly. And a Status read made on the event already agrees.
func TestWatchReportsVerdictsAsHAProxyDecides(t *testing.T) {
	in, _ := startHAProxy(t)
	p := newProvider(t, in)
	if !p.Capabilities().PushesVerdicts {
		t.Fatal("the HAProxy provider does not declare PushesVerdicts")
	}
	evs := watch(t, p)
	evs.await(t, 0, 10*time.Second, "EventStreamUp", isKind(provider.EventStreamUp, "haproxy-0"))

	const rounds = 5
	var upDelays, downDelays []time.Duration
	for i := 0; i < rounds; i++ {
		target := startProbe(t, "t"+string(rune('a'+i)))
		from := evs.len()
		if err := p.Register(context.Background(), "app", target.target()); err != nil {
			t.Fatal(err)
		}
		up, next := evs.await(t, from, 10*time.Second, "UP verdict", verdict("app", target.name, provider.HealthHealthy))
		// The read the controller makes on the event: already Healthy.
		if ts, ok := targetOn(t, p, provider.TargetID(target.name)); !ok || ts.Health != provider.HealthHealthy {
			t.Fatalf("round %d: Status right after the UP event: %+v (present %v), want Healthy", i, ts, ok)
		}
		upDelays = append(upDelays, up.got.Sub(target.lastCheckAt(200)))

		target.readyStatus.Store(503)
		down, _ := evs.await(t, next, 10*time.Second, "DOWN verdict", verdict("app", target.name, provider.HealthUnhealthy))
		if ts, ok := targetOn(t, p, provider.TargetID(target.name)); !ok || ts.Health != provider.HealthUnhealthy {
			t.Fatalf("round %d: Status right after the DOWN event: %+v (present %v), want Unhealthy", i, ts, ok)
		}
		downDelays = append(downDelays, down.got.Sub(target.lastCheckAt(503)))
		if err := p.Deregister(context.Background(), "app", target.target()); err != nil {
			t.Fatal(err)
		}
	}
	sort.Slice(upDelays, func(i, j int) bool { return upDelays[i] < upDelays[j] })
	sort.Slice(downDelays, func(i, j int) bool { return downDelays[i] < downDelays[j] })
	t.Logf("check answered -> event received: UP median %s max %s; DOWN median %s max %s",
		upDelays[rounds/2], upDelays[rounds-1], downDelays[rounds/2], downDelays[rounds-1])
	// Generous for a loaded CI machine; the measured figure is about 1 ms.
	const bound = 50 * time.Millisecond
	if upDelays[rounds/2] > bound || downDelays[rounds/2] > bound {
		t.Errorf("median delay from the deciding check to the event: UP %s, DOWN %s; want <= %s", upDelays[rounds/2], downDelays[rounds/2], bound)
	}
}

// cutter is a unix-socket proxy in front of HAProxy's Runtime API that a
// test can cut: every connection closed and new ones refused, then
// restored.
type cutter struct {
	path, to string
	mu       sync.Mutex
	l        net.Listener
	conns    []net.Conn
}

func startCutter(t *testing.T, to string) *cutter {
	c := &cutter{path: filepath.Join(t.TempDir(), "cut.sock"), to: to}
	c.restore(t)
	t.Cleanup(func() { c.cut() })
	return c
}

func (c *cutter) restore(t *testing.T) {
	t.Helper()
	l, err := net.Listen("unix", c.path)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.l = l
	c.mu.Unlock()
	go func() {
		for {
			a, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("unix", c.to)
			if err != nil {
				a.Close()
				continue
			}
			c.mu.Lock()
			if c.l != l { // cut while this one was being accepted
				c.mu.Unlock()
				a.Close()
				b.Close()
				continue
			}
			c.conns = append(c.conns, a, b)
			c.mu.Unlock()
			go func() { io.Copy(b, a); b.Close() }()
			go func() { io.Copy(a, b); a.Close() }()
		}
	}()
}

// cut closes the listener (removing the socket) and every connection.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.l != nil {
		c.l.Close()
		c.l = nil
	}
	for _, k := range c.conns {
		k.Close()
	}
	c.conns = nil
}

// A stream that is cut is reported lost (the controller then polls), is
// reconnected with backoff, and reports up again; a verdict HAProxy wrote
// while the stream was down is still delivered after the reconnect (the
// watcher replays the ring from the last line it had).
func TestWatchReconnectsAfterTheStreamIsCut(t *testing.T) {
	in, _ := startHAProxy(t)
	cut := startCutter(t, in.Socket())
	hp, err := hapi.New(hapi.Config{Instances: []hapi.Instance{{Name: "haproxy-0", Address: cut.path}}, BreakerBackoff: -1})
	if err != nil {
		t.Fatal(err)
	}
	p := book(hp)
	evs := watch(t, p)
	evs.await(t, 0, 10*time.Second, "EventStreamUp", isKind(provider.EventStreamUp, "haproxy-0"))

	cut.cut()
	_, i := evs.await(t, 0, 5*time.Second, "EventStreamDown after the cut", isKind(provider.EventStreamDown, "haproxy-0"))

	// HAProxy decides while nobody listens.
	target := startProbe(t, "late")
	if err := p.Register(context.Background(), "app", target.target()); err == nil {
		t.Fatal("Register through the cut socket succeeded")
	}
	direct := book(newProvider(t, in).Provider)
	if err := direct.Register(context.Background(), "app", target.target()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		ts, _ := targetOn(t, direct, provider.TargetID(target.name))
		return ts.Health == provider.HealthHealthy, "target not Healthy yet: " + string(ts.Health)
	})

	cut.restore(t)
	_, j := evs.await(t, i, 10*time.Second, "EventStreamUp after the restore", isKind(provider.EventStreamUp, "haproxy-0"))
	evs.await(t, j, 5*time.Second, "the UP verdict written while the stream was down", verdict("app", target.name, provider.HealthHealthy))
}

// An instance without the ring is reported down with ErrNoEventRing, so
// the controller polls it; nothing else breaks.
func TestWatchWithoutTheRingReportsTheStreamDown(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{NoEventRing: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	evs := watch(t, newProvider(t, in))
	ev, _ := evs.await(t, 0, 10*time.Second, "EventStreamDown", isKind(provider.EventStreamDown, "haproxy-0"))
	if !errors.Is(ev.Err, hapi.ErrNoEventRing) {
		t.Fatalf("EventStreamDown error %v, want ErrNoEventRing", ev.Err)
	}
}

// After a reload the stream belongs to the old worker, which checks
// nothing any more and would keep the session until HAProxy's stats
// timeout. The watcher notices the old worker's soft stop in the ring,
// reconnects to the new worker and reports the gap at once (the
// controller then reads every pool and sees the new epoch), and the new
// worker's verdicts arrive.
func TestWatchFollowsAReload(t *testing.T) {
	in, _ := startHAProxy(t)
	p := newProvider(t, in)
	evs := watch(t, p)
	_, i := evs.await(t, 0, 10*time.Second, "EventStreamUp", isKind(provider.EventStreamUp, "haproxy-0"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := in.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	// The lab's stats timeout is 30 s and hard-stop-after 5 s: well
	// within either, the watcher is with the new worker.
	up, j := evs.await(t, i+1, 3*time.Second, "EventStreamUp after the reload", isKind(provider.EventStreamUp, "haproxy-0"))
	t.Logf("reload -> stream up again on the new worker: %s", up.got.Sub(start).Round(time.Millisecond))

	target := startProbe(t, "after-reload")
	if err := p.Register(ctx, "app", target.target()); err != nil {
		t.Fatal(err)
	}
	evs.await(t, j, 10*time.Second, "UP verdict from the new worker", verdict("app", target.name, provider.HealthHealthy))
}
