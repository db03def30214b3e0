package main

import (
	"testing"
	"time"

	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Scenario: the manager talks to a real kube-apiserver through the
// transport setup.WatchAPIClock wraps, as main does. Expectation: the
// API server's responses bound its clock's offset; on one machine the true
// offset is 0, so the bounds hold 0 and are at most a second and a round
// trip apart, and zerodrop_apiserver_clock_offset_seconds reports their
// middle.
func TestAPIServerClockOffsetIsMeasured(t *testing.T) {
	requireSuite(t)
	lo, hi, known := suite.apiClock.Offset()
	if !known {
		t.Fatal("no API response sampled")
	}
	if lo > 0 || hi < 0 || hi-lo > 1500*time.Millisecond {
		t.Fatalf("offset bounds [%s, %s]: want 0 inside, at most 1.5 s apart (one machine, one clock)", lo, hi)
	}
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "zerodrop_apiserver_clock_offset_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			found = true
			if v := m.GetGauge().GetValue(); v < -1.5 || v > 1.5 {
				t.Errorf("zerodrop_apiserver_clock_offset_seconds = %.3f, want about 0", v)
			}
		}
	}
	if !found {
		t.Error("zerodrop_apiserver_clock_offset_seconds not exported")
	}
}
