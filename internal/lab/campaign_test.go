package lab

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/verify"
)

// A rollout's record counts each stream apart, and for a fault that stops
// the victim instance the failures sent through that instance while it
// was down are the outage, not a broken promise; a POST failure through
// the live instance is.
func TestRolloutRecordCountsStreamsAndJudgesThePromise(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	var r recorder
	add := func(s float64, stream string, instance int, c verify.Class) {
		r.add(verify.Result{Scheduled: at(s), Class: c}, stream, instance, "127.0.0.1:8080")
	}
	for i := range 100 {
		add(float64(i)*0.1, StreamMain, i%2, verify.ClassOK)
	}
	add(2.0, StreamMain, 1, verify.ClassRefused) // victim (1) down from 1.5 s to 4 s
	add(3.0, StreamPost, 1, verify.ClassRefused)
	add(3.5, StreamPost, 0, verify.ClassOK)
	methods := map[string]string{StreamMain: "GET", StreamPost: "POST"}
	rig := &lbRig{victim: 1}

	rec := RolloutRecord{Rollout: 1, Fault: FaultLBDown, StuckGates: []string{}, Leftovers: []string{}}
	down := []Window{{From: 1500 * time.Millisecond, To: 4 * time.Second}}
	rec.recount(&r, at(0), time.Time{}, methods, rig, down)
	if rec.Requests != 103 || rec.Failed != 2 || rec.FailedVictimDown != 2 {
		t.Fatalf("record %+v: want 103 requests, 2 failed, both through the stopped victim", rec)
	}
	if len(rec.Streams) != 2 || rec.Streams[1].Name != StreamPost || rec.Streams[1].Requests != 2 || rec.Streams[1].Failed != 1 || rec.Streams[1].FailuresByClass["refused"] != 1 {
		t.Fatalf("streams %+v: want main, then post with 2 requests and 1 refused", rec.Streams)
	}
	if rec.Promise != "kept" {
		t.Fatalf("promise %q, want kept (the failures are the stopped instance's own)", rec.Promise)
	}

	add(5.0, StreamPost, 0, verify.ClassEOF) // through the live instance, after the outage
	rec.recount(&r, at(0), time.Time{}, methods, rig, down)
	if !strings.HasPrefix(rec.Promise, "broken: 1 failed requests") {
		t.Fatalf("promise %q, want broken by the failure through the live instance", rec.Promise)
	}

	// Under partition the victim still serves: its failures count.
	part := RolloutRecord{Rollout: 2, Fault: FaultPartition, GatesOpenedBlind: 1}
	part.recount(&r, at(0), at(4), methods, rig, down)
	if part.FailedVictimDown != 0 || !strings.Contains(part.Promise, "2 failed requests") || !strings.Contains(part.Promise, "1 gates opened") {
		t.Fatalf("partition record %+v", part)
	}

	res := Result{Scenario: "zerodrop", PerRollout: []RolloutRecord{rec, part}}
	sum := res.SummaryByFault()
	if len(sum) != 2 || sum[0].Fault != FaultLBDown || sum[0].FailedPost != 2 || sum[0].Broken != 1 || sum[1].Fault != FaultPartition {
		t.Fatalf("summary %+v", sum)
	}
	var b strings.Builder
	PrintCampaign(&b, res)
	if !strings.Contains(b.String(), "lbdown") || !strings.Contains(b.String(), "rollout 2 (partition): broken") {
		t.Fatalf("campaign table:\n%s", b.String())
	}
}

