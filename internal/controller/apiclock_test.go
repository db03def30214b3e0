package controller

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// stepped returns what time.Now would return at at's monotonic instant
// had the machine's wall clock been stepped by d (whole seconds): the
// monotonic reading is at's, the wall reading d later. Go offers no way to
// build such a value (a real step is what the lab's clock fault does), so
// this writes the wall seconds of time.Time's documented-stable layout
// (wall: hasMonotonic flag, 33 bits of seconds since 1885, 30 bits of
// nanoseconds; ext: monotonic nanoseconds) and checks the result.
func stepped(t *testing.T, at time.Time, d time.Duration) time.Time {
	t.Helper()
	if d%time.Second != 0 {
		t.Fatalf("stepped: %s is not whole seconds", d)
	}
	if at.Round(0) == at {
		t.Fatalf("stepped: %s has no monotonic reading", at)
	}
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	out := at
	l := (*layout)(unsafe.Pointer(&out))
	l.wall = uint64(int64(l.wall) + int64(d/time.Second)<<30)
	if out.Sub(at) != 0 || out.Round(0).Sub(at.Round(0)) != d {
		t.Fatalf("stepped: time.Time's layout changed: monotonic difference %s (want 0), wall difference %s (want %s)",
			out.Sub(at), out.Round(0).Sub(at.Round(0)), d)
	}
	return out
}

// deletedPod is a gated pod whose deletion the API server recorded at
// requested (its clock), with a grace period of grace.
func deletedPod(requested time.Time, grace time.Duration) *corev1.Pod {
	p := gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy})
	p.DeletionTimestamp = ptr.To(metav1.NewTime(requested.Add(grace)))
	p.DeletionGracePeriodSeconds = ptr.To(int64(grace / time.Second))
	return p
}

// Scenario: a pod is deleted; the controller sees it half a second later
// and puts it in drain; its target keeps a session open. Then the
// controller machine's wall clock is stepped (NTP correcting a wrong
// clock, an operator's `date -s`), while only 1 s passes. Expectation: the
// drain is judged by the time that passed, not by the wall clock: a step
// forward by more than drain.timeout (20 s here) does not time the drain
// out (which would release the pod's drain gate while the load balancer
// still sends it requests), and after a step back the drain still times
// out when drain.timeout has really passed.
func TestDrainTimeoutIgnoresWallClockSteps(t *testing.T) {
	b := testBinding(zv1.FailClosed)
	for _, step := range []time.Duration{2 * time.Minute, -2 * time.Minute} {
		seen := time.Now()
		pod := deletedPod(seen.Round(0).Add(-500*time.Millisecond).Truncate(time.Second), 30*time.Second)
		m := map[provider.TargetID]*memo{}
		draining := pool(id, provider.HealthDraining, provider.HealthDraining, 1)
		cycle := func(now time.Time) targetPlan {
			return one(t, planInput{Binding: b, Now: now, Targets: []observedTarget{endpoint(pod, true)}, Pool: draining, Memo: m})
		}
		if p := cycle(seen); p.Drain == nil || p.Drain.Drained {
			t.Fatalf("step %s: first sight of the deletion: drain %+v, want draining", step, p.Drain)
		}
		if p := cycle(stepped(t, seen.Add(time.Second), step)); p.Drain == nil || p.Drain.Drained {
			t.Errorf("step %s: 1 s later by the monotonic clock: drain %+v, want still draining (drain.timeout %s has not passed)",
				step, p.Drain, b.Spec.DrainTimeout())
		}
		if p := cycle(stepped(t, seen.Add(b.Spec.DrainTimeout()), step)); p.Drain == nil || !p.Drain.Drained || p.Drain.Reason != ReasonDrainTimeout {
			t.Errorf("step %s: drain.timeout after the deletion: drain %+v, want %s", step, p.Drain, ReasonDrainTimeout)
		}
	}
}

