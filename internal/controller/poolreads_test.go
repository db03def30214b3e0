package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// readsPerCycle runs n bindings of one pool for 1 + cycles pending cycles,
// their reconciles spread evenly over each cycle (as their requeues
// drift apart), and returns the load balancer reads per cycle after the
// first.
func readsPerCycle(tb testing.TB, n, cycles int) float64 {
	h := newHarness(tb, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", nil)...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthInitial, 0) // pending: every binding cycles at the pending interval
	ctx := context.Background()
	keys := []types.NamespacedName{{Namespace: hNS, Name: hBinding}}
	for i := 1; i < n; i++ {
		b := &zv1.TargetBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: hNS, Name: fmt.Sprintf("other-%d", i), Finalizers: []string{Finalizer}, Generation: 1},
			Spec: zv1.TargetBindingSpec{ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromString("http")},
				LoadBalancerRef: zv1.LoadBalancerReference{Name: hLB}, Pool: hPool},
		}
		if err := h.c.Create(ctx, b); err != nil {
			tb.Fatal(err)
		}
		keys = append(keys, types.NamespacedName{Namespace: hNS, Name: b.Name})
	}
	step := h.r.pending() / time.Duration(n)
	// The first cycle after a start reads once per binding: a read shared
	// before a binding has told the book its targets would not know them.
	// Count from the second.
	before := 0.0
	for c := 0; c <= cycles; c++ {
		if c == 1 {
			before = h.series("zerodrop_pool_status_reads_total")["loadbalancer=edge,pool=be_web,result=read"]
		}
		for _, k := range keys {
			if _, err := h.r.Reconcile(ctx, reconcileRequest(k)); err != nil {
				tb.Fatal(err)
			}
			h.advance(step)
		}
	}
	after := h.series("zerodrop_pool_status_reads_total")["loadbalancer=edge,pool=be_web,result=read"]
	return (after - before) / float64(cycles)
}

// Scenario: 1, 5, 10 and 50 TargetBindings share one pool, each cycling
// at the pending interval. Expectation: the load balancer is read about
// twice per cycle whatever the number of bindings (one read serves every
// binding whose cycle falls within the share window, half the interval),
// not once per binding; a lone binding still reads every cycle.
func TestPoolReadsStayFlatAsBindingsGrow(t *testing.T) {
	for _, n := range []int{1, 5, 10, 50} {
		got := readsPerCycle(t, n, 10)
		t.Logf("%d binding(s) on the pool: %.1f reads per cycle", n, got)
		if n == 1 && got != 1 {
			t.Errorf("a lone binding: %.1f reads per cycle, want 1 (its own every cycle)", got)
		}
		if got > 2.5 {
			t.Errorf("%d bindings: %.1f reads per cycle, want at most about 2 (one per share window)", n, got)
		}
	}
}

// BenchmarkPoolReadsPerCycle reports load-balancer reads per cycle as
// bindings per pool grow (reads/cycle; the peer is one read per binding).
//
//	go test -run XXX -bench PoolReadsPerCycle ./internal/controller/
func BenchmarkPoolReadsPerCycle(b *testing.B) {
	for _, n := range []int{1, 5, 10, 50} {
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			var reads float64
			for i := 0; i < b.N; i++ {
				reads = readsPerCycle(b, n, 4)
			}
			b.ReportMetric(reads, "reads/cycle")
			b.ReportMetric(reads/float64(n), "reads/binding-cycle")
		})
	}
}

func reconcileRequest(k types.NamespacedName) reconcile.Request {
	return reconcile.Request{NamespacedName: k}
}

// Scenario: right after a controller start, binding B cycles first and
// reads the pool, knowing only its own targets; binding A, whose pod is
// being deleted, cycles within the share window. Expectation: A does not
// take B's read (it did not know A's target, so it would report it gone,
// hence drained): A reads for itself, with its target known.
func TestPoolReadIsNotSharedWithABindingItDidNotKnow(t *testing.T) {
	var pr poolReads
	calls := 0
	do := func(_ context.Context, _ provider.Provider, pl provider.Pool) (provider.PoolStatus, error) {
		calls++
		return provider.PoolStatus{Pool: pl.Name, Instances: []provider.InstanceStatus{{Instance: "a"}}}, nil
	}
	now := time.Now()
	a := provider.Target{ID: "zd_shop_a_web-1", IP: "10.1.0.1", Port: 8080}
	b := provider.Target{ID: "zd_shop_b_web-2", IP: "10.1.0.2", Port: 8080}
	bKey, aKey := types.NamespacedName{Namespace: "shop", Name: "b"}, types.NamespacedName{Namespace: "shop", Name: "a"}
	pr.read(context.Background(), bKey, []provider.Target{b}, "edge", nil, provider.Pool{Name: "be", Known: []provider.Target{b}}, time.Second, now, do)
	_, _, shared := pr.read(context.Background(), aKey, []provider.Target{a}, "edge", nil, provider.Pool{Name: "be", Known: []provider.Target{a, b}}, time.Second, now.Add(10*time.Millisecond), do)
	if shared || calls != 2 {
		t.Fatalf("A took a read that did not know its target (shared=%v, %d reads)", shared, calls)
	}
	_, _, shared = pr.read(context.Background(), bKey, []provider.Target{b}, "edge", nil, provider.Pool{Name: "be", Known: []provider.Target{a, b}}, time.Second, now.Add(20*time.Millisecond), do)
	if !shared || calls != 2 {
		t.Fatalf("B, whose target A's read knew, read again (shared=%v, %d reads)", shared, calls)
	}
	moved := b
	moved.IP = "10.1.0.9"
	_, _, shared = pr.read(context.Background(), types.NamespacedName{Namespace: "shop", Name: "c"}, []provider.Target{moved}, "edge", nil, provider.Pool{Name: "be"}, time.Second, now.Add(30*time.Millisecond), do)
	if shared {
		t.Fatal("a read that knew the target at another address was shared")
	}
}
