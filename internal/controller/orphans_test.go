package controller

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

const orphanID = provider.TargetID(provider.OrphanPrefix + "zd-slot3")

// orphanCycle runs planOrphans for one cycle with a 30 s grace.
func orphanCycle(t *testing.T, now time.Time, s provider.PoolStatus, memo map[provider.TargetID]time.Time) (action, int64) {
	t.Helper()
	return orphanCycleOld(t, now, s, memo, false)
}

func orphanCycleOld(t *testing.T, now time.Time, s provider.PoolStatus, memo map[provider.TargetID]time.Time, oldWorkers bool) (action, int64) {
	t.Helper()
	ps := planOrphans(orphanInput{Now: now, Grace: 30 * time.Second, Decide: true, Pool: s, Memo: memo, OldWorkers: oldWorkers})
	for _, p := range ps {
		if p.ID == orphanID {
			return p.Action, p.Sessions
		}
	}
	if len(ps) != 0 {
		t.Fatalf("plans for IDs that are not orphans: %+v", ps)
	}
	return actNone, 0
}

// Scenario: a slot turns orphan (its pod was deleted while the controller
// was down) and stays one. Expectation: nothing is done while it is younger
// than the grace; at the grace it is drained (still in rotation), and freed
// on the next cycle, when no instance has a session left.
func TestPlanOrphanWaitsForGraceThenDrainsAndFrees(t *testing.T) {
	memo := map[provider.TargetID]time.Time{}
	healthy := pool(orphanID, provider.HealthHealthy, provider.HealthHealthy, 0)
	for _, after := range []time.Duration{0, 10 * time.Second, 29 * time.Second} {
		if a, _ := orphanCycle(t, t0.Add(after), healthy, memo); a != actNone {
			t.Fatalf("orphan seen for %s (grace 30s): %s, want none", after, a)
		}
	}
	if a, _ := orphanCycle(t, t0.Add(30*time.Second), healthy, memo); a != actDrain {
		t.Fatalf("orphan at the grace, in rotation: %s, want drain", a)
	}
	drained := pool(orphanID, provider.HealthDrained, provider.HealthDrained, 0)
	if a, _ := orphanCycle(t, t0.Add(31*time.Second), drained, memo); a != actDeregister {
		t.Fatalf("orphan past the grace, drained everywhere: %s, want deregister (free)", a)
	}
}

// Scenario (issue 12: convergence after a restart took 38-41 s): the
// leader was down while a pod was deleted; a serve replica drained it on
// every instance (its drain endpoint answered the preStop hook) and the
// pod is gone. The restarted leader finds its slot as an orphan, drained
// everywhere with no session. Expectation: freed on the first cycle that
// may judge it, not 30 s later; the same orphan still in rotation, or
// drained but with a session left, waits as before.
func TestPlanOrphanDrainedEverywhereIsFreedAtOnce(t *testing.T) {
	drained := pool(orphanID, provider.HealthDrained, provider.HealthDrained, 0)
	if a, _ := orphanCycle(t, t0, drained, map[provider.TargetID]time.Time{}); a != actDeregister {
		t.Fatalf("orphan first seen drained on every instance: %s, want deregister (free) at once", a)
	}
	oneInRotation := pool(orphanID, provider.HealthDrained, provider.HealthHealthy, 0)
	if a, _ := orphanCycle(t, t0, oneInRotation, map[provider.TargetID]time.Time{}); a != actNone {
		t.Fatalf("orphan first seen, still in rotation on one instance: %s, want none (the grace)", a)
	}
	withSession := pool(orphanID, provider.HealthDraining, provider.HealthDrained, 1)
	if a, _ := orphanCycle(t, t0, withSession, map[provider.TargetID]time.Time{}); a != actNone {
		t.Fatalf("orphan first seen draining with a session: %s, want none", a)
	}
	if a, _ := orphanCycleOld(t, t0, drained, map[provider.TargetID]time.Time{}, true); a != actNone {
		t.Fatalf("orphan first seen drained while an old worker may still use it: %s, want none", a)
	}
}

