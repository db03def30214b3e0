package providertest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// promises, in the order they are checked. Each registers its own targets
// and leaves the pool as it found it.
var promises = []Promise{
	{ID: "NoTrafficBeforeChecksPass", Title: "no balanced request reaches a target before the LB's checks pass", check: checkNoTrafficBeforeChecks},
	{ID: "FailingTargetStaysOut", Title: "a target whose checks fail never gets a request and never turns Healthy", check: checkFailingTarget},
	{ID: "RegisterIdempotent", Title: "Register is idempotent: again while checked, again while Healthy, again from a fresh provider", check: checkRegisterIdempotent},
	{ID: "StatusEveryInstance", Title: "Status reports every instance, each with the target", check: checkStatusEveryInstance},
	{ID: "DrainStopsNewRequests", Title: "SetDraining stops new requests within one Status cycle; an open request completes", check: checkDrainStops},
	{ID: "DrainedOnlyWhenIdle", Title: "Drained is reported only when the LB sends the target nothing", check: checkDrainedOnlyWhenIdle},
	{ID: "DeregisterBusy", Title: "Deregister returns ErrTargetBusy while a session remains, then succeeds", check: checkDeregisterBusy},
	{ID: "AbsentTargetsIgnored", Title: "SetDraining and Deregister ignore absent targets", check: checkAbsentIgnored},
	{ID: "ReregisterAfterReload", Title: "after a reload or restart the epoch changes and registering again restores the target safely", check: checkReload},
	{ID: "PoolFull", Title: "Register into a full pool returns ErrPoolFull", check: checkPoolFull},
	{ID: "UnreachableInstance", Title: "an unreachable instance is reported with code Unreachable, the others still are", check: checkUnreachable},
	{ID: "Stateless", Title: "a fresh provider given the same Pool.Known reports and drives the same targets", check: checkStateless},
	{ID: "Enable", Title: "Enable is a no-op with PromotionSelf and required with PromotionExplicit", check: checkEnable},
	{ID: "VerdictsPushed", Title: "a provider that declares PushesVerdicts pushes every instance's verdict no later than a poll sees it", check: checkVerdictsPushed},
}

// NoTrafficBeforeChecksPass: a target registered while its app passes the
// checks gets its first balanced request through each frontend only after
// Rise passed checks (ActiveHealthChecks). Without active checks, Healthy
// must mean that every instance balances to it.
func checkNoTrafficBeforeChecks(ctx context.Context, k *run) verdict {
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	k.load()
	mark := tg.mark()
	start := time.Now()
	if err := k.register(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("Register: %v", err)
	}
	if _, err := k.waitHealthy(ctx, p, k.h.Pool, tg.t.ID); err != nil {
		return broken("%v", err)
	}
	healthy := time.Since(start)
	if k.caps.Promotion == provider.PromotionExplicit {
		if err := k.enable(ctx, p, k.h.Pool, tg.t); err != nil {
			return broken("Enable after Healthy: %v", err)
		}
	}
	if err := k.waitArrivals(ctx, tg, mark); err != nil {
		return broken("Status says Healthy on every instance, but %v", err)
	}
	if !k.caps.ActiveHealthChecks {
		return kept("no active checks declared: Healthy on every instance after %s, and then requests arrived through all %d frontend(s)",
			healthy.Round(time.Millisecond), len(k.h.Frontends))
	}
	least, gap, violation := k.beforeRise(tg.since(mark))
	if violation != "" {
		return broken("%s", violation)
	}
	return kept("first request through each of %d frontend(s) after at least %d passed checks (rise %d), at least %s after the first passed check; Healthy after %s",
		len(k.h.Frontends), least, k.h.Check.Rise, gap.Round(time.Millisecond), healthy.Round(time.Millisecond))
}

