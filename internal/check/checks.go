package check

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/timing"
)

var sec = timing.Sec

// ceil rounds seconds up to a whole number for fixes.
func ceil(v float64) int { return int(math.Ceil(v - 1e-9)) }

// check runs the workload rules.
func (c *wctx) check(ix *index) []Finding {
	var out []Finding
	add := func(f Finding) {
		if !c.ignored(f.RuleID) {
			out = append(out, f)
		}
	}
	served := len(c.w.services) > 0
	if served {
		c.checkProbes(add)
		c.checkRollingUpdate(add)
		c.checkTermination(add)
		c.checkFronts(ix, add)
		c.checkHPAs(add)
		c.checkPDB(add)
	}
	c.checkShellSleep(add)
	return out
}

func (c *wctx) obj() *Object { return c.w.obj }

func (c *wctx) ref() string { return c.w.obj.Ref.String() }

// ZD101, ZD102.
func (c *wctx) checkProbes(add func(Finding)) {
	spec := &c.w.tmpl.Spec
	in := c.fronts[0]
	// A working readiness gate (AWS, GKE NEG, zerodrop) makes Ready wait
	// for the LB's own health check of the pod, which passes only once the
	// app answers: no data path gets the pod before it listens.
	gate := ""
	for _, fr := range c.fronts {
		if fr.gated {
			gate = fr.gate
		}
	}
	for _, i := range c.serving {
		ct := &spec.Containers[i]
		field := fmt.Sprintf("%s.spec.containers[%d]", c.tmpl, i)
		if ct.ReadinessProbe == nil {
			if gate != "" {
				continue
			}
			msg := fmt.Sprintf("container %q of %s receives traffic from %s but has no readinessProbe: the pod is Ready when its containers start", ct.Name, c.ref(), in.via)
			p := c.pod
			p.HasReadinessProbe = false
			if w, ok := timing.Startup(p, in.lb, c.a).Window(timing.CauseNoReadinessProbe); ok {
				msg += fmt.Sprintf("; traffic arrives from T+%s, the app listens at T+%s (startup %s, assumption)", sec(w.Start), sec(w.End), sec(c.a.Startup))
			}
			add(newFinding(RuleNoReadinessProbe, c.obj(), field, msg,
				"requests reach the container before the server listens: connection refused, clients see 502; old pods are deleted before new ones serve",
				fmt.Sprintf("Add to %s:\n\n```yaml\nreadinessProbe:\n%s  periodSeconds: 5\n  failureThreshold: 2\n```\n%s", field, c.probeHandler(ct), probeAdvice)))
			continue
		}
		if ct.LivenessProbe != nil && reflect.DeepEqual(ct.ReadinessProbe, ct.LivenessProbe) {
			add(newFinding(RuleSameProbes, c.obj(), field+".livenessProbe",
				fmt.Sprintf("container %q of %s uses the same check for readiness and liveness", ct.Name, c.ref()),
				"a pod that is only slow or draining is restarted instead of being taken out of rotation; its in-flight requests are cut",
				"Give liveness its own endpoint (e.g. /livez) that fails only when the process is stuck, and a higher failureThreshold than readiness."))
		}
	}
}

const probeAdvice = "A probe that passes only when the app can serve (an HTTP endpoint that checks its dependencies, over the scheme the port speaks) is better than a port check; adapt it before you paste."

// probeHandler is the handler of ZD101's suggested readinessProbe, from
// evidence in the manifest: the container's own startup or liveness probe
// (it already answers there), else a TCP check of the port the Services
// send to (safe whatever the port speaks: no path to guess, no plain HTTP
// on a TLS port), else a marked placeholder.
func (c *wctx) probeHandler(ct *corev1.Container) string {
	for _, p := range []*corev1.Probe{ct.StartupProbe, ct.LivenessProbe} {
		if p == nil {
			continue
		}
		h := p.ProbeHandler
		switch {
		case h.HTTPGet != nil:
			out := fmt.Sprintf("  httpGet:   # the handler of its %s\n    path: %s\n    port: %s\n", probeKind(ct, p), yamlScalar(h.HTTPGet.Path), yamlScalar(h.HTTPGet.Port.String()))
			if h.HTTPGet.Scheme != "" {
				out += fmt.Sprintf("    scheme: %s\n", h.HTTPGet.Scheme)
			}
			return out
		case h.TCPSocket != nil:
			return fmt.Sprintf("  tcpSocket:   # the handler of its %s\n    port: %s\n", probeKind(ct, p), yamlScalar(h.TCPSocket.Port.String()))
		case h.GRPC != nil:
			return fmt.Sprintf("  grpc:   # the handler of its %s\n    port: %d\n", probeKind(ct, p), h.GRPC.Port)
		case h.Exec != nil && len(h.Exec.Command) > 0:
			var q []string
			for _, a := range h.Exec.Command {
				q = append(q, strconv.Quote(a))
			}
			return fmt.Sprintf("  exec:   # the handler of its %s\n    command: [%s]\n", probeKind(ct, p), strings.Join(q, ", "))
		}
	}
	if port := c.servedPort(ct); port != "" {
		return fmt.Sprintf("  tcpSocket:   # passes once the port listens\n    port: %s\n", port)
	}
	return "  tcpSocket:\n    port: PORT   # placeholder: the port the app listens on\n"
}

