package haproxy_test

import (
	"context"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// Scenario: two processes share an instance (the reconcile leader, p1,
// and a serve replica's drain-only reconciler, p2). p2 reads the pool
// while pod-a is in rotation; then the leader starts to free pod-a's slot:
// maintenance first, its address kept while sessions remain. Within the
// second p2 reuses its read, p2 drains pod-a (its pod was deleted).
// Expectation: the slot stays in maintenance. HAProxy's `state drain` on
// a server in maintenance makes it UP again with checks (see
// mechanics_test.go), so a drain acting on the older read would take the
// slot out of maintenance and undo the leader's first step (bench/scale
// saw "enters drain state" lines for slots in maintenance).
func TestADrainFromAnOlderReadLeavesASlotInMaintenance(t *testing.T) {
	in := startSlotHAProxy(t, 1, true)
	p1, p2 := newProvider(t, in), newProvider(t, in)
	ctx := context.Background()
	a := startProbe(t, "pod-a")
	ta := a.target()
	if err := p1.Register(ctx, "app", ta); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, healthyOn(p1, "pod-a"))
	p2.Know("app", "ns/one", []provider.Target{ta})
	if st, err := p2.Status(ctx, "app"); err != nil {
		t.Fatal(err)
	} else if ts, ok := st.Instances[0].Targets["pod-a"]; !ok || ts.Health != provider.HealthHealthy {
		t.Fatalf("p2's read: pod-a %+v (found %v), want Healthy; %s", ts, ok, st)
	}

	s, ok := slotOf(t, in, a.addr)
	if !ok {
		t.Fatalf("pod-a has no slot")
	}
	if err := in.Client().SetServerState(ctx, "app", s.Name, hapi.StateMaint); err != nil {
		t.Fatal(err)
	}
	if err := p2.SetDraining(ctx, "app", ta); err != nil {
		t.Fatalf("SetDraining on a slot in maintenance: %v, want nil (nothing to do)", err)
	}
	s, ok = slotOf(t, in, a.addr)
	if !ok || !s.Admin.Maint() {
		t.Fatalf("pod-a's slot after a drain from the older read: %+v (found %v), want still in maintenance", s, ok)
	}
}