// Scenario: rollouts under the clock fault. Expectation: a rollout whose
// drains all waited for the load balancer keeps the promise, also when an
// HAProxy instance missed the step (it answered 504 at its instant) and
// closed POSTs' connections during the fault (its own clock jump, counted
// apart); one where the controller released a drain gate by drain.timeout
// breaks it, and so does any other failure: a 502 at the step (a pod that
// exited), an eof through the instance that did not miss the step, a 504
// after the step back.
func TestClockRolloutIsJudgedByItsDrainTimeouts(t *testing.T) {
	t0 := time.Now()
	stepAt, backAt := 5*time.Second, 15*time.Second
	methods := map[string]string{StreamMain: "GET", StreamPost: "POST"}
	record := func(r *recorder, drainTimeouts int) RolloutRecord {
		rec := RolloutRecord{Rollout: 1, Fault: FaultClock, StuckGates: []string{}, Leftovers: []string{},
			FaultEvent: &FaultEvent{Kind: FaultClock, Cluster: &ClusterFaultReport{ClockStep: ClockStep, StepAt: stepAt, StepBackAt: backAt, DrainTimeouts: drainTimeouts}}}
		rec.recount(r, t0, time.Time{}, methods, nil, nil)
		return rec
	}
	fail := func(r *recorder, ended time.Duration, stream string, instance int, c verify.Class) {
		r.add(verify.Result{Scheduled: t0.Add(ended - time.Second), Latency: time.Second, Class: c}, stream, instance, "127.0.0.1:8080")
	}
	atStep := func() *recorder {
		var r recorder
		r.add(verify.Result{Scheduled: t0, Class: verify.ClassOK}, StreamMain, 0, "127.0.0.1:8080")
		fail(&r, stepAt+10*time.Millisecond, StreamMain, 1, verify.Class504)
		fail(&r, stepAt+120*time.Millisecond, StreamPost, 1, verify.ClassEOF)
		fail(&r, stepAt+3*time.Second, StreamPost, 1, verify.ClassEOF)
		return &r
	}
	r := atStep()
	if rec := record(r, 0); rec.Promise != "kept" || rec.FailedClockJump != 3 {
		t.Errorf("only HAProxy's failures through the instance that missed the step: promise %q, %d counted apart; want kept, 3", rec.Promise, rec.FailedClockJump)
	}
	if rec := record(r, 2); !strings.Contains(rec.Promise, "broken") || !strings.Contains(rec.Promise, "2 drain gates released by drain.timeout") {
		t.Errorf("two drains released by their timeout: promise %q, want broken, saying so", rec.Promise)
	}
	for _, c := range []struct {
		ended    time.Duration
		instance int
		class    verify.Class
	}{
		{stepAt + 100*time.Millisecond, 1, verify.Class502},
		{stepAt + 100*time.Millisecond, 0, verify.ClassEOF},
		{backAt + 2*time.Second, 1, verify.Class504},
		{stepAt - 100*time.Millisecond, 1, verify.ClassEOF},
	} {
		r := atStep()
		fail(r, c.ended, StreamMain, c.instance, c.class)
		if rec := record(r, 0); !strings.Contains(rec.Promise, "broken: 1 failed requests") {
			t.Errorf("a %s through instance %d ending %s after the step: promise %q, want broken by it", c.class, c.instance, c.ended-stepAt, rec.Promise)
		}
	}
}

// The admin proxy passes the Runtime API's bytes through, delays the
// answers in delay mode, and in blackhole mode lets nothing through either
// way while the connection stays open (a partition, not a refusal).
func TestAdminProxyPassesDelaysAndBlackholes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					c.Write([]byte("echo " + s.Text() + "\n"))
				}
			}()
		}
	}()
	p, err := startAdminProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ask := func(line string, wait time.Duration) (string, time.Duration, error) {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			return "", 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(wait))
		start := time.Now()
		c.Write([]byte(line + "\n"))
		got, err := bufio.NewReader(c).ReadString('\n')
		return got, time.Since(start), err
	}
	if got, _, err := ask("show info", time.Second); err != nil || got != "echo show info\n" {
		t.Fatalf("pass: %q, %v", got, err)
	}
	p.set(proxyDelay, 300*time.Millisecond)
	if got, took, err := ask("show stat", 2*time.Second); err != nil || got != "echo show stat\n" || took < 300*time.Millisecond {
		t.Fatalf("delay: %q after %s, %v; want the answer 300 ms late", got, took, err)
	}
	p.set(proxyBlackhole, 0)
	if got, _, err := ask("show servers state", 500*time.Millisecond); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("blackhole: %q, %v; want a timeout", got, err)
	}
	p.set(proxyPass, 0)
	if got, _, err := ask("show info", time.Second); err != nil || got != "echo show info\n" {
		t.Fatalf("healed: %q, %v", got, err)
	}
}

