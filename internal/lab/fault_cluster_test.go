package lab

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario: the zerodrop scenario (naive app behind the readiness gate and
// the drain gate, two HAProxy instances, 1,000 requests/s) rolled once
// under each cluster-side fault keeps the promise docs/faults.md states:
//   - apiserver, etcd: nothing fails; the reconciler, which loses its lease
//     when the API is away longer than its renew deadline, comes back;
//   - webhook: the pods created while it is down are admitted without a
//     gate, the controller reports each (GateMissing), and they are still
//     registered: the rollout ends with every pod UP in every instance;
//   - serve: a held drain hook is cut, the node sends SIGTERM at once
//     (FailedPreStopHook). The naive app exits at once, so what it was
//     serving fails: bounded by one pod's share of the load for the slow
//     requests' length. An app using the graceful package asks the drain
//     endpoint itself, retrying until the serve process is back: nothing
//     fails (zerodrop-graceful+serve);
//   - node: a node running serving pods loses its power. What the dead
//     pods were serving and what HAProxy sends them before its checks mark
//     them DOWN is lost, bounded by NodeLossBound; the node is found lost
//     and its pods evicted within the lab's node timings, the dead pods'
//     servers leave HAProxy, the node comes back and finishes their
//     deletion;
//   - clock: the machine's wall clock is stepped ClockStep (45 s, more than
//     drain.timeout) forward while a drain is held, and back after the
//     fault hold: nothing fails but what HAProxy 2.6 itself fails at the
//     step when one of its threads misses it (counted apart), no drain
//     gate is released by its timeout, and the clock ends where it should.
//
// In every case the rollout completes (no gate stuck) and the backend holds
// exactly the new pods, all UP (no pod left in HAProxy). Each run is a
// subtest named after it (-run 'TestClusterFaultsKeepTheirPromises/zerodrop\+clock$'
// runs one; the lab starts once either way).
func TestClusterFaultsKeepTheirPromises(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lab run")
	}
	ctx, l, opts := controllerLab(t)

	type run struct {
		s Scenario
		f Fault
	}
	var runs []run
	for _, f := range clusterFaults {
		runs = append(runs, run{ZerodropScenario, f})
	}
	runs = append(runs, run{ZerodropGracefulScenario, FaultServe})
	for _, r := range runs {
		t.Run(r.s.Name+"+"+string(r.f), func(t *testing.T) { clusterFaultRun(t, ctx, l, opts, r.s, r.f) })
	}
}

