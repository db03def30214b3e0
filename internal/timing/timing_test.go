package timing

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// alb returns the ALB model with the given health-check settings.
func alb(interval float64, healthy int, targetsPods bool) LB {
	lb := Defaults(ALB, targetsPods, DefaultAssumptions())
	lb.Interval, lb.HealthyThreshold = interval, healthy
	return lb
}

func TestSeed000SIGKILL(t *testing.T) {
	// Seed 000's "wrong" example: preStop sleep 35, app shutdown 15 s,
	// terminationGracePeriodSeconds 45: 35 + 15 = 50 > 45.
	a := DefaultAssumptions()
	a.Shutdown, a.Buffer = 15, 0
	p := Pod{HasReadinessProbe: true, PreStop: 35, Grace: 45}
	if got := GraceNeeded(p.PreStop, a); got != 50 {
		t.Fatalf("GraceNeeded = %v, want 50", got)
	}
	tl := Termination(p, Defaults(ALB, true, a), a)
	w, ok := tl.Window(CauseSIGKILL)
	if !ok {
		t.Fatalf("no SIGKILL window in %+v", tl.Windows)
	}
	if w.Start != 45 || w.End != 50 || w.Exposure != "in-flight" {
		t.Errorf("SIGKILL window = %+v, want [45,50) in-flight", w)
	}
	// The seed's "right" example: preStop 18, shutdown 20, grace 45 leaves 7 s.
	a.Shutdown = 20
	p.PreStop = 18
	tl = Termination(p, Defaults(ALB, true, a), a)
	if _, ok := tl.Window(CauseSIGKILL); ok {
		t.Errorf("seed 000 right example: unexpected SIGKILL window %+v", tl.Windows)
	}
}

func TestSeed000StartupGap(t *testing.T) {
	// Seed 000 draws the ALB checking the target from T+0 (2 checks 30 s
	// apart, healthy at T+60) while Kubernetes says Ready at T+12: a 48 s gap.
	a := DefaultAssumptions()
	lb := alb(30, 2, true)
	lb.Registration, lb.RegisterAtCreation = 0, true
	p := Pod{HasReadinessProbe: true, ContainersReady: 12, Grace: 30}
	tl := Startup(p, lb, a)
	w, ok := tl.Window(CauseStartupGap)
	if !ok {
		t.Fatalf("no startup gap: %+v", tl)
	}
	if w.Start != 12 || w.End != 60 || w.Seconds() != 48 {
		t.Errorf("gap = %+v (%vs), want [12,60) 48 s", w, w.Seconds())
	}

	// The AWS Load Balancer Controller registers only Ready pods (without a
	// gate), so the real gap is I x H + R - minReadySeconds.
	lb.RegisterAtCreation = false
	w, _ = Startup(p, lb, a).Window(CauseStartupGap)
	if w.Seconds() != 60 {
		t.Errorf("gap with registration at Ready = %v, want 60", w.Seconds())
	}

	// minReadySeconds = I x H + R closes the gap (the seed's on-prem option 2).
	p.MinReadySeconds = MinReadyNeeded(lb)
	if tl := Startup(p, lb, a); len(tl.Windows) != 0 {
		t.Errorf("minReadySeconds %v: windows %+v, want none", p.MinReadySeconds, tl.Windows)
	}
}

func TestGateClosesStartupGap(t *testing.T) {
	// With a working readiness gate the pod is Ready only when the ALB says
	// healthy: no gap, Ready later by the LB's check time.
	a := DefaultAssumptions()
	lb := alb(15, 2, true)
	p := Pod{HasReadinessProbe: true, ContainersReady: 10, Grace: 30, Gated: true}
	tl := Startup(p, lb, a)
	if len(tl.Windows) != 0 {
		t.Fatalf("gated: windows %+v, want none", tl.Windows)
	}
	var ready float64 = -1
	for _, e := range tl.Events {
		if e.Actor == "Pod" && e.State == "Ready" {
			ready = e.At
		}
	}
	// registered at 10 + 3, healthy after 2 x 15: T+43 (seed 003's "after" table).
	if ready != 43 {
		t.Errorf("Ready at %v, want 43", ready)
	}

	// The same gate with instance targets cannot work: the gap is back.
	lb = alb(15, 2, false)
	if lb.GateWorks() {
		t.Fatal("instance targets: GateWorks() = true")
	}
	lb.HealthChecks = true // even if the LB checked, the gate would not apply
	if _, ok := Startup(p, lb, a).Window(CauseStartupGap); !ok {
		t.Error("instance targets with a gate: want a startup gap")
	}
}