func probeKind(ct *corev1.Container, p *corev1.Probe) string {
	if p == ct.StartupProbe {
		return "startupProbe"
	}
	return "livenessProbe"
}

// yamlScalar quotes a value that YAML would not read back as itself.
func yamlScalar(v string) string {
	if v == "" || strings.ContainsAny(v, ":#{}[],&*!|>'\"%@`") || strings.TrimSpace(v) != v {
		return strconv.Quote(v)
	}
	return v
}

// servedPort is the container port the workload's Services send to (by
// name or number), else the container's first port; "" without ports.
func (c *wctx) servedPort(ct *corev1.Container) string {
	for _, s := range c.w.services {
		for _, sp := range s.svc.Spec.Ports {
			tp := sp.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(sp.Port)
			}
			for _, cp := range ct.Ports {
				if tp.Type == intstr.Int && cp.ContainerPort == tp.IntVal || tp.Type == intstr.String && cp.Name == tp.StrVal {
					return strconv.Itoa(int(cp.ContainerPort))
				}
			}
		}
	}
	if len(ct.Ports) > 0 {
		return strconv.Itoa(int(ct.Ports[0].ContainerPort))
	}
	return ""
}

// ZD104: Deployment strategy, StatefulSet and DaemonSet update strategies.
func (c *wctx) checkRollingUpdate(add func(Finding)) {
	o := c.obj()
	consequence := "old pods stop serving before their replacements are Ready: capacity drops during every rollout"
	switch t := o.Typed.(type) {
	case *appsv1.Deployment:
		if t.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
			f := newFinding(RuleRollingUpdate, o, "spec.strategy.type",
				fmt.Sprintf("%s uses strategy Recreate: every pod is deleted before any replacement starts", c.ref()),
				"the workload serves nothing from the first deletion until a new pod is Ready: clients see 502/503",
				"```yaml\nspec:\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 0\n      maxSurge: 1\n```")
			f.Severity = SeverityError
			add(f)
			return
		}
		replicas := int(c.w.replicas)
		mu := intstr.FromString("25%")
		ms := intstr.FromString("25%")
		field := "spec.strategy"
		if ru := t.Spec.Strategy.RollingUpdate; ru != nil {
			if ru.MaxUnavailable != nil {
				mu = *ru.MaxUnavailable
				field = "spec.strategy.rollingUpdate.maxUnavailable"
			}
			if ru.MaxSurge != nil {
				ms = *ru.MaxSurge
			}
		}
		u, err1 := intstr.GetScaledValueFromIntOrPercent(&mu, replicas, false)
		s, err2 := intstr.GetScaledValueFromIntOrPercent(&ms, replicas, true)
		if err1 != nil || err2 != nil {
			return
		}
		if u == 0 && s >= 1 {
			return
		}
		if u == 0 && s == 0 {
			u = 1 // the API server refuses 0/0; the controller would need one
		}
		f := newFinding(RuleRollingUpdate, o, field,
			fmt.Sprintf("%s: maxUnavailable %s (= %d of %d replicas%s), maxSurge %s (= %d): old pods are deleted before new ones are Ready", c.ref(), mu.String(), u, replicas, c.replicasSource(), ms.String(), s),
			consequence, "```yaml\nspec:\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 0\n      maxSurge: 1\n```")
		if replicas-u <= 0 {
			f.Severity = SeverityError
			f.Consequence = "every serving pod can be gone at once during a rollout: clients see 502/503"
		}
		add(f)
	case *appsv1.StatefulSet:
		if t.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
			return
		}
		if c.w.replicas <= 1 {
			f := newFinding(RuleRollingUpdate, o, "spec.replicas",
				fmt.Sprintf("%s has %d replica: StatefulSet rolling updates delete a pod before creating its replacement", c.ref(), c.w.replicas),
				"the only pod is gone while its replacement starts: clients see 502/503 on every update",
				"Run at least 2 replicas (StatefulSets cannot surge), and make sure the termination rules hold.")
			f.Severity = SeverityError
			add(f)
		}
	case *appsv1.DaemonSet:
		if t.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
			return
		}
		ru := t.Spec.UpdateStrategy.RollingUpdate
		if ru != nil && ru.MaxSurge != nil {
			if v, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, 100, true); err == nil && v > 0 {
				return
			}
		}
		for i, ct := range t.Spec.Template.Spec.Containers {
			for j, p := range ct.Ports {
				if p.HostPort == 0 && !t.Spec.Template.Spec.HostNetwork {
					continue
				}
				// Two pods cannot hold one host port on one node: surge is
				// impossible, and the only fix is to stop using the host
				// port, which is a design choice, not a setting.
				f := newFinding(RuleRollingUpdate, o, fmt.Sprintf("spec.template.spec.containers[%d].ports[%d]", i, j),
					fmt.Sprintf("%s updates without maxSurge, which its host port %d rules out: each node's pod is deleted before its replacement starts", c.ref(), max(p.HostPort, p.ContainerPort)),
					"the node's pod serves nothing during its update: traffic sent to that node's host port fails until the new pod is Ready",
					"Accept the per-node gap (clients should retry on another node), or reach the pods through a Service instead of a host port and set `updateStrategy.rollingUpdate: {maxSurge: 1, maxUnavailable: 0}`.")
				f.Severity = SeverityInfo
				add(f)
				return
			}
		}
		add(newFinding(RuleRollingUpdate, o, "spec.updateStrategy",
			fmt.Sprintf("%s updates without maxSurge: each node's pod is deleted before its replacement starts", c.ref()),
			"the node's pod serves nothing during its update: traffic sent to that node (externalTrafficPolicy Local, hostPort) fails",
			"```yaml\nspec:\n  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0\n```\n(not possible with hostPort)"))
	}
}

