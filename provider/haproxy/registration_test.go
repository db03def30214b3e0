package haproxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// Scenario: a pod's app listens but is not ready (its health endpoint says
// 503), then becomes ready. It is registered through the provider while
// load runs through HAProxy. Expectation: not one balanced request reaches
// it while it is not ready, and the first one arrives only after `rise`
// passed checks in a row.
func TestRegisterSendsNoBalancedRequestBeforeRiseChecksPassed(t *testing.T) {
	in, _ := startHAProxy(t)
	p := newProvider(t, in)
	ctx := context.Background()
	ld := startLoad(t, in.Addr())
	target := startProbe(t, "pod-a")
	target.readyStatus.Store(503)

	if err := p.Register(ctx, "app", target.target()); err != nil {
		t.Fatal(err)
	}
	// Not ready: wait for several failed checks under load.
	eventually(t, 30*time.Second, func() (bool, string) {
		checks, _ := target.counts()
		return checks >= 2*testRise, fmt.Sprintf("%d checks so far", checks)
	})
	ld.waitEveryWorker(t, 20)
	if _, balanced := target.counts(); balanced != 0 {
		t.Fatalf("a not-ready target got %d balanced requests", balanced)
	}
	ts, ok := targetOn(t, p, "pod-a")
	if !ok || ts.Health != provider.HealthUnhealthy || ts.Reason != "L7STS" {
		t.Fatalf("status of a target answering 503: %+v (found %v), want Unhealthy/L7STS", ts, ok)
	}

	// Ready: HAProxy puts it in rotation by itself after rise checks.
	target.readyStatus.Store(200)
	eventually(t, 30*time.Second, func() (bool, string) {
		st, err := p.Status(ctx, "app")
		if err != nil {
			return false, err.Error()
		}
		ok, reason, msg := st.Healthy("pod-a")
		return ok, reason + ": " + msg
	})
	eventually(t, 30*time.Second, func() (bool, string) {
		_, balanced := target.counts()
		return balanced > 0, "no balanced request yet"
	})
	run, _ := passesBeforeFirstBalanced(target.snapshot())
	if run < testRise {
		t.Fatalf("first balanced request arrived after %d passed checks in a row, want >= rise (%d); events %+v", run, testRise, target.snapshot())
	}
	if n := ld.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed through haproxy (last: %v)", n, ld.lastErr.Load())
	}
}

// Scenario: two pods whose apps listen but hang on their health endpoint
// (not ready), registered at the same moment under load, one the naive way
// (add, enable health, state ready: what most scripts and ingress
// controllers do, and the lab's baseline syncer), one with Register.
// Expectation: HAProxy balances requests to the naive one before any check
// passed; the safe one gets none.
func TestNaiveRegistrationGetsRequestsBeforeAnyCheckPassed(t *testing.T) {
	in, _ := startHAProxy(t)
	p := newProvider(t, in)
	ctx := context.Background()
	ld := startLoad(t, in.Addr())
	naive := startProbe(t, "pod-naive")
	naive.hangReady.Store(true)
	safe := startProbe(t, "pod-safe")
	safe.hangReady.Store(true)

	if err := p.Register(ctx, "app", safe.target()); err != nil {
		t.Fatal(err)
	}
	opts := hapi.ServerOptions{Check: true, Inter: testInter, Rise: testRise, Fall: testFall}
	if err := hapi.RegisterNaively(ctx, in.Client(), "app", "pod-naive", naive.addr, opts); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if h := st.Instances[0].Targets["pod-naive"].Health; h != provider.HealthHealthy {
		t.Errorf("naive registration: HAProxy reports %s right away, want Healthy (UP before any check)", h)
	}
	if h := st.Instances[0].Targets["pod-safe"].Health; h == provider.HealthHealthy {
		t.Errorf("safe registration: HAProxy reports Healthy before any check")
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		_, balanced := naive.counts()
		return balanced > 0, "the naive target got no balanced request yet"
	})
	ld.waitEveryWorker(t, 20)
	checks, balanced := naive.counts()
	if checks != 0 {
		t.Fatalf("%d checks completed on a hanging health endpoint", checks)
	}
	t.Logf("naive order: %d balanced requests reached a target whose health checks never passed", balanced)
	if _, b := safe.counts(); b != 0 {
		t.Fatalf("safe order: %d balanced requests reached a target whose health checks never passed", b)
	}
}

