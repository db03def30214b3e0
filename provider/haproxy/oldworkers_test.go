package haproxy_test

import (
	"context"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// Scenario: HAProxy reloads, then the controller (or a serve replica)
// restarts within the old-worker grace: a fresh Provider, which never saw
// the previous epoch, reads the instance.
// Expectation: Status reports OldWorkers from HAProxy's own uptime, so no
// target counts as drained on that instance while the old worker may still
// serve; before the reload (uptime beyond the grace) and with a grace of 0
// the worker is trusted.
func TestOldWorkersSurviveAControllerRestart(t *testing.T) {
	in, _ := startHAProxy(t)
	ctx := context.Background()
	fresh := func(grace time.Duration) *hapi.Provider {
		p, err := hapi.New(hapi.Config{Instances: []hapi.Instance{{Name: "haproxy-0", Address: in.Socket()}}, OldWorkerGrace: grace})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	const grace = 2 * time.Second
	time.Sleep(grace + 200*time.Millisecond) // an uptime beyond the grace before the reload
	st, err := fresh(grace).Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if st.Instances[0].OldWorkers {
		t.Fatalf("fresh provider, no reload within the grace: OldWorkers true, want false; %s", st)
	}
	if err := in.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = fresh(grace).Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Instances[0].OldWorkers || !st.OldWorkers() {
		t.Fatalf("fresh provider right after a reload: OldWorkers false, want true; %s", st)
	}
	if ok, _ := st.Drained(provider.TargetID("pod-gone")); ok {
		t.Fatalf("fresh provider right after a reload: an absent target counts as drained while the old worker may serve")
	}
	st, err = fresh(0).Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if st.Instances[0].OldWorkers {
		t.Fatalf("grace 0: OldWorkers true, want the new worker trusted at once")
	}
}