// replicasSource says where an unset replica count came from (", HPA
// minReplicas") for messages.
func (c *wctx) replicasSource() string {
	if c.w.replicasFrom != "" {
		return ", " + c.w.replicasFrom
	}
	return ""
}

// graceFor is the part of a preStop fix about the grace period: raise
// terminationGracePeriodSeconds to P + S + buffer when the new preStop P
// needs it, or say that the current one already covers it (telling the user
// to set the value they already have, often the default 30, reads as if it
// were a change).
func (c *wctx) graceFor(P float64) string {
	need := timing.GraceNeeded(P, c.a)
	sum := fmt.Sprintf("preStop %s + shutdown %s + buffer %s = %s", sec(P), sec(c.a.Shutdown), sec(c.a.Buffer), sec(need))
	if need > c.pod.Grace {
		return fmt.Sprintf("and raise `terminationGracePeriodSeconds: %d` (%s).", ceil(need), sum)
	}
	def := ""
	if c.w.tmpl.Spec.TerminationGracePeriodSeconds == nil {
		def = " (default)"
	}
	return fmt.Sprintf("terminationGracePeriodSeconds %s%s already covers %s.", sec(c.pod.Grace), def, sum)
}

// ZD201, ZD202, ZD206: termination arithmetic independent of the LB.
func (c *wctx) checkTermination(add func(Finding)) {
	P, G, S := c.pod.PreStop, c.pod.Grace, c.a.Shutdown
	field := "spec.template.spec.terminationGracePeriodSeconds"
	need := timing.GraceNeeded(P, c.a)
	gsrc := fmt.Sprintf("terminationGracePeriodSeconds %s", sec(G))
	if c.w.tmpl.Spec.TerminationGracePeriodSeconds == nil {
		gsrc = fmt.Sprintf("terminationGracePeriodSeconds %s (default)", sec(G))
	}
	fix := fmt.Sprintf("```yaml\nspec:\n  template:\n    spec:\n      terminationGracePeriodSeconds: %d  # preStop %s + shutdown %s + buffer %s\n```", ceil(need), sec(P), sec(S), sec(c.a.Buffer))
	switch {
	case P > G:
		add(newFinding(RuleSIGKILL, c.obj(), field,
			fmt.Sprintf("%s: preStop %s is longer than %s: SIGTERM at %s, SIGKILL at %s, while preStop + shutdown need %s",
				c.ref(), sec(P), gsrc, sec(G), sec(G+timing.KubeletPreStopExtension), sec(P+S)),
			fmt.Sprintf("SIGKILL at %s while shutdown may need %s: the app never shuts down gracefully, in-flight requests are cut, clients see 502/504", sec(G+timing.KubeletPreStopExtension), sec(P+S)),
			fix))
	case P+S > G:
		f := newFinding(RuleSIGKILL, c.obj(), field,
			fmt.Sprintf("%s: preStop %s + shutdown %s = %s > %s", c.ref(), sec(P), sec(S), sec(P+S), gsrc),
			fmt.Sprintf("SIGKILL at %s while shutdown may need %s: in-flight requests are cut, clients see 502/504", sec(G), sec(P+S)),
			fix)
		if !c.shutdownKnown && G > P {
			// Only the assumed shutdown time crosses G: an app that exits
			// faster (the manifest's short grace suggests so) is fine. With
			// no time at all left after preStop (G = P, grace 0) no app is.
			f.Severity, f.Confidence = SeverityInfo, ConfidenceLow
			f.Message += fmt.Sprintf(" (shutdown %s is an assumption: set %s to the app's real shutdown time)", sec(S), AnnotationShutdown)
		}
		add(f)
	case need > G:
		f := newFinding(RuleGraceBuffer, c.obj(), field,
			fmt.Sprintf("%s: preStop %s + shutdown %s = %s leaves %s of %s, less than the buffer %s", c.ref(), sec(P), sec(S), sec(P+S), sec(G-P-S), gsrc, sec(c.a.Buffer)),
			fmt.Sprintf("a shutdown more than %s slower than assumed ends in SIGKILL: in-flight requests cut, clients see 502/504", sec(G-P-S)),
			fix)
		if !c.shutdownKnown {
			f.Confidence = ConfidenceMedium
		}
		add(f)
	}
	if len(c.longLived) > 0 && !c.longLivedOff {
		c.longLived = dedupe(c.longLived)
		if ll := timing.LongLivedGraceNeeded(P, c.a); G < ll {
			f := newFinding(RuleLongLived, c.obj(), field,
				fmt.Sprintf("%s serves long-lived connections (%s) but %s < preStop %s + shutdown %s + connection drain %s = %s",
					c.ref(), strings.Join(c.longLived, "; "), gsrc, sec(P), sec(S), sec(c.a.ConnectionDrain), sec(ll)),
				"open WebSocket/gRPC streams are reset at SIGKILL instead of closed: clients see errors and reconnect storms",
				fmt.Sprintf("Close streams on SIGTERM (gRPC GracefulStop, WebSocket close frames) and set `terminationGracePeriodSeconds: %d`.", ceil(ll)))
			if c.longLivedByName() {
				// A port named grpc says the protocol, not that streams
				// stay open: most gRPC calls are short unary requests.
				f.Severity, f.Confidence = SeverityInfo, ConfidenceLow
				f.Message += fmt.Sprintf(" (assumption from port names only: set %s: \"true\" if streams stay open, \"false\" if not)", AnnotationLongLived)
			}
			add(f)
		}
	}
}

