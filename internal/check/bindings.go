package check

import (
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/timing"
)

// zerodropGroup is the API group of zerodrop's own CRDs.
const zerodropGroup = "zerodrop.dev"

// loadBalancer is a zerodrop LoadBalancer (cluster-scoped) of the input.
type loadBalancer struct {
	obj  *Object
	spec *v1alpha1.LoadBalancerSpec
}

// binding is a TargetBinding with what it refers to: its Service (same
// namespace) and LoadBalancer, nil when the input does not hold them.
type binding struct {
	obj  *Object
	tb   *v1alpha1.TargetBinding
	lb   *loadBalancer
	svc  *service
	port *corev1.ServicePort // the bound Service port, nil when not found
}

// convertCRD converts a zerodrop.dev object kept unstructured by the loader
// into its api/v1alpha1 type. A field of the wrong type (a string rise, a
// number timeout) is an InputError naming the object and the field, never a
// panic: the converter's error names the Go field, and a panic inside it is
// recovered.
func convertCRD(o *Object, u *unstructured.Unstructured, into any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cannot read %s: %v", o.Ref, p)
		}
	}()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		// The converter says "unrecognized type: int32" without the field;
		// encoding/json names it ("Go struct field ...spec.gate.timeout").
		why := err.Error()
		if data, merr := json.Marshal(u.Object); merr == nil {
			if jerr := json.Unmarshal(data, into); jerr != nil {
				why = strings.TrimPrefix(jerr.Error(), "json: ")
			}
		}
		return fmt.Errorf("cannot read %s: %s (see docs/controller.md for the fields)", o.Ref, why)
	}
	return nil
}

// addCRD indexes a zerodrop.dev object; false when the kind is not one of
// ours.
func (ix *index) addCRD(o *Object, u *unstructured.Unstructured) bool {
	switch u.GetKind() {
	case "LoadBalancer":
		lb := &v1alpha1.LoadBalancer{}
		if err := convertCRD(o, u, lb); err != nil {
			ix.errors = append(ix.errors, InputError{Source: o.Source, Err: err.Error()})
			return true
		}
		ix.loadBalancers[lb.Name] = &loadBalancer{obj: o, spec: &lb.Spec}
	case "TargetBinding":
		tb := &v1alpha1.TargetBinding{}
		if err := convertCRD(o, u, tb); err != nil {
			ix.errors = append(ix.errors, InputError{Source: o.Source, Err: err.Error()})
			return true
		}
		ix.bindings = append(ix.bindings, &binding{obj: o, tb: tb})
	default:
		return false
	}
	return true
}

// relateBindings resolves each binding's Service, port and LoadBalancer and
// attaches the binding to the workloads the Service selects.
func (ix *index) relateBindings() {
	for _, b := range ix.bindings {
		b.lb = ix.loadBalancers[b.tb.Spec.LoadBalancerRef.Name]
		b.svc = ix.services[nsName{b.tb.Namespace, b.tb.Spec.ServiceRef.Name}]
		if b.svc == nil {
			continue
		}
		b.port = servicePort(b.svc.svc, b.tb.Spec.ServiceRef.Port)
		if b.port == nil {
			continue // not Ready: the controller registers nothing (ZD310)
		}
		for _, w := range ix.selectMap(b.svc.svc.Namespace, b.svc.svc.Spec.Selector) {
			w.bindings = append(w.bindings, b)
		}
	}
	for _, w := range ix.workloads {
		bs := w.bindings
		for i := 1; i < len(bs); i++ {
			for j := i; j > 0 && bs[j].tb.Name < bs[j-1].tb.Name; j-- {
				bs[j], bs[j-1] = bs[j-1], bs[j]
			}
		}
	}
}

// servicePort finds a Service port by name or by its `port` number.
func servicePort(s *corev1.Service, p intstr.IntOrString) *corev1.ServicePort {
	for i := range s.Spec.Ports {
		sp := &s.Spec.Ports[i]
		if (p.Type == intstr.String && sp.Name == p.StrVal) || (p.Type == intstr.Int && sp.Port == p.IntVal) {
			return sp
		}
	}
	return nil
}

// healthCheck is the binding's effective health check (LoadBalancer pool
// defaults, overridden by the binding; HAProxy's defaults when the
// LoadBalancer is not in the input).
func (b *binding) healthCheck() (interval float64, rise, fall int) {
	lb := &v1alpha1.LoadBalancerSpec{}
	if b.lb != nil {
		lb = b.lb.spec
	}
	i, r, f := v1alpha1.EffectiveHealthCheck(lb, &b.tb.Spec)
	return i.Seconds(), int(r), int(f)
}

func (b *binding) ref() string { return b.obj.Ref.String() }