// beforeRise checks each frontend's first request since the events began
// against the LB's rise, two ways: at least Rise passed checks were logged
// before it (counted over every instance, since all check the same
// listener), and it came at least (Rise-1) intervals (less a quarter for
// timer slack) after the first passed check: each instance spaces its own
// checks by the interval and none began before that first pass, so this
// bound holds per instance. It returns the smallest count and gap seen, or
// the violation.
func (k *run) beforeRise(events []event) (least int, gap time.Duration, violation string) {
	passes, _ := firstBalanced(events, len(k.h.Frontends))
	var firstPass time.Time
	firstReq := make([]time.Time, len(k.h.Frontends))
	for _, e := range events {
		switch {
		case e.check && e.pass && firstPass.IsZero():
			firstPass = e.at
		case !e.check && e.frontend >= 0 && e.frontend < len(firstReq) && firstReq[e.frontend].IsZero():
			firstReq[e.frontend] = e.at
		}
	}
	minGap := time.Duration(k.h.Check.Rise-1) * k.h.Check.Interval * 3 / 4
	least, gap = -1, -1
	for i, n := range passes {
		if n < k.h.Check.Rise {
			return 0, 0, fmt.Sprintf("the first request through frontend %s arrived after %d passed check(s); rise is %d", k.h.Frontends[i], n, k.h.Check.Rise)
		}
		g := firstReq[i].Sub(firstPass)
		if g < minGap {
			return 0, 0, fmt.Sprintf("the first request through frontend %s arrived %s after the first passed check: %d checks %s apart take at least %s",
				k.h.Frontends[i], g.Round(time.Millisecond), k.h.Check.Rise, k.h.Check.Interval, time.Duration(k.h.Check.Rise-1)*k.h.Check.Interval)
		}
		if least < 0 || n < least {
			least = n
		}
		if gap < 0 || g < gap {
			gap = g
		}
	}
	return least, gap, ""
}

// FailingTargetStaysOut: a target whose checks fail, registered twice,
// gets no request and is never Healthy while the LB checks it again and
// again.
func checkFailingTarget(ctx context.Context, k *run) verdict {
	if !k.caps.ActiveHealthChecks {
		return skipped("the provider declares no active health checks: the LB cannot tell a failing target")
	}
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(false)
	if err != nil {
		return broken("%v", err)
	}
	k.load()
	mark := tg.mark()
	for i := 1; i <= 2; i++ {
		if err := k.register(ctx, p, k.h.Pool, tg.t); err != nil {
			return broken("Register #%d: %v", i, err)
		}
	}
	instances := max(1, k.h.Instances)
	wantChecks := (k.h.Check.Rise + 1) * instances
	start := time.Now()
	var last provider.PoolStatus
	var checked bool
	v := k.observe(ctx, p, k.h.Pool, k.h.Timeout, func(st provider.PoolStatus) *verdict {
		last = st
		for _, in := range st.Instances {
			ts, ok := in.Targets[tg.t.ID]
			switch {
			case in.Err != nil:
				v := broken("Status: instance %s: %v", in.Instance, in.Err)
				return &v
			case !ok:
				v := broken("instance %s does not report the registered target", in.Instance)
				return &v
			case ts.Health == provider.HealthHealthy:
				v := broken("instance %s reports the target Healthy while every check fails (%s)", in.Instance, ts.Reason)
				return &v
			}
		}
		if _, _, n := tg.counts(mark); n > 0 {
			v := broken("%d balanced request(s) reached the target while its checks failed", n)
			return &v
		}
		_, failed, _ := tg.counts(mark)
		if failed >= wantChecks && time.Since(start) >= k.checkWindow() {
			checked = true
			return &verdict{}
		}
		return nil
	})
	if v != nil && v.outcome != "" {
		return *v
	}
	_, failed, balanced := tg.counts(mark)
	if balanced > 0 {
		return broken("%d balanced request(s) reached the target while its checks failed", balanced)
	}
	if !checked {
		return broken("the LB made only %d failed check(s) on %s in %s (want %d): is Harness.CheckPath its health-check path?",
			failed, k.h.CheckPath, k.h.Timeout, wantChecks)
	}
	return kept("%d failed checks over %s: no request, never Healthy (%s)", failed, time.Since(start).Round(time.Millisecond), instancesOf(last, tg.t.ID))
}

