package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

func TestLBStatusEqual(t *testing.T) {
	ready := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Reachable", Message: "2 instance(s) reachable", ObservedGeneration: 1}
	stale := metav1.Condition{Type: "Degraded", Status: metav1.ConditionTrue, Reason: "Old", ObservedGeneration: 1}
	base := func() *zv1.LoadBalancerStatus {
		return &zv1.LoadBalancerStatus{
			ObservedGeneration: 1, ReachableInstances: 2,
			Instances:  []zv1.InstanceStatus{{Name: "lb-a", Reachable: true}, {Name: "lb-b", Reachable: true}},
			Conditions: []metav1.Condition{ready},
		}
	}
	cases := []struct {
		name   string
		change func(have *zv1.LoadBalancerStatus)
		want   bool
	}{
		{"identical status: no patch", func(*zv1.LoadBalancerStatus) {}, true},
		{"the stored status has an extra condition: patch to drop it", func(h *zv1.LoadBalancerStatus) {
			h.Conditions = append(h.Conditions, stale)
		}, false},
		{"the stored status lacks the condition: patch", func(h *zv1.LoadBalancerStatus) { h.Conditions = nil }, false},
		{"a condition's message differs: patch", func(h *zv1.LoadBalancerStatus) { h.Conditions[0].Message = "1 instance(s) reachable" }, false},
		{"an instance turned unreachable: patch", func(h *zv1.LoadBalancerStatus) { h.Instances[1].Reachable = false }, false},
		{"only the transition time differs: no patch", func(h *zv1.LoadBalancerStatus) {
			h.Conditions[0].LastTransitionTime = metav1.Now()
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			have, want := base(), base()
			c.change(have)
			if got := lbStatusEqual(have, want); got != c.want {
				t.Fatalf("lbStatusEqual = %v, want %v\nhave %+v\nwant %+v", got, c.want, have, want)
			}
		})
	}
}

// TestInstanceReachableMetric: zerodrop_loadbalancer_instance_reachable
// follows what the binding's reads said about each instance (1, then 0
// when one is down), and the series go with the LoadBalancer.
func TestInstanceReachableMetric(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone)
	h.lbr.Metrics = h.r.Metrics
	h.r.Instances = h.lbr.Instances
	h.reconcile()
	h.reconcileLB()
	a, b := "instance="+instA.Name+",loadbalancer="+hLB, "instance="+instB.Name+",loadbalancer="+hLB
	if got := h.series("zerodrop_loadbalancer_instance_reachable"); got[a] != 1 || got[b] != 1 || len(got) != 2 {
		t.Fatalf("both instances read: series %v, want %s and %s at 1", got, a, b)
	}
	h.w.mu.Lock()
	h.w.down[keyB] = true
	h.w.mu.Unlock()
	h.advance(time.Second)
	h.reconcile()
	h.reconcileLB()
	if got := h.series("zerodrop_loadbalancer_instance_reachable"); got[a] != 1 || got[b] != 0 || len(got) != 2 {
		t.Fatalf("%s down: series %v, want %s at 0", instB.Name, got, b)
	}
	h.lbr.forget(hLB)
	if got := h.series("zerodrop_loadbalancer_instance_reachable"); len(got) != 0 {
		t.Fatalf("LoadBalancer forgotten: series %v remain", got)
	}
}