// lbFinding is a candidate finding from one front; the worst per rule wins.
type lbFinding struct {
	f      Finding
	weight float64
}

// checkFronts runs the rules that depend on the data path.
func (c *wctx) checkFronts(ix *index, add func(Finding)) {
	best := map[string]lbFinding{}
	keep := func(f Finding, weight float64) {
		k := f.RuleID + "\x00" + f.Field
		if cur, ok := best[k]; !ok || weight > cur.weight {
			best[k] = lbFinding{f, weight}
		}
	}
	P := c.pod.PreStop
	for _, fr := range c.fronts {
		lb := fr.lb
		pod := c.pod
		pod.Gated = fr.gated
		st, tm := fr.startup, fr.termination

		// ZD103 startup gap.
		if w, ok := st.Window(timing.CauseStartupGap); ok {
			need := timing.MinReadyNeeded(lb)
			gateFix := c.gateFix(fr)
			f := newFinding(RuleStartupGap, c.obj(), "spec.minReadySeconds",
				fmt.Sprintf("%s behind %s: minReadySeconds %s < health-check time %s x %d + registration %s = %s and no working readiness gate: %s",
					c.ref(), lb.Name, sec(pod.MinReadySeconds), sec(lb.Interval), max(lb.HealthyThreshold, 1), sec(lb.Registration), sec(need), w.Why),
				c.gapConsequence(fr, w),
				gateFix+fmt.Sprintf("Or, guessing instead of knowing:\n\n```yaml\nspec:\n  minReadySeconds: %d\n```", ceil(need)))
			keep(f, w.Seconds())
		}
		// ZD203 early exit.
		if w, ok := tm.Window(timing.CauseEarlyExit); ok {
			keep(c.earlyExit(fr, w), w.End)
		}
		// ZD205 in-flight cut.
		if w, ok := tm.Window(timing.CauseInFlightCut); ok {
			keep(c.inFlightCut(fr, w), w.Seconds())
		}
		// ZD207 GKE drain.
		if lb.Kind == timing.GCE && lb.DrainingTimeout > 0 {
			need := timing.GKEPreStopNeeded(lb)
			if P < need {
				f := newFinding(RuleGKEDrain, c.obj(), c.preStopField,
					fmt.Sprintf("%s behind %s: preStop %s < drainingTimeoutSec %s + drain latency %s = %s",
						c.ref(), lb.Name, sec(P), sec(lb.DrainingTimeout), sec(lb.Deregistration), sec(need)),
					"GCLB still uses the pod's draining connections after the app stopped listening: clients see 502",
					fmt.Sprintf("```yaml\nlifecycle:\n  preStop:\n    sleep:\n      seconds: %d\n```\n%s", ceil(need), c.graceFor(float64(ceil(need)))))
				keep(f, need-P)
			}
		}
		c.checkLBSettings(ix, fr, add)
		if fr.binding != nil {
			c.checkBinding(ix, fr, add)
		}
	}
	for _, lf := range best {
		add(lf.f)
	}
}