// RegisterIdempotent: Register twice at once, then again once Healthy,
// and again from a fresh provider: no error, one entry per instance with
// the target's address (no second entry for it, as an LB that identifies
// targets by address could add), still Healthy and still receiving
// requests.
func checkRegisterIdempotent(ctx context.Context, k *run) verdict {
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	k.load()
	if err := k.register(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("Register #1: %v", err)
	}
	if err := k.admit(ctx, p, tg); err != nil { // Register #2, while being checked
		return broken("%v", err)
	}
	if err := k.register(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("Register #3, while Healthy: %v", err)
	}
	fresh, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	if err := k.register(ctx, fresh, k.h.Pool, tg.t); err != nil {
		return broken("Register #4, from a fresh provider, while Healthy: %v", err)
	}
	mark := tg.mark()
	v := k.observe(ctx, p, k.h.Pool, k.checkWindow(), func(st provider.PoolStatus) *verdict {
		if ok, reason, msg := st.Healthy(tg.t.ID); !ok {
			v := broken("after Register while Healthy, not Healthy any more: %s: %s", reason, msg)
			return &v
		}
		for _, in := range st.Instances {
			if a := in.Targets[tg.t.ID].Addr; a != "" && a != tg.t.Addr() {
				v := broken("instance %s reports address %s for the target, not %s", in.Instance, a, tg.t.Addr())
				return &v
			}
			for id, ts := range in.Targets {
				if id != tg.t.ID && ts.Addr == tg.t.Addr() {
					v := broken("instance %s has a second entry %s with the target's address %s", in.Instance, id, ts.Addr)
					return &v
				}
			}
		}
		return nil
	})
	if v != nil {
		return *v
	}
	if err := k.waitArrivals(ctx, tg, mark); err != nil {
		return broken("after Register while Healthy: %v", err)
	}
	return kept("4 Register calls (2 while checked, 2 while Healthy, the last from a fresh provider): no error, one entry per instance, Healthy and balanced to through every frontend for %s after", k.checkWindow())
}

// StatusEveryInstance: one entry per instance, named, read, with the
// target; as many as the harness says.
func checkStatusEveryInstance(ctx context.Context, k *run) verdict {
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	k.load()
	if err := k.admit(ctx, p, tg); err != nil {
		return broken("%v", err)
	}
	st, err := k.status(ctx, p, k.h.Pool)
	if err != nil {
		return broken("Status: %v", err)
	}
	if st.Pool != k.h.Pool {
		return broken("Status names pool %q, not %q", st.Pool, k.h.Pool)
	}
	if len(st.Instances) == 0 || k.h.Instances > 0 && len(st.Instances) != k.h.Instances {
		return broken("Status reports %d instance(s), want %d", len(st.Instances), max(1, k.h.Instances))
	}
	seen := map[string]bool{}
	var names []string
	for i, in := range st.Instances {
		switch {
		case in.Instance == "":
			return broken("instance #%d has no name", i)
		case seen[in.Instance]:
			return broken("instance %s reported twice", in.Instance)
		case in.Err != nil:
			return broken("instance %s: %v", in.Instance, in.Err)
		case k.caps.VolatileRuntimeState && in.Epoch == "":
			return broken("instance %s reports no Epoch, but the provider declares VolatileRuntimeState", in.Instance)
		}
		if ts, ok := in.Targets[tg.t.ID]; !ok || ts.Health != provider.HealthHealthy {
			return broken("instance %s: the target is %s", in.Instance, instancesOf(provider.PoolStatus{Instances: []provider.InstanceStatus{in}}, tg.t.ID))
		}
		seen[in.Instance] = true
		names = append(names, in.Instance)
	}
	return kept("%d instance(s) (%s), each read, with an epoch, reporting the target Healthy", len(names), strings.Join(names, ", "))
}

// DrainStopsNewRequests: with a request held open on the target,
// SetDraining and one Status cycle later no new request arrives; the held
// one completes.
func checkDrainStops(ctx context.Context, k *run) verdict {
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	ld := k.load()
	if err := k.admit(ctx, p, tg); err != nil {
		return broken("%v", err)
	}
	h, err := k.hold(ctx, tg)
	if err != nil {
		return broken("%v", err)
	}
	if err := k.setDraining(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("SetDraining: %v", err)
	}
	st, err := k.status(ctx, p, k.h.Pool) // one cycle
	if err != nil {
		return broken("Status after SetDraining: %v", err)
	}
	for _, in := range st.Instances {
		if ts := in.Targets[tg.t.ID]; ts.Health == provider.HealthHealthy {
			return broken("instance %s still reports the target Healthy after SetDraining", in.Instance)
		}
	}
	if err := ld.settle(ctx, 1, k.h.Timeout); err != nil {
		return broken("load: %v", err)
	}
	mark := tg.mark()
	if err := ld.settle(ctx, 20, k.h.Timeout); err != nil {
		return broken("load: %v", err)
	}
	time.Sleep(k.checkWindow())
	if err := ld.settle(ctx, 1, k.h.Timeout); err != nil {
		return broken("load: %v", err)
	}
	if _, _, n := tg.counts(mark); n > 0 {
		return broken("%d new request(s) reached the target after SetDraining and one Status cycle", n)
	}
	if err := h.finish(k.h.Timeout); err != nil {
		return broken("%v", err)
	}
	return kept("no new request for %s after SetDraining + one Status cycle (%s); the request held open through frontend %d completed (200)",
		k.checkWindow(), instancesOf(st, tg.t.ID), h.frontend)
}