// clusterFaultRun rolls s once under f in lab l and asserts f's promise.
func clusterFaultRun(t *testing.T, ctx context.Context, l *Lab, opts Options, s Scenario, f Fault) {
	const replicas, rate = 3, 1000
	began := time.Now()
	lostBefore := nodesFoundLost(t, l)
	res, err := Run(ctx, l.Target(), s, RunOptions{
		Rollouts: 1, Rate: rate, Replicas: replicas, Settle: 2 * time.Second, Fault: f, Logger: opts.Logger,
	})
	var sb strings.Builder
	PrintTable(&sb, []Result{res})
	t.Logf("%s (%s):\n%s", res.Name(), time.Since(began).Round(time.Second), sb.String())
	if len(res.Faults) == 1 && res.Faults[0].Cluster != nil {
		t.Logf("%s: report %+v", res.Name(), *res.Faults[0].Cluster)
	}
	if err != nil {
		t.Fatalf("%s: %v", res.Name(), err)
	}
	if len(res.Faults) != 1 || res.Faults[0].Cluster == nil {
		t.Fatalf("%s: faults %+v, want one with a cluster report", res.Name(), res.Faults)
	}
	ev := res.Faults[0]
	rep := ev.Cluster
	t.Logf("%s: struck at +%s, undone after %s", res.Name(), ev.At.Round(time.Millisecond), rep.Undone.Round(time.Millisecond))
	if ev.Err != "" {
		t.Errorf("%s: %s", res.Name(), ev.Err)
	}
	if res.Requests < 10000 {
		t.Errorf("%s: only %d requests sent", res.Name(), res.Requests)
	}
	// Only the node fault may make the node lifecycle controller take a
	// node for lost: under the others every node lives, and a short
	// NodeMonitorGracePeriod would evict their pods.
	if lost := nodesFoundLost(t, l) - lostBefore; f != FaultNode && lost != 0 {
		t.Errorf("%s: %d NodeNotReady event(s): a node was taken for lost (NodeMonitorGracePeriod %s shorter than the fault's API outage?)", res.Name(), lost, NodeMonitorGracePeriod)
	} else if f == FaultNode && lost == 0 {
		t.Errorf("%s: no NodeNotReady event: the lost node was not found lost", res.Name())
	}
	noneFailed := func() {
		t.Helper()
		if res.Failed != 0 {
			t.Errorf("%s: %d of %d requests failed (%v)", res.Name(), res.Failed, res.Requests, res.FailuresByClass)
		}
	}
	switch f {
	case FaultAPIServer, FaultEtcd:
		noneFailed()
		if len(rep.UngatedPods) != 0 || rep.FailedPreStopHooks != 0 {
			t.Errorf("%s: ungated pods %v, failed preStop hooks %d: want none", res.Name(), rep.UngatedPods, rep.FailedPreStopHooks)
		}
	case FaultWebhook:
		noneFailed()
		if len(rep.UngatedPods) == 0 {
			t.Errorf("%s: no pod admitted without a gate: the fault did not strike", res.Name())
		}
		if rep.GateMissingEvents < len(rep.UngatedPods) {
			t.Errorf("%s: %d GateMissing events for %d ungated pods %v: the controller must report each", res.Name(), rep.GateMissingEvents, len(rep.UngatedPods), rep.UngatedPods)
		}
	case FaultNode:
		nr := rep.Node
		if nr == nil {
			t.Fatalf("%s: no node report", res.Name())
		}
		t.Logf("%s: node %s lost with %v; %d of %d servers in rotation were its (%d UP); DOWN everywhere after %s, NotReady after %s, evicted after %s, back after %s, pods gone after %s, servers removed after %s; %d failed, bound %d",
			res.Name(), nr.Node, nr.DeadPods, nr.ServingDead, nr.Serving, nr.OnLBDead, nr.Down.Round(time.Millisecond), nr.NotReady.Round(time.Millisecond),
			nr.Evicted.Round(time.Millisecond), nr.Back.Round(time.Millisecond), nr.PodsGone.Round(time.Millisecond), nr.ServersRemoved.Round(time.Millisecond), res.Failed, nr.Bound)
		if nr.ServingDead == 0 {
			t.Errorf("%s: the lost node ran no server in rotation: the fault did not strike a serving pod", res.Name())
		}
		// HAProxy takes a dead server out after fall failed checks, each
		// at most interval apart and timeout long (the lab's timeout is
		// the interval), however the kill lines up with the checks.
		check := l.Check
		if most := time.Duration(check.Fall)*2*check.Interval + time.Second; nr.Down <= 0 || nr.Down > most {
			t.Errorf("%s: the dead servers DOWN everywhere after %s, want within %s (fall x (interval + timeout) + 1 s)", res.Name(), nr.Down, most)
		}
		if most := NodeMonitorGracePeriod + NodeMonitorPeriod + 5*time.Second; nr.NotReady <= 0 || nr.NotReady > most {
			t.Errorf("%s: node NotReady after %s, want within %s", res.Name(), nr.NotReady, most)
		}
		if nr.Evicted < nr.NotReady || nr.Back < nr.Evicted || nr.PodsGone < nr.Back || nr.ServersRemoved <= 0 {
			t.Errorf("%s: NotReady %s, evicted %s, back %s, pods gone %s, servers removed %s: want each step done, in this order, and the servers removed",
				res.Name(), nr.NotReady, nr.Evicted, nr.Back, nr.PodsGone, nr.ServersRemoved)
		}
		if res.Failed > nr.Bound {
			t.Errorf("%s: %d of %d requests failed (%v), want at most the bound %d", res.Name(), res.Failed, res.Requests, res.FailuresByClass, nr.Bound)
		}
		if len(res.PerRollout) != 1 || res.PerRollout[0].Promise != "kept" {
			t.Errorf("%s: per rollout %+v, want the promise kept (nothing stuck, nothing left in HAProxy)", res.Name(), res.PerRollout)
		}
	case FaultServe:
		if !rep.HookHeld {
			t.Errorf("%s: no drain hook held when the serve process was killed", res.Name())
		}
		o := RunOptions{Rate: rate, Replicas: replicas}
		o.defaults(s)
		if want := ServeLossBound(o, s.App); rep.ServeBound != want || (want == 0) != s.App.Drain {
			t.Errorf("%s: serve bound %d, want %d", res.Name(), rep.ServeBound, want)
		}
		if s.App.Drain {
			// The app's own drain wait retries the restarted serve
			// process: the cut hook costs nothing.
			noneFailed()
			break
		}
		// The pod was already in drain (no new requests): what fails is
		// what it was serving when the app exited, one pod's share of
		// the in-flight requests, twice that as the bound (one run: 21 of
		// 95).
		if res.Failed > rep.ServeBound {
			t.Errorf("%s: %d of %d requests failed (%v), want at most %d", res.Name(), res.Failed, res.Requests, res.FailuresByClass, rep.ServeBound)
		}
	case FaultClock:
		if !rep.HookHeld || rep.ClockStep != ClockStep {
			t.Errorf("%s: hook held %v, clock stepped %s: the fault did not strike while a drain was held", res.Name(), rep.HookHeld, rep.ClockStep)
		}
		// HAProxy's own failures at the step (an instance that missed it,
		// see clockJumpWindow) are counted apart; nothing else may fail.
		if len(res.PerRollout) != 1 {
			t.Fatalf("%s: %d rollout records, want 1", res.Name(), len(res.PerRollout))
		}
		rec := res.PerRollout[0]
		t.Logf("%s: %d failed at the step by HAProxy's clock jump; promise %s", res.Name(), rec.FailedClockJump, rec.Promise)
		if n := res.Failed - rec.FailedClockJump; n != 0 {
			t.Errorf("%s: %d of %d requests failed (%v), %d of them HAProxy's at the step", res.Name(), res.Failed, res.Requests, res.FailuresByClass, rec.FailedClockJump)
		}
		if rec.Promise != "kept" {
			t.Errorf("%s: promise %s", res.Name(), rec.Promise)
		}
		if rep.DrainTimeouts != 0 || rep.HooksReleasedByTimeout != 0 || rep.GateTimeouts != 0 {
			t.Errorf("%s: drain gates released by drain.timeout: %d (Events), %d (serve's verdicts); %d gate timeouts: want none (the step moved a timeout)",
				res.Name(), rep.DrainTimeouts, rep.HooksReleasedByTimeout, rep.GateTimeouts)
		}
		if len(rep.UngatedPods) != 0 || rep.FailedPreStopHooks != 0 {
			t.Errorf("%s: ungated pods %v, failed preStop hooks %d: want none", res.Name(), rep.UngatedPods, rep.FailedPreStopHooks)
		}
		if rep.ClockError > 100*time.Millisecond || rep.ClockError < -100*time.Millisecond {
			t.Errorf("%s: the wall clock is %s off after the step back", res.Name(), rep.ClockError)
		}
	}
}

