package controller

import (
	"errors"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"zerodrop.dev/zerodrop/provider"
)

// Scenario: a binding with three live targets and one done; instance a
// reports one Healthy, one Initial and lacks the third; instance b could
// not be read (its series from an earlier read must go).
// Expectation: zerodrop_targets holds a's counts by health (Absent for the
// missing one, nothing for the done target, no series for healths no
// target has) and no series of b.
func TestSetTargetVerdicts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.TargetVerdicts.WithLabelValues("shop", "web", "edge", "b", "Healthy").Set(3)
	m.TargetVerdicts.WithLabelValues("shop", "web", "edge", "a", "Draining").Set(1)
	plans := []targetPlan{
		{Target: provider.Target{ID: "t1"}, State: stHealthy},
		{Target: provider.Target{ID: "t2"}, State: stRegistering},
		{Target: provider.Target{ID: "t3"}, State: stRegistering},
		{Target: provider.Target{ID: "t4"}, State: stDone},
	}
	pool := provider.PoolStatus{Instances: []provider.InstanceStatus{
		{Instance: "a", Targets: map[provider.TargetID]provider.TargetStatus{
			"t1": {Health: provider.HealthHealthy}, "t2": {Health: provider.HealthInitial}, "t4": {Health: provider.HealthDrained}}},
		{Instance: "b", Err: errors.New("refused")},
	}}
	m.setTargetVerdicts("shop", "web", "edge", pool, plans)
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "zerodrop_targets" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["instance"]+" "+labels["health"]] = s.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"a Healthy": 1, "a Initial": 1, "a Absent": 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("zerodrop_targets by instance and health: %v, want %v", got, want)
	}
}