// inFlightCut explains ZD205: either the app's own shutdown (S) ends before
// the longest request admitted, or SIGKILL (G) does.
func (c *wctx) inFlightCut(fr *front, w timing.Window) Finding {
	lb := fr.lb
	P, G, S := c.pod.PreStop, c.pod.Grace, c.a.Shutdown
	a := fr.a
	tq := timing.RequestBound(a, lb)
	bound := fmt.Sprintf("longest request %s", sec(a.LongestRequest))
	if a.LongestRequest != c.a.LongestRequest {
		bound = fmt.Sprintf("longest request %s: the %s raised to it", sec(a.LongestRequest), fr.timeoutSet)
	}
	if tq < a.LongestRequest {
		bound = fmt.Sprintf("%s timeout %s", lb.Actor(), sec(tq))
	}
	sigterm := math.Min(P, G)
	admitted := math.Min(sigterm, lb.StopSending(sigterm))
	needS := admitted + tq - sigterm // shutdown that covers the last admitted request
	needG := math.Max(sigterm+math.Max(S, needS), admitted+tq) + c.a.Buffer
	msg := fmt.Sprintf("%s behind %s: %s (%s)", c.ref(), lb.Name, w.Why, bound)
	var fix string
	if sigterm+S < G {
		fix = fmt.Sprintf("Make the app finish in-flight requests on SIGTERM for at least %s (Spring Boot `server.shutdown: graceful` with `spring.lifecycle.timeout-per-shutdown-phase`, Go `http.Server.Shutdown`), then record it with `%s: \"%d\"`", sec(needS), AnnotationShutdown, ceil(needS))
		if needG > G {
			fix += fmt.Sprintf(" and set `terminationGracePeriodSeconds: %d`", ceil(needG))
		}
		fix += fmt.Sprintf(". If requests are shorter than assumed, set `%s`.", AnnotationLongestRequest)
	} else {
		fix = fmt.Sprintf("```yaml\nspec:\n  template:\n    spec:\n      terminationGracePeriodSeconds: %d\n```\nIf requests are shorter than assumed, set `%s`.", ceil(needG), AnnotationLongestRequest)
	}
	f := newFinding(RuleInFlightCut, c.obj(), "spec.template.spec.terminationGracePeriodSeconds", msg,
		fmt.Sprintf("requests still running at T+%s are cut: clients see 502/504", sec(w.Start)), fix)
	if !c.longestKnown && a.LongestRequest == c.a.LongestRequest {
		f.Confidence = ConfidenceMedium // the assumed longest request
	}
	return f
}

func (c *wctx) gapConsequence(fr *front, w timing.Window) string {
	if r := fr.rollout; r != nil && len(r.Outages) > 0 {
		o := r.Outages[0]
		return fmt.Sprintf("in a rollout of %d replicas %s has no healthy target at all from T+%s to T+%s (%s): every request fails with 502/503",
			r.Replicas, fr.lb.Actor(), sec(o.Start), sec(o.End), sec(o.Seconds()))
	}
	return fmt.Sprintf("each new target is unused for %s after its old one is gone: %s runs short of healthy targets, requests queue or fail with 502/503", sec(w.Seconds()), fr.lb.Actor())
}

func (c *wctx) gateFix(fr *front) string {
	switch fr.lb.Kind {
	case timing.ALB, timing.NLB:
		if !fr.lb.TargetsPods {
			return "Switch to ip targets and use the AWS readiness gate (see ZD303), then label the namespace.\n\n"
		}
		ns, where := c.w.ns(), ""
		if ns == "" {
			// The manifest leaves the namespace to kubectl, kustomize or
			// Helm: name it without pretending to know it.
			ns, where = "NAMESPACE", "   # the namespace you deploy to"
		}
		lbName := "ALB"
		if fr.lb.Kind == timing.NLB {
			lbName = "NLB"
		}
		return fmt.Sprintf("Best: let the %s's verdict gate Ready:\n\n```sh\nkubectl label namespace %s %s=enabled%s\n```\n\n", lbName, ns, awsGateInjectLabel, where)
	case timing.GCE:
		return "Best: container-native load balancing, whose NEG readiness gate GKE injects:\n\n```yaml\nmetadata:\n  annotations:\n    cloud.google.com/neg: '{\"ingress\": true}'\n```\n\n"
	case timing.HAProxy:
		if fr.binding != nil {
			return fmt.Sprintf("Best: let zerodrop's webhook inject the gate %s (see ZD307):\n\n```sh\nkubectl label namespace %s %s=%s\n```\n\n", fr.lb.GateCondition, c.w.ns(), v1alpha1.GatesNamespaceLabel, v1alpha1.GatesEnabled)
		}
		return "Best: a readiness gate set from HAProxy's own check result (zerodrop's controller, a TargetBinding for this Service).\n\n"
	}
	return ""
}

func (c *wctx) earlyExit(fr *front, w timing.Window) Finding {
	lb := fr.lb
	P := c.pod.PreStop
	pdesc := fmt.Sprintf("preStop %s", sec(P))
	if P == 0 {
		pdesc = "no preStop"
		if c.preStopBroken {
			pdesc = "a preStop " + c.preStopDetail
		} else if !c.preStopKnown {
			pdesc = "a preStop of unknown duration (" + c.preStopDetail + "; set " + AnnotationPreStop + ")"
		}
	}
	msg := fmt.Sprintf("%s behind %s: %s, so SIGTERM comes at T+%s while %s sends new requests until T+%s",
		c.ref(), lb.Name, pdesc, sec(w.Start), lb.Actor(), sec(w.End))
	cons := fmt.Sprintf("for %s per terminating pod new requests hit a closed port: connection refused, clients see 502", sec(w.Seconds()))
	var fix string
	if lb.DetectOnly {
		msg = fmt.Sprintf("%s behind %s: nothing deregisters the pod from HAProxy; it is marked DOWN only %d failed checks x %s after the app stopped listening at T+%s",
			c.ref(), lb.Name, max(lb.UnhealthyThreshold, 1), sec(lb.DownAfter()/float64(max(lb.UnhealthyThreshold, 1))), sec(w.Start))
		fix = "A longer preStop only moves the window. Put the server in drain before the app stops (zerodrop's drain gate, or `set server <backend>/<server> state drain` over the Runtime API from the preStop hook), or shorten it with `fastinter 500ms fall 2` and `option redispatch` + `retries`."
	} else {
		n := ceil(w.End) + 2
		fix = fmt.Sprintf("```yaml\nlifecycle:\n  preStop:\n    sleep:\n      seconds: %d   # > D %s\n```\n%s Older clusters / images with a shell: `exec: {command: [sh, -c, \"sleep %d\"]}`.",
			n, sec(w.End), c.graceFor(float64(n)), n)
	}
	f := newFinding(RuleEarlyExit, c.obj(), c.preStopField, msg, cons, fix)
	if P == 0 && !c.preStopKnown && !c.preStopBroken {
		// The hook may well wait long enough (ingress-nginx's
		// /wait-shutdown does): the window rests on an unknown.
		f.Severity, f.Confidence = SeverityInfo, ConfidenceLow
	}
	return f
}

