package lab

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Scenario: the bulk listener answers every address it serves, and fails
// exactly the addresses named, until healed.
func TestBulkListenerFailsChosenAddresses(t *testing.T) {
	b := &BulkNet{}
	srv := httptest.NewServer(http.HandlerFunc(b.answer))
	t.Cleanup(srv.Close)
	get := func() int {
		t.Helper()
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != http.StatusOK {
		t.Fatalf("healthy address answered %d", got)
	}
	loop := netip.MustParseAddr("127.0.0.1")
	b.Fail(netip.MustParseAddr("10.80.0.9"))
	if got := get(); got != http.StatusOK {
		t.Fatalf("failing another address changed this one's answer: %d", got)
	}
	b.Fail(loop)
	if got := get(); got != http.StatusServiceUnavailable {
		t.Fatalf("failed address answered %d, want 503", got)
	}
	b.Heal(loop)
	if got := get(); got != http.StatusOK {
		t.Fatalf("healed address answered %d", got)
	}
	if b.Requests() != 4 {
		t.Fatalf("requests counted %d, want 4", b.Requests())
	}
}

// Scenario: a backend holds its share of the pods and room for a rollout's
// surge.
func TestSlotsPerPool(t *testing.T) {
	for _, tc := range []struct{ pods, bindings, min int }{
		{500, 5, 100 + 10}, {1000, 1000, 1 + 1}, {10000, 1, 10000 + 1000}, {7, 3, 3 + 1},
	} {
		if got := slotsPerPool(tc.pods, tc.bindings); got < tc.min {
			t.Errorf("%d pods over %d bindings: %d slots per pool, want at least %d", tc.pods, tc.bindings, got, tc.min)
		}
	}
}

// Scenario: the gate latency of a pod is Ready minus the last instance's
// UP before it; a pod Ready before some instance said UP is reported as a
// broken gate; a pod some instance never reported is counted apart.
func TestScaleTimesGateLatencies(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	a1, a2, a3 := netip.MustParseAddr("10.80.0.1"), netip.MustParseAddr("10.80.0.2"), netip.MustParseAddr("10.80.0.3")
	st := &ScaleTimes{
		instances: []string{"h0", "h1"},
		up: map[netip.Addr]map[string][]time.Time{
			a1: {"h0": {t0}, "h1": {t0.Add(100 * time.Millisecond), t0.Add(10 * time.Second)}}, // a late flap after Ready does not count
			a2: {"h0": {t0}, "h1": {t0.Add(2 * time.Second)}},
			a3: {"h0": {t0}},
		},
		ready: map[string]readyAt{
			"ok":      {a1, t0.Add(300 * time.Millisecond)},
			"early":   {a2, t0.Add(time.Second)},
			"missing": {a3, t0.Add(time.Second)},
		},
	}
	lat, early, missing := st.GateLatencies([]string{"ok", "early", "missing", "never-ready"})
	if len(lat) != 1 || lat[0] != 200*time.Millisecond {
		t.Errorf("latencies %v, want [200ms]", lat)
	}
	if len(early) != 1 || !strings.HasPrefix(early[0], "early ") || !strings.Contains(early[0], "h1") {
		t.Errorf("early %q, want the pod Ready before h1 said UP", early)
	}
	if len(missing) != 1 || missing[0] != "missing" {
		t.Errorf("missing %v", missing)
	}
}

// Scenario: the drain latency of a pod is from its deletion to the last
// instance setting it to drain.
func TestScaleTimesDrainLatencies(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	a1, a2 := netip.MustParseAddr("10.80.0.1"), netip.MustParseAddr("10.80.0.2")
	st := &ScaleTimes{
		instances: []string{"h0", "h1"},
		drain: map[netip.Addr]map[string]time.Time{
			a1: {"h0": t0.Add(20 * time.Millisecond), "h1": t0.Add(45 * time.Millisecond)},
			a2: {"h0": t0.Add(20 * time.Millisecond)},
		},
	}
	lat, missing := st.DrainLatencies(map[string]time.Time{"p1": t0, "p2": t0}, map[string]netip.Addr{"p1": a1, "p2": a2})
	if len(lat) != 1 || lat[0] != 45*time.Millisecond {
		t.Errorf("latencies %v, want [45ms]", lat)
	}
	if len(missing) != 1 || missing[0] != "p2" {
		t.Errorf("missing %v, want [p2]", missing)
	}
}

// Scenario: the lab keeps its short leader lease; the scale harness asks
// for the controller's default one, in the controller's proportions, which
// its flag validation accepts (lease > renew deadline > 1.2 retry periods).
func TestLeaseArgs(t *testing.T) {
	if got, want := strings.Join(leaseArgs(0), " "), "--leader-elect-lease-duration=4s --leader-elect-renew-deadline=3s --leader-elect-retry-period=500ms"; got != want {
		t.Errorf("lab lease: %s, want %s", got, want)
	}
	if got, want := strings.Join(leaseArgs(ScaleLeaderLease), " "), "--leader-elect-lease-duration=15s --leader-elect-renew-deadline=10s --leader-elect-retry-period=2s"; got != want {
		t.Errorf("scale lease: %s, want %s", got, want)
	}
	for _, d := range []time.Duration{time.Second, 6 * time.Second, time.Minute} {
		var lease, renew, retry time.Duration
		for _, a := range leaseArgs(d) {
			name, v, _ := strings.Cut(a, "=")
			p, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			switch name {
			case "--leader-elect-lease-duration":
				lease = p
			case "--leader-elect-renew-deadline":
				renew = p
			case "--leader-elect-retry-period":
				retry = p
			}
		}
		if lease != d || renew <= retry*6/5 || lease <= renew {
			t.Errorf("lease %s: lease %s renew %s retry %s: the controller would refuse them", d, lease, renew, retry)
		}
	}
}
