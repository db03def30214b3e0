package controller

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func testBinding(onTimeout zv1.OnTimeout) *zv1.TargetBinding {
	return &zv1.TargetBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: zv1.TargetBindingSpec{
			Pool: "be_web",
			Gate: zv1.GateSpec{Timeout: &metav1.Duration{Duration: time.Minute}, OnTimeout: onTimeout},
			Drain: zv1.DrainSpec{
				Timeout:             &metav1.Duration{Duration: 20 * time.Second},
				DeregistrationDelay: &metav1.Duration{Duration: 2 * time.Second},
			},
		},
	}
}

// gatedPod is a pod of the binding with its gate, ContainersReady as given.
func gatedPod(name string, containersReady bool, gate *corev1.PodCondition) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec:       corev1.PodSpec{ReadinessGates: []corev1.PodReadinessGate{{ConditionType: corev1.PodConditionType(zv1.GateConditionType("web"))}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	st := corev1.ConditionFalse
	if containersReady {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.ContainersReady, Status: st})
	if gate != nil {
		gate.Type = corev1.PodConditionType(zv1.GateConditionType("web"))
		p.Status.Conditions = append(p.Status.Conditions, *gate)
	}
	return p
}

func endpoint(p *corev1.Pod, terminating bool) observedTarget {
	return observedTarget{Key: types.NamespacedName{Namespace: "shop", Name: p.Name}, Pod: p,
		IP: "10.0.0.7", Port: 8080, HasEndpoint: true, Terminating: terminating}
}

// pool is two instances' view; per instance a target health or absent ("").
func pool(id provider.TargetID, a, b provider.Health, sessions int64) provider.PoolStatus {
	s := provider.PoolStatus{Pool: "be_web"}
	for i, h := range []provider.Health{a, b} {
		in := provider.InstanceStatus{Instance: []string{"lb-a", "lb-b"}[i], Targets: map[provider.TargetID]provider.TargetStatus{}}
		if h != "" {
			in.Targets[id] = provider.TargetStatus{Health: h, Reason: map[provider.Health]string{
				provider.HealthHealthy: "L7OK", provider.HealthInitial: "INI", provider.HealthUnhealthy: "L7STS",
				provider.HealthDraining: "DRAIN", provider.HealthDrained: "DRAIN"}[h], Addr: "10.0.0.7:8080", Sessions: sessions}
		}
		s.Instances = append(s.Instances, in)
	}
	return s
}

func one(t *testing.T, in planInput) targetPlan {
	t.Helper()
	ps := plan(in)
	if len(ps) != 1 {
		t.Fatalf("want one target plan, got %+v", ps)
	}
	return ps[0]
}

var id = TargetID("shop", "web", "web-1")

