package main

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/lab"
)

// Scenario: a counter is summed over its label sets; a metric whose name
// merely starts with it is not counted.
func TestSumMetric(t *testing.T) {
	text := `# HELP apiserver_request_total Counter
apiserver_request_total{code="200",verb="GET"} 10
apiserver_request_total{code="201",verb="POST"} 2.5e+01
apiserver_request_total_other{code="200"} 1000
zerodrop_pool_status_reads_total 7
`
	if got := sumMetric(strings.NewReader(text), "apiserver_request_total"); got != 35 {
		t.Errorf("apiserver_request_total = %v, want 35", got)
	}
	if got := sumMetric(strings.NewReader(text), "zerodrop_pool_status_reads_total"); got != 7 {
		t.Errorf("zerodrop_pool_status_reads_total = %v, want 7", got)
	}
}

// Scenario: a leader lease lost during a measurement window restarts the
// reconcile process; its CPU time and counters begin again at zero, so the
// window has no rate for it rather than a wrong one, and the report says so.
func TestRateOfReplacedProcessIsNotReported(t *testing.T) {
	if got := perSecond(10, 12, 4, true); got != 0.5 {
		t.Errorf("same process: %v/s, want 0.5", got)
	}
	if got := perSecond(10, 12, 4, false); !math.IsNaN(got) {
		t.Errorf("replaced process: %v/s, want NaN", got)
	}
	if got := perSecond(120, 3, 4, true); !math.IsNaN(got) {
		t.Errorf("counter went backwards: %v/s, want NaN", got)
	}
	var out strings.Builder
	report(&out, []figures{{pods: 5000, bindings: 1000, cpuSteady: math.NaN(), serveSteady: 0.25, serveRollout: 0.5, exitsReconcile: 2}}, time.Second, nil)
	for _, want := range []string{"restarted", "0.250 / 0.500", "2 / 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// Scenario: gate and drain latencies are reported per phase beside the
// overall figure, the rollout row carries the goals, both restarts
// have their own convergence rows, and every pod counted as never drained
// is named with its instance and slot.
func TestReportShowsPhasesRestartsAndUndrainedPods(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	f := figures{
		pods: 200, bindings: 20,
		gate: map[string]latencies{
			phaseAll: {ms(300), ms(4000), 220}, phaseFill: {ms(900), ms(4000), 200}, phaseRollout: {ms(60), ms(140), 20},
			phaseCrash: {ms(70), ms(150), 2}, phaseGraceful: {ms(65), ms(120), 2},
		},
		drain:         map[string]latencies{phaseRollout: {ms(20), ms(45), 20}, phaseCrash: {ms(18000), ms(18100), 2}},
		drainRecorded: latencies{ms(7), ms(31), 20}, deleteCall: latencies{ms(13), ms(14), 20},
		undrained: map[string][]lab.Undrained{phaseGraceful: {{Pod: "zd-scale/b-3-203", Addr: netip.MustParseAddr("10.80.0.9"), Instance: "haproxy-1", Slots: []string{"p-3/zd-slot4"}}}},
		crash:     restart{converge: ms(23600), leaseWait: ms(18700)},
		graceful:  restart{converge: ms(4200), leaseWait: ms(300), stop: ms(800)},
	}
	var out strings.Builder
	report(&out, []figures{f}, time.Second, []string{"--workers=16"})
	for _, want := range []string{
		"900 / 4000 ms (200)", "none (not a rollout)", "60 / 140 ms (20)", "goals are for rollouts",
		"20 / 45 ms (20)", "0 / 0 / 1", "convergence after SIGKILL restart", "23.6s", "18.7s",
		"convergence after SIGTERM restart", "4.2s", "300ms",
		"the delete call (API server: the deletion written)", "13 / 14 ms (20)", "from the delete call's return", "7 / 31 ms (20)", "reconcile process flags beside the harness's: --workers=16",
		"never drained everywhere (200 pods, SIGTERM restart): zd-scale/b-3-203 (10.80.0.9): no drain on haproxy-1 (slot p-3/zd-slot4)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
