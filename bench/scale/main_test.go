package main

import (
	"math"
	"strings"
	"testing"
	"time"
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
	report(&out, []figures{{pods: 5000, bindings: 1000, cpuSteady: math.NaN(), serveSteady: 0.25, serveRollout: 0.5, exitsReconcile: 2}}, time.Second)
	for _, want := range []string{"restarted", "0.250 / 0.500", "2 / 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
