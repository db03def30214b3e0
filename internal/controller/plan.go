package controller

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
	"zerodrop.dev/zerodrop/provider"
)

// Gate condition reasons. The reason of a False gate is otherwise the load
// balancer's own word (HAProxy's check status, e.g. L7STS, L4CON).
const (
	ReasonHealthy             = "Healthy"
	ReasonGateTimeoutOpen     = "GateTimeoutFailOpen"
	ReasonGateTimeoutClosed   = "GateTimeoutFailClosed"
	ReasonWaitingContainers   = "WaitingForContainers"
	ReasonWaitingEndpoint     = "WaitingForEndpoint"
	ReasonBindingDeleted      = "BindingDeleted"
	ReasonLoadBalancerMissing = "LoadBalancerNotFound"
	ReasonDraining            = "Draining"
	ReasonDrained             = "Drained"
	ReasonDrainTimeout        = "DrainTimeout"
	ReasonNotRegistered       = "NotRegistered"
	ReasonDrainDisabled       = "DrainDisabled"
	// ReasonReplacing: the LB still holds the pod's name under another
	// address (its previous incarnation), drained and removed first.
	ReasonReplacing = "ReplacingPreviousTarget"
	// ReasonPoolFull: the load balancer refused the target for lack of
	// room (provider.ErrPoolFull; HAProxy: every server-template slot is
	// taken). The message says what to change.
	ReasonPoolFull = "PoolFull"
)

// Event reasons of a live pod's rotation on the load balancer.
const (
	// ReasonOutOfRotation: a registered pod stopped serving (ContainersReady
	// False, or no longer selected by the Service) and was drained.
	ReasonOutOfRotation = "OutOfRotation"
	// ReasonBackInRotation: it serves again and was put back.
	ReasonBackInRotation = "BackInRotation"
)

// action is what the reconciler asks of the provider for one target.
type action int

const (
	actNone action = iota
	actRegister
	actDrain
	actDeregister
	// actEnable puts a target that passed the LB's checks in rotation
	// (provider.PromotionExplicit).
	actEnable
)

func (a action) String() string {
	return [...]string{"none", "register", "drain", "deregister", "enable"}[a]
}

// targetState is a target's place in its life, for the binding's counts.
type targetState int

const (
	stWaiting targetState = iota // pod not ContainersReady yet, or no endpoint
	stRegistering
	stHealthy
	stDraining
	stDone // drained and deregistered, or never registered
)

// observedTarget is what the cluster says about one pod of a binding: from
// its EndpointSlice entry and the Pod itself. Pod is nil when the pod is
// gone but the load balancer still has its target.
type observedTarget struct {
	Key         types.NamespacedName
	Pod         *corev1.Pod
	IP          string
	Port        int
	HasEndpoint bool
	// Terminating is the endpoint's terminating condition.
	Terminating bool
	// Deselected is true when the pod has no endpoint because the
	// Service's selector no longer matches its labels.
	Deselected bool
}

// memo is what the reconciler remembers about a target between cycles:
// times it cannot read back from the API (conditions have one-second
// resolution) or from the load balancer.
type memo struct {
	// uid is the pod incarnation the memo is about: a pod re-created under
	// the same name (StatefulSet) starts a new memo.
	uid types.UID
	// Every time here is a local instant with a monotonic reading: times
	// read from the API are anchored once, when first seen (anchor), so
	// that a step of the wall clock moves no timeout.
	containersReadySeen time.Time
	// gateFalseAt is the gate condition's lastTransitionTime (to False) as
	// read from the API, and gateFalseSince its anchored instant.
	gateFalseAt, gateFalseSince time.Time
	// staleDrainStart is when the drain of the previous incarnation's
	// server (another address under the same name) started.
	staleDrainStart time.Time
	drainStart      time.Time
	// deletionSeen: the pod's deletion request time was read (and the
	// drain start anchored to it).
	deletionSeen bool
	drainedAt    time.Time
	drainReason  string
	// target is the target with the address it had last cycle: the
	// binding keeps telling the provider's address book about it while it
	// is on the load balancer, also after its pod and endpoint are gone.
	target provider.Target
	// gateWritten is when this process last decided to write the pod's
	// gate, and gateWrittenFalse whether that write was a False one
	// (holdGateNotes).
	gateWritten      time.Time
	gateWrittenFalse bool
}