// bindingGateWorks says whether zerodrop's webhook gives the workload's pods
// the binding's readiness gate: the pod template carries it already, or the
// namespace is labelled zerodrop.dev/gates=enabled.
func (c *wctx) bindingGate(b *binding) (cond string, present bool) {
	cond = v1alpha1.GateConditionType(b.tb.Name)
	for _, g := range c.w.tmpl.Spec.ReadinessGates {
		if string(g.ConditionType) == cond {
			return cond, true
		}
	}
	return cond, c.nsGates
}

// bindingFront is the data path of one TargetBinding: HAProxy pool servers
// that are the pods, registered at ContainersReady and drained on deletion
// by zerodrop's controller.
func (c *wctx) bindingFront(b *binding) *front {
	lb := timing.Defaults(timing.HAProxy, true, c.a)
	lb.Interval, lb.HealthyThreshold, lb.UnhealthyThreshold = b.healthCheck()
	lb.FastInterval = 0
	// The controller drains the server when it sees the deletion (pod
	// watch), as fast as it registers one: nothing waits for failed checks.
	lb.DetectOnly = false
	lb.Deregistration = lb.Registration
	lbName := b.tb.Spec.LoadBalancerRef.Name
	lb.Label = "HAProxy"
	if b.lb != nil && b.lb.spec.Provider == v1alpha1.ProviderExternal {
		// An adapter's load balancer: its capabilities are known only at
		// run time; the model keeps the API's check defaults.
		lb.Label = "the load balancer (external provider)"
		if e := b.lb.spec.External; e != nil {
			lb.Label = fmt.Sprintf("the load balancer behind adapter %s", e.URL)
		}
	}
	lb.Name = fmt.Sprintf("HAProxy pool %s of LoadBalancer %s (%s)", b.tb.Spec.Pool, lbName, b.ref())
	if lb.Label != "HAProxy" {
		lb.Name = fmt.Sprintf("pool %s of LoadBalancer %s, %s (%s)", b.tb.Spec.Pool, lbName, lb.Label, b.ref())
	}
	return &front{lb: lb, via: fmt.Sprintf("%s -> Service %s/%s", b.ref(), b.tb.Namespace, b.tb.Spec.ServiceRef.Name), obj: b.obj, binding: b}
}

// gateTimeoutShort says whether the binding's gate times out before the LB
// can possibly report a new target healthy (registration + interval x rise,
// counted like the timeout from ContainersReady).
func gateTimeoutShort(b *binding, lb timing.LB) (timeout, need float64, short bool) {
	timeout = b.tb.Spec.GateTimeout().Seconds()
	need = lb.Registration + lb.HealthyAfter()
	return timeout, need, timeout < need
}