func TestParseFaultKnowsTheLBFaults(t *testing.T) {
	for _, f := range append(append([]Fault(nil), LBFaults...), FaultClock) {
		got, err := ParseFault(string(f))
		if err != nil || got != f {
			t.Errorf("ParseFault(%q) = %q, %v", f, got, err)
		}
		if _, ok := f.Promise(); !ok {
			t.Errorf("fault %s has no promise", f)
		}
	}
}

// docs/faults.md's table says what the code promises: each LB fault's row
// holds its promise and its reason as lab.LBFaultPromises states them.
func TestFaultDocsStateThePromises(t *testing.T) {
	raw, err := os.ReadFile("../../docs/faults.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "| `"); ok {
			name, _, _ := strings.Cut(rest, "`")
			if _, seen := rows[name]; !seen { // the promise table comes first
				rows[name] = line
			}
		}
	}
	for _, p := range LBFaultPromises {
		row, ok := rows[string(p.Fault)]
		if !ok {
			t.Errorf("docs/faults.md has no row for %s", p.Fault)
			continue
		}
		if !strings.Contains(row, "| "+p.Promise+" |") || !strings.Contains(row, "| "+p.Why+" |") {
			t.Errorf("docs/faults.md's row for %s does not state\n  promise: %s\n  why: %s\nrow: %s", p.Fault, p.Promise, p.Why, row)
		}
	}
	// The cluster faults' table has no "why" column: their section says it.
	for _, p := range ClusterFaultPromises {
		row, ok := rows[string(p.Fault)]
		if !ok {
			t.Errorf("docs/faults.md has no row for %s", p.Fault)
			continue
		}
		if !strings.Contains(row, "| "+p.Promise+" |") {
			t.Errorf("docs/faults.md's row for %s does not state\n  promise: %s\nrow: %s", p.Fault, p.Promise, row)
		}
		if !strings.Contains(string(raw), p.Why) {
			t.Errorf("docs/faults.md does not say why %s keeps its promise: %s", p.Fault, p.Why)
		}
	}
}

