package haproxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// startSlotHAProxy runs a real haproxy whose backend "app" has `slots`
// server-template slots (0: dynamic mode) and, with anchor, the always
// healthy static server "anchor".
func startSlotHAProxy(t *testing.T, slots int, anchor bool) *lab.Instance {
	t.Helper()
	testenv.RequireBinary(t, "haproxy")
	be := lab.Backend{
		Name:  "app",
		Check: lab.Check{HTTPPath: "/ready", Interval: testInter, Rise: testRise, Fall: testFall, Timeout: 3 * time.Second},
		Slots: slots,
	}
	if anchor {
		a := startProbe(t, "anchor")
		a.release()
		be.Servers = []lab.Server{{Name: "anchor", Addr: a.addr}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{be}, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := in.Stop(); err != nil {
			t.Errorf("stop haproxy: %v", err)
		}
	})
	return in
}

// slotOf returns the slot holding addr in backend app, from HAProxy.
func slotOf(t *testing.T, in *lab.Instance, addr string) (hapi.ServerState, bool) {
	t.Helper()
	states, err := in.Client().ShowServersState(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if hapi.IsSlot(s.Name) && fmt.Sprintf("%s:%d", s.Addr, s.Port) == addr {
			return s, true
		}
	}
	return hapi.ServerState{}, false
}

func healthyOn(p *booked, ids ...provider.TargetID) func() (bool, string) {
	return func() (bool, string) {
		st, err := p.Status(context.Background(), "app")
		if err != nil {
			return false, err.Error()
		}
		for _, id := range ids {
			if ok, reason, msg := st.Healthy(id); !ok {
				return false, fmt.Sprintf("%s: %s: %s", id, reason, msg)
			}
		}
		return true, ""
	}
}

// Scenario: slot mode. A pod whose health endpoint hangs (no check ever
// completes) and one answering 503 then 200 take slots under load.
// Expectation: as with dynamic servers, neither gets a balanced request
// before `rise` checks passed in a row; Status reports them under their
// target IDs, not the slot names.
func TestSlotRegisterSendsNoBalancedRequestBeforeRiseChecksPassed(t *testing.T) {
	in := startSlotHAProxy(t, 4, true)
	p := newProvider(t, in)
	ctx := context.Background()
	ld := startLoad(t, in.Addr())
	hang := startProbe(t, "pod-hang")
	hang.hangReady.Store(true)
	target := startProbe(t, "pod-a")
	target.readyStatus.Store(503)

	if err := p.Register(ctx, "app", hang.target()); err != nil {
		t.Fatal(err)
	}
	if err := p.Register(ctx, "app", target.target()); err != nil {
		t.Fatal(err)
	}
	for _, pr := range []*probe{hang, target} {
		s, ok := slotOf(t, in, pr.addr)
		if !ok || !strings.HasPrefix(s.Name, hapi.SlotPrefix) {
			t.Fatalf("%s: no slot holds %s", pr.name, pr.addr)
		}
	}
	st, err := p.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if ts, ok := st.Instances[0].Targets["pod-hang"]; !ok || ts.Health == provider.HealthHealthy {
		t.Fatalf("slot of a target with no completed check: %+v (found %v), want reported and not Healthy; %s", ts, ok, st)
	}
	for id := range st.Instances[0].Targets {
		if strings.HasPrefix(string(id), hapi.SlotPrefix) {
			t.Fatalf("Status reports slot %s by its name: %s", id, st)
		}
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		checks, _ := target.counts()
		return checks >= 2*testRise, fmt.Sprintf("%d checks so far", checks)
	})
	ld.waitEveryWorker(t, 20)
	if _, b := target.counts(); b != 0 {
		t.Fatalf("a not-ready target in a slot got %d balanced requests", b)
	}
	if _, b := hang.counts(); b != 0 {
		t.Fatalf("a target in a slot whose checks never completed got %d balanced requests", b)
	}

	target.readyStatus.Store(200)
	eventually(t, 30*time.Second, healthyOn(p, "pod-a"))
	eventually(t, 30*time.Second, func() (bool, string) {
		_, b := target.counts()
		return b > 0, "no balanced request yet"
	})
	run, _ := passesBeforeFirstBalanced(target.snapshot())
	if run < testRise {
		t.Fatalf("first balanced request after %d passed checks in a row, want >= rise (%d)", run, testRise)
	}
	if _, b := hang.counts(); b != 0 {
		t.Fatalf("hanging target got %d balanced requests", b)
	}
	if n := ld.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed through haproxy (last: %v)", n, ld.lastErr.Load())
	}
}