func TestSeed001BombardierProgression(t *testing.T) {
	// Seed 001, bombardier through an ALB: readinessProbe only -> 12 5xx;
	// + preStop sleep 40 -> 3 5xx (SIGKILL at the default 30 s grace);
	// + terminationGracePeriodSeconds 50 -> 0.
	a := DefaultAssumptions()
	lb := Defaults(ALB, true, a)
	lb.DeregistrationDelay, lb.DeregistrationDelayDefault = 0, false // keep to the three causes

	stage1 := Termination(Pod{HasReadinessProbe: true, Grace: DefaultGrace}, lb, a)
	w, ok := stage1.Window(CauseEarlyExit)
	if !ok || w.Exposure != "new" || w.Seconds() != lb.Deregistration {
		t.Fatalf("stage 1: early-exit window %+v ok=%v, want %v s of new requests refused", w, ok, lb.Deregistration)
	}

	stage2 := Termination(Pod{HasReadinessProbe: true, PreStop: 40, Grace: DefaultGrace}, lb, a)
	if _, ok := stage2.Window(CauseEarlyExit); ok {
		t.Errorf("stage 2: preStop 40 should hold the app past D: %+v", stage2.Windows)
	}
	w, ok = stage2.Window(CauseSIGKILL)
	if !ok || w.Start != 32 || w.Exposure != "in-flight" {
		t.Errorf("stage 2: SIGKILL window %+v ok=%v, want one from T+32 (grace 30 + 2 s extension)", w, ok)
	}
	for _, w := range stage2.Windows {
		if w.Exposure == "new" {
			t.Errorf("stage 2: only in-flight requests should fail, got %+v", w)
		}
	}

	stage3 := Termination(Pod{HasReadinessProbe: true, PreStop: 40, Grace: 50}, lb, a)
	if len(stage3.Windows) != 0 {
		t.Errorf("stage 3: windows %+v, want none", stage3.Windows)
	}
}

func TestSeed001Ordering(t *testing.T) {
	// Seed 001 orders P (40) < G (50) < ALB timeout (60). With requests that
	// may run as long as the ALB waits (T_req >= 60), a request admitted at
	// D = 3 needs the pod until T+63: the grace period must cover D + T_lb.
	a := DefaultAssumptions()
	a.LongestRequest = 600
	a.Shutdown = 60
	lb := Defaults(ALB, true, a)
	lb.DeregistrationDelay = 0
	if got := RequestBound(a, lb); got != 60 {
		t.Fatalf("RequestBound = %v, want the ALB timeout 60", got)
	}
	tl := Termination(Pod{HasReadinessProbe: true, PreStop: 40, Grace: 50}, lb, a)
	if _, ok := tl.Window(CauseSIGKILL); !ok {
		t.Errorf("shutdown 60 s after preStop 40 exceeds grace 50: want SIGKILL window, got %+v", tl.Windows)
	}
	tl = Termination(Pod{HasReadinessProbe: true, PreStop: 3, Grace: 70}, lb, a)
	if len(tl.Windows) != 0 {
		t.Errorf("preStop 3, grace 70 >= 3 + 60 + ...: want no windows, got %+v", tl.Windows)
	}
}

