package haproxy_test

import (
	"context"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// Scenario: HAProxy reloads, then the controller (or a serve replica)
// restarts: a fresh Provider, which never saw the previous epoch, reads the
// instance.
// Expectation: Status reports StartedAt from HAProxy's own uptime, so a
// controller that never saw the reload still knows the worker started
// within the reload grace (no target counts as drained there while the old
// worker may serve); the epoch changes with the reload; StartedAt is never
// later than the truth allows (it bounds the grace from below).
func TestStartedAtSurvivesAControllerRestart(t *testing.T) {
	in, _ := startHAProxy(t)
	ctx := context.Background()
	fresh := func() *hapi.Provider {
		p, err := hapi.New(hapi.Config{Instances: []hapi.Instance{{Name: "haproxy-0", Address: in.Socket()}}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	const grace = 2 * time.Second
	time.Sleep(grace + 200*time.Millisecond) // an uptime beyond the grace before the reload
	before, err := fresh().Status(ctx, provider.Pool{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if w := before.StartedWithin(time.Now(), grace); len(w) != 0 {
		t.Fatalf("fresh provider, no reload within the grace: started within %s on %v; %s", grace, w, before)
	}
	reloaded := time.Now()
	if err := in.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := fresh().Status(ctx, provider.Pool{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Instances[0].Epoch == before.Instances[0].Epoch {
		t.Fatalf("epoch %q unchanged across a reload", st.Instances[0].Epoch)
	}
	if w := st.StartedWithin(time.Now(), grace); len(w) != 1 {
		t.Fatalf("fresh provider right after a reload: started within %s on %v, want haproxy-0; StartedAt %v", grace, w, st.Instances[0].StartedAt)
	}
	if at := st.Instances[0].StartedAt; at.Before(reloaded.Add(-time.Second)) {
		t.Fatalf("StartedAt %v is before the reload at %v", at, reloaded)
	}
}