func TestPlanStartup(t *testing.T) {
	cases := []struct {
		name       string
		pod        *corev1.Pod
		pool       provider.PoolStatus
		now        time.Time
		onTimeout  zv1.OnTimeout
		wantAction action
		wantGate   corev1.ConditionStatus
		wantReason string
		wantState  targetState
	}{
		{"not ContainersReady: not registered, gate False waiting", gatedPod("web-1", false, nil), pool(id, "", "", 0), t0,
			zv1.FailClosed, actNone, corev1.ConditionFalse, ReasonWaitingContainers, stWaiting},
		{"ContainersReady, absent on LB: register, gate False", gatedPod("web-1", true, nil), pool(id, "", "", 0), t0,
			zv1.FailClosed, actRegister, corev1.ConditionFalse, "NotRegistered", stRegistering},
		{"healthy on one instance only: gate stays False with the other's reason", gatedPod("web-1", true, nil),
			pool(id, provider.HealthHealthy, provider.HealthInitial, 0), t0,
			zv1.FailClosed, actNone, corev1.ConditionFalse, "INI", stRegistering},
		{"healthy on every instance: gate True", gatedPod("web-1", true, nil),
			pool(id, provider.HealthHealthy, provider.HealthHealthy, 0), t0,
			zv1.FailClosed, actNone, corev1.ConditionTrue, ReasonHealthy, stHealthy},
		{"reloaded instance lost the target: register again, Ready gate kept", gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy}),
			pool(id, provider.HealthHealthy, "", 0), t0,
			zv1.FailClosed, actRegister, corev1.ConditionTrue, ReasonHealthy, stRegistering},
		{"not Ready yet, one instance lacks the target: register, gate False", gatedPod("web-1", true, nil),
			pool(id, provider.HealthHealthy, "", 0), t0,
			zv1.FailClosed, actRegister, corev1.ConditionFalse, "NotRegistered", stRegistering},
		{"live pod left in drain on one instance (registration cut short): register again", gatedPod("web-1", true, nil),
			pool(id, provider.HealthHealthy, provider.HealthDrained, 0), t0,
			zv1.FailClosed, actRegister, corev1.ConditionFalse, "DRAIN", stRegistering},
		{"healthy earlier, LB now reports it down: the LB takes it out of rotation, the Ready gate stays True",
			gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy}),
			pool(id, provider.HealthUnhealthy, provider.HealthHealthy, 0), t0,
			zv1.FailClosed, actNone, corev1.ConditionTrue, ReasonHealthy, stRegistering},
		{"gate timeout, FailClosed: stays False with a timeout reason",
			gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "INI", LastTransitionTime: metav1.NewTime(t0)}),
			pool(id, provider.HealthInitial, provider.HealthInitial, 0), t0.Add(2 * time.Minute),
			zv1.FailClosed, actNone, corev1.ConditionFalse, ReasonGateTimeoutClosed, stRegistering},
		{"gate timeout, FailOpen: True with a timeout reason",
			gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "INI", LastTransitionTime: metav1.NewTime(t0)}),
			pool(id, provider.HealthInitial, provider.HealthInitial, 0), t0.Add(2 * time.Minute),
			zv1.FailOpen, actNone, corev1.ConditionTrue, ReasonGateTimeoutOpen, stRegistering},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			memo := map[provider.TargetID]*memo{id: {containersReadySeen: t0}}
			p := one(t, planInput{Binding: testBinding(c.onTimeout), Now: c.now, Pool: c.pool, Memo: memo,
				Targets: []observedTarget{endpoint(c.pod, false)}})
			if p.Action != c.wantAction || p.State != c.wantState {
				t.Fatalf("action %v state %v, want %v %v", p.Action, p.State, c.wantAction, c.wantState)
			}
			if p.Gate == nil || p.Gate.Status != c.wantGate || p.Gate.Reason != c.wantReason {
				t.Fatalf("gate %+v, want %s %s", p.Gate, c.wantGate, c.wantReason)
			}
			if c.wantState == stRegistering && !p.Pending {
				t.Fatalf("a False gate must keep the fast cycle")
			}
			if p.Drain != nil {
				t.Fatalf("a live pod got a drain verdict %+v", p.Drain)
			}
		})
	}
}

func TestPlanUnreachableInstanceKeepsReadyPodsReady(t *testing.T) {
	s := pool(id, provider.HealthHealthy, provider.HealthHealthy, 0)
	s.Instances[1].Err = errors.New("dial unix /run/b.sock: connection refused")
	s.Instances[1].Targets = nil
	ready := gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy})
	p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Pool: s,
		Memo: map[provider.TargetID]*memo{}, Targets: []observedTarget{endpoint(ready, false)}})
	if p.Gate == nil || p.Gate.Status != corev1.ConditionTrue || !p.Pending {
		t.Fatalf("Ready pod with one instance unreadable: gate %+v pending %v; want it kept True and re-checked soon", p.Gate, p.Pending)
	}
	fresh := gatedPod("web-1", true, nil)
	p = one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Pool: s,
		Memo: map[provider.TargetID]*memo{}, Targets: []observedTarget{endpoint(fresh, false)}})
	if p.Gate == nil || p.Gate.Status != corev1.ConditionFalse || p.Gate.Reason != "InstanceUnreachable" {
		t.Fatalf("new pod with one instance unreadable: gate %+v; want False InstanceUnreachable", p.Gate)
	}
}