// checkLBSettings: ZD301, ZD302, ZD303, ZD304, ZD306 for one front.
func (c *wctx) checkLBSettings(ix *index, fr *front, add func(Finding)) {
	lb := fr.lb
	P := c.pod.PreStop
	// Deregistration delay matters for pod (ip) targets: with instance
	// targets the target group holds nodes, which a rollout does not
	// deregister.
	if (lb.Kind == timing.ALB || lb.Kind == timing.NLB) && lb.TargetsPods && fr.obj != nil {
		attrKey := "alb.ingress.kubernetes.io/target-group-attributes"
		if lb.Kind == timing.NLB {
			attrKey = "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"
		}
		want := ceil(P + timing.RequestBound(fr.a, lb))
		if want < 5 {
			want = 5
		}
		fix := fmt.Sprintf("```yaml\nmetadata:\n  annotations:\n    %s: deregistration_delay.timeout_seconds=%d\n```", attrKey, want)
		if lb.DeregistrationDelayDefault {
			f := newFinding(RuleDeregistrationDefault, fr.obj, fr.deregField,
				fmt.Sprintf("%s: deregistration delay is the %s default (preStop of %s: %s, longest request %s)", lb.Name, sec(timing.DefaultDeregistrationDelay), c.ref(), sec(P), sec(timing.RequestBound(fr.a, lb))),
				"deregistered targets linger in draining for 5 minutes: slower rollouts, old pod IPs kept registered",
				fix)
			if !c.ignored(f.RuleID) {
				add(f)
			}
		} else if lb.DeregistrationDelay < P {
			msg := fmt.Sprintf("%s: deregistration delay %s < preStop %s of %s", lb.Name, sec(lb.DeregistrationDelay), sec(P), c.ref())
			if w, ok := fr.termination.Window(timing.CauseDeregistrationDelay); ok {
				msg += "; " + w.Why
			}
			add(newFinding(RuleDeregistrationShort, fr.obj, fr.deregField, msg,
				fmt.Sprintf("%s closes connections at T+%s while the pod is still finishing requests: clients see 502/504", lb.Actor(), sec(lb.Deregistration+lb.DeregistrationDelay)),
				fix))
		}
	}
	// ZD303: a gate that cannot work.
	if !lb.TargetsPods && fr.obj != nil {
		var gate string
		switch lb.Kind {
		case timing.ALB, timing.NLB:
			gate = c.awsGate
			if gate == "" && c.nsInject {
				gate = "injected by the namespace label " + awsGateInjectLabel
			}
		case timing.GCE:
			if c.negGate {
				gate = "cloud.google.com/load-balancer-neg-ready"
			}
		}
		if gate != "" {
			fix := "```yaml\nmetadata:\n  annotations:\n    alb.ingress.kubernetes.io/target-type: ip\n```"
			switch lb.Kind {
			case timing.NLB:
				fix = "```yaml\nmetadata:\n  annotations:\n    service.beta.kubernetes.io/aws-load-balancer-nlb-target-type: ip\n```"
			case timing.GCE:
				fix = "```yaml\nmetadata:\n  annotations:\n    cloud.google.com/neg: '{\"ingress\": true}'\n```"
			}
			field := fr.targetTypeField
			if field == "" {
				field = "metadata.annotations"
			}
			f := newFinding(RuleGateCannotWork, fr.obj, field,
				fmt.Sprintf("%s targets nodes, but %s relies on the readiness gate %s", lb.Name, c.ref(), gate),
				"the LB checks nodes, not pods: the gate's condition is never set from the pod's health (pods stay unready, or the gate protects nothing) and the startup gap stays",
				fix)
			if !c.ignored(f.RuleID) {
				add(f)
			}
		}
	}
	// ZD304: ip targets, namespace known, no label, no gate in the template.
	if (lb.Kind == timing.ALB || lb.Kind == timing.NLB) && lb.TargetsPods && c.nsKnown && !c.nsInject && c.awsGate == "" {
		ns := ix.namespaceObjs[c.w.ns()]
		f := newFinding(RuleGateNotInjected, ns, "metadata.labels",
			fmt.Sprintf("Namespace %s has no label %s=enabled, so %s behind %s gets no readiness gate", c.w.ns(), awsGateInjectLabel, c.ref(), lb.Name),
			"pods are Ready before the LB checks them healthy: the startup gap of ZD103 stays open",
			fmt.Sprintf("```yaml\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n    %s: enabled\n```\nthen restart the workload: gates are injected at pod creation.", c.w.ns(), awsGateInjectLabel))
		if !c.ignored(f.RuleID) {
			add(f)
		}
	}
}

