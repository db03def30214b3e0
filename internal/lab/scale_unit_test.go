package lab

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
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
	st := newScaleTimes()
	st.instances = []string{"h0", "h1"}
	for i, a := range []netip.Addr{a1, a2, a3} {
		for _, in := range st.instances {
			occupy(st, in, fmt.Sprintf("zd-slot%d", i), a, t0.Add(-time.Minute))
		}
	}
	up := func(in string, a netip.Addr, at time.Time) {
		st.note(slotEvent{slotKey: slotKey{in, "p-0", "zd-slot" + strconv.Itoa(int(a.As4()[3])-1)}, kind: eventUp, at: at})
	}
	up("h0", a1, t0)
	up("h1", a1, t0.Add(100*time.Millisecond))
	up("h1", a1, t0.Add(10*time.Second)) // a late flap after Ready does not count
	up("h0", a2, t0)
	up("h1", a2, t0.Add(2*time.Second))
	up("h0", a3, t0)
	st.ready = map[string]readyAt{
		"ok":      {a1, t0.Add(300 * time.Millisecond)},
		"early":   {a2, t0.Add(time.Second)},
		"missing": {a3, t0.Add(time.Second)},
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

// occupy has slot (of backend p-0) of instance in leave maintenance for
// address a at from, and a state read see it a second later.
func occupy(st *ScaleTimes, in, slot string, a netip.Addr, from time.Time) {
	st.note(slotEvent{slotKey: slotKey{in, "p-0", slot}, kind: eventActive, at: from})
	st.history(slotKey{in, "p-0", slot}).saw(a, false, span{from.Add(time.Second), from.Add(time.Second + time.Millisecond)})
}

// Scenario: the drain latency of a pod is from its deletion to the last
// instance setting it to drain; a pod an instance never drained is named,
// with the instance and the slot that held its address.
func TestScaleTimesDrainLatencies(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	a1, a2 := netip.MustParseAddr("10.80.0.1"), netip.MustParseAddr("10.80.0.2")
	st := newScaleTimes()
	st.instances = []string{"h0", "h1"}
	drain := func(in, slot string, at time.Time) {
		st.note(slotEvent{slotKey: slotKey{in, "p-0", slot}, kind: eventDrain, at: at})
	}
	occupy(st, "h0", "zd-slot1", a1, t0.Add(-time.Minute))
	occupy(st, "h1", "zd-slot1", a1, t0.Add(-time.Minute))
	occupy(st, "h0", "zd-slot2", a2, t0.Add(-time.Minute))
	occupy(st, "h1", "zd-slot2", a2, t0.Add(-time.Minute))
	drain("h0", "zd-slot1", t0.Add(20*time.Millisecond))
	drain("h1", "zd-slot1", t0.Add(45*time.Millisecond))
	drain("h0", "zd-slot2", t0.Add(20*time.Millisecond))
	lat, undrained := st.DrainLatencies(map[string]time.Time{"p1": t0, "p2": t0}, map[string]netip.Addr{"p1": a1, "p2": a2})
	if len(lat) != 1 || lat[0] != 45*time.Millisecond {
		t.Errorf("latencies %v, want [45ms]", lat)
	}
	want := "zd-scale/p2 (10.80.0.2): no drain on h1 (slot p-0/zd-slot2)"
	if len(undrained) != 1 || undrained[0].String() != want {
		t.Errorf("undrained %v, want [%s]", undrained, want)
	}
}

// Scenario: a light pod is drained, exits, and its slot is freed and
// taken by the next pod of the rollout before the recorder reads the
// backend after the drain. The drain is the old pod's (the address the
// slot had when HAProxy logged it), not the new pod's that the read after
// the event sees; the new pod's UP is its own. A drain in an occupancy no
// read saw is not attributed to anyone, and said so.
func TestScaleTimesAttributesAReusedSlotByTheEventsTime(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	oldPod, newPod := netip.MustParseAddr("10.80.0.7"), netip.MustParseAddr("10.80.0.9")
	st := newScaleTimes()
	st.instances = []string{"h0"}
	k := slotKey{"h0", "p-0", "zd-slot3"}
	h := st.history(k)
	ev := func(kind slotEventKind, at time.Time) { st.note(slotEvent{slotKey: k, kind: kind, at: at}) }
	read := func(a netip.Addr, maint bool, at time.Time) { h.saw(a, maint, span{at, at.Add(2 * time.Millisecond)}) }

	read(netip.MustParseAddr("0.0.0.0"), true, ms(-2000)) // free
	ev(eventActive, ms(-1500))                            // the old pod claims it
	ev(eventUp, ms(-500))
	read(oldPod, false, ms(-400)) // the read after its UP
	read(oldPod, false, ms(-100)) // reads for other slots' events
	ev(eventDrain, ms(10))        // the old pod deleted at 0
	ev(eventMaint, ms(60))        // drained everywhere, exited, freed
	ev(eventActive, ms(80))       // the new pod claims the slot at once
	read(newPod, false, ms(150))  // the recorder's read after the drain
	ev(eventUp, ms(1200))
	read(newPod, false, ms(1250))

	lat, undrained := st.DrainLatencies(map[string]time.Time{"old": t0}, map[string]netip.Addr{"old": oldPod})
	if len(lat) != 1 || lat[0] != 10*time.Millisecond || len(undrained) != 0 {
		t.Errorf("old pod: latencies %v undrained %v, want [10ms] and none", lat, undrained)
	}
	if _, undrained := st.DrainLatencies(map[string]time.Time{"new": ms(2000)}, map[string]netip.Addr{"new": newPod}); len(undrained) != 1 {
		t.Errorf("new pod credited with the old pod's drain: undrained %v", undrained)
	}
	st.ready = map[string]readyAt{"new": {newPod, ms(1300)}}
	if lat, early, missing := st.GateLatencies([]string{"new"}); len(lat) != 1 || lat[0] != 100*time.Millisecond || early != nil || missing != nil {
		t.Errorf("new pod's gate: %v early %v missing %v, want [100ms]", lat, early, missing)
	}
	a := st.Attribution()
	if a.ReadAfterMisses != 1 || len(a.Unattributed) != 0 {
		t.Errorf("attribution %+v, want 1 drain the read after the event misplaces, none lost", a)
	}

	ev(eventDrain, ms(3000)) // the new pod's drain
	ev(eventMaint, ms(3050))
	ev(eventActive, ms(3060))
	ev(eventUp, ms(4000))    // a third pod, never read:
	ev(eventDrain, ms(4500)) // its drain cannot be credited
	ev(eventMaint, ms(4550))
	a = st.Attribution()
	if len(a.Unattributed) != 2 || !strings.Contains(a.Unattributed[0], "no read during the occupancy") {
		t.Errorf("unattributed %q, want the third pod's UP and drain", a.Unattributed)
	}
	if lat, _ := st.DrainLatencies(map[string]time.Time{"new": ms(2990)}, map[string]netip.Addr{"new": newPod}); len(lat) != 1 || lat[0] != 10*time.Millisecond {
		t.Errorf("new pod's own drain: %v, want [10ms]", lat)
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