func TestPlanNoGateNoCondition(t *testing.T) {
	pod := gatedPod("web-1", true, nil)
	pod.Spec.ReadinessGates = nil
	p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Pool: pool(id, "", "", 0),
		Memo: map[provider.TargetID]*memo{}, Targets: []observedTarget{endpoint(pod, false)}})
	if p.Action != actRegister || p.Gate != nil {
		t.Fatalf("ungated pod: action %v gate %+v; want register and no condition", p.Action, p.Gate)
	}
}

func TestPlanDrainLifecycle(t *testing.T) {
	b := testBinding(zv1.FailClosed)
	memo := map[provider.TargetID]*memo{}
	pod := gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy})
	now := metav1.NewTime(t0)
	pod.DeletionTimestamp = &now
	step := func(at time.Duration, s provider.PoolStatus, targets []observedTarget) targetPlan {
		return one(t, planInput{Binding: b, Now: t0.Add(at), Pool: s, Memo: memo, Targets: targets})
	}
	live := []observedTarget{endpoint(pod, true)}

	p := step(0, pool(id, provider.HealthHealthy, provider.HealthHealthy, 3), live)
	if p.Action != actDrain || p.Drain == nil || p.Drain.Drained || p.Gate != nil {
		t.Fatalf("deleted pod: want drain at once, not drained, gate untouched; got %+v drain %+v", p, p.Drain)
	}
	p = step(100*time.Millisecond, pool(id, provider.HealthDraining, provider.HealthDraining, 1), live)
	if p.Action != actNone || p.Drain.Drained {
		t.Fatalf("draining with a session left: want no call, not drained; got %v %+v", p.Action, p.Drain)
	}
	p = step(300*time.Millisecond, pool(id, provider.HealthDrained, provider.HealthDrained, 0), live)
	if !p.Drain.Drained || p.Drain.Reason != ReasonDrained || p.DrainLatency != 300*time.Millisecond || p.Action != actNone {
		t.Fatalf("no session left: want drained after 300ms, no deregister before the delay; got %v %+v latency %v", p.Action, p.Drain, p.DrainLatency)
	}
	// The pod is gone from the cluster; the LB still has the target.
	p = step(2300*time.Millisecond, pool(id, provider.HealthDrained, provider.HealthDrained, 0), nil)
	if p.Action != actDeregister || !p.Drain.Drained {
		t.Fatalf("after the deregistration delay: want deregister; got %v %+v", p.Action, p.Drain)
	}
	if ps := plan(planInput{Binding: b, Now: t0.Add(2500 * time.Millisecond), Pool: pool(id, "", "", 0), Memo: memo}); len(ps) != 0 {
		t.Fatalf("gone from the cluster and the LB: want nothing left to do; got %+v", ps)
	}
}

func TestPlanDrainTimeout(t *testing.T) {
	memo := map[provider.TargetID]*memo{}
	pod := gatedPod("web-1", true, nil)
	in := planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Memo: memo,
		Pool: pool(id, provider.HealthDraining, provider.HealthDraining, 5), Targets: []observedTarget{endpoint(pod, true)}}
	if p := one(t, in); p.Drain.Drained {
		t.Fatalf("sessions open before the timeout: reported drained")
	}
	in.Now = t0.Add(21 * time.Second)
	p := one(t, in)
	if !p.Drain.Drained || p.Drain.Reason != ReasonDrainTimeout {
		t.Fatalf("after the drain timeout: want drained with reason %s, got %+v", ReasonDrainTimeout, p.Drain)
	}
}