// ZD105.
func (c *wctx) checkHPAs(add func(Finding)) {
	if len(c.w.hpas) == 0 {
		return
	}
	// Time to Ready for the slowest front, gates and minReadySeconds included.
	var up float64
	for _, fr := range c.fronts {
		for _, e := range fr.startup.Events {
			if e.Actor == "Deployment" && e.State == "old pod deleted" && e.At > up {
				up = e.At
			}
		}
	}
	down := math.Min(c.pod.PreStop, c.pod.Grace) + c.a.Shutdown
	for _, o := range c.w.hpas {
		h := o.Typed.(*autoscalingv2.HorizontalPodAutoscaler)
		b := h.Spec.Behavior
		if b == nil || b.ScaleDown == nil {
			continue
		}
		sd := b.ScaleDown
		if sd.StabilizationWindowSeconds != nil && float64(*sd.StabilizationWindowSeconds) < up {
			f := newFinding(RuleHPAFasterThanGates, o, "spec.behavior.scaleDown.stabilizationWindowSeconds",
				fmt.Sprintf("%s scales %s down after a %ds stabilization window, but a new pod needs %s to be available (readiness, gates, minReadySeconds)",
					o.Ref, c.ref(), *sd.StabilizationWindowSeconds, sec(up)),
				"the HPA removes pods before the ones it just added count: replicas flap, and each flap pays the LB's check time again",
				fmt.Sprintf("```yaml\nspec:\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: %d\n```", max(300, ceil(up))))
			if !c.ignored(f.RuleID) {
				add(f)
			}
		}
		for i, p := range sd.Policies {
			if float64(p.PeriodSeconds) < down && (p.Type == autoscalingv2.PercentScalingPolicy && p.Value >= 50 || p.Type == autoscalingv2.PodsScalingPolicy && p.Value >= 2) {
				f := newFinding(RuleHPAFasterThanGates, o, fmt.Sprintf("spec.behavior.scaleDown.policies[%d]", i),
					fmt.Sprintf("%s may remove %d%s of %s every %ds while a removed pod needs preStop %s + shutdown %s = %s to drain",
						o.Ref, p.Value, map[autoscalingv2.HPAScalingPolicyType]string{autoscalingv2.PercentScalingPolicy: "%", autoscalingv2.PodsScalingPolicy: " pods"}[p.Type],
						c.ref(), p.PeriodSeconds, sec(math.Min(c.pod.PreStop, c.pod.Grace)), sec(c.a.Shutdown), sec(down)),
					"several batches drain at once: capacity falls faster than the LB shifts traffic, latency and 503s rise",
					fmt.Sprintf("```yaml\nspec:\n  behavior:\n    scaleDown:\n      policies:\n      - type: Pods\n        value: 1\n        periodSeconds: %d\n```", max(ceil(down), 15)))
				if !c.ignored(f.RuleID) {
					add(f)
				}
			}
		}
	}
}

// ZD401.
func (c *wctx) checkPDB(add func(Finding)) {
	if len(c.w.pdbs) > 0 || c.w.kind == "DaemonSet" || c.w.replicas <= 1 {
		return
	}
	add(newFinding(RuleNoPDB, c.obj(), "metadata",
		fmt.Sprintf("%s (%d replicas) is served but no PodDisruptionBudget selects its pods", c.ref(), c.w.replicas),
		"a node drain can evict every replica at once, without a rollout's surge: an outage until they are rescheduled",
		fmt.Sprintf("```yaml\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: %s\n%sspec:\n  maxUnavailable: 1\n  selector:\n    matchLabels: %s\n```", c.w.meta.Name, namespaceLine(c.w.ns()), flowMap(c.w.tmpl.Labels))))
}

// namespaceLine is the "  namespace: NS" line of a fix's metadata, or
// nothing for an object that leaves its namespace to kubectl, kustomize or
// Helm (an empty "namespace:" would be null, not the same namespace).
func namespaceLine(ns string) string {
	if ns == "" {
		return ""
	}
	return "  namespace: " + ns + "\n"
}

func flowMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+": "+m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// ZD204: exec sleep preStop in a shell-less image (any workload).
func (c *wctx) checkShellSleep(add func(Finding)) {
	for i, ct := range c.w.tmpl.Spec.Containers {
		if ct.Lifecycle == nil || ct.Lifecycle.PreStop == nil || ct.Lifecycle.PreStop.Exec == nil {
			continue
		}
		cmd := ct.Lifecycle.PreStop.Exec.Command
		if len(cmd) == 0 || !(isShell(cmd[0]) || base(cmd[0]) == "sleep") {
			continue
		}
		why, ok := shellless(ct.Image)
		if !ok {
			continue
		}
		n, known := sleepSeconds(cmd)
		secs := "N"
		if known {
			secs = fmt.Sprint(ceil(n))
		}
		field := fmt.Sprintf("%s.spec.containers[%d].lifecycle.preStop.exec", c.tmpl, i)
		add(newFinding(RuleShellSleep, c.obj(), field,
			fmt.Sprintf("container %q of %s runs preStop exec %q but its image %s looks %s: no %s in it", ct.Name, c.ref(), cmd, ct.Image, why, base(cmd[0])),
			"the hook fails at once, SIGTERM follows immediately: the preStop delay you counted on does not exist and the early-exit 502s are back",
			fmt.Sprintf("```yaml\nlifecycle:\n  preStop:\n    sleep:\n      seconds: %s\n```\n(the kubelet's sleep action: beta and on by default since Kubernetes 1.30, GA in 1.34)", secs)))
	}
}