// Scenario: a healthy target with one long request in flight is set to
// drain under load. Expectation: HAProxy picks it for no request after
// SetDraining returned (lbtot frozen, the app sees nothing new), keeps
// checking it, reports it Draining with the open session, Drained once the
// request ends, and Deregister then removes it; no request fails.
func TestDrainStopsNewRequestsAndWaitsForSessions(t *testing.T) {
	in, anchor := startHAProxy(t)
	anchor.release() // the anchor answers /slow at once
	p := newProvider(t, in)
	ctx := context.Background()
	target := startProbe(t, "pod-a")
	tg := target.target()
	if err := p.Register(ctx, "app", tg); err != nil {
		t.Fatal(err)
	}
	ld := startLoad(t, in.Addr())
	eventually(t, 30*time.Second, func() (bool, string) {
		_, balanced := target.counts()
		return balanced > 0, "target in rotation gets no request"
	})

	// Pin one long request on the target: round robin alternates, so a
	// few tries land one there.
	slowc := &http.Client{Timeout: time.Minute}
	slowDone := make(chan error, 100)
	for i := 0; target.slowActive.Load() == 0; i++ {
		if i == 50 {
			t.Fatal("no /slow request landed on the target in 50 tries")
		}
		go func() {
			resp, err := slowc.Get("http://" + in.Addr() + "/slow")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			slowDone <- err
		}()
		select {
		case err := <-slowDone: // landed on the anchor
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(200 * time.Millisecond):
		}
	}

	if err := p.SetDraining(ctx, "app", tg); err != nil {
		t.Fatal(err)
	}
	before, _ := targetOn(t, p, "pod-a")
	ld.waitEveryWorker(t, 1) // requests dispatched before the drain have landed
	_, balancedBefore := target.counts()
	checksBefore, _ := target.counts()
	ld.waitEveryWorker(t, 50)
	after, _ := targetOn(t, p, "pod-a")
	checksAfter, balancedAfter := target.counts()
	if after.Selected != before.Selected {
		t.Errorf("HAProxy picked the draining target %d more times after SetDraining returned", after.Selected-before.Selected)
	}
	if balancedAfter != balancedBefore {
		t.Errorf("the draining target received %d new requests", balancedAfter-balancedBefore)
	}
	if after.Health != provider.HealthDraining || after.Sessions < 1 {
		t.Errorf("with a request in flight: %+v, want Draining with >= 1 session", after)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		c, _ := target.counts()
		return c > checksAfter, "no health check since the drain"
	})
	_ = checksBefore

	if err := p.Deregister(ctx, "app", tg); !errors.Is(err, provider.ErrTargetBusy) {
		t.Errorf("Deregister with a request in flight: %v, want ErrTargetBusy", err)
	}
	target.release()
	if err := <-slowDone; err != nil {
		t.Fatalf("the long request on the draining target failed: %v", err)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		st, err := p.Status(ctx, "app")
		if err != nil {
			return false, err.Error()
		}
		ok, sessions := st.Drained("pod-a")
		return ok, fmt.Sprintf("%d sessions: %s", sessions, st)
	})
	attempts := 0
	eventually(t, 30*time.Second, func() (bool, string) {
		attempts++
		err := p.Deregister(ctx, "app", tg)
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("Deregister succeeded at attempt %d once drained", attempts)
	if _, found := targetOn(t, p, "pod-a"); found {
		t.Fatal("target still in the pool after Deregister")
	}
	if n := ld.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed through haproxy (last: %v)", n, ld.lastErr.Load())
	}
}

// Scenario: an active/standby pair; one instance reloads (new worker, the
// configuration file knows nothing of runtime servers). Expectation: Status
// reports that instance restarted and the target missing there, so the
// target is not healthy on the load balancer; Register repairs it on that
// instance and leaves the healthy instance alone.
func TestReloadLosesTargetsAndRegisterRepairs(t *testing.T) {
	a, _ := startHAProxy(t)
	b, _ := startHAProxy(t)
	p := newProvider(t, a, b)
	ctx := context.Background()
	target := startProbe(t, "pod-a")
	tg := target.target()
	if err := p.Register(ctx, "app", tg); err != nil {
		t.Fatal(err)
	}
	healthy := func() (bool, string) {
		st, err := p.Status(ctx, "app")
		if err != nil {
			return false, err.Error()
		}
		ok, reason, msg := st.Healthy("pod-a")
		return ok, reason + ": " + msg
	}
	eventually(t, 30*time.Second, healthy)
	before, err := p.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}

	if err := a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if st.Instances[0].Epoch == before.Instances[0].Epoch || st.Instances[1].Epoch != before.Instances[1].Epoch {
		t.Fatalf("epochs %s, %s -> %s, %s: want only haproxy-0's to change", before.Instances[0].Epoch, before.Instances[1].Epoch, st.Instances[0].Epoch, st.Instances[1].Epoch)
	}
	if _, found := st.Instances[0].Targets["pod-a"]; found {
		t.Fatal("target survived the reload of haproxy-0")
	}
	if ok, reason, _ := st.Healthy("pod-a"); ok || reason != "NotRegistered" {
		t.Fatalf("Healthy after reload: %v %s, want false NotRegistered", ok, reason)
	}
	if h := st.Instances[1].Targets["pod-a"].Health; h != provider.HealthHealthy {
		t.Fatalf("haproxy-1 (not reloaded): %s, want Healthy", h)
	}

	if err := p.Register(ctx, "app", tg); err != nil {
		t.Fatal(err)
	}
	st, err = p.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if h := st.Instances[1].Targets["pod-a"].Health; h != provider.HealthHealthy {
		t.Fatalf("re-registering touched the healthy instance: %s", h)
	}
	if h := st.Instances[0].Targets["pod-a"].Health; h == provider.HealthHealthy {
		t.Fatalf("re-registered target Healthy on haproxy-0 before any check")
	}
	eventually(t, 30*time.Second, healthy)
}