func TestPlanDrainDisabledAndUnregistered(t *testing.T) {
	b := testBinding(zv1.FailClosed)
	off := false
	b.Spec.Drain.Enabled = &off
	pod := gatedPod("web-1", true, nil)
	p := one(t, planInput{Binding: b, Now: t0, Memo: map[provider.TargetID]*memo{},
		Pool: pool(id, provider.HealthHealthy, provider.HealthHealthy, 2), Targets: []observedTarget{endpoint(pod, true)}})
	if p.Action != actDeregister || !p.Drain.Drained || p.Drain.Reason != ReasonDrainDisabled {
		t.Fatalf("drain disabled: want deregister at once and drained; got %v %+v", p.Action, p.Drain)
	}
	p = one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Memo: map[provider.TargetID]*memo{},
		Pool: pool(id, "", "", 0), Targets: []observedTarget{endpoint(pod, true)}})
	if p.Action != actNone || !p.Drain.Drained || p.Drain.Reason != ReasonNotRegistered {
		t.Fatalf("never registered: want drained at once; got %v %+v", p.Action, p.Drain)
	}
}

func TestPlanIgnoresForeignTargets(t *testing.T) {
	s := pool(provider.TargetID("static-web-1"), provider.HealthHealthy, provider.HealthHealthy, 0)
	other := TargetID("shop", "api", "api-1")
	s.Instances[0].Targets[other] = provider.TargetStatus{Health: provider.HealthHealthy}
	if ps := plan(planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Pool: s, Memo: map[provider.TargetID]*memo{}}); len(ps) != 0 {
		t.Fatalf("servers configured by hand or owned by another binding must be left alone; got %+v", ps)
	}
}

func TestTargetIDRoundTrip(t *testing.T) {
	got, ok := podOfTarget(TargetID("shop", "web", "web-7d9f-abc.x"), "shop", "web")
	if !ok || got != "web-7d9f-abc.x" {
		t.Fatalf("podOfTarget = %q %v", got, ok)
	}
	if _, ok := podOfTarget(TargetID("shop", "web-2", "p"), "shop", "web"); ok {
		t.Fatalf("binding web claimed a target of binding web-2")
	}
}

// Scenario: an instance reloads while a pod drains. The new worker shows the
// target drained (or gone), but the old worker still serves the connections
// it had, unseen by the Runtime API: the pod is not reported drained while the
// controller sees old workers (epochs.oldWorkers), and is once the old worker's grace is over.
func TestPlanDrainWaitsForOldWorkers(t *testing.T) {
	memo := map[provider.TargetID]*memo{}
	pod := gatedPod("web-1", true, nil)
	targets := []observedTarget{endpoint(pod, true)}
	for _, tc := range []struct {
		name string
		st   provider.PoolStatus
	}{
		{"drained on the new worker", pool(id, provider.HealthDrained, provider.HealthDrained, 0)},
		{"gone from the new worker", pool(id, provider.HealthDrained, "", 0)},
	} {
		p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Memo: memo, Pool: tc.st, OldWorkers: true, Targets: targets})
		if p.Drain == nil || p.Drain.Drained {
			t.Fatalf("%s, old worker alive: want not drained, got %+v", tc.name, p.Drain)
		}
		p = one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0.Add(time.Second), Memo: memo, Pool: tc.st, Targets: targets})
		if p.Drain == nil || !p.Drain.Drained {
			t.Fatalf("%s, old worker gone: want drained, got %+v", tc.name, p.Drain)
		}
		delete(memo, id)
	}
}

// unreadable marks instance i of s as not read this cycle.
func unreadable(s provider.PoolStatus, i ...int) provider.PoolStatus {
	s.Instances = append([]provider.InstanceStatus(nil), s.Instances...)
	for _, j := range i {
		s.Instances[j].Err = errors.New("dial tcp 10.1.0.9:9999: i/o timeout")
		s.Instances[j].Targets = nil
	}
	return s
}