// gateCondition is the desired readiness-gate condition of a pod.
type gateCondition struct {
	Status  corev1.ConditionStatus
	Reason  string
	Message string
}

// targetPlan is the decision for one target in one cycle.
type targetPlan struct {
	Key    types.NamespacedName
	Target provider.Target
	Action action
	// Gate is the desired condition, nil to leave the pod alone (no gate,
	// pod gone, or terminating).
	Gate *gateCondition
	// Drain is the verdict for the drain endpoint, nil when the pod is not
	// being deleted.
	Drain   *drainVerdict
	State   targetState
	Pending bool
	// Readmit is set with actRegister when the target is out of rotation
	// on some instance: registering puts it back in rotation, which the
	// reconciler does only after a fresh read of the pod from the API
	// server shows it is not being deleted.
	Readmit bool
	// LeavesRotation, set with actDrain, says why a live pod that some
	// instance still balances to is taken out of rotation (it stopped
	// serving): the reconciler reports it once the drain call succeeded.
	// Empty when the target is out of rotation already, so the report
	// comes once per transition, not every cycle.
	LeavesRotation string
	// Stuck is true when the gate timed out (either policy).
	Stuck bool
	// GateLatency is set on the cycle the gate first turns True because the
	// LB said healthy: time since ContainersReady was first seen.
	GateLatency time.Duration
	// DrainLatency is set on the cycle the target is first reported
	// drained: time since the drain started.
	DrainLatency time.Duration
	// NoteHeld is set by holdGateNotes: Gate only rewrites the reason or
	// message of a gate that stays False, too soon after the pod's last
	// gate write; it is written by a later cycle.
	NoteHeld bool
}

type drainVerdict struct {
	Drained bool
	Reason  string
	Message string
}

// planInput is everything one cycle decides from.
type planInput struct {
	Binding *zv1.TargetBinding
	Check   provider.HealthCheck
	Now     time.Time
	// APIOffset is the API server's clock minus this process's, its lower
	// bound (APIClock.Offset): times read from the API are anchored with it.
	APIOffset time.Duration
	// Targets are the pods the cluster knows (endpoints and gated pods).
	Targets []observedTarget
	// Pool is the provider's status of the pool, read once this cycle.
	Pool provider.PoolStatus
	// Promotion is the provider's: with PromotionExplicit a target that
	// passed the LB's checks everywhere is enabled by the controller.
	Promotion provider.Promotion
	// OldWorkers is true while a previous process of some instance may
	// still send requests after a reload (epochs.oldWorkers): no target
	// counts as drained meanwhile.
	OldWorkers bool
	// Memo is updated in place.
	Memo map[provider.TargetID]*memo
}

// drainedNow is PoolStatus.Drained, false while an old worker may send.
func drainedNow(s provider.PoolStatus, oldWorkers bool, id provider.TargetID) (bool, int64) {
	ok, sessions := s.Drained(id)
	return ok && !oldWorkers, sessions
}

// TargetID names a binding's pod in the load balancer's pool. '_' never
// occurs in Kubernetes names, so the three parts can be told apart, and the
// "zd_" prefix keeps the controller away from servers configured by hand.
func TargetID(namespace, binding, pod string) provider.TargetID {
	return provider.TargetID("zd_" + namespace + "_" + binding + "_" + pod)
}