// DrainedOnlyWhenIdle: while a request is held open on a draining target,
// no Status says Drained (with DrainSessions, the session is counted);
// once it completes, Drained comes, and nothing is sent after.
func checkDrainedOnlyWhenIdle(ctx context.Context, k *run) verdict {
	if k.caps.DrainSignal == provider.DrainTimer {
		return skipped("drain signal Timer: the LB does not say when it stops sending; the controller's timer decides")
	}
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	ld := k.load()
	if err := k.admit(ctx, p, tg); err != nil {
		return broken("%v", err)
	}
	h, err := k.hold(ctx, tg)
	if err != nil {
		return broken("%v", err)
	}
	if err := k.setDraining(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("SetDraining: %v", err)
	}
	var reads int
	var sessions int64
	v := k.observe(ctx, p, k.h.Pool, k.checkWindow(), func(st provider.PoolStatus) *verdict {
		reads++
		drained, n := st.Drained(tg.t.ID)
		if drained {
			v := broken("Status says Drained while a request through frontend %d is still open (%s)", h.frontend, instancesOf(st, tg.t.ID))
			return &v
		}
		if k.caps.DrainSignal == provider.DrainSessions && n < 1 {
			v := broken("drain signal Sessions, but %d session(s) reported while a request is open (%s)", n, instancesOf(st, tg.t.ID))
			return &v
		}
		sessions = max(sessions, n)
		return nil
	})
	if v != nil {
		return *v
	}
	if err := h.finish(k.h.Timeout); err != nil {
		return broken("%v", err)
	}
	var st provider.PoolStatus
	if err := poll(ctx, k.h.Timeout, k.cycle(), func() (bool, string) {
		st, err = k.status(ctx, p, k.h.Pool)
		if err != nil {
			return false, fmt.Sprintf("Status: %v", err)
		}
		ok, _ := st.Drained(tg.t.ID)
		return ok, "not Drained after the open request completed: " + instancesOf(st, tg.t.ID)
	}); err != nil {
		return broken("%v", err)
	}
	mark := tg.mark()
	if err := ld.settle(ctx, 20, k.h.Timeout); err != nil {
		return broken("load: %v", err)
	}
	if _, _, n := tg.counts(mark); n > 0 {
		return broken("%d request(s) reached the target after Status said Drained", n)
	}
	return kept("not Drained in %d Status reads while a request was open (up to %d session(s) counted); Drained after it completed (%s), and no request after",
		reads, sessions, instancesOf(st, tg.t.ID))
}

// DeregisterBusy: Deregister while a request is held open returns an error
// matching ErrTargetBusy and keeps the target out of rotation; once the
// request completes, Deregister succeeds and the target is gone.
func checkDeregisterBusy(ctx context.Context, k *run) verdict {
	if k.caps.DrainSignal == provider.DrainTimer {
		return skipped("drain signal Timer: the LB does not know the target's sessions")
	}
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	ld := k.load()
	if err := k.admit(ctx, p, tg); err != nil {
		return broken("%v", err)
	}
	h, err := k.hold(ctx, tg)
	if err != nil {
		return broken("%v", err)
	}
	if err := k.setDraining(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("SetDraining: %v", err)
	}
	err = k.deregisterOnce(ctx, p, k.h.Pool, tg.t)
	switch {
	case err == nil:
		return broken("Deregister returned nil while a request through frontend %d was open", h.frontend)
	case !errors.Is(err, provider.ErrTargetBusy):
		return broken("Deregister while a request was open returned %v (code %s), not an error matching provider.ErrTargetBusy", err, provider.CodeOf(err))
	}
	busy := err
	if err := ld.settle(ctx, 1, k.h.Timeout); err != nil {
		return broken("load: %v", err)
	}
	mark := tg.mark()
	if err := ld.settle(ctx, 20, k.h.Timeout); err != nil {
		return broken("load: %v", err)
	}
	if _, _, n := tg.counts(mark); n > 0 {
		return broken("%d new request(s) reached the target after a busy Deregister", n)
	}
	if err := h.finish(k.h.Timeout); err != nil {
		return broken("after a busy Deregister: %v", err)
	}
	tries := 0
	if err := poll(ctx, k.h.Timeout, k.cycle(), func() (bool, string) {
		tries++
		err := k.deregisterOnce(ctx, p, k.h.Pool, tg.t)
		return err == nil, fmt.Sprintf("Deregister after the open request completed: %v", err)
	}); err != nil {
		return broken("%v", err)
	}
	st, err := k.status(ctx, p, k.h.Pool)
	if err != nil {
		return broken("Status after Deregister: %v", err)
	}
	for _, in := range st.Instances {
		if _, ok := in.Targets[tg.t.ID]; ok {
			return broken("instance %s still reports the target after Deregister succeeded", in.Instance)
		}
	}
	delete(k.known[k.h.Pool], tg.t.ID)
	return kept("busy while a request was open (%q); the request completed; Deregister succeeded after %d attempt(s) and the target is gone", busy, tries)
}