// pacedLoad sends rate requests per second for d through addr (bounded:
// rate*d requests, at most 64 in flight, loopback only) and calls mid once,
// halfway. It returns the answered (200) and failed counts.
func pacedLoad(t *testing.T, addr string, rate int, d time.Duration, mid func()) (ok, failed int64, lastErr string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer c.CloseIdleConnections()
	total := int(float64(rate) * d.Seconds())
	var okN, failN atomic.Int64
	var last atomic.Value
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; i < total; i++ {
		<-tick.C
		if i == total/2 {
			wg.Add(1)
			go func() { defer wg.Done(); mid() }()
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := c.Get("http://" + addr + "/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				failN.Add(1)
				last.Store(err.Error())
				return
			}
			okN.Add(1)
		}()
	}
	wg.Wait()
	lastErr, _ = last.Load().(string)
	return okN.Load(), failN.Load(), lastErr
}

// Scenario: two targets in rotation, HAProxy reloaded (state file saved
// first, then SIGUSR2) in the middle of a steady 200 req/s stream.
// Expectation in slot mode: no request fails, and the new worker has both
// slots UP with their addresses at once, with no Register call. In dynamic
// mode (same setup without slots) the new worker's backend is empty: the
// targets are gone and requests fail until something re-registers them.
func TestReloadKeepsServing(t *testing.T) {
	for _, mode := range []struct {
		name  string
		slots int
	}{{"slots", 4}, {"dynamic", 0}} {
		t.Run(mode.name, func(t *testing.T) {
			in := startSlotHAProxy(t, mode.slots, false)
			p := newProvider(t, in)
			ctx := context.Background()
			a, b := startProbe(t, "pod-a"), startProbe(t, "pod-b")
			for _, pr := range []*probe{a, b} {
				if err := p.Register(ctx, "app", pr.target()); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 30*time.Second, healthyOn(p, "pod-a", "pod-b"))
			_, oldWorker := in.Pids()
			pre, err := p.Status(ctx, "app")
			if err != nil {
				t.Fatal(err)
			}

			var reloadErr error
			var afterReload []hapi.ServerState
			ok, failed, lastErr := pacedLoad(t, in.Addr(), 200, 4*time.Second, func() {
				reloadErr = in.Reload(ctx)
				if reloadErr == nil {
					afterReload, reloadErr = in.Client().ShowServersState(ctx, "app")
				}
			})
			if reloadErr != nil {
				t.Fatal(reloadErr)
			}
			if _, w := in.Pids(); w == oldWorker {
				t.Fatalf("worker %d still the same after Reload", w)
			}
			t.Logf("%s mode: %d requests answered, %d failed (last error: %s) across a reload", mode.name, ok, failed, lastErr)
			st, err := p.Status(ctx, "app")
			if err != nil {
				t.Fatal(err)
			}
			if st.Instances[0].Epoch == pre.Instances[0].Epoch {
				t.Errorf("Status does not report the reload: epoch %q unchanged", pre.Instances[0].Epoch)
			}

			if mode.slots == 0 {
				if len(afterReload) != 0 || len(st.Instances[0].Targets) != 0 {
					t.Fatalf("dynamic servers after reload: %+v / %s, want an empty backend", afterReload, st)
				}
				if failed == 0 {
					t.Fatalf("dynamic mode: no request failed with an empty backend for the second half of the load")
				}
				return
			}
			if failed != 0 {
				t.Fatalf("slot mode: %d of %d requests failed across the reload (last: %s)", failed, ok+failed, lastErr)
			}
			for _, pr := range []*probe{a, b} {
				var found bool
				for _, s := range afterReload {
					if hapi.IsSlot(s.Name) && fmt.Sprintf("%s:%d", s.Addr, s.Port) == pr.addr {
						found = true
						if !s.Up() || s.Admin.Maint() || s.Admin.Drain() {
							t.Errorf("%s: slot %s right after reload: oper %d admin %#x, want UP and ready", pr.name, s.Name, s.Oper, s.Admin)
						}
					}
				}
				if !found {
					t.Errorf("%s: no slot with address %s right after reload: %+v", pr.name, pr.addr, afterReload)
				}
			}
			if ok, reason, msg := st.Healthy("pod-a"); !ok {
				t.Errorf("pod-a after reload: %s %s", reason, msg)
			}
			if ok, reason, msg := st.Healthy("pod-b"); !ok {
				t.Errorf("pod-b after reload: %s %s", reason, msg)
			}
		})
	}
}