func TestSeed002GKEDrain(t *testing.T) {
	// Seed 002: drainingTimeoutSec 60, preStop 120, grace 210.
	a := DefaultAssumptions()
	lb := Defaults(GCE, true, a)
	lb.DrainingTimeout = 60
	if got := GKEPreStopNeeded(lb); got != 70 {
		t.Fatalf("GKEPreStopNeeded = %v, want 60 + 10", got)
	}
	if tl := Termination(Pod{HasReadinessProbe: true, PreStop: 120, Grace: 210}, lb, a); len(tl.Windows) != 0 {
		t.Errorf("seed 002 settings: windows %+v, want none", tl.Windows)
	}
	// Scenario 2 of the seed: draining set, no preStop: errors remain.
	tl := Termination(Pod{HasReadinessProbe: true, Grace: 30}, lb, a)
	if w, ok := tl.Window(CauseEarlyExit); !ok || w.Seconds() != 10 {
		t.Errorf("no preStop: early exit %+v, want 10 s (drain latency)", w)
	}
	if w, ok := tl.Window(CauseGKEDraining); !ok || w.Start != 10 || w.End != 70 {
		t.Errorf("no preStop: GKE draining window %+v, want [10,70)", w)
	}
}

func TestSeed003SpringGraceful(t *testing.T) {
	// Seed 003: preStop sleep 5, graceful shutdown 20 s, grace 30, in-cluster.
	a := DefaultAssumptions()
	a.Shutdown = 20
	lb := Defaults(InCluster, true, a)
	if tl := Termination(Pod{HasReadinessProbe: true, PreStop: 5, Grace: 30}, lb, a); len(tl.Windows) != 0 {
		t.Errorf("seed 003 after: windows %+v, want none", tl.Windows)
	}
	// Before: no preStop, Spring exits at once (shutdown immediate).
	a.Shutdown = 0
	tl := Termination(Pod{HasReadinessProbe: true, Grace: 30}, lb, a)
	if w, ok := tl.Window(CauseEarlyExit); !ok || w.Seconds() != a.Propagation {
		t.Errorf("seed 003 before: early exit %+v, want %v s", w, a.Propagation)
	}
}

func TestHAProxyStaticPoolDetectsOnlyByChecks(t *testing.T) {
	// Seed 000 on-prem: HAProxy "inter 3s fall 2" with a static server list.
	// Nothing deregisters the pod; however long the preStop, HAProxy keeps
	// sending until two checks failed after the app stopped listening.
	a := DefaultAssumptions()
	lb := Defaults(HAProxy, true, a)
	lb.Interval, lb.UnhealthyThreshold = 3, 2
	tl := Termination(Pod{HasReadinessProbe: true, PreStop: 20, Grace: 45}, lb, a)
	w, ok := tl.Window(CauseEarlyExit)
	if !ok || w.Start != 20 || w.End != 26 {
		t.Errorf("window %+v, want [20,26)", w)
	}
	lb.FastInterval = 1
	w, _ = Termination(Pod{HasReadinessProbe: true, PreStop: 20, Grace: 45}, lb, a).Window(CauseEarlyExit)
	if w.Seconds() != 2 {
		t.Errorf("fastinter 1s fall 2: window %v s, want 2", w.Seconds())
	}
}

func TestNoReadinessProbeInCluster(t *testing.T) {
	// Seed 001 before the readinessProbe: traffic reaches the container before
	// the server inside listens.
	a := DefaultAssumptions()
	a.Startup = 20
	tl := Startup(Pod{Grace: 30}, Defaults(InCluster, true, a), a)
	w, ok := tl.Window(CauseNoReadinessProbe)
	if !ok || w.Start != 3 || w.End != 20 {
		t.Errorf("window %+v, want [3,20)", w)
	}
	if tl := Startup(Pod{HasReadinessProbe: true, ContainersReady: 20, Grace: 30}, Defaults(InCluster, true, a), a); len(tl.Windows) != 0 {
		t.Errorf("with a probe: windows %+v", tl.Windows)
	}
}

func TestDeregistrationDelayShorterThanRequests(t *testing.T) {
	a := DefaultAssumptions()
	a.LongestRequest, a.Shutdown = 40, 45
	lb := Defaults(ALB, true, a)
	lb.DeregistrationDelay = 25
	tl := Termination(Pod{HasReadinessProbe: true, PreStop: 15, Grace: 90}, lb, a)
	w, ok := tl.Window(CauseDeregistrationDelay)
	// deregistered at 3, closes at 28; a request admitted at 3 runs until 43.
	if !ok || w.Start != 28 || w.End != 43 {
		t.Errorf("window %+v, want [28,43)", w)
	}
	lb.DeregistrationDelay = 60
	if _, ok := Termination(Pod{HasReadinessProbe: true, PreStop: 15, Grace: 90}, lb, a).Window(CauseDeregistrationDelay); ok {
		t.Error("delay 60 covers 40 s requests: want no window")
	}
}