// Scenario: a pod is deleted while some or all LB instances cannot be read.
// An instance that was not read may still balance to the pod, so the pod is
// reported drained only once every instance was read and none has it in
// rotation or with sessions, or when the drain timeout passes. While some
// instance was read the target is drained blindly on the unread ones too
// (SetDraining ignores absent targets): the call reaches the read ones
// anyway, and an instance whose read failed may take the command.
//
// With no instance read, Reconcile does not reach plan: it sends no call
// (none could reach an instance that just failed: refused, or skipped by
// the provider's breaker) and reports the verdict through holdDrains, by
// the same rule (TestNoInstanceReadHoldsTheDrain). The case stays here for
// the verdict plan would give, not for its action, which nobody sends.
func TestPlanDrainNeedsEveryInstanceRead(t *testing.T) {
	pod := gatedPod("web-1", true, nil)
	targets := []observedTarget{endpoint(pod, true)}
	for _, c := range []struct {
		name    string
		pool    provider.PoolStatus
		planned bool // Reconcile plans this read: some instance was read
	}{
		{"no instance read", unreadable(pool(id, "", "", 0), 0, 1), false},
		{"one instance read, target absent there", unreadable(pool(id, "", "", 0), 1), true},
		{"one instance read, target drained there", unreadable(pool(id, provider.HealthDrained, "", 0), 1), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.pool.NoneRead() == c.planned {
				t.Fatalf("case %q: NoneRead %v, but Reconcile plans only a read with some instance", c.name, c.pool.NoneRead())
			}
			m := map[provider.TargetID]*memo{}
			p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Pool: c.pool, Memo: m, Targets: targets})
			if p.Drain == nil || p.Drain.Drained || !p.Pending {
				t.Fatalf("not every instance read: want not drained and pending; got %+v", p.Drain)
			}
			if c.planned && p.Action != actDrain {
				t.Fatalf("an unread instance may still have the target in rotation: want a drain call, got %v", p.Action)
			}
			p = one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0.Add(21 * time.Second), Pool: c.pool, Memo: m, Targets: targets})
			if p.Drain == nil || !p.Drain.Drained || p.Drain.Reason != ReasonDrainTimeout {
				t.Fatalf("after the drain timeout: want drained with reason %s; got %+v", ReasonDrainTimeout, p.Drain)
			}
		})
	}
	p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Pool: pool(id, "", "", 0),
		Memo: map[provider.TargetID]*memo{}, Targets: targets})
	if !p.Drain.Drained || p.Drain.Reason != ReasonNotRegistered {
		t.Fatalf("every instance read, none has the target: want drained NotRegistered; got %+v", p.Drain)
	}
	// With drain disabled nobody waits: removed from every instance at once,
	// the unread one included.
	off := false
	b := testBinding(zv1.FailClosed)
	b.Spec.Drain.Enabled = &off
	p = one(t, planInput{Binding: b, Now: t0, Pool: unreadable(pool(id, "", "", 0), 1),
		Memo: map[provider.TargetID]*memo{}, Targets: targets})
	if p.Action != actDeregister || !p.Drain.Drained || p.Drain.Reason != ReasonDrainDisabled {
		t.Fatalf("drain disabled, one instance unread: want deregister and drained %s; got %v %+v", ReasonDrainDisabled, p.Action, p.Drain)
	}
}