// Scenario: the clock fault counts the drain verdicts the serve processes
// logged as timed out from the strike on: lines of serve logs written
// after the sizes taken at the strike (a log started since counts whole),
// not earlier ones nor the reconciler's.
func TestLogLinesSinceCountsOnlyNewServeLines(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) { appendLog(t, dir, name, text) }
	write("serve-0.log", "{\"msg\":\"drain timed out: before\"}\n")
	write("reconcile-0.log", "")
	from := (&Controller{dir: dir}).logSizes()
	write("serve-0.log", "{\"msg\":\"drain timed out: after\"}\nother\n")
	write("serve-1.log", "{\"msg\":\"drain timed out: new log\"}\n")
	write("reconcile-0.log", "{\"msg\":\"drain timed out: leader\"}\n")
	got := logLinesSince(dir, "serve-", from, "drain timed out")
	if len(got) != 2 || !strings.Contains(strings.Join(got, "|"), "after") || !strings.Contains(strings.Join(got, "|"), "new log") {
		t.Fatalf("lines %q, want the two serve lines written since", got)
	}
}

// Scenario: the serve fault strikes only once a drain hook is held, which
// it reads as an established connection to the drain endpoint in this
// network namespace: one open connection counts, none once it is closed,
// and a connection to another port does not.
func TestEstablishedToCountsConnectionsToTheEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if n := establishedTo(ln.Addr().String()); n != 0 {
		t.Fatalf("before any connection: %d established", n)
	}
	c, err := net.Dial("tcp", other.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := establishedTo(ln.Addr().String()); n != 0 {
		t.Errorf("a connection to another port counted: %d", n)
	}
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if n := establishedTo(ln.Addr().String()); n != 1 {
		t.Errorf("one open connection: %d established, want 1", n)
	}
	conn.Close()
	srv.Close()
	if n := establishedTo(ln.Addr().String()); n != 0 {
		t.Errorf("after closing: %d established, want 0", n)
	}
}