// ZD305: gate-injecting webhooks with failurePolicy Fail.
func checkWebhooks(ix *index) []Finding {
	var out []Finding
	for _, o := range ix.webhooks {
		mw := o.Typed.(*admissionregistrationv1.MutatingWebhookConfiguration)
		for i, wh := range mw.Webhooks {
			if !injectsGates(mw.Name, &wh) {
				continue
			}
			fp := admissionregistrationv1.Fail // the v1 default
			field := fmt.Sprintf("webhooks[%d]", i)
			if wh.FailurePolicy != nil {
				fp = *wh.FailurePolicy
				field += ".failurePolicy"
			}
			if fp != admissionregistrationv1.Fail {
				continue
			}
			desc := "failurePolicy Fail"
			if wh.FailurePolicy == nil {
				desc = "no failurePolicy (admissionregistration/v1 defaults to Fail)"
			}
			out = append(out, newFinding(RuleWebhookFail, o, field,
				fmt.Sprintf("webhook %s of %s injects readiness gates into pods and has %s", wh.Name, o.Ref, desc),
				"when its controller is down, no pod can be created in the selected namespaces: rollouts, scale-ups and rescheduling stop",
				fmt.Sprintf("```yaml\nwebhooks:\n- name: %s\n  failurePolicy: Ignore\n```\n(AWS Load Balancer Controller chart: `--set podMutatorWebhookConfig.failurePolicy=Ignore`)", wh.Name)))
		}
	}
	return out
}

// injectsGates recognises readiness-gate injectors: the AWS Load Balancer
// Controller's pod mutator (mpod.elbv2.k8s.aws, path /mutate-v1-pod; not
// its other pod webhook quicid.elbv2.k8s.aws nor its Service and
// TargetGroupBinding mutators) and zerodrop's own webhook. Only a webhook
// on pod creation can add a gate.
func injectsGates(cfgName string, wh *admissionregistrationv1.MutatingWebhook) bool {
	onPodCreate := false
	for _, r := range wh.Rules {
		create := false
		for _, op := range r.Operations {
			create = create || op == admissionregistrationv1.Create || op == admissionregistrationv1.OperationAll
		}
		for _, res := range r.Resources {
			if create && (res == "pods" || res == "*") {
				onPodCreate = true
			}
		}
	}
	if !onPodCreate {
		return false
	}
	name := strings.ToLower(wh.Name)
	if name == "mpod.elbv2.k8s.aws" || strings.Contains(name, "readiness-gate") || strings.Contains(name, "readinessgate") {
		return true
	}
	if strings.HasSuffix(name, ".elbv2.k8s.aws") {
		return false // the controller's other pod webhooks
	}
	if strings.Contains(name, "zerodrop") || strings.Contains(strings.ToLower(cfgName), "zerodrop") {
		return true
	}
	if s := wh.ClientConfig.Service; s != nil && s.Path != nil && *s.Path == "/mutate-v1-pod" {
		return s.Name == "aws-load-balancer-webhook-service" || strings.Contains(s.Name, "zerodrop")
	}
	return false
}

// ZD402: PDBs that allow no disruption.
func checkPDBs(ix *index) []Finding {
	var out []Finding
	for i, o := range ix.pdbs {
		p := o.Typed.(*policyv1.PodDisruptionBudget)
		ws := ix.pdbWorkloads[i]
		var replicas int32
		for _, w := range ws {
			replicas += w.replicas
		}
		switch {
		case p.Spec.MaxUnavailable != nil:
			v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, int(replicas), true)
			if err == nil && v == 0 {
				out = append(out, newFinding(RulePDBBlocks, o, "spec.maxUnavailable",
					fmt.Sprintf("%s: maxUnavailable %s allows no eviction", o.Ref, p.Spec.MaxUnavailable.String()),
					"node drains hang until someone deletes the PDB, which then evicts without any protection",
					"```yaml\nspec:\n  maxUnavailable: 1\n```"))
			}
		case p.Spec.MinAvailable != nil && len(ws) > 0:
			v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, int(replicas), true)
			if err == nil && v >= int(replicas) {
				out = append(out, newFinding(RulePDBBlocks, o, "spec.minAvailable",
					fmt.Sprintf("%s: minAvailable %s >= the %d replicas it selects: no eviction is allowed", o.Ref, p.Spec.MinAvailable.String(), replicas),
					"node drains hang until someone deletes the PDB, which then evicts without any protection",
					"```yaml\nspec:\n  maxUnavailable: 1\n```"))
			}
		}
	}
	return out
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
