package controller

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/provider"
)

// setDown makes an instance unreadable (and unwritable), or reachable again.
func (w *world) setDown(instance string, down bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.down[instance] = down
}

// drainEndpoint serves the drain endpoint over the harness's client and
// drain verdicts, as a preStop hook or the graceful package reaches it.
func (h *harness) drainEndpoint() *httptest.Server {
	mux := http.NewServeMux()
	(&drain.Handler{Reader: h.c, Drains: h.r.Drains}).Register(mux)
	srv := httptest.NewServer(mux)
	h.t.Cleanup(srv.Close)
	return srv
}

// hookAnswer is one drain endpoint request for a pod of the harness, and
// how long the endpoint held it.
type hookAnswer struct {
	code int
	held time.Duration
	err  error
}

func askDrain(srv *httptest.Server, pod string, wait time.Duration) hookAnswer {
	start := time.Now()
	resp, err := http.Get(fmt.Sprintf("%s/drain/v1/namespaces/%s/pods/%s?wait=%s", srv.URL, hNS, pod, wait))
	if err != nil {
		return hookAnswer{err: err}
	}
	resp.Body.Close()
	return hookAnswer{code: resp.StatusCode, held: time.Since(start)}
}

// Scenario (review C1 at the reconciler): web-1 is Ready on lb-a and lb-b
// with a session on each; then neither instance can be read (both
// reloading at once, the admin port cut) and web-1 is deleted. The cycles
// go on at the pending interval, in the leader and in a serve replica
// (drain-only). Expectation: for every cycle the drain verdict is Draining
// and says the load balancer cannot be read, and the drain endpoint holds
// the preStop hook's request for its whole wait and answers 503, not
// drained. Then either
//   - the instances answer again: web-1 is put in drain on both, reported
//     Drained as soon as its sessions have ended, and a held request is
//     answered 200 at that moment, before drain.timeout; or
//   - they stay unreadable: the verdict turns DrainTimeout (Warning Event
//     from the leader) at drain.timeout (10 s) since the deletion request,
//     and not one cycle sooner.
//
// No provider call is made while nothing can be read: Reconcile returns
// before plan (whose "no instance read" case would send a blind drain; see
// TestPlanDrainNeedsEveryInstanceRead).
func TestNoInstanceReadHoldsTheDrain(t *testing.T) {
	const cycle = 250 * time.Millisecond
	for _, drainOnly := range []bool{false, true} {
		for _, back := range []bool{true, false} {
			t.Run(fmt.Sprintf("drainOnly=%v/instances back=%v", drainOnly, back), func(t *testing.T) {
				h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
				h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 1)
				h.reconcile()
				h.r.DrainOnly = drainOnly
				srv := h.drainEndpoint()

				h.w.setDown(keyA, true)
				h.w.setDown(keyB, true)
				h.deletePod("web-1")
				deleted := h.now
				h.eventsSeen()
				callsBefore := len(h.w.calls)

				// 6 s of cycles (24), with the preStop hook's request held
				// across the first 1.5 s of them.
				held := make(chan hookAnswer, 1)
				go func() { held <- askDrain(srv, "web-1", 1500*time.Millisecond) }()
				for h.now.Before(deleted.Add(6 * time.Second)) {
					if res := h.reconcile(); res.RequeueAfter > cycle {
						t.Fatalf("nothing read: requeue after %s, want the pending interval", res.RequeueAfter)
					}
					v, ok := h.verdict("web-1")
					if !ok || v.Drained || v.Reason != ReasonDraining || !strings.Contains(v.Message, "cannot be read") {
						t.Fatalf("%s after the deletion, no instance readable: verdict %+v (known %v), want Draining because the load balancer cannot be read",
							h.now.Sub(deleted), v, ok)
					}
					h.advance(cycle)
					time.Sleep(80 * time.Millisecond) // real time for the held request
				}
				if a := <-held; a.err != nil || a.code != http.StatusServiceUnavailable || a.held < 1400*time.Millisecond {
					t.Fatalf("preStop hook's request (wait=1.5s) while no instance can be read: %d after %s (%v), want 503 after holding the whole wait",
						a.code, a.held, a.err)
				}
				if a := askDrain(srv, "web-1", 0); a.code != http.StatusServiceUnavailable {
					t.Fatalf("drain endpoint while no instance can be read: %d, want 503", a.code)
				}
				if n := len(h.w.calls); n != callsBefore {
					t.Fatalf("provider calls while no instance can be read: %v", h.w.calls[callsBefore:])
				}

				if !back {
					for h.now.Before(deleted.Add(10 * time.Second)) {
						h.reconcile()
						if v, _ := h.verdict("web-1"); v.Drained {
							t.Fatalf("%s after the deletion (drain.timeout 10 s), no instance readable: verdict %+v, want not drained yet", h.now.Sub(deleted), v)
						}
						h.advance(cycle)
					}
					h.reconcile()
					if v, _ := h.verdict("web-1"); !v.Drained || v.Reason != ReasonDrainTimeout {
						t.Fatalf("drain.timeout passed, no instance readable: verdict %+v, want drained by %s", v, ReasonDrainTimeout)
					}
					if a := askDrain(srv, "web-1", 0); a.code != http.StatusOK {
						t.Fatalf("drain endpoint after drain.timeout: %d, want 200", a.code)
					}
					if evs := h.eventsSeen(); !drainOnly && !hasEvent(evs, "Warning", ReasonDrainTimeout, "no instance could be read") {
						t.Fatalf("no Warning %s Event naming the unreadable load balancer; events: %v", ReasonDrainTimeout, evs)
					}
					return
				}

				h.w.setDown(keyA, false)
				h.w.setDown(keyB, false)
				answered := make(chan hookAnswer, 1)
				go func() { answered <- askDrain(srv, "web-1", 8*time.Second) }()
				time.Sleep(100 * time.Millisecond)
				h.reconcile()
				for _, in := range []string{keyA, keyB} {
					if s := h.w.get(in, hPool, hid("web-1")); s == nil || s.health != provider.HealthDraining {
						t.Fatalf("instances readable again: web-1 on %s is %+v, want put in drain", in, s)
					}
				}
				if v, _ := h.verdict("web-1"); v.Drained {
					t.Fatalf("instances readable again, a session left: verdict %+v, want not drained", v)
				}
				h.w.setSessions(hPool, hid("web-1"), 0)
				h.advance(cycle)
				h.reconcile()
				if v, _ := h.verdict("web-1"); !v.Drained || v.Reason != ReasonDrained {
					t.Fatalf("sessions ended, %s after the deletion: verdict %+v, want %s (drain.timeout is 10 s)", h.now.Sub(deleted), v, ReasonDrained)
				}
				select {
				case a := <-answered:
					if a.err != nil || a.code != http.StatusOK {
						t.Fatalf("held request once drained: %d (%v), want 200", a.code, a.err)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("held request not answered once the pod was drained")
				}
				// A verdict once given stays: the instances failing again
				// take nothing back from a pod already let go.
				h.w.setDown(keyA, true)
				h.w.setDown(keyB, true)
				for i := 0; i < 8; i++ {
					h.advance(cycle)
					h.reconcile()
					if v, _ := h.verdict("web-1"); !v.Drained || v.Reason != ReasonDrained {
						t.Fatalf("drained, then no instance readable again: verdict %+v, want it kept %s", v, ReasonDrained)
					}
				}
			})
		}
	}
}