// Scenario: an orphan old enough to free, while a reloaded instance's old
// worker may still send it requests. Expectation: drained, not freed.
func TestPlanOrphanWaitsForOldWorkers(t *testing.T) {
	memo := map[provider.TargetID]time.Time{}
	s := pool(orphanID, provider.HealthDrained, provider.HealthDrained, 0)
	orphanCycle(t, t0, s, memo)
	if a, _ := orphanCycleOld(t, t0.Add(time.Minute), s, memo, true); a != actNone {
		t.Fatalf("orphan with an old worker around: %s, want none", a)
	}
}

// Scenario: an orphan seen for 20 s, then a new pod gets its address and
// its binding tells the provider, which reports the slot under the pod's
// ID (the orphan is gone); 15 s later that pod is gone too and the slot is
// an orphan again. Expectation: never freed at the first orphan's grace
// (t0+30 s); the grace starts over when the orphan comes back.
func TestPlanOrphanAdoptedIsNotFreed(t *testing.T) {
	memo := map[provider.TargetID]time.Time{}
	orphaned := pool(orphanID, provider.HealthHealthy, provider.HealthHealthy, 0)
	orphanCycle(t, t0, orphaned, memo)
	orphanCycle(t, t0.Add(20*time.Second), orphaned, memo)
	adopted := pool(TargetID("shop", "web", "web-9"), provider.HealthHealthy, provider.HealthHealthy, 0)
	if a, _ := orphanCycle(t, t0.Add(25*time.Second), adopted, memo); a != actNone {
		t.Fatalf("slot adopted by a known target: %s, want none", a)
	}
	if len(memo) != 0 {
		t.Fatalf("adopted orphan still remembered: %v", memo)
	}
	for _, at := range []time.Duration{35 * time.Second, 60 * time.Second} {
		if a, _ := orphanCycle(t, t0.Add(at), orphaned, memo); a != actNone {
			t.Fatalf("orphan again since t0+35s, at t0+%s: %s, want none (grace restarted)", at, a)
		}
	}
	if a, _ := orphanCycle(t, t0.Add(65*time.Second), orphaned, memo); a != actDrain {
		t.Fatalf("orphan again for 30s: %s, want drain", a)
	}
}

// Scenario: an orphan past the grace still has sessions (a client of the
// old pod keeps a connection, or HAProxy still balances to it).
// Expectation: drain first; no free while any instance has a session; free
// once the sessions reach 0.
func TestPlanOrphanWithSessionsIsDrainedFirst(t *testing.T) {
	memo := map[provider.TargetID]time.Time{}
	orphanCycle(t, t0, pool(orphanID, provider.HealthHealthy, provider.HealthHealthy, 3), memo)
	if a, _ := orphanCycle(t, t0.Add(time.Minute), pool(orphanID, provider.HealthHealthy, provider.HealthDraining, 3), memo); a != actDrain {
		t.Fatalf("old orphan in rotation on one instance: %s, want drain", a)
	}
	a, n := orphanCycle(t, t0.Add(61*time.Second), pool(orphanID, provider.HealthDraining, provider.HealthDraining, 2), memo)
	if a != actNone || n != 4 {
		t.Fatalf("orphan draining with 2 sessions per instance: %s (%d sessions), want none with 4", a, n)
	}
	if a, _ := orphanCycle(t, t0.Add(62*time.Second), pool(orphanID, provider.HealthDrained, provider.HealthDraining, 1), memo); a != actNone {
		t.Fatalf("orphan with 1 session on one instance: %s, want none", a)
	}
	if a, _ := orphanCycle(t, t0.Add(63*time.Second), pool(orphanID, provider.HealthDrained, provider.HealthDrained, 0), memo); a != actDeregister {
		t.Fatalf("orphan at 0 sessions: %s, want deregister", a)
	}
}