// Scenario: slot mode with one slot. A target in rotation is drained under
// load, then deregistered; a second target is registered while the slot is
// taken, then after it is freed; and the controller restarts (a new
// Provider that knows no address). Expectation: after SetDraining the
// slot's lbtot and the app's count stop; Deregister leaves the slot free
// (maintenance, address unset) and no connection to the old pod; a full
// backend refuses with ErrNoFreeSlot naming it; the freed slot is reused;
// the new Provider reports the slot as an orphan until the controller's
// AddressBook call maps it back to the target's ID, and an orphan can be
// freed by its synthetic ID.
func TestSlotDrainFreeReuseAndRestart(t *testing.T) {
	in := startSlotHAProxy(t, 1, true)
	p := newProvider(t, in)
	ctx := context.Background()
	a := startProbe(t, "pod-a")
	ta := a.target()
	if err := p.Register(ctx, "app", ta); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, healthyOn(p, "pod-a"))
	ld := startLoad(t, in.Addr())
	eventually(t, 30*time.Second, func() (bool, string) {
		_, b := a.counts()
		return b > 0, "target in rotation gets no request"
	})

	bp := startProbe(t, "pod-b")
	if err := p.Register(ctx, "app", bp.target()); !errors.Is(err, hapi.ErrNoFreeSlot) || !strings.Contains(err.Error(), "app") {
		t.Fatalf("Register with every slot taken: %v, want ErrNoFreeSlot naming backend app", err)
	}

	if err := p.SetDraining(ctx, "app", ta); err != nil {
		t.Fatal(err)
	}
	ld.waitEveryWorker(t, 1)
	before, _ := targetOn(t, p, "pod-a")
	_, balancedBefore := a.counts()
	ld.waitEveryWorker(t, 50)
	after, _ := targetOn(t, p, "pod-a")
	_, balancedAfter := a.counts()
	if after.Selected != before.Selected || balancedAfter != balancedBefore {
		t.Fatalf("draining slot: lbtot %d -> %d, app %d -> %d requests; want no change", before.Selected, after.Selected, balancedBefore, balancedAfter)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		st, err := p.Status(ctx, "app")
		if err != nil {
			return false, err.Error()
		}
		ok, n := st.Drained("pod-a")
		return ok, fmt.Sprintf("%d sessions: %s", n, st)
	})

	// A controller restart: the new provider knows no address.
	p2 := newProvider(t, in)
	st, err := p2.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	orphan := provider.TargetID(hapi.OrphanPrefix + hapi.SlotPrefix + "1")
	if _, ok := st.Instances[0].Targets[orphan]; !ok {
		t.Fatalf("restarted provider: want the slot reported as %s, got %s", orphan, st)
	}
	p2.Know("app", "ns/one", []provider.Target{ta})
	st, err = p2.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if ts, ok := st.Instances[0].Targets["pod-a"]; !ok || ts.Health != provider.HealthDrained || ts.Addr != a.addr {
		t.Fatalf("after Know: pod-a %+v (found %v), want Drained at %s; %s", ts, ok, a.addr, st)
	}

	// Deregister by ID only (as the controller does for a gone pod): the
	// address comes from the book.
	eventually(t, 30*time.Second, func() (bool, string) {
		err := p2.Deregister(ctx, "app", provider.Target{ID: "pod-a"})
		return err == nil, fmt.Sprint(err)
	})
	s, _ := slotOf(t, in, "0.0.0.0:"+fmt.Sprint(a.port))
	if !hapi.SlotFree(s) {
		t.Fatalf("slot after Deregister: %+v, want free (maintenance, address unset)", s)
	}
	if st, _ := p2.Status(ctx, "app"); len(st.Instances[0].Targets) != 1 {
		t.Fatalf("after Deregister want only the anchor, got %s", st)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		n := a.conns.Load()
		return n == 0, fmt.Sprintf("%d connection(s) still open to the old pod", n)
	})

	// The freed slot is reused.
	if err := p2.Register(ctx, "app", bp.target()); err != nil {
		t.Fatal(err)
	}
	if s, ok := slotOf(t, in, bp.addr); !ok || s.Name != hapi.SlotPrefix+"1" {
		t.Fatalf("pod-b not in the freed slot: %+v %v", s, ok)
	}
	eventually(t, 30*time.Second, healthyOn(p2, "pod-b"))
	if run, _ := passesBeforeFirstBalanced(bp.snapshot()); run < testRise {
		t.Fatalf("reused slot: first balanced request after %d passed checks, want >= %d", run, testRise)
	}

	// An orphan (a third provider that never heard of pod-b) is freed by
	// its synthetic ID once drained.
	p3 := newProvider(t, in)
	if err := p3.SetDraining(ctx, "app", provider.Target{ID: orphan}); err != nil {
		t.Fatal(err)
	}
	ld.waitEveryWorker(t, 1)
	eventually(t, 30*time.Second, func() (bool, string) {
		err := p3.Deregister(ctx, "app", provider.Target{ID: orphan})
		return err == nil, fmt.Sprint(err)
	})
	if _, ok := slotOf(t, in, bp.addr); ok {
		t.Fatalf("orphan slot still holds pod-b after Deregister")
	}
	if n := ld.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed through haproxy (last: %v)", n, ld.lastErr.Load())
	}
}