// AbsentTargetsIgnored: SetDraining and Deregister of a target never
// registered, and of one already deregistered, return nil.
func checkAbsentIgnored(ctx context.Context, k *run) verdict {
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	ghost, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	k.know(k.h.Pool, ghost.t) // the controller still knows a pod it drains
	if err := k.setDraining(ctx, p, k.h.Pool, ghost.t); err != nil {
		return broken("SetDraining of a target never registered: %v", err)
	}
	if err := k.deregisterOnce(ctx, p, k.h.Pool, ghost.t); err != nil {
		return broken("Deregister of a target never registered: %v", err)
	}
	gone, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	if err := k.register(ctx, p, k.h.Pool, gone.t); err != nil {
		return broken("Register: %v", err)
	}
	if err := k.deregister(ctx, p, k.h.Pool, gone.t); err != nil {
		return broken("%v", err)
	}
	k.know(k.h.Pool, gone.t)
	if err := k.setDraining(ctx, p, k.h.Pool, gone.t); err != nil {
		return broken("SetDraining of a deregistered target: %v", err)
	}
	if err := k.deregisterOnce(ctx, p, k.h.Pool, gone.t); err != nil {
		return broken("Deregister of a deregistered target: %v", err)
	}
	st, err := k.status(ctx, p, k.h.Pool)
	if err != nil {
		return broken("Status: %v", err)
	}
	for _, in := range st.Instances {
		for _, id := range []provider.TargetID{ghost.t.ID, gone.t.ID} {
			if _, ok := in.Targets[id]; ok {
				return broken("instance %s reports %s, which was never registered or was deregistered", in.Instance, id)
			}
		}
	}
	return kept("SetDraining and Deregister returned nil for a target never registered and for one deregistered; neither appears in Status")
}