// Scenario: this cycle may not judge orphans (not the elected binding, a
// binding of the pool has not told its addresses, or a serve replica), and
// the grace is zero. Expectation: no plan, and the memo is cleared, so an
// orphan in rotation must be seen for a whole grace of judged cycles (one
// drained everywhere needs none: TestPlanOrphanDrainedEverywhereIsFreedAtOnce).
func TestPlanOrphanUndecidedOrDisabled(t *testing.T) {
	memo := map[provider.TargetID]time.Time{}
	s := pool(orphanID, provider.HealthHealthy, provider.HealthHealthy, 0)
	orphanCycle(t, t0, s, memo)
	if ps := planOrphans(orphanInput{Now: t0.Add(time.Minute), Grace: 30 * time.Second, Pool: s, Memo: memo}); len(ps) != 0 || len(memo) != 0 {
		t.Fatalf("undecided cycle: plans %+v, memo %v; want none", ps, memo)
	}
	if a, _ := orphanCycle(t, t0.Add(61*time.Second), s, memo); a != actNone {
		t.Fatalf("first judged cycle after an undecided one: %s, want none", a)
	}
	if ps := planOrphans(orphanInput{Now: t0.Add(time.Hour), Grace: 0, Decide: true, Pool: s, Memo: memo}); len(ps) != 0 {
		t.Fatalf("grace 0 (never free): %+v", ps)
	}
}

// Scenario: bindings shop/web and shop/api share pool be_web; the pool
// has a target of each and one orphan. Expectation: web's plan and orphan
// plan never act on api's target; only the first binding judges orphans,
// and only once every binding of the pool told the provider its addresses
// recently (after a controller restart web may not have run yet: its
// targets would look like orphans).
func TestSharedPoolBindingsDoNotFreeEachOthersTargets(t *testing.T) {
	web, api := types.NamespacedName{Namespace: "shop", Name: "web"}, types.NamespacedName{Namespace: "shop", Name: "api"}
	apiTarget := TargetID("shop", "api", "api-1")
	s := pool(apiTarget, provider.HealthDrained, provider.HealthDrained, 0)
	for i := range s.Instances {
		s.Instances[i].Targets[orphanID] = provider.TargetStatus{Health: provider.HealthDrained, Addr: "10.0.0.9:8080"}
	}
	if ps := plan(planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Pool: s, Memo: map[provider.TargetID]*memo{}}); len(ps) != 0 {
		t.Fatalf("binding web planned for api's target: %+v", ps)
	}
	memo := map[provider.TargetID]time.Time{}
	for _, at := range []time.Duration{0, time.Hour} {
		for _, p := range planOrphans(orphanInput{Now: t0.Add(at), Grace: 30 * time.Second, Decide: true, Pool: s, Memo: memo}) {
			if p.ID != orphanID {
				t.Fatalf("orphan plan for a binding's target: %+v", p)
			}
		}
	}

	window := time.Minute
	cases := []struct {
		name    string
		self    types.NamespacedName
		members []poolMember
		want    bool
		why     string
	}{
		{"web never told its addresses (controller just started)", api,
			[]poolMember{{Key: web}, {Key: api, Known: t0}}, false, "shop/web has not told"},
		{"both recent: the first by name judges", api,
			[]poolMember{{Key: web, Known: t0}, {Key: api, Known: t0}}, true, ""},
		{"both recent: the other does not", web,
			[]poolMember{{Key: web, Known: t0}, {Key: api, Known: t0}}, false, "binding shop/api judges"},
		{"web's last Know older than the window", api,
			[]poolMember{{Key: web, Known: t0.Add(-2 * time.Minute)}, {Key: api, Known: t0}}, false, "shop/web has not told"},
		{"alone in the pool", web, []poolMember{{Key: web, Known: t0}}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, why := orphanDuty(c.self, c.members, t0, window)
			if ok != c.want || !strings.Contains(why, c.why) {
				t.Fatalf("orphanDuty(%s) = %v %q, want %v %q", c.self, ok, why, c.want, c.why)
			}
		})
	}
}