// Scenario: two TargetBindings (owners "ns/one" and "ns/two") share the
// pool app, a backend of two slots, under load; the controller restarts (a
// new Provider) and each owner tells it only its own target. Then owner two
// is forgotten (its binding deleted while the controller was down), so its
// pod's slot turns orphan, is known again for a while, forgotten again,
// drained and freed by its slot ID, and a new target takes the freed slot.
// Expectation: each owner's Know leaves the other's target mapped; the
// forgotten owner's slot is reported as slot:<name>; Deregister of the
// orphan ID does nothing while the address is known again; the orphan is
// drained and freed with no failed request; the freed slot is reused and
// its new target gets no balanced request before rise passed checks.
func TestSlotOwnersSharePoolAndOrphanIsFreed(t *testing.T) {
	in := startSlotHAProxy(t, 2, true)
	ctx := context.Background()
	a, b := startProbe(t, "pod-a"), startProbe(t, "pod-b")
	ta, tb := a.target(), b.target()
	p := newProvider(t, in)
	for _, tg := range []provider.Target{ta, tb} {
		if err := p.Register(ctx, "app", tg); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, healthyOn(p, "pod-a", "pod-b"))
	ld := startLoad(t, in.Addr())

	// Controller restart: each owner knows only its own target.
	p2 := newProvider(t, in)
	p2.Know("app", "ns/one", []provider.Target{ta})
	p2.Know("app", "ns/two", []provider.Target{tb})
	p2.Know("app", "ns/one", []provider.Target{ta}) // a later cycle of one
	eventually(t, 30*time.Second, healthyOn(p2, "pod-a", "pod-b"))

	sb, ok := slotOf(t, in, b.addr)
	if !ok {
		t.Fatalf("pod-b %s holds no slot", b.addr)
	}
	orphan := provider.TargetID(hapi.OrphanPrefix + sb.Name)
	p2.Forget("app", "ns/two")
	st, err := p2.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if ts, ok := st.Instances[0].Targets[orphan]; !ok || ts.Addr != b.addr {
		t.Fatalf("after Forget(ns/two): want %s at %s, got %s", orphan, b.addr, st)
	}
	if _, ok := st.Instances[0].Targets["pod-a"]; !ok {
		t.Fatalf("Forget(ns/two) unmapped owner one's pod-a: %s", st)
	}

	// Known again (a new target with the address): the orphan ID is stale
	// and frees nothing.
	p2.Know("app", "ns/two", []provider.Target{tb})
	if err := p2.Deregister(ctx, "app", provider.Target{ID: orphan}); err != nil {
		t.Fatal(err)
	}
	if s, ok := slotOf(t, in, b.addr); !ok || s.Admin.Maint() || s.Admin.Drain() {
		t.Fatalf("Deregister(%s) after the address became known again changed the slot: %+v (found %v)", orphan, s, ok)
	}

	p2.Forget("app", "ns/two")
	if err := p2.SetDraining(ctx, "app", provider.Target{ID: orphan}); err != nil {
		t.Fatal(err)
	}
	ld.waitEveryWorker(t, 1)
	eventually(t, 30*time.Second, func() (bool, string) {
		err := p2.Deregister(ctx, "app", provider.Target{ID: orphan})
		return err == nil, fmt.Sprint(err)
	})
	if s, ok := slotOf(t, in, "0.0.0.0:"+fmt.Sprint(b.port)); !ok || !hapi.SlotFree(s) || s.Name != sb.Name {
		t.Fatalf("orphan slot %s after Deregister: %+v (found %v), want free", sb.Name, s, ok)
	}
	st, _ = p2.Status(ctx, "app")
	if _, ok := st.Instances[0].Targets[orphan]; ok {
		t.Fatalf("freed orphan still reported: %s", st)
	}
	if ok, _, msg := st.Healthy("pod-a"); !ok {
		t.Fatalf("pod-a after freeing the orphan: %s", msg)
	}

	// The freed slot is the only free one: a new target takes it safely.
	c := startProbe(t, "pod-c")
	p2.Know("app", "ns/two", []provider.Target{c.target()})
	if err := p2.Register(ctx, "app", c.target()); err != nil {
		t.Fatal(err)
	}
	if s, ok := slotOf(t, in, c.addr); !ok || s.Name != sb.Name {
		t.Fatalf("pod-c not in the freed slot %s: %+v %v", sb.Name, s, ok)
	}
	eventually(t, 30*time.Second, healthyOn(p2, "pod-a", "pod-c"))
	if run, _ := passesBeforeFirstBalanced(c.snapshot()); run < testRise {
		t.Fatalf("reused slot: first balanced request after %d passed checks, want >= %d", run, testRise)
	}
	ld.waitEveryWorker(t, 1)
	if n := ld.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed through haproxy (last: %v)", n, ld.lastErr.Load())
	}
}