// Scenario (GKE NEG semantics): once a live pod's gate is True it stays True.
// An instance that lost the target in a reload or restart gets it registered
// again, an instance that cannot be read gives no verdict, and a failing
// check takes the target out of the LB's rotation by itself; none of them
// makes every pod of the Service NotReady at once.
func TestPlanReadyGateIsOneWay(t *testing.T) {
	restarted := pool(id, provider.HealthHealthy, "", 0)
	restarted.Instances[1].Epoch = "new"
	for _, c := range []struct {
		name       string
		pool       provider.PoolStatus
		wantAction action
	}{
		{"one instance reloaded and lost the target", pool(id, provider.HealthHealthy, "", 0), actRegister},
		{"one instance restarted", restarted, actRegister},
		{"one instance unreadable", unreadable(pool(id, provider.HealthHealthy, provider.HealthHealthy, 0), 1), actNone},
		{"re-registered, not checked yet", pool(id, provider.HealthHealthy, provider.HealthInitial, 0), actNone},
		{"every instance lost the target", pool(id, "", "", 0), actRegister},
	} {
		t.Run(c.name, func(t *testing.T) {
			ready := gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy, Message: "healthy on 2 instance(s)"})
			p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Pool: c.pool,
				Memo: map[provider.TargetID]*memo{}, Targets: []observedTarget{endpoint(ready, false)}})
			if p.Gate == nil || p.Gate.Status != corev1.ConditionTrue || p.Gate.Reason != ReasonHealthy {
				t.Fatalf("Ready pod: gate %+v; want it kept True", p.Gate)
			}
			if p.Action != c.wantAction || !p.Pending {
				t.Fatalf("action %v pending %v; want %v and the fast cycle", p.Action, p.Pending, c.wantAction)
			}
		})
	}
}

// Scenario: a StatefulSet re-creates web-1 (new UID, new IP) while the old
// incarnation's server is still on the LB. The old server is drained, then
// deregistered once drained, then the new address registered; the gate
// stays False meanwhile, and its timeout counts from the new incarnation,
// so FailOpen does not open it at once.
func TestPlanSameNameReplacement(t *testing.T) {
	b := testBinding(zv1.FailOpen)
	m := map[provider.TargetID]*memo{id: {uid: "old-uid", containersReadySeen: t0.Add(-10 * time.Minute)}}
	pod := gatedPod("web-1", true, nil)
	pod.UID = "new-uid"
	pod.Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0)
	target := endpoint(pod, false)
	target.IP = "10.0.0.8"
	step := func(at time.Duration, s provider.PoolStatus) targetPlan {
		return one(t, planInput{Binding: b, Now: t0.Add(at), Pool: s, Memo: m, Targets: []observedTarget{target}})
	}
	check := func(p targetPlan, act action, ip string) {
		t.Helper()
		if p.Action != act || p.Target.IP != ip {
			t.Fatalf("action %v on %s; want %v on %s", p.Action, p.Target.Addr(), act, ip)
		}
		if p.Gate == nil || p.Gate.Status != corev1.ConditionFalse || p.Stuck || !p.Pending {
			t.Fatalf("gate %+v stuck %v pending %v; want False, not timed out, fast cycle", p.Gate, p.Stuck, p.Pending)
		}
	}
	check(step(0, pool(id, provider.HealthHealthy, provider.HealthHealthy, 2)), actDrain, "10.0.0.7")
	if m[id].uid != "new-uid" {
		t.Fatalf("memo still tracks incarnation %q", m[id].uid)
	}
	check(step(time.Second, pool(id, provider.HealthDraining, provider.HealthDraining, 1)), actNone, "10.0.0.7")
	check(step(2*time.Second, pool(id, provider.HealthDrained, provider.HealthDrained, 0)), actDeregister, "10.0.0.7")
	check(step(3*time.Second, pool(id, "", "", 0)), actRegister, "10.0.0.8")

	// Sessions that never end: deregistered after the drain timeout.
	m = map[provider.TargetID]*memo{}
	check(step(0, pool(id, provider.HealthDraining, provider.HealthDraining, 1)), actNone, "10.0.0.7")
	check(step(21*time.Second, pool(id, provider.HealthDraining, provider.HealthDraining, 1)), actDeregister, "10.0.0.7")
}