// Scenario: under the apiserver fault the restarted API server refuses
// requests until its authorizer has synced; the refusals the controller
// logs in that window (in its old log and in a log started meanwhile) are
// excused, and one logged before or after it still fails the RBAC check.
func TestForbiddenLinesInARestartWindowAreExcused(t *testing.T) {
	dir := t.TempDir()
	c := &Controller{dir: dir}
	write := func(name, text string) { appendLog(t, dir, name, text) }
	write("reconcile-0.log", "ok\npods is forbidden: before\n")
	from := c.logSizes()
	write("reconcile-0.log", "pods is forbidden: during\n")
	write("reconcile-1.log", "leases is forbidden: during, new log\n")
	if n := c.excuseForbidden(from, c.logSizes()); n != 2 {
		t.Errorf("excused %d lines, want 2", n)
	}
	write("reconcile-1.log", "secrets is forbidden: after\n")
	err := c.Forbidden()
	if err == nil {
		t.Fatal("no RBAC error for the lines outside the window")
	}
	for _, want := range []string{"before", "after"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("RBAC error misses the line logged %s the window: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "during") {
		t.Errorf("RBAC error names an excused line: %v", err)
	}
}

// nodesFoundLost counts the node lifecycle controller's NodeNotReady events
// about Nodes (namespace default).
func nodesFoundLost(t *testing.T, l *Lab) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := l.Client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("list node events: %v", err)
		return 0
	}
	n := 0
	for _, e := range evs.Items {
		if e.Reason == "NodeNotReady" && e.InvolvedObject.Kind == "Node" {
			n += int(max(1, e.Count))
		}
	}
	return n
}

// Scenario: a campaign judges every cluster-side rollout against its
// fault's promise: zero failed for apiserver, etcd and webhook; for serve,
// at most the bound the fault computed (none when the app waits itself).
func TestClusterFaultsAreJudgedByTheirPromises(t *testing.T) {
	o := RunOptions{Rate: 1000, PostRate: 100, SlowRate: 20, SlowLatency: 6 * time.Second, Replicas: 3}
	// (20/s x 6 s + 1,100/s x 20 ms) / 3 replicas = 47.3, twice that.
	if got := ServeLossBound(o, App{Latency: 20 * time.Millisecond}); got != 95 {
		t.Errorf("ServeLossBound = %d, want 95", got)
	}
	if got := ServeLossBound(o, App{Latency: 20 * time.Millisecond, Drain: true}); got != 0 {
		t.Errorf("ServeLossBound for an app that waits itself = %d, want 0", got)
	}
	judged := func(f Fault, failed, serveBound uint64) RolloutRecord {
		r := RolloutRecord{Fault: f, Failed: failed, Requests: 30000,
			FaultEvent: &FaultEvent{Kind: f, Cluster: &ClusterFaultReport{ServeBound: serveBound}}}
		r.judge()
		return r
	}
	for _, f := range []Fault{FaultAPIServer, FaultEtcd, FaultWebhook} {
		if r := judged(f, 0, 0); r.Promise != "kept" {
			t.Errorf("%s with 0 failed: promise %q, want kept", f, r.Promise)
		}
		if r := judged(f, 1, 0); !strings.Contains(r.Promise, "broken: 1 failed requests") {
			t.Errorf("%s with 1 failed: promise %q, want broken", f, r.Promise)
		}
	}
	if r := judged(FaultServe, 95, 95); r.Promise != "kept" {
		t.Errorf("serve with 95 failed under a bound of 95: promise %q, want kept", r.Promise)
	} else if v := r.verdict(nil); !v.Pass || !strings.Contains(v.Reason, "drain hook was cut") {
		t.Errorf("serve's verdict %+v, want a pass that says what the bound is", v)
	}
	if r := judged(FaultServe, 96, 95); !strings.Contains(r.Promise, "96 failed requests, more than the bound 95") {
		t.Errorf("serve with 96 failed under a bound of 95: promise %q, want broken", r.Promise)
	}
	if r := judged(FaultServe, 1, 0); !strings.Contains(r.Promise, "broken") {
		t.Errorf("serve with a graceful app (bound 0) and 1 failed: promise %q, want broken", r.Promise)
	}
}

// appendLog appends text to the log file name in dir, as a controller
// process writes its log.
func appendLog(t *testing.T, dir, name, text string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