// ReregisterAfterReload: the harness reloads the LB; the epoch changes on
// at least one instance; with VolatileRuntimeState, Register again (what
// the controller does for a target absent somewhere) brings it back
// through the LB's checks; without, it survives as it was.
func checkReload(ctx context.Context, k *run) verdict {
	if k.h.Reload == nil {
		return skipped("the harness cannot reload the LB (Harness.Reload)")
	}
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	ld := k.load()
	if err := k.admit(ctx, p, tg); err != nil {
		return broken("%v", err)
	}
	before, err := k.status(ctx, p, k.h.Pool)
	if err != nil {
		return broken("Status before the reload: %v", err)
	}
	reloaded := time.Now()
	if err := k.h.Reload(ctx); err != nil {
		return broken("Harness.Reload: %v", err)
	}
	var after provider.PoolStatus
	if err := poll(ctx, k.h.Timeout, k.cycle(), func() (bool, string) {
		after, err = k.status(ctx, p, k.h.Pool)
		return err == nil, fmt.Sprintf("Status after the reload: %v", err)
	}); err != nil {
		return broken("%v", err)
	}
	var changed, absent []string
	for _, in := range after.Instances {
		for _, old := range before.Instances {
			if old.Instance == in.Instance && old.Epoch != in.Epoch {
				changed = append(changed, in.Instance)
				if !in.StartedAt.IsZero() && in.StartedAt.Before(reloaded.Add(-2*time.Second)) {
					return broken("instance %s: epoch changed but StartedAt %s is before the reload (%s)", in.Instance, in.StartedAt.Format(time.RFC3339Nano), reloaded.Format(time.RFC3339Nano))
				}
			}
		}
		if _, ok := in.Targets[tg.t.ID]; !ok {
			absent = append(absent, in.Instance)
		}
	}
	if len(changed) == 0 {
		return broken("no instance's epoch changed across the reload (%d instance(s))", len(after.Instances))
	}
	if !k.caps.VolatileRuntimeState {
		if len(absent) > 0 {
			return broken("the provider declares no VolatileRuntimeState, but the target is absent after the reload on %s", strings.Join(absent, ", "))
		}
		if _, err := k.waitHealthy(ctx, p, k.h.Pool, tg.t.ID); err != nil {
			return broken("after the reload: %v", err)
		}
		return kept("epoch changed on %s; the target survived the reload", strings.Join(changed, ", "))
	}
	// Requests the previous process was still sending have arrived once
	// every load worker completed two more.
	if err := ld.settle(ctx, 2, k.h.Timeout); err != nil {
		return broken("load: %v", err)
	}
	mark := tg.mark()
	if err := k.register(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("Register after the reload: %v", err)
	}
	if _, err := k.waitHealthy(ctx, p, k.h.Pool, tg.t.ID); err != nil {
		return broken("after the reload and Register: %v", err)
	}
	if k.caps.Promotion == provider.PromotionExplicit {
		if err := k.enable(ctx, p, k.h.Pool, tg.t); err != nil {
			return broken("Enable after the reload: %v", err)
		}
	}
	if err := k.waitArrivals(ctx, tg, mark); err != nil {
		return broken("after the reload and Register: %v", err)
	}
	detail := fmt.Sprintf("epoch changed on %s", strings.Join(changed, ", "))
	if len(absent) == 0 {
		return kept("%s; the target kept its registration (as the LB restores it) and is Healthy", detail)
	}
	if k.caps.ActiveHealthChecks && len(absent) == len(after.Instances) {
		if _, _, violation := k.beforeRise(tg.since(mark)); violation != "" {
			return broken("%s; re-registered, %s", detail, violation)
		}
	}
	return kept("%s; the target was lost on %s, registered again, Healthy again after the LB's checks and balanced to through every frontend", detail, strings.Join(absent, ", "))
}

// PoolFull: Capacity targets fit in the limited pool; one more is refused
// with an error matching ErrPoolFull.
func checkPoolFull(ctx context.Context, k *run) verdict {
	lp := k.h.LimitedPool
	if lp == nil {
		return skipped("the harness has no pool of limited capacity (Harness.LimitedPool)")
	}
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	for i := 0; i < lp.Capacity; i++ {
		tg, err := k.target(true)
		if err != nil {
			return broken("%v", err)
		}
		if err := k.register(ctx, p, lp.Name, tg.t); err != nil {
			return broken("Register #%d of %d into pool %s: %v", i+1, lp.Capacity, lp.Name, err)
		}
	}
	extra, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	err = k.register(ctx, p, lp.Name, extra.t)
	switch {
	case err == nil:
		return broken("Register #%d into pool %s of capacity %d returned nil", lp.Capacity+1, lp.Name, lp.Capacity)
	case !errors.Is(err, provider.ErrPoolFull):
		return broken("Register into the full pool %s returned %v (code %s), not an error matching provider.ErrPoolFull", lp.Name, err, provider.CodeOf(err))
	}
	st, serr := k.status(ctx, p, lp.Name)
	if serr != nil {
		return broken("Status of pool %s: %v", lp.Name, serr)
	}
	for _, in := range st.Instances {
		if _, ok := in.Targets[extra.t.ID]; ok {
			return broken("instance %s reports the target refused with ErrPoolFull", in.Instance)
		}
	}
	return kept("%d target(s) registered into pool %s; the next: %v", lp.Capacity, lp.Name, err)
}