// Scenario (AWS LBC behaviour): a registered pod that stops serving —
// ContainersReady False, or taken out of the Service (no endpoint) — is
// drained (out of rotation, not deleted) and put back in rotation when it
// serves again.
func TestPlanUnservingPodIsTakenOutOfRotation(t *testing.T) {
	healthy := &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy}
	unready := endpoint(gatedPod("web-1", false, healthy.DeepCopy()), false)
	deselected := observedTarget{Key: unready.Key, Pod: gatedPod("web-1", true, healthy.DeepCopy()), Deselected: true}
	for _, c := range []struct {
		name string
		t    observedTarget
	}{
		{"ContainersReady False", unready},
		{"no longer selected by the Service", deselected},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Memo: map[provider.TargetID]*memo{},
				Pool: pool(id, provider.HealthHealthy, provider.HealthHealthy, 0), Targets: []observedTarget{c.t}}
			p := one(t, in)
			if p.Action != actDrain || p.Target.Addr() != "10.0.0.7:8080" || p.Drain != nil {
				t.Fatalf("action %v on %q drain %+v; want a drain call on the registered address, no drain verdict", p.Action, p.Target.Addr(), p.Drain)
			}
			if p.LeavesRotation == "" {
				t.Fatalf("in rotation until now: LeavesRotation empty, want why it leaves (for the OutOfRotation Event)")
			}
			in.Pool = pool(id, provider.HealthDraining, provider.HealthDrained, 0)
			if p := one(t, in); p.Action != actNone || p.LeavesRotation != "" {
				t.Fatalf("out of rotation everywhere: action %v LeavesRotation %q, want none (not deregistered, no new transition)", p.Action, p.LeavesRotation)
			}
		})
	}
	back := endpoint(gatedPod("web-1", true, healthy.DeepCopy()), false)
	p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Memo: map[provider.TargetID]*memo{},
		Pool: pool(id, provider.HealthDrained, provider.HealthDrained, 0), Targets: []observedTarget{back}})
	if p.Action != actRegister || !p.Readmit {
		t.Fatalf("serving again: action %v readmit %v; want register, flagged as a readmission", p.Action, p.Readmit)
	}
}

// Scenario: the controller restarts (or fails over) while a pod drains and
// while another waits for its gate. The drain timeout counts from the
// deletion request (deletionTimestamp minus the grace period), the gate
// timeout from ContainersReady's lastTransitionTime, not from when this
// process first saw them.
func TestPlanTimersSurviveRestart(t *testing.T) {
	deleting := gatedPod("web-1", true, nil)
	at, grace := metav1.NewTime(t0.Add(30*time.Second)), int64(30)
	deleting.DeletionTimestamp, deleting.DeletionGracePeriodSeconds = &at, &grace
	p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0.Add(21 * time.Second), Memo: map[provider.TargetID]*memo{},
		Pool: pool(id, provider.HealthDraining, provider.HealthDraining, 3), Targets: []observedTarget{endpoint(deleting, true)}})
	if p.Drain == nil || !p.Drain.Drained || p.Drain.Reason != ReasonDrainTimeout {
		t.Fatalf("deleted 21s ago, drain timeout 20s, first seen now: want %s; got %+v", ReasonDrainTimeout, p.Drain)
	}
	// Seen terminating (endpoint) before the cache showed the deletion.
	m := map[provider.TargetID]*memo{}
	early := gatedPod("web-1", true, nil)
	one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0.Add(15 * time.Second), Memo: m,
		Pool: pool(id, provider.HealthDraining, provider.HealthDraining, 3), Targets: []observedTarget{endpoint(early, true)}})
	p = one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0.Add(21 * time.Second), Memo: m,
		Pool: pool(id, provider.HealthDraining, provider.HealthDraining, 3), Targets: []observedTarget{endpoint(deleting, true)}})
	if p.Drain == nil || !p.Drain.Drained || p.Drain.Reason != ReasonDrainTimeout {
		t.Fatalf("terminating endpoint seen first, deletion requested 21s ago: want %s; got %+v", ReasonDrainTimeout, p.Drain)
	}
	waiting := gatedPod("web-1", true, nil)
	waiting.Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0)
	p = one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0.Add(2 * time.Minute), Memo: map[provider.TargetID]*memo{},
		Pool: pool(id, provider.HealthInitial, provider.HealthInitial, 0), Targets: []observedTarget{endpoint(waiting, false)}})
	if p.Gate == nil || p.Gate.Reason != ReasonGateTimeoutClosed {
		t.Fatalf("ContainersReady 2m ago, gate timeout 1m, first seen now: want %s; got %+v", ReasonGateTimeoutClosed, p.Gate)
	}
}

