package haproxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// Scenario: slot mode, IP reuse. Pod X holds a slot and is draining (its
// pod is gone, the deregistration delay runs); a new pod Y gets X's
// address. Both are known to the provider (two bindings share the pool;
// Y's binding sorts first), Y is registered while X's slot drains, X is
// then deregistered, Y registered again, and X's deregistration repeated
// (a retry of the controller).
// Expectation: the slot is reported under X, its owner since the claim,
// never under Y; Register(Y) refuses to take over X's draining slot (it
// stays in drain); X's Deregister frees the slot; Y then takes a slot of
// its own, and the repeated Deregister(X) leaves Y's slot in rotation.
func TestSlotOwnerSurvivesIPReuse(t *testing.T) {
	in := startSlotHAProxy(t, 2, true)
	p := newProvider(t, in)
	ctx := context.Background()
	x := startProbe(t, "pod-x")
	tx := x.target()
	ty := tx
	ty.ID = "pod-y" // the same IP and port: the address was reused

	if err := p.Register(ctx, "app", tx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, healthyOn(p, "pod-x"))
	if err := p.SetDraining(ctx, "app", tx); err != nil {
		t.Fatal(err)
	}
	sx, ok := slotOf(t, in, x.addr)
	if !ok || !sx.Admin.Drain() {
		t.Fatalf("X's slot after SetDraining: %+v (found %v), want drain", sx, ok)
	}
	p.Know("app", "ns/a", []provider.Target{ty}) // Y's binding: Y observed
	p.Know("app", "ns/b", []provider.Target{tx}) // X's binding: X still handled

	st, err := p.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Instances[0].Targets["pod-y"]; ok {
		t.Errorf("X's draining slot reported under Y: %s", st)
	}
	if _, ok := st.Instances[0].Targets["pod-x"]; !ok {
		t.Errorf("X's draining slot not reported under X: %s", st)
	}

	err = p.Register(ctx, "app", ty)
	if err == nil {
		t.Errorf("Register(Y) while X's slot with the same address drains: no error, want a refusal")
	}
	if s, _ := slotOf(t, in, x.addr); !s.Admin.Drain() {
		t.Errorf("Register(Y) re-readied X's draining slot %s: admin %#x", s.Name, s.Admin)
	}

	p.SetDraining(ctx, "app", tx) // the controller drains X before deregistering it
	eventually(t, 30*time.Second, func() (bool, string) {
		err := p.Deregister(ctx, "app", tx)
		return err == nil, fmt.Sprint(err)
	})
	if s, ok := slotOf(t, in, x.addr); ok {
		t.Fatalf("Deregister(X) left slot %s with X's address: %+v", s.Name, s)
	}
	if err := p.Register(ctx, "app", ty); err != nil {
		t.Fatalf("Register(Y) after X's slot was freed: %v", err)
	}
	sy, ok := slotOf(t, in, x.addr)
	if !ok {
		t.Fatalf("Y holds no slot after Register")
	}
	eventually(t, 30*time.Second, healthyOn(p, "pod-y"))

	if err := p.Deregister(ctx, "app", tx); err != nil {
		t.Fatalf("repeated Deregister(X): %v", err)
	}
	s, ok := slotOf(t, in, x.addr)
	if !ok || s.Name != sy.Name || s.Admin.Maint() || s.Admin.Drain() {
		t.Fatalf("repeated Deregister(X) changed Y's slot %s: %+v (found %v), want it in rotation", sy.Name, s, ok)
	}
	if ok, reason, msg := func() (bool, string, string) {
		st, err := p.Status(ctx, "app")
		if err != nil {
			return false, "", err.Error()
		}
		return st.Healthy("pod-y")
	}(); !ok {
		t.Fatalf("Y after the repeated Deregister(X): %s %s", reason, msg)
	}
}