func TestReadinessTime(t *testing.T) {
	cases := []struct {
		name                   string
		startup, delay, period float64
		success                int
		want                   float64
	}{
		{"first probe after the app is up", 5, 10, 3, 1, 10},
		{"app slower than initialDelay", 12, 10, 3, 1, 13},
		{"successThreshold 2", 5, 10, 3, 2, 13},
		{"kubelet defaults", 0, 0, 0, 0, 0},
		{"seed 001: initialDelay 30, period 30", 20, 30, 30, 1, 30},
	}
	for _, c := range cases {
		if got := ReadinessTime(c.startup, c.delay, c.period, c.success); !near(got, c.want) {
			t.Errorf("%s: ReadinessTime = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPreStopLongerThanGrace(t *testing.T) {
	a := DefaultAssumptions()
	tl := Termination(Pod{HasReadinessProbe: true, PreStop: 60, Grace: 30}, Defaults(InCluster, true, a), a)
	var sigterm, kill float64 = -1, -1
	for _, e := range tl.Events {
		if e.Actor == "App" && e.State == "shutting down" {
			sigterm = e.At
		}
		if e.Actor == "App" && e.State == "SIGKILLed" {
			kill = e.At
		}
	}
	if sigterm != 30 || kill != 32 {
		t.Errorf("SIGTERM at %v, SIGKILL at %v; want 30 and 32", sigterm, kill)
	}
}

func TestEventsOrdered(t *testing.T) {
	a := DefaultAssumptions()
	for _, tl := range []Timeline{
		Startup(Pod{HasReadinessProbe: true, ContainersReady: 12, MinReadySeconds: 5, Grace: 30}, alb(15, 2, true), a),
		Termination(Pod{HasReadinessProbe: true, PreStop: 5, Grace: 30}, alb(15, 2, true), a),
	} {
		for i := 1; i < len(tl.Events); i++ {
			if tl.Events[i].At < tl.Events[i-1].At {
				t.Errorf("events out of order: %+v before %+v", tl.Events[i-1], tl.Events[i])
			}
		}
	}
}

func TestSec(t *testing.T) {
	if Sec(12) != "12s" || Sec(7.5) != "7.5s" {
		t.Errorf("Sec: %q %q", Sec(12), Sec(7.5))
	}
}

// Sec writes with strconv what it wrote with fmt before (%.0f for whole
// seconds, else %.1f): timelines, findings and golden files stay the same.
func TestSecWritesWhatFmtWrote(t *testing.T) {
	fmtSec := func(v float64) string {
		if v == math.Trunc(v) {
			return fmt.Sprintf("%.0fs", v)
		}
		return fmt.Sprintf("%.1fs", v)
	}
	vals := []float64{0, math.Copysign(0, -1), 0.05, 0.15, 0.25, 0.95, 1, 2.5, 7.45, 7.55, 9.99, 10, 59.94, 123456789.25, 1e7, 1e21, 1e300,
		-1, -2.5, -0.04, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), math.NaN()}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		vals = append(vals, math.Round(r.Float64()*4000)/4, r.Float64()*1e4, r.NormFloat64()*100, math.Float64frombits(r.Uint64()))
	}
	for _, v := range vals {
		if got, want := Sec(v), fmtSec(v); got != want {
			t.Errorf("Sec(%v) = %q, fmt wrote %q", v, got, want)
		}
	}
}

func TestRolloutOutageSeed000(t *testing.T) {
	// Seed 000 before gates: 3 replicas, Ready at T+10, ALB 30 s x 2. Each
	// step takes 10 s, each new target needs 63 s to be healthy: after the
	// third step the ALB has no healthy target until the first new one is.
	a := DefaultAssumptions()
	lb := alb(30, 2, true)
	p := Pod{HasReadinessProbe: true, ContainersReady: 10, Grace: 45}
	r := SimulateRollout(p, lb, a, 3, 1)
	if r.MinHealthy != 0 || len(r.Outages) != 1 {
		t.Fatalf("rollout = %+v, want one full outage", r)
	}
	// Old targets stop at 10+3, 20+3, 30+3; new ones healthy at 73, 83, 93.
	if o := r.Outages[0]; o.Start != 33 || o.End != 73 {
		t.Errorf("outage %+v, want [33,73)", o)
	}
	// With the gate the pods become available only once healthy: no outage,
	// at the price of a longer rollout (seed 000: +55 s per pod).
	p.Gated = true
	g := SimulateRollout(p, lb, a, 3, 1)
	if g.MinHealthy < 2 || len(g.Outages) != 0 {
		t.Errorf("gated rollout = %+v, want at least 2 healthy targets throughout", g)
	}
	if g.Duration <= r.Duration {
		t.Errorf("gated rollout %vs should take longer than %vs", g.Duration, r.Duration)
	}
	// minReadySeconds that covers I x H + R: never below replicas - 1.
	p.Gated = false
	p.MinReadySeconds = MinReadyNeeded(lb)
	if m := SimulateRollout(p, lb, a, 3, 1); len(m.Outages) != 0 || m.MinHealthy < 2 {
		t.Errorf("minReadySeconds %v: %+v", p.MinReadySeconds, m)
	}
}

func TestRolloutInCluster(t *testing.T) {
	a := DefaultAssumptions()
	r := SimulateRollout(Pod{HasReadinessProbe: true, ContainersReady: 5, Grace: 30}, Defaults(InCluster, true, a), a, 4, 2)
	if len(r.Outages) != 0 || r.MinHealthy < 2 {
		t.Errorf("in-cluster rollout = %+v, want no outage and never fewer than replicas - maxSurge", r)
	}
	if r.Duration != 10 {
		t.Errorf("duration %v, want 2 batches x 5 s", r.Duration)
	}
}

// The bare timelines are the full ones without the events' notes: check
// reads their times, states and windows when it prints no timelines.
func TestBareTimelinesDifferOnlyInNotes(t *testing.T) {
	a := DefaultAssumptions()
	var lbs []LB
	for _, k := range []Kind{InCluster, ALB, NLB, GCE, HAProxy, CloudLB} {
		for _, pods := range []bool{true, false} {
			lb := Defaults(k, pods, a)
			lbs = append(lbs, lb)
			lb.RegisterAtCreation, lb.DrainingTimeout = true, 30
			lbs = append(lbs, lb)
		}
	}
	for _, lb := range lbs {
		for _, p := range []Pod{
			{Grace: 30},
			{HasReadinessProbe: true, ContainersReady: 10, MinReadySeconds: 5, PreStop: 5, Grace: 30},
			{HasReadinessProbe: true, ContainersReady: 3, PreStop: 40, Grace: 30, Gated: true},
			{HasReadinessProbe: true, ContainersReady: 7.5, PreStop: 12.5, Grace: 90},
		} {
			for _, pair := range [][2]Timeline{{Startup(p, lb, a), StartupBare(p, lb, a)}, {Termination(p, lb, a), TerminationBare(p, lb, a)}} {
				full, bare := pair[0], pair[1]
				if len(full.Events) != len(bare.Events) || fmt.Sprint(full.Windows) != fmt.Sprint(bare.Windows) {
					t.Fatalf("%s %+v: bare %+v, full %+v", lb.Kind, p, bare, full)
				}
				for i, e := range full.Events {
					b := bare.Events[i]
					if b.Note != "" || e.Note == "" {
						t.Errorf("%s %+v event %d: full note %q, bare note %q", lb.Kind, p, i, e.Note, b.Note)
					}
					e.Note = ""
					if e != b {
						t.Errorf("%s %+v event %d: bare %+v, full %+v", lb.Kind, p, i, b, e)
					}
				}
			}
		}
	}
}