// UnreachableInstance: through a provider with one unreachable instance,
// Status reports it with code Unreachable and the others as usual, and
// every call returns an error naming it.
func checkUnreachable(ctx context.Context, k *run) verdict {
	if k.h.NewUnreachable == nil {
		return skipped("the harness has no provider with an unreachable instance (Harness.NewUnreachable)")
	}
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	k.load()
	if err := k.admit(ctx, p, tg); err != nil {
		return broken("%v", err)
	}
	pu, err := k.start(ctx, k.h.NewUnreachable)
	if err != nil {
		return broken("%v", err)
	}
	name := k.h.UnreachableInstance
	start := time.Now()
	st, err := k.status(ctx, pu, k.h.Pool)
	if v := unreachableErr("Status", err, name); v != nil {
		return *v
	}
	var others []string
	found := false
	for _, in := range st.Instances {
		if in.Instance == name {
			found = true
			if !errors.Is(in.Err, provider.ErrUnreachable) {
				return broken("InstanceStatus.Err of %s is %v (code %s), not code Unreachable", name, in.Err, provider.CodeOf(in.Err))
			}
			continue
		}
		if in.Err != nil {
			return broken("instance %s, reachable, has Err %v beside the unreachable %s", in.Instance, in.Err, name)
		}
		if ts, ok := in.Targets[tg.t.ID]; !ok || ts.Health != provider.HealthHealthy {
			return broken("instance %s, reachable, does not report the target Healthy beside the unreachable %s", in.Instance, name)
		}
		others = append(others, in.Instance)
	}
	if !found {
		return broken("Status has no entry for the unreachable instance %s", name)
	}
	if len(others) == 0 {
		return broken("Status reports no reachable instance beside %s", name)
	}
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Register", func() error { return k.register(ctx, pu, k.h.Pool, tg.t) }},
		{"SetDraining", func() error { return k.setDraining(ctx, pu, k.h.Pool, tg.t) }},
		{"Deregister", func() error { return k.deregisterOnce(ctx, pu, k.h.Pool, tg.t) }},
	}
	for _, c := range calls {
		if v := unreachableErr(c.name, c.fn(), name); v != nil {
			return *v
		}
	}
	sort.Strings(others)
	return kept("Status, Register, SetDraining and Deregister named %s with code Unreachable (4 calls in %s); %s still reported",
		name, time.Since(start).Round(time.Millisecond), strings.Join(others, ", "))
}

func unreachableErr(call string, err error, instance string) *verdict {
	var v verdict
	switch {
	case err == nil:
		v = broken("%s returned nil with instance %s unreachable", call, instance)
	case !errors.Is(err, provider.ErrUnreachable):
		v = broken("%s returned %v (code %s), not an error of code Unreachable", call, err, provider.CodeOf(err))
	case !strings.Contains(err.Error(), instance):
		v = broken("%s returned %q, which does not name instance %s", call, err, instance)
	default:
		return nil
	}
	return &v
}

// Stateless: a provider built afresh, given the same Pool.Known, reports
// the same targets with the same health; another fresh one drains the
// target (traffic stops) and a third deregisters it.
func checkStateless(ctx context.Context, k *run) verdict {
	a, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	ld := k.load()
	if err := k.admit(ctx, a, tg); err != nil {
		return broken("%v", err)
	}
	b, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	sa, err := k.status(ctx, a, k.h.Pool)
	if err != nil {
		return broken("Status: %v", err)
	}
	sb, err := k.status(ctx, b, k.h.Pool)
	if err != nil {
		return broken("Status from a fresh provider: %v", err)
	}
	if diff := diffStatus(sa, sb); diff != "" {
		return broken("a fresh provider reports otherwise: %s", diff)
	}
	if err := k.setDraining(ctx, b, k.h.Pool, tg.t); err != nil {
		return broken("SetDraining from a fresh provider: %v", err)
	}
	if _, err := k.status(ctx, b, k.h.Pool); err != nil {
		return broken("Status: %v", err)
	}
	if err := ld.settle(ctx, 1, k.h.Timeout); err != nil {
		return broken("load: %v", err)
	}
	mark := tg.mark()
	if err := ld.settle(ctx, 20, k.h.Timeout); err != nil {
		return broken("load: %v", err)
	}
	if _, _, n := tg.counts(mark); n > 0 {
		return broken("%d request(s) reached the target after a fresh provider drained it", n)
	}
	st, err := k.status(ctx, a, k.h.Pool)
	if err != nil {
		return broken("Status: %v", err)
	}
	if ok, _, _ := st.Healthy(tg.t.ID); ok {
		return broken("the first provider still reports Healthy a target a fresh one drained")
	}
	c, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	if err := k.deregister(ctx, c, k.h.Pool, tg.t); err != nil {
		return broken("from a third fresh provider: %v", err)
	}
	if st, err = k.status(ctx, a, k.h.Pool); err != nil {
		return broken("Status: %v", err)
	}
	for _, in := range st.Instances {
		if _, ok := in.Targets[tg.t.ID]; ok {
			return broken("instance %s still reports the target a fresh provider deregistered", in.Instance)
		}
	}
	return kept("same instances, targets and health from a fresh provider (%d instance(s)); a second fresh one drained the target, a third deregistered it", len(sa.Instances))
}

