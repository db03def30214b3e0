package haproxy_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// blackhole is a TCP address on 127.0.0.1 that accepts no request: the
// kernel completes the handshake into the listen queue, nobody accepts or
// reads, so every command waits for its timeout, as with a host whose
// HAProxy hangs or whose packets are dropped.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// Scenario: a load balancer of two instances, a good HAProxy and a
// black-holed one, with a 500 ms command timeout. The controller runs a
// cycle per target for 6 targets (Status, then Register), then drains and
// deregisters the first.
// Expectation: the run takes far less than calls × timeout (after its first
// timeout the dead instance is skipped and its error reported at once);
// every Status reports the dead instance's error; the good instance got
// every target; no target ever counts as drained (never fail open).
func TestBlackholedInstanceCostsOneTimeoutNotOnePerCall(t *testing.T) {
	good, _ := startHAProxy(t)
	dead := blackhole(t)
	const timeout = 500 * time.Millisecond
	p0, err := hapi.New(hapi.Config{Timeout: timeout, Instances: []hapi.Instance{
		{Name: "good", Address: good.Socket()}, {Name: "dead", Address: "tcp:" + dead}}})
	if err != nil {
		t.Fatal(err)
	}
	p := book(p0)
	ctx := context.Background()
	const n = 6
	start := time.Now()
	calls := 0
	var first provider.Target
	for i := 0; i < n; i++ {
		pr := startProbe(t, fmt.Sprintf("pod-%d", i))
		if i == 0 {
			first = pr.target()
		}
		st, err := p.Status(ctx, "app")
		calls++
		if err == nil || st.Instances[1].Err == nil || st.Instances[0].Err != nil {
			t.Fatalf("cycle %d: Status error %v, instances %s; want only dead's error", i, err, st)
		}
		if ok, _ := st.Drained(first.ID); ok && i > 0 {
			t.Fatalf("cycle %d: %s counts as drained with an unreadable instance", i, first.ID)
		}
		if err := p.Register(ctx, "app", pr.target()); err == nil {
			t.Fatalf("cycle %d: Register reports no error for the dead instance", i)
		}
		calls++
	}
	p.SetDraining(ctx, "app", first)
	p.Deregister(ctx, "app", first)
	calls += 2
	elapsed := time.Since(start)
	t.Logf("%d calls across [good, black-holed] with a %s timeout: %s", calls, timeout, elapsed.Round(time.Millisecond))
	if bound := 4 * timeout; elapsed > bound {
		t.Errorf("%d calls took %s, want under %s (calls × timeout = %s)", calls, elapsed.Round(time.Millisecond), bound, time.Duration(calls)*timeout)
	}
	st, _ := p.Status(ctx, "app")
	if got := len(st.Instances[0].Targets); got != n { // the anchor, and n-1 targets (the first deregistered)
		t.Errorf("good instance: %d servers, want %d: %s", got, n, st)
	}
	if ok, _ := st.Drained("pod-1"); ok {
		t.Errorf("pod-1 counts as drained with an unreadable instance")
	}
}