// Scenario: a new pod is ContainersReady and its gate False (the load
// balancer has not passed it yet); the controller's wall clock is stepped
// forward by more than gate.timeout (1 min here) while 1 s passes.
// Expectation: the gate does not time out (FailOpen would open it without
// the LB's verdict), and it does once gate.timeout has really passed.
func TestGateTimeoutIgnoresWallClockSteps(t *testing.T) {
	b := testBinding(zv1.FailOpen)
	seen := time.Now()
	wall := seen.Round(0).Truncate(time.Second)
	pod := gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "INI", LastTransitionTime: metav1.NewTime(wall)})
	pod.Status.Conditions[0].LastTransitionTime = metav1.NewTime(wall.Add(-time.Second))
	m := map[provider.TargetID]*memo{}
	registering := pool(id, provider.HealthInitial, provider.HealthInitial, 0)
	cycle := func(now time.Time) targetPlan {
		return one(t, planInput{Binding: b, Now: now, Targets: []observedTarget{endpoint(pod, false)}, Pool: registering, Memo: m})
	}
	if p := cycle(seen); p.Gate == nil || p.Gate.Reason != "INI" {
		t.Fatalf("first cycle: gate %+v, want False/INI", p.Gate)
	}
	if p := cycle(stepped(t, seen.Add(time.Second), 10*time.Minute)); p.Gate == nil || p.Gate.Status != corev1.ConditionFalse || p.Stuck {
		t.Errorf("1 s later by the monotonic clock, wall clock stepped 10 min: gate %+v stuck %v, want False/INI", p.Gate, p.Stuck)
	}
	if p := cycle(stepped(t, seen.Add(b.Spec.GateTimeout()), 10*time.Minute)); p.Gate == nil || p.Gate.Reason != ReasonGateTimeoutOpen {
		t.Errorf("gate.timeout later: gate %+v, want %s", p.Gate, ReasonGateTimeoutOpen)
	}
}

// Scenario: the controller runs on a machine whose clock is 5 minutes
// ahead of the API server's (a different machine, not synchronised). A
// pod is deleted; the controller sees it 0.5 s later. Expectation: with
// the offset the API server's responses showed (APIClock's lower bound)
// the drain is judged by the time that passed and times out only after
// drain.timeout; with the offset unknown (0) it would time out at once,
// five minutes "after" the deletion.
func TestDrainTimeoutAllowsForTheAPIServersClockOffset(t *testing.T) {
	b := testBinding(zv1.FailClosed)
	const ahead = 5 * time.Minute
	seen := time.Now()
	requested := seen.Round(0).Add(-ahead - 500*time.Millisecond).Truncate(time.Second)
	draining := pool(id, provider.HealthDraining, provider.HealthDraining, 1)
	for _, c := range []struct {
		name          string
		offset        time.Duration
		wantTimedOut0 bool
	}{
		{"offset measured (lower bound)", -ahead - 300*time.Millisecond, false},
		{"offset unknown", 0, true},
	} {
		pod := deletedPod(requested, 30*time.Second)
		m := map[provider.TargetID]*memo{}
		cycle := func(now time.Time) targetPlan {
			return one(t, planInput{Binding: b, Now: now, APIOffset: c.offset, Targets: []observedTarget{endpoint(pod, true)}, Pool: draining, Memo: m})
		}
		if p := cycle(seen); p.Drain == nil || p.Drain.Drained != c.wantTimedOut0 {
			t.Errorf("%s: first sight of the deletion: drain %+v, want timed out %v", c.name, p.Drain, c.wantTimedOut0)
		}
		if p := cycle(seen.Add(b.Spec.DrainTimeout())); p.Drain == nil || !p.Drain.Drained {
			t.Errorf("%s: drain.timeout later: drain %+v, want timed out", c.name, p.Drain)
		}
	}
}