// diffStatus compares two statuses by instance: target IDs and health.
func diffStatus(a, b provider.PoolStatus) string {
	if len(a.Instances) != len(b.Instances) {
		return fmt.Sprintf("%d instance(s), not %d", len(b.Instances), len(a.Instances))
	}
	for i, ia := range a.Instances {
		ib := b.Instances[i]
		if ia.Instance != ib.Instance {
			return fmt.Sprintf("instance #%d is %s, not %s", i, ib.Instance, ia.Instance)
		}
		if (ia.Err == nil) != (ib.Err == nil) {
			return fmt.Sprintf("instance %s: error %v, not %v", ia.Instance, ib.Err, ia.Err)
		}
		if ia.Epoch != ib.Epoch {
			return fmt.Sprintf("instance %s: epoch %q, not %q", ia.Instance, ib.Epoch, ia.Epoch)
		}
		for id, ta := range ia.Targets {
			tb, ok := ib.Targets[id]
			switch {
			case !ok:
				return fmt.Sprintf("instance %s: target %s missing", ia.Instance, id)
			case ta.Health != tb.Health && strings.HasPrefix(string(id), "zdkit-"):
				return fmt.Sprintf("instance %s: target %s is %s, not %s", ia.Instance, id, tb.Health, ta.Health)
			}
		}
		for id := range ib.Targets {
			if _, ok := ia.Targets[id]; !ok {
				return fmt.Sprintf("instance %s: target %s not reported by the first provider", ia.Instance, id)
			}
		}
	}
	return ""
}

// Enable: with PromotionSelf, Enable returns nil and puts nothing in
// rotation (a target failing its checks stays without requests); with
// PromotionExplicit, a target Healthy on every instance gets no request
// until Enable, then does, and Enable of an absent target is an error.
func checkEnable(ctx context.Context, k *run) verdict {
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	explicit := k.caps.Promotion == provider.PromotionExplicit
	tg, err := k.target(explicit || !k.caps.ActiveHealthChecks)
	if err != nil {
		return broken("%v", err)
	}
	k.load()
	mark := tg.mark()
	if err := k.register(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("Register: %v", err)
	}
	if !explicit {
		if err := k.enable(ctx, p, k.h.Pool, tg.t); err != nil {
			return broken("Enable with PromotionSelf returned %v", err)
		}
		if !k.caps.ActiveHealthChecks {
			if err := k.admit(ctx, p, tg); err != nil {
				return broken("after Enable: %v", err)
			}
			return kept("PromotionSelf: Enable returned nil; the target turned Healthy and was balanced to by itself")
		}
		v := k.observe(ctx, p, k.h.Pool, k.checkWindow(), func(st provider.PoolStatus) *verdict {
			for _, in := range st.Instances {
				if in.Targets[tg.t.ID].Health == provider.HealthHealthy {
					v := broken("after Enable, instance %s reports Healthy a target whose checks fail", in.Instance)
					return &v
				}
			}
			return nil
		})
		if v != nil {
			return *v
		}
		if _, _, n := tg.counts(mark); n > 0 {
			return broken("after Enable, %d request(s) reached a target whose checks fail", n)
		}
		return kept("PromotionSelf: Enable returned nil and put a target failing its checks in rotation on no instance for %s", k.checkWindow())
	}
	if _, err := k.waitHealthy(ctx, p, k.h.Pool, tg.t.ID); err != nil {
		return broken("%v", err)
	}
	time.Sleep(k.checkWindow())
	if _, _, n := tg.counts(mark); n > 0 {
		return broken("PromotionExplicit: %d request(s) reached the target before Enable", n)
	}
	if err := k.enable(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("Enable: %v", err)
	}
	if err := k.waitArrivals(ctx, tg, mark); err != nil {
		return broken("after Enable: %v", err)
	}
	ghost, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	k.know(k.h.Pool, ghost.t)
	if err := k.enable(ctx, p, k.h.Pool, ghost.t); err == nil {
		return broken("PromotionExplicit: Enable of a target never registered returned nil")
	}
	delete(k.known[k.h.Pool], ghost.t.ID)
	return kept("PromotionExplicit: no request for %s while Healthy and not enabled; requests through every frontend after Enable; Enable of an absent target is an error", k.checkWindow())
}