// checkBinding runs ZD307, ZD308 and ZD309 for one binding front.
func (c *wctx) checkBinding(ix *index, fr *front, add func(Finding)) {
	b := fr.binding
	spec := &b.tb.Spec
	// ZD307: the gate is never injected.
	if cond, ok := c.bindingGate(b); !ok && c.nsKnown {
		ns := ix.namespaceObjs[c.w.ns()]
		add(newFinding(RuleZerodropGateNotInjected, ns, "metadata.labels",
			fmt.Sprintf("Namespace %s has no label %s=%s, so %s bound by %s gets no readiness gate %s", c.w.ns(), v1alpha1.GatesNamespaceLabel, v1alpha1.GatesEnabled, c.ref(), b.ref(), cond),
			fmt.Sprintf("pods are Ready before %s checks them healthy: the startup gap (ZD103) stays open, and the binding only registers and drains", fr.lb.Label),
			fmt.Sprintf("```yaml\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n    %s: %s\n```\nthen restart the workload: gates are injected at pod creation.", c.w.ns(), v1alpha1.GatesNamespaceLabel, v1alpha1.GatesEnabled)))
	}
	// ZD308: the gate always times out.
	if timeout, need, short := gateTimeoutShort(b, fr.lb); short {
		field := "spec.gate.timeout"
		if spec.Gate.Timeout == nil {
			field = "spec.gate"
		}
		var cons string
		if spec.OnGateTimeout() == v1alpha1.FailOpen {
			cons = fmt.Sprintf("every gate opens on the timeout (FailOpen) at T+%s after ContainersReady, before %s can report the target healthy at T+%s: Ready is a guess and the startup gap stays open", sec(timeout), fr.lb.Label, sec(need))
		} else {
			cons = fmt.Sprintf("every gate stays False after the timeout (FailClosed): no new pod turns Ready, the rollout stalls until progressDeadlineSeconds")
		}
		add(newFinding(RuleGateTimeoutShort, b.obj, field,
			fmt.Sprintf("%s: gate timeout %s < registration %s + interval %s x rise %d = %s, the earliest %s reports a new target healthy",
				b.ref(), sec(timeout), sec(fr.lb.Registration), sec(fr.lb.Interval), fr.lb.HealthyThreshold, sec(need), fr.lb.Label),
			cons,
			fmt.Sprintf("```yaml\nspec:\n  gate:\n    timeout: %ds   # registration + interval x rise = %s, with room for slow checks\n```", max(ceil(need*3), ceil(need)+10), sec(need))))
	}
	// ZD309: the drain gate outlives the grace period.
	if spec.DrainEnabled() {
		dt := spec.DrainTimeout().Seconds()
		G, S := c.pod.Grace, c.a.Shutdown
		if dt+S > G {
			field := "spec.drain.timeout"
			if spec.Drain.Timeout == nil {
				field = "spec.drain"
			}
			gsrc := fmt.Sprintf("terminationGracePeriodSeconds %s", sec(G))
			if c.w.tmpl.Spec.TerminationGracePeriodSeconds == nil {
				gsrc += " (default)"
			}
			var msg, cons string
			if spec.PreStopHook() == v1alpha1.PreStopHTTPGet {
				msg = fmt.Sprintf("%s injects a preStop httpGet drain hook into %s that may wait drain timeout %s; + shutdown %s = %s > %s of %s", b.ref(), c.ref(), sec(dt), sec(S), sec(dt+S), gsrc, c.ref())
				cons = fmt.Sprintf("a pod with long sessions is SIGKILLed at %s: the drain hook is cut or the app gets no time to shut down, in-flight requests fail with 502/504", sec(G+timing.KubeletPreStopExtension))
			} else {
				msg = fmt.Sprintf("%s: drain timeout %s + shutdown %s = %s > %s of %s: the app's wait for the drain gate can outlive the grace period", b.ref(), sec(dt), sec(S), sec(dt+S), gsrc, c.ref())
				cons = fmt.Sprintf("a pod still draining is SIGKILLed at %s: in-flight requests are cut, clients see 502/504", sec(G))
			}
			need := timing.GraceNeeded(dt, c.a)
			add(newFinding(RuleDrainOutlivesGrace, b.obj, field, msg, cons,
				fmt.Sprintf("Shorten the drain timeout below the grace period minus shutdown (%s):\n\n```yaml\nspec:\n  drain:\n    timeout: %ds\n```\nor raise the workload's `terminationGracePeriodSeconds: %d` (drain %s + shutdown %s + buffer %s).",
					sec(G-S), max(0, int(G-S)), ceil(need), sec(dt), sec(S), sec(c.a.Buffer))))
		}
	}
}

// checkBindingRefs is ZD310: bindings whose Service, port or LoadBalancer
// the input lacks. A missing Service is only reported when the input holds
// Services at all, a missing LoadBalancer only when it holds LoadBalancers
// (manifests of an app rarely carry the cluster-scoped LoadBalancer).
func checkBindingRefs(ix *index) []Finding {
	var out []Finding
	for _, b := range ix.bindings {
		spec := &b.tb.Spec
		fix := "Point the binding at objects that exist (`kubectl get svc -n " + b.tb.Namespace + "`, `kubectl get loadbalancers.zerodrop.dev`), or create them."
		cons := "the controller reports the binding not Ready and registers no target: the pool stays empty, and pods are neither gated nor drained"
		switch {
		case b.svc == nil && len(ix.services) > 0:
			out = append(out, newFinding(RuleBindingDangling, b.obj, "spec.serviceRef.name",
				fmt.Sprintf("%s binds Service %s/%s, which is not in the input", b.ref(), b.tb.Namespace, spec.ServiceRef.Name), cons, fix))
		case b.svc != nil && b.port == nil:
			var have []string
			for _, p := range b.svc.svc.Spec.Ports {
				have = append(have, fmt.Sprintf("%s/%d", p.Name, p.Port))
			}
			out = append(out, newFinding(RuleBindingDangling, b.obj, "spec.serviceRef.port",
				fmt.Sprintf("%s binds port %s of Service %s/%s, which has no such port (have %s)", b.ref(), spec.ServiceRef.Port.String(), b.tb.Namespace, spec.ServiceRef.Name, strings.Join(have, ", ")),
				cons, "Set `spec.serviceRef.port` to the Service's port name or `port` number (not the targetPort)."))
		}
		if b.lb == nil && len(ix.loadBalancers) > 0 {
			out = append(out, newFinding(RuleBindingDangling, b.obj, "spec.loadBalancerRef.name",
				fmt.Sprintf("%s refers to LoadBalancer %s, which is not in the input", b.ref(), spec.LoadBalancerRef.Name), cons, fix))
		}
	}
	return out
}
