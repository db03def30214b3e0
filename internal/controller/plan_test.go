package controller

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/provider"
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
		{"reloaded instance lost the target: register again", gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy}),
			pool(id, provider.HealthHealthy, "", 0), t0,
			zv1.FailClosed, actRegister, corev1.ConditionFalse, "NotRegistered", stRegistering},
		{"live pod left in drain on one instance (registration cut short): register again", gatedPod("web-1", true, nil),
			pool(id, provider.HealthHealthy, provider.HealthDrained, 0), t0,
			zv1.FailClosed, actRegister, corev1.ConditionFalse, "DRAIN", stRegistering},
		{"healthy earlier, LB now reports it down: gate False with the LB's reason",
			gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy}),
			pool(id, provider.HealthUnhealthy, provider.HealthHealthy, 0), t0,
			zv1.FailClosed, actNone, corev1.ConditionFalse, "L7STS", stRegistering},
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
// instance says OldWorkers, and is once the old worker's grace is over.
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
		reloading := tc.st
		reloading.Instances = append([]provider.InstanceStatus(nil), tc.st.Instances...)
		reloading.Instances[1].OldWorkers = true
		p := one(t, planInput{Binding: testBinding(zv1.FailClosed), Now: t0, Memo: memo, Pool: reloading, Targets: targets})
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