// podOfTarget reverses targetID for the binding's own targets.
func podOfTarget(id provider.TargetID, namespace, binding string) (string, bool) {
	prefix := "zd_" + namespace + "_" + binding + "_"
	s := string(id)
	if !strings.HasPrefix(s, prefix) || len(s) == len(prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// plan decides, for every target of a binding, the provider call, the gate
// condition and the drain verdict. It is a pure function of its input (and
// the memo it updates), so the reconcile rules are tested without a cluster
// or a load balancer.
func plan(in planInput) []targetPlan {
	b := in.Binding
	byKey := map[types.NamespacedName]observedTarget{}
	for _, t := range in.Targets {
		byKey[t.Key] = t
	}
	// Targets the LB has but the cluster no longer knows: the pod is gone.
	for _, id := range in.Pool.Targets() {
		name, ok := podOfTarget(id, b.Namespace, b.Name)
		if !ok {
			continue
		}
		key := types.NamespacedName{Namespace: b.Namespace, Name: name}
		if _, known := byKey[key]; !known {
			t := observedTarget{Key: key}
			for _, in := range in.Pool.Instances {
				if ts, ok := in.Targets[id]; ok && ts.Addr != "" {
					t.IP, t.Port = splitAddr(ts.Addr)
					break
				}
			}
			byKey[key] = t
		}
	}
	keys := make([]types.NamespacedName, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })

	out := make([]targetPlan, 0, len(keys))
	for _, k := range keys {
		p := planTarget(in, byKey[k])
		if p.Target.IP != "" && p.Target.Port > 0 {
			in.Memo[p.Target.ID].target = p.Target
		}
		out = append(out, p)
	}
	return out
}

func planTarget(in planInput, t observedTarget) targetPlan {
	b := in.Binding
	id := TargetID(b.Namespace, b.Name, t.Key.Name)
	m := in.Memo[id]
	if m == nil {
		m = &memo{}
		in.Memo[id] = m
	}
	m.incarnation(t.Pod)
	p := targetPlan{Key: t.Key, Target: provider.Target{ID: id, IP: t.IP, Port: t.Port, Check: in.Check}}
	if p.Target.IP == "" || p.Target.Port == 0 {
		// No endpoint: act on the address the LB (or an earlier cycle) has.
		if ip, port := addrOnLB(in.Pool, id); ip != "" {
			p.Target.IP, p.Target.Port = ip, port
		} else if m.target.IP != "" {
			p.Target.IP, p.Target.Port = m.target.IP, m.target.Port
		}
	}
	onLB := presentAnywhere(in.Pool, id)

	deleting := t.Pod == nil || !t.Pod.DeletionTimestamp.IsZero() || t.Terminating ||
		t.Pod.Status.Phase == corev1.PodSucceeded || t.Pod.Status.Phase == corev1.PodFailed
	if deleting {
		planDrain(in, t, m, onLB, &p)
		return p
	}
	// A pod alive again after a drain (an endpoint flapping terminating)
	// starts over.
	*m = memo{uid: m.uid, containersReadySeen: m.containersReadySeen, gateFalseAt: m.gateFalseAt, gateFalseSince: m.gateFalseSince,
		staleDrainStart: m.staleDrainStart, target: m.target, gateWritten: m.gateWritten, gateWrittenFalse: m.gateWrittenFalse}

	gated := binding.HasGate(t.Pod, b.Name)
	cr := podCondition(t.Pod, corev1.ContainersReady)
	containersReady := cr != nil && cr.Status == corev1.ConditionTrue
	if containersReady && m.containersReadySeen.IsZero() {
		// The condition's time survives a controller restart or failover;
		// its one-second resolution does not matter for a timeout.
		m.containersReadySeen = anchor(cr.LastTransitionTime.Time, in.Now, in.APIOffset)
	}
	setGate := func(g gateCondition) {
		if gated {
			p.Gate = &g
		}
	}
	current := podCondition(t.Pod, corev1.PodConditionType(zv1.GateConditionType(b.Name)))
	ready := current != nil && current.Status == corev1.ConditionTrue

	waiting := gateCondition{corev1.ConditionFalse, ReasonWaitingContainers, "registration waits for ContainersReady"}
	noEndpoint := !t.HasEndpoint || t.IP == "" || t.Port == 0
	if noEndpoint {
		waiting.Reason, waiting.Message = ReasonWaitingEndpoint, "waiting for the pod's address in the Service's EndpointSlices"
	}
	switch {
	case (noEndpoint || !containersReady) && !onLB:
		p.State = stWaiting
		p.Pending = gated && containersReady
		setGate(keepTrueOr(current, waiting))
		return p
	case !containersReady || t.Deselected:
		// Registered, and no longer serving: unready, or taken out of the
		// Service. Out of rotation (drain, not deregister) until it serves
		// again, as AWS LBC does.
		p.State = stWaiting
		if needsDrainCall(in.Pool, id) || !in.Pool.AllRead() {
			p.Action = actDrain
			p.Pending = true
		}
		if needsDrainCall(in.Pool, id) {
			p.LeavesRotation = "ContainersReady is False"
			if t.Deselected {
				p.LeavesRotation = "the Service's selector no longer matches the pod"
			}
		}
		setGate(keepTrueOr(current, waiting))
		return p
	}
	// Registered earlier and without an endpoint although still selected
	// (EndpointSlice churn): keep judging by the LB with the address it has.

	// notPassed sets the gate of a target the LB has not passed (yet).
	notPassed := func(reason, message string) targetPlan {
		p.State = stRegistering
		p.Pending = true
		if ready {
			// One-way gate (GKE NEG's semantics): a live pod the LB once
			// passed stays Ready. An instance that lost the target in a
			// reload, cannot be read, or fails its check takes it out of
			// that instance's rotation by itself; turning the gate False
			// would take every pod of the Service out of every data path
			// at once while the other instances still serve them.
			if reason == "InstanceUnreachable" {
				p.State = stHealthy
			}
			p.Stuck = current.Reason == ReasonGateTimeoutOpen
			setGate(*conditionOf(current))
			return p
		}
		since := m.containersReadySeen
		if current != nil && current.Status == corev1.ConditionFalse && !current.LastTransitionTime.IsZero() {
			if lt := current.LastTransitionTime.Time; !lt.Equal(m.gateFalseAt) {
				m.gateFalseAt, m.gateFalseSince = lt, anchor(lt, in.Now, in.APIOffset)
			}
			if m.gateFalseSince.After(since) {
				since = m.gateFalseSince
			}
		}
		if since.IsZero() {
			since = in.Now
		}
		if timeout := b.Spec.GateTimeout(); in.Now.Sub(since) >= timeout {
			p.Stuck = true
			msg := fmt.Sprintf("the load balancer did not report the target healthy within %s: %s: %s", timeout, reason, message)
			if b.Spec.OnGateTimeout() == zv1.FailOpen {
				setGate(gateCondition{corev1.ConditionTrue, ReasonGateTimeoutOpen, msg})
			} else {
				setGate(gateCondition{corev1.ConditionFalse, ReasonGateTimeoutClosed, msg})
			}
			return p
		}
		if reason == "" {
			reason = "NotHealthy"
		}
		setGate(gateCondition{corev1.ConditionFalse, reason, message})
		return p
	}

	if ip, port, stale := staleOnLB(in.Pool, id, t); stale {
		// The LB holds the target under another address: the previous
		// incarnation of a pod re-created under the same name (or a port
		// that changed). Drain that server, remove it once drained (or the
		// drain timeout passed), then register the pod's address.
		p.Target.IP, p.Target.Port = ip, port
		if m.staleDrainStart.IsZero() {
			m.staleDrainStart = in.Now
		}
		drained, sessions := drainedNow(in.Pool, in.OldWorkers, id)
		switch {
		case drained || in.Now.Sub(m.staleDrainStart) >= b.Spec.DrainTimeout():
			p.Action = actDeregister
		case needsDrainCall(in.Pool, id):
			p.Action = actDrain
		}
		return notPassed(ReasonReplacing, fmt.Sprintf("the load balancer still has %s for this pod (a previous incarnation): draining it, %d session(s) left",
			net.JoinHostPort(ip, strconv.Itoa(port)), sessions))
	}
	m.staleDrainStart = time.Time{}

	// Register again when an instance lacks the target (new, or lost in a
	// reload) or holds it out of rotation although the pod is alive (a
	// registration cut short between its steps, drained by hand, or
	// drained while the pod was not serving): the provider's Register
	// finishes the safe sequence idempotently. Putting an out-of-rotation
	// target back needs a fresh read of the pod (Readmit): another process
	// may have drained it because it saw the deletion first.
	if (!presentEverywhere(in.Pool, id) || outOfRotationSomewhere(in.Pool, id)) && !noEndpoint {
		p.Action = actRegister
		p.Readmit = outOfRotationSomewhere(in.Pool, id)
	}
	healthy, reason, message := in.Pool.Healthy(id)
	if !healthy && p.Action == actNone && in.Promotion == provider.PromotionExplicit && passedEverywhere(in.Pool, id) {
		// The LB's own checks passed on every instance: put it in
		// rotation now; the gate opens once the LB reports it Healthy.
		p.Action = actEnable
	}
	if healthy {
		p.State = stHealthy
		if current == nil || current.Status != corev1.ConditionTrue || current.Reason != ReasonHealthy {
			if !m.containersReadySeen.IsZero() && (current == nil || current.Status != corev1.ConditionTrue) {
				p.GateLatency = in.Now.Sub(m.containersReadySeen)
			}
		}
		setGate(gateCondition{corev1.ConditionTrue, ReasonHealthy, message})
		return p
	}
	return notPassed(reason, message)
}

// planDrain handles a deleted or terminating pod's target: drain at once,
// report drained when every instance was read and none has the target in
// rotation or a session on it (or the drain timed out), deregister after
// the deregistration delay.
func planDrain(in planInput, t observedTarget, m *memo, onLB bool, p *targetPlan) {
	b := in.Binding
	id := p.Target.ID
	p.State = stDraining
	m.startDrain(t.Pod, in.Now, in.APIOffset)
	timedOut := in.Now.Sub(m.drainStart) >= b.Spec.DrainTimeout()
	if !b.Spec.DrainEnabled() && (onLB || !in.Pool.AllRead()) {
		// Nobody waits: removed at once from every instance, an unread one
		// included (absent targets are ignored).
		p.Action = actDeregister
		p.Pending = true
		m.drainReason = ReasonDrainDisabled
		p.Drain = &drainVerdict{true, ReasonDrainDisabled, "drain is disabled: the target is removed at once"}
		return
	}
	if !onLB && m.drainedAt.IsZero() {
		switch {
		case !in.Pool.AllRead() && !timedOut:
			// Absent from the instances that were read says nothing about
			// the others: one may still balance to the pod. Drain blindly
			// (absent targets are ignored) and wait.
			p.Pending = true
			if p.Target.IP != "" && p.Target.Port > 0 {
				p.Action = actDrain
			}
			p.Drain = &drainVerdict{false, ReasonDraining, fmt.Sprintf("not every load balancer instance was read: %v", in.Pool.Err())}
			return
		case in.OldWorkers && !timedOut:
			// Gone from the new worker after a reload, but the old worker
			// may still send it requests it accepted before: not drained yet.
			p.Pending = true
			p.Drain = &drainVerdict{false, ReasonDraining, "an instance reloaded: its old worker may still have sessions on the target"}
			return
		case !in.Pool.AllRead() || in.OldWorkers:
			m.drainedAt, m.drainReason = in.Now, ReasonDrainTimeout
			p.DrainLatency = in.Now.Sub(m.drainStart)
		default:
			m.drainedAt, m.drainReason = in.Now, ReasonNotRegistered
		}
	}
	if !onLB {
		p.State = stDone
		msg := "the target is not in the pool"
		if m.drainReason == ReasonDrainTimeout {
			msg = fmt.Sprintf("drain timeout %s passed without every load balancer instance confirming", b.Spec.DrainTimeout())
		}
		p.Drain = &drainVerdict{true, m.drainReason, msg}
		return
	}
	drained, sessions := drainedNow(in.Pool, in.OldWorkers, id)
	if m.drainedAt.IsZero() {
		switch {
		case drained:
			m.drainedAt, m.drainReason = in.Now, ReasonDrained
			p.DrainLatency = in.Now.Sub(m.drainStart)
		case timedOut:
			m.drainedAt, m.drainReason = in.Now, ReasonDrainTimeout
			p.DrainLatency = in.Now.Sub(m.drainStart)
		}
	}
	p.Pending = true
	if m.drainedAt.IsZero() {
		if needsDrainCall(in.Pool, id) || !in.Pool.AllRead() {
			p.Action = actDrain
		}
		msg := fmt.Sprintf("draining, %d session(s) left", sessions)
		if !in.Pool.AllRead() {
			msg += fmt.Sprintf("; not every load balancer instance was read: %v", in.Pool.Err())
		}
		p.Drain = &drainVerdict{false, ReasonDraining, msg}
		return
	}
	msg := "no instance has a session on the target"
	if m.drainReason == ReasonDrainTimeout {
		msg = fmt.Sprintf("drain timeout %s passed with %d session(s) left", b.Spec.DrainTimeout(), sessions)
	}
	p.Drain = &drainVerdict{true, m.drainReason, msg}
	if needsDrainCall(in.Pool, id) {
		p.Action = actDrain
	}
	if in.Now.Sub(m.drainedAt) >= b.Spec.DeregistrationDelay() {
		p.Action = actDeregister
	}
}

// incarnation resets the memo when pod is a new incarnation under the same
// name (another UID): nothing the old one earned (times, drain verdict)
// carries over.
func (m *memo) incarnation(pod *corev1.Pod) {
	if pod == nil || pod.UID == "" {
		return
	}
	if m.uid != "" && m.uid != pod.UID {
		*m = memo{target: m.target}
	}
	m.uid = pod.UID
}

// startDrain records when the target's drain started and returns it: the
// deletion request's time, which survives a controller restart or
// failover, anchored when first read (offset: APIClock's lower bound).
// The endpoint's terminating flag and a gone pod carry no time: the first
// sighting (now) stands in, until the cache shows the deletion.
func (m *memo) startDrain(pod *corev1.Pod, now time.Time, offset time.Duration) time.Time {
	if m.drainStart.IsZero() {
		m.drainStart = now
	}
	if at, ok := deletionRequested(pod); ok && !m.deletionSeen {
		m.deletionSeen = true
		if at := anchor(at, now, offset); at.Before(m.drainStart) {
			m.drainStart = at
		}
	}
	return m.drainStart
}

// deletionRequested returns when the pod's deletion was requested: the API
// server sets deletionTimestamp to that time plus the grace period.
func deletionRequested(pod *corev1.Pod) (time.Time, bool) {
	if pod == nil || pod.DeletionTimestamp.IsZero() {
		return time.Time{}, false
	}
	at := pod.DeletionTimestamp.Time
	if g := pod.DeletionGracePeriodSeconds; g != nil && *g > 0 {
		at = at.Add(-time.Duration(*g) * time.Second)
	}
	return at, true
}

// addrOnLB returns the address some instance has for the target.
func addrOnLB(s provider.PoolStatus, id provider.TargetID) (string, int) {
	for _, in := range s.Instances {
		if ts, ok := in.Targets[id]; ok && ts.Addr != "" {
			return splitAddr(ts.Addr)
		}
	}
	return "", 0
}

// staleOnLB reports an address under which some instance holds the
// target that is not the pod's: not its endpoint's address, or, before the
// EndpointSlice shows one, none of the pod's IPs (any port).
func staleOnLB(s provider.PoolStatus, id provider.TargetID, t observedTarget) (string, int, bool) {
	var ips []net.IP
	port := 0
	switch {
	case t.IP != "" && t.Port != 0:
		ips, port = []net.IP{net.ParseIP(t.IP)}, t.Port
	case t.Pod != nil:
		for _, pip := range t.Pod.Status.PodIPs {
			ips = append(ips, net.ParseIP(pip.IP))
		}
		if len(ips) == 0 && t.Pod.Status.PodIP != "" {
			ips = append(ips, net.ParseIP(t.Pod.Status.PodIP))
		}
	}
	if len(ips) == 0 {
		return "", 0, false
	}
	for _, in := range s.Instances {
		ts, ok := in.Targets[id]
		if !ok || ts.Addr == "" {
			continue
		}
		hip, hport := splitAddr(ts.Addr)
		ipOK := false
		for _, ip := range ips {
			ipOK = ipOK || ip.Equal(net.ParseIP(hip))
		}
		if !ipOK || port != 0 && hport != port {
			return hip, hport, true
		}
	}
	return "", 0, false
}

// needsDrainCall reports whether some instance still has the target in
// rotation (not yet draining, drained or in maintenance).
func needsDrainCall(s provider.PoolStatus, id provider.TargetID) bool {
	for _, in := range s.Instances {
		if ts, ok := in.Targets[id]; ok && ts.Health != provider.HealthDraining && ts.Health != provider.HealthDrained {
			return true
		}
	}
	return false
}

// outOfRotationSomewhere reports whether a reachable instance holds the
// target in drain or maintenance.
func outOfRotationSomewhere(s provider.PoolStatus, id provider.TargetID) bool {
	for _, in := range s.Instances {
		if ts, ok := in.Targets[id]; ok && (ts.Health == provider.HealthDraining || ts.Health == provider.HealthDrained) {
			return true
		}
	}
	return false
}

// passedEverywhere reports whether every instance was read and reports
// the target Healthy or CheckPassed.
func passedEverywhere(s provider.PoolStatus, id provider.TargetID) bool {
	if !s.AllRead() {
		return false
	}
	for _, in := range s.Instances {
		ts, ok := in.Targets[id]
		if !ok || ts.Health != provider.HealthHealthy && !ts.CheckPassed {
			return false
		}
	}
	return true
}

func presentAnywhere(s provider.PoolStatus, id provider.TargetID) bool {
	for _, in := range s.Instances {
		if _, ok := in.Targets[id]; ok {
			return true
		}
	}
	return false
}

// presentEverywhere reports whether every reachable instance has the target;
// an instance that was reloaded lost it and needs it again.
func presentEverywhere(s provider.PoolStatus, id provider.TargetID) bool {
	for _, in := range s.Instances {
		if in.Err != nil {
			continue
		}
		if _, ok := in.Targets[id]; !ok {
			return false
		}
	}
	return true
}

func keepTrueOr(current *corev1.PodCondition, g gateCondition) gateCondition {
	if current != nil && current.Status == corev1.ConditionTrue {
		return *conditionOf(current)
	}
	return g
}

func conditionOf(c *corev1.PodCondition) *gateCondition {
	return &gateCondition{c.Status, c.Reason, c.Message}
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	if pod == nil {
		return nil
	}
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// sameCondition reports whether the pod already has the desired condition,
// so that the status patch can be skipped.
func sameCondition(current *corev1.PodCondition, g *gateCondition) bool {
	return current != nil && current.Status == g.Status && current.Reason == g.Reason && current.Message == g.Message
}

func splitAddr(addr string) (string, int) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr, 0
	}
	port := 0
	fmt.Sscanf(addr[i+1:], "%d", &port)
	return strings.Trim(addr[:i], "[]"), port
}