// Scenario: the re-created web-1 is ContainersReady before the
// EndpointSlice shows its address, while the LB still has the previous
// incarnation's server, healthy. That server's health is not the new pod's:
// the gate stays False, and the old server is drained.
func TestPlanReplacementBeforeTheEndpoint(t *testing.T) {
	pod := gatedPod("web-1", true, nil)
	pod.UID = "new-uid"
	pod.Status.PodIP, pod.Status.PodIPs = "10.0.0.8", []corev1.PodIP{{IP: "10.0.0.8"}}
	m := map[provider.TargetID]*memo{id: {uid: "old-uid"}}
	p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Memo: m,
		Pool: pool(id, provider.HealthHealthy, provider.HealthHealthy, 0), Targets: []observedTarget{{Key: endpoint(pod, false).Key, Pod: pod}}})
	if p.Gate == nil || p.Gate.Status != corev1.ConditionFalse {
		t.Fatalf("gate %+v: want False, the LB's server is the previous incarnation's", p.Gate)
	}
	if p.Action != actDrain || p.Target.IP != "10.0.0.7" {
		t.Fatalf("action %v on %s; want drain on the previous incarnation's address", p.Action, p.Target.Addr())
	}
}

// Scenario: a provider whose LB needs the controller to promote a target
// (PromotionExplicit, F5 members added disabled). Expectation: nothing is
// enabled until every instance reports the LB's own checks passed; then
// Enable, with the gate still False until the LB reports the target
// Healthy (in rotation); a provider that promotes by itself is never
// asked to.
func TestPlanExplicitPromotionEnablesAfterTheChecksPass(t *testing.T) {
	pod := gatedPod("web-1", true, nil)
	passed := func(on ...int) provider.PoolStatus {
		s := pool(id, provider.HealthInitial, provider.HealthInitial, 0)
		for _, i := range on {
			ts := s.Instances[i].Targets[id]
			ts.CheckPassed = true
			s.Instances[i].Targets[id] = ts
		}
		return s
	}
	for _, c := range []struct {
		name      string
		promotion provider.Promotion
		pool      provider.PoolStatus
		want      action
		gateTrue  bool
	}{
		{"checks not passed", provider.PromotionExplicit, passed(), actNone, false},
		{"passed on one instance of two", provider.PromotionExplicit, passed(0), actNone, false},
		{"passed on every instance", provider.PromotionExplicit, passed(0, 1), actEnable, false},
		{"passed, one instance unreadable", provider.PromotionExplicit, unreadable(passed(0, 1), 1), actNone, false},
		{"enabled: in rotation", provider.PromotionExplicit, pool(id, provider.HealthHealthy, provider.HealthHealthy, 0), actNone, true},
		{"the LB promotes by itself", provider.PromotionSelf, passed(0, 1), actNone, false},
	} {
		p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Memo: map[provider.TargetID]*memo{}, Promotion: c.promotion,
			Pool: c.pool, Targets: []observedTarget{endpoint(pod, false)}})
		if p.Action != c.want {
			t.Errorf("%s: action %s, want %s", c.name, p.Action, c.want)
		}
		if got := p.Gate != nil && p.Gate.Status == "True"; got != c.gateTrue {
			t.Errorf("%s: gate %+v, want True=%v", c.name, p.Gate, c.gateTrue)
		}
	}
}
