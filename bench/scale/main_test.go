package main

import (
	"strings"
	"testing"
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