// orphanPlan is the decision for one orphan of the pool (an entry the
// provider reports under provider.OrphanPrefix: its address belongs to no
// target any binding of the pool knows) in one cycle.
type orphanPlan struct {
	ID   provider.TargetID
	Addr string
	// Action is actNone (younger than the grace, or sessions still open),
	// actDrain (old enough and still in rotation somewhere) or
	// actDeregister (old enough and drained on every instance: free it).
	Action action
	// Age is how long the orphan has been seen continuously.
	Age      time.Duration
	Sessions int64
}

// orphanInput is everything one cycle decides orphans from.
type orphanInput struct {
	Now time.Time
	// Grace is how long an entry must be seen as an orphan, continuously,
	// before it is drained and freed; zero or less never frees.
	Grace time.Duration
	// Decide is false when this cycle may not judge orphans (see
	// orphanDuty): the memo is then cleared, so the grace starts again.
	Decide bool
	Pool   provider.PoolStatus
	// OldWorkers: see planInput.OldWorkers.
	OldWorkers bool
	// Memo maps an orphan ID to when it was first seen; updated in place.
	Memo map[provider.TargetID]time.Time
}

// planOrphans decides what to do with the orphans of a pool. An orphan is
// freed only after it has been seen continuously for the grace: a
// controller that just started maps slots to targets only once every
// binding of the pool has told the provider its addresses, and a pod that
// takes the address of an orphan (a new pod with a reused IP) makes the
// provider report the slot under the pod's ID again, which ends the orphan
// here and restarts its grace if it ever comes back. An orphan is first
// drained and freed (Deregister) only once no instance has a session on it
// and no reloaded instance's old worker may still send it requests. An
// orphan found out of rotation everywhere like that is freed at once.
func planOrphans(in orphanInput) []orphanPlan {
	present := map[provider.TargetID]bool{}
	for _, id := range in.Pool.Targets() {
		if provider.IsOrphan(id) {
			present[id] = true
		}
	}
	for id := range in.Memo {
		if !present[id] || !in.Decide {
			delete(in.Memo, id)
		}
	}
	if !in.Decide || in.Grace <= 0 {
		return nil
	}
	var out []orphanPlan
	for _, id := range in.Pool.Targets() {
		if !present[id] {
			continue
		}
		since, ok := in.Memo[id]
		if !ok {
			since = in.Now
			in.Memo[id] = since
		}
		op := orphanPlan{ID: id, Age: in.Now.Sub(since)}
		for _, is := range in.Pool.Instances {
			if ts, ok := is.Targets[id]; ok && ts.Addr != "" {
				op.Addr = ts.Addr
				break
			}
		}
		drained, sessions := drainedNow(in.Pool, in.OldWorkers, id)
		op.Sessions = sessions
		switch {
		case drained:
			// Out of rotation on every instance, no session, no old
			// worker: freeing it takes no request from anyone, so it waits
			// for no grace. The grace is for an orphan still in rotation,
			// which a binding's pod may yet turn out to own. A pod deleted
			// while the leader was down is drained by the serve replicas
			// (their drain endpoint): waiting 30 s for it made every
			// restart converge in 38-41 s (issue 12).
			op.Action = actDeregister
		case op.Age >= in.Grace && needsDrainCall(in.Pool, id):
			op.Action = actDrain
		}
		out = append(out, op)
	}
	return out
}