// Scenario: a campaign of 7 rollouts cycling through none, reload, lbdown
// and partition (partition never reached). Expectation: a row per fault of
// the cycle in its order, the unreached one with no rollout; each row sums
// its rollouts, splits the failures by method and by instance (through the
// stopped victim or live), counts the promises kept and broken, and takes
// the median and the longest rollout.
func TestSummaryByFaultSumsEveryFaultOfTheCycle(t *testing.T) {
	streams := func(get, post uint64) []StreamCount {
		return []StreamCount{
			{Name: StreamMain, Method: "GET", Requests: 1000, Failed: get},
			{Name: StreamSlow, Method: "GET", Requests: 20},
			{Name: StreamPost, Method: "POST", Requests: 100, Failed: post},
		}
	}
	down := []Window{{From: time.Second, To: 9 * time.Second}}
	res := Result{
		Scenario:   "zerodrop",
		FaultCycle: []Fault{FaultNone, FaultReload, FaultLBDown, FaultPartition},
		PerRollout: []RolloutRecord{
			{Rollout: 1, Seconds: 20, Requests: 1120, Streams: streams(0, 0)},
			{Rollout: 2, Fault: FaultReload, Seconds: 30, Requests: 1120, Failed: 2, Streams: streams(0, 2)},
			{Rollout: 3, Fault: FaultLBDown, Seconds: 40, Requests: 1120, Failed: 50, FailedVictimDown: 50, VictimDown: down,
				Streams: streams(45, 5), Promise: "kept"},
			{Rollout: 4, Seconds: 24, Requests: 1120, Streams: streams(0, 0)},
			{Rollout: 5, Fault: FaultReload, Seconds: 45, Requests: 1120, StuckGates: []string{"web-1 (gate not True)"}, Streams: streams(0, 0)},
			{Rollout: 6, Fault: FaultLBDown, Seconds: 41, Requests: 1120, Failed: 53, FailedVictimDown: 50, VictimDown: down, GatesOpenedBlind: 1,
				Leftovers: []string{"haproxy-1/web1 10.0.0.9"}, Streams: streams(50, 3), Promise: "broken: 3 failed requests"},
			{Rollout: 7, Fault: FaultReload, Seconds: 32, Requests: 1120, Streams: streams(0, 0)},
		},
	}
	sum := res.SummaryByFault()
	var got []string
	for _, s := range sum {
		got = append(got, FaultName(s.Fault))
	}
	if strings.Join(got, " ") != "none reload lbdown partition" {
		t.Fatalf("rows %v, want the cycle's order: none reload lbdown partition", got)
	}
	none, reload, lbdown, partition := sum[0], sum[1], sum[2], sum[3]
	if none.Rollouts != 2 || fmt.Sprint(none.RolloutNumbers) != "[1 4]" || none.Requests != 2240 || none.Failed != 0 ||
		none.MedianRolloutSec != 22 || none.MaxRolloutSec != 24 || none.Judged() {
		t.Errorf("none: %+v; want rollouts 1 and 4, 2240 requests, median 22 s (of 20 and 24), max 24 s, no promise judged", none)
	}
	if reload.Rollouts != 3 || reload.Failed != 2 || reload.FailedPost != 2 || reload.FailedGet != 0 || reload.FailedLive != 2 ||
		reload.VictimStopped || reload.Stuck != 1 || reload.MedianRolloutSec != 32 || reload.MaxRolloutSec != 45 {
		t.Errorf("reload: %+v; want 2 failed POSTs through live instances, 1 stuck, median 32 s (of 30, 45, 32), max 45 s", reload)
	}
	if lbdown.Failed != 103 || lbdown.FailedGet != 95 || lbdown.FailedPost != 8 || lbdown.FailedVictimDown != 100 || lbdown.FailedLive != 3 ||
		!lbdown.VictimStopped || lbdown.GatesOpenedBlind != 1 || lbdown.Leftovers != 1 || lbdown.Kept != 1 || lbdown.Broken != 1 ||
		!lbdown.Judged() || lbdown.PromiseKept() || lbdown.MedianRolloutSec != 40.5 {
		t.Errorf("lbdown: %+v; want 103 failed (95 GET, 8 POST; 100 through the stopped victim, 3 live), 1 blind gate, 1 left over, promise kept 1 of 2", lbdown)
	}
	if partition.Rollouts != 0 || len(partition.RolloutNumbers) != 0 || partition.Requests != 0 {
		t.Errorf("partition: %+v; want a row without rollouts (not reached)", partition)
	}

	var b strings.Builder
	PrintCampaign(&b, res)
	for _, want := range []string{"not reached (the campaign ended first): partition", "rollout 6 (lbdown): broken: 3 failed requests"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("campaign text lacks %q:\n%s", want, b.String())
		}
	}
}

// Scenario: once a rollout has settled, a pod that carries the gate is
// stuck while its gate is not True; a pod the webhook could not gate
// (admitted without the gate, reported as ungated) is stuck only while it
// is not Ready. The campaign's webhook rollouts listed every ungated pod
// as stuck before.
func TestSettledPodIsStuckByItsOwnGate(t *testing.T) {
	gate := corev1.PodConditionType(zv1.GateConditionType(BindingName))
	pod := func(gated bool, conds ...corev1.PodConditionType) *corev1.Pod {
		p := &corev1.Pod{}
		if gated {
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: gate}}
		}
		for _, c := range conds {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue})
		}
		return p
	}
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"gated, gate True", pod(true, gate, corev1.PodReady), ""},
		{"gated, gate not True though Ready", pod(true, corev1.PodReady), "gate not True"},
		{"gated, nothing True", pod(true), "gate not True"},
		{"ungated, Ready", pod(false, corev1.PodReady), ""},
		{"ungated, not Ready", pod(false), "ungated and not Ready"},
	} {
		if got := gateStuck(c.pod, gate); got != c.want {
			t.Errorf("%s: gateStuck = %q, want %q", c.name, got, c.want)
		}
	}
}