// skewedAPIServer serves 200 with a Date header read from a clock skew
// off this machine's (as an API server on another machine would).
func skewedAPIServer(t *testing.T, skew *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Date", time.Now().Add(time.Duration(skew.Load())).UTC().Format(http.TimeFormat))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Scenario: the API server's clock is 5 min 300 ms behind this machine's;
// the controller talks to it through APIClock.Wrap. Expectation: the
// bounds hold the true offset and are at most a second and a round trip
// apart; the metric shows their middle. Then the API server's clock is
// stepped 2 minutes forward: the next response contradicts the bounds and
// the estimate starts again around the new offset (one reset).
func TestAPIClockBoundsTheAPIServersOffset(t *testing.T) {
	var skew atomic.Int64
	skew.Store(int64(-5*time.Minute - 300*time.Millisecond))
	srv := skewedAPIServer(t, &skew)
	c := &APIClock{}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "offset"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(g)
	c.Report(g)
	hc := &http.Client{Transport: c.Wrap(http.DefaultTransport)}
	get := func() {
		t.Helper()
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	check := func(when string) {
		t.Helper()
		lo, hi, known := c.Offset()
		want := time.Duration(skew.Load())
		if !known || lo > want || hi < want || hi-lo > 1500*time.Millisecond {
			t.Fatalf("%s: offset in [%s, %s] (known %v), want bounds around %s at most 1.5 s apart", when, lo, hi, known, want)
		}
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
			t.Fatalf("%s: gather the metric: %v (%d families)", when, err, len(mfs))
		}
		if v := mfs[0].GetMetric()[0].GetGauge().GetValue(); v < lo.Seconds() || v > hi.Seconds() {
			t.Errorf("%s: metric %.3f outside the bounds [%s, %s]", when, v, lo, hi)
		}
	}
	if _, _, known := c.Offset(); known {
		t.Fatal("offset known before any response")
	}
	for i := 0; i < 5; i++ {
		get()
		time.Sleep(100 * time.Millisecond)
	}
	check("five responses")
	if n := c.Resets(); n != 0 {
		t.Fatalf("%d resets with a steady clock", n)
	}
	skew.Add(int64(2 * time.Minute))
	get()
	check("after the API server's clock was stepped")
	if n := c.Resets(); n != 1 {
		t.Errorf("%d resets after one step, want 1", n)
	}
}

// Scenario: the local wall clock is stepped 45 s back while a request is
// in flight (sent on the old clock, answered on the new one), then a
// steady response follows. Expectation: the straddling response bounds
// nothing (its bounds would say the API server is 45 s ahead, and no
// drain could time out until the estimate was reset); the estimate stays
// the steady one's.
func TestAPIClockDropsAResponseThatStraddlesAStep(t *testing.T) {
	c := &APIClock{}
	sent := time.Now()
	date := sent.Round(0).Truncate(time.Second)
	c.Sample(date, sent, stepped(t, sent.Add(20*time.Millisecond), -45*time.Second))
	if _, _, known := c.Offset(); known {
		lo, hi, _ := c.Offset()
		t.Fatalf("a response across a step was sampled: offset in [%s, %s]", lo, hi)
	}
	sent = sent.Add(time.Second)
	c.Sample(sent.Round(0).Truncate(time.Second), sent, sent.Add(20*time.Millisecond))
	if lo, hi, known := c.Offset(); !known || lo > 0 || hi < 0 {
		t.Fatalf("steady response: offset in [%s, %s] (known %v), want 0 inside", lo, hi, known)
	}
}

// Scenario: a serve replica (DrainOnly), which answers the drain hooks and
// emits no Event, times a pod's drain out. Expectation: it logs
// DrainTimedOutLog once, on the transition, not every cycle.
func TestDrainOnlyReplicaLogsItsDrainTimeouts(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
	var buf bytes.Buffer
	h.r.DrainOnly = true
	h.r.Log = slog.New(slog.NewJSONHandler(&buf, nil))
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthDraining, 1)
	h.deletePod("web-1")
	h.reconcile()
	if strings.Contains(buf.String(), DrainTimedOutLog) {
		t.Fatalf("logged a drain timeout at once: %s", buf.String())
	}
	h.advance(11 * time.Second) // past drain.timeout (10 s)
	h.reconcile()
	h.reconcile()
	if n := strings.Count(buf.String(), DrainTimedOutLog); n != 1 {
		t.Fatalf("%d drain-timeout lines after drain.timeout over two cycles, want 1:\n%s", n, buf.String())
	}
}

// Scenario: a binding is deleted while its target keeps a session open;
// the controller machine's wall clock is then stepped 2 minutes forward
// while 1 s passes. Expectation: the binding's drain does not end at the
// step (its targets stay on the LB, the finalizer stays): drain.timeout
// (10 s) counts from the deletion by the monotonic clock, and the targets
// are removed once it has really passed.
func TestBindingDeletionIgnoresWallClockSteps(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
	h.now = time.Now()
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 3)
	h.deleteBinding()
	h.reconcile()
	start := h.now
	h.now = stepped(t, start.Add(time.Second), 2*time.Minute)
	h.reconcile()
	if got := h.w.callsOf("deregister"); len(got) != 0 {
		t.Fatalf("deregistered 1 s after the deletion (wall clock stepped 2 min) with sessions open: %v", got)
	}
	h.now = stepped(t, start.Add(11*time.Second), 2*time.Minute)
	h.reconcile()
	if got := h.w.callsOf("deregister"); len(got) == 0 {
		t.Fatalf("not deregistered after drain.timeout (10 s)")
	}
}