// poolMember is a TargetBinding that uses a pool, and when it last told
// the pool's provider its targets' addresses in this process (zero: never).
type poolMember struct {
	Key types.NamespacedName
	// Known is when the binding last called AddressBook.Know on the
	// provider now serving the pool, for this pool.
	Known time.Time
}

// orphanDuty reports whether the binding self may judge the orphans of its
// pool this cycle, and if not why. Every binding of a pool sees the same
// orphans, so one judges: the first by namespace/name of the pool's
// bindings that are not being deleted. And only when every one of them has
// told the provider its addresses within window: otherwise a target of a
// binding that has not run since the controller started (or whose cycles
// fail before they reach the provider) would look like an orphan.
func orphanDuty(self types.NamespacedName, members []poolMember, now time.Time, window time.Duration) (bool, string) {
	if len(members) == 0 {
		return false, "no binding uses the pool"
	}
	sorted := append([]poolMember(nil), members...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Key.String() < sorted[j].Key.String() })
	if sorted[0].Key != self {
		return false, fmt.Sprintf("binding %s judges the pool's orphans", sorted[0].Key)
	}
	for _, m := range sorted {
		if m.Known.IsZero() || now.Sub(m.Known) > window {
			return false, fmt.Sprintf("binding %s has not told the provider its addresses within %s", m.Key, window)
		}
	}
	return true, ""
}
