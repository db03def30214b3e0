package check

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/timing"
)

// The zerodrop.dev annotations read on a workload or its pod template.
const (
	AnnotationShutdown        = "zerodrop.dev/shutdown-seconds"
	AnnotationPropagation     = "zerodrop.dev/propagation-seconds"
	AnnotationLongestRequest  = "zerodrop.dev/longest-request-seconds"
	AnnotationBuffer          = "zerodrop.dev/buffer-seconds"
	AnnotationStartup         = "zerodrop.dev/startup-seconds"
	AnnotationRegistration    = "zerodrop.dev/registration-seconds"
	AnnotationConnectionDrain = "zerodrop.dev/connection-drain-seconds"
	AnnotationDrainLatency    = "zerodrop.dev/drain-latency-seconds"
	AnnotationALBDrainStart   = "zerodrop.dev/alb-drain-start-seconds"
	AnnotationPreStop         = "zerodrop.dev/prestop-seconds"
	AnnotationLongLived       = "zerodrop.dev/long-lived"
	AnnotationHAProxyBackend  = "zerodrop.dev/haproxy-backend"
	AnnotationIgnore          = "zerodrop.dev/ignore"
)

// AWS readiness-gate injection label on namespaces.
const awsGateInjectLabel = "elbv2.k8s.aws/pod-readiness-gate-inject"

// wctx is one workload under analysis: its assumptions (defaults, flags,
// annotations), pod timing, and the data paths in front of it.
type wctx struct {
	w    *workload
	a    timing.Assumptions
	pod  timing.Pod
	tmpl string // field path of the pod template: "spec.template"

	registration  float64 // < 0: per-LB default
	propagation   float64 // < 0: per-LB default; else D for every data path
	preStopKnown  bool    // P was read from the manifest or annotation
	preStopField  string  // field path of the serving container's preStop (or the container)
	preStopDetail string  // "sleep 20", "exec [...]", ...
	preStopBroken bool    // the exec preStop cannot run (shell-less image)
	serving       []int   // indices of serving containers
	longLived     []string
	// longLivedSeen is true when a hint is evidence (appProtocol, an
	// annotation), not only a port name.
	longLivedSeen bool
	longLivedOff  bool // annotation zerodrop.dev/long-lived: "false"
	shutdownKnown bool // S came from an annotation or flag, not the default
	longestKnown  bool // T_req came from an annotation or flag
	ignore        map[string]bool
	haproxyLink   string
	awsGate       string // readinessGates condition from the template (AWS)
	negGate       bool
	customGate    string
	nsInject      bool // namespace labelled for AWS gate injection
	nsKnown       bool // Namespace object present in the input
	nsGates       bool // namespace labelled for zerodrop gate injection
	fronts        []*front
	bad           []Finding
}

// front is one data path in front of a workload.
type front struct {
	lb     timing.LB
	via    string  // "Ingress prod/api -> Service prod/api"
	obj    *Object // object whose annotations configure the LB (Ingress or Service), nil for HAProxy
	gated  bool    // a working readiness gate ties Ready to this LB
	gate   string  // the gate condition in use, or that would be
	hapSrc Source  // HAProxy backend location
	hapBk  string
	// binding is the TargetBinding whose pool this front is (zerodrop's
	// controller), nil for other data paths.
	binding *binding
	// fields of settings on obj, for findings
	deregField, targetTypeField string

	// timeoutSet names the setting that raised the LB's timeout (an
	// annotation, a BackendConfig), "" when it is the LB's default.
	timeoutSet string
	// a are the assumptions on this path: T_req is raised to an explicitly
	// raised LB timeout (nobody raises it without requests that need it).
	a timing.Assumptions

	startup, termination timing.Timeline // computed once per front
	rollout              *timing.Rollout
}

var annotationPath = func(prefix, key string) string {
	return fmt.Sprintf("%smetadata.annotations[%q]", prefix, key)
}

// annotation returns a zerodrop annotation from the pod template or the
// workload (the template wins: it is closer to the pods), and its path.
func (c *wctx) annotation(key string) (string, string, bool) {
	if v, ok := c.w.tmpl.Annotations[key]; ok {
		return v, annotationPath(c.tmpl+".", key), true
	}
	if v, ok := c.w.meta.Annotations[key]; ok {
		return v, annotationPath("", key), true
	}
	return "", "", false
}

// parseSeconds reads "20", "2.5", "20s" or "1m30s".
func parseSeconds(v string) (float64, error) {
	v = strings.TrimSpace(v)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		d, derr := time.ParseDuration(v)
		if derr != nil {
			return 0, fmt.Errorf("%q is not seconds (want a number like \"20\" or a duration like \"20s\")", v)
		}
		f = d.Seconds()
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e7 {
		return 0, fmt.Errorf("%q is out of range (0 to 10000000 seconds)", v)
	}
	return f, nil
}

func (c *wctx) badAnnotation(o *Object, field, msg string) {
	c.bad = append(c.bad, newFinding(RuleBadAnnotation, o, field, msg,
		"the value is ignored: the check uses the default instead", ruleByID[RuleBadAnnotation].Fix))
}

// seconds applies a seconds annotation to *dst when present and valid.
func (c *wctx) seconds(key string, dst *float64) bool {
	v, path, ok := c.annotation(key)
	if !ok {
		return false
	}
	f, err := parseSeconds(v)
	if err != nil {
		c.badAnnotation(c.w.obj, path, fmt.Sprintf("annotation %s on %s: %v", key, c.w.obj.Ref, err))
		return false
	}
	*dst = f
	return true
}

// newWctx reads a workload's assumptions and pod timing.
func newWctx(w *workload, ix *index, opts *Options) *wctx {
	c := &wctx{w: w, a: opts.Assumptions, tmpl: "spec.template", registration: opts.Registration, propagation: -1}
	c.shutdownKnown = c.seconds(AnnotationShutdown, &c.a.Shutdown) || opts.Assumptions.Shutdown != timing.DefaultAssumptions().Shutdown
	c.longestKnown = c.seconds(AnnotationLongestRequest, &c.a.LongestRequest) || opts.Assumptions.LongestRequest != timing.DefaultAssumptions().LongestRequest
	c.seconds(AnnotationBuffer, &c.a.Buffer)
	c.seconds(AnnotationStartup, &c.a.Startup)
	c.seconds(AnnotationConnectionDrain, &c.a.ConnectionDrain)
	c.seconds(AnnotationDrainLatency, &c.a.DrainLatency)
	c.seconds(AnnotationALBDrainStart, &c.a.ALBDrainStart)
	var f float64
	if c.seconds(AnnotationPropagation, &f) {
		c.propagation = f
		c.a.Propagation = f
	}
	if c.seconds(AnnotationRegistration, &f) {
		c.registration = f
	}
	c.ignore = ignoreSet(w.meta.Annotations[AnnotationIgnore], w.tmpl.Annotations[AnnotationIgnore])
	if v, path, ok := c.annotation(AnnotationLongLived); ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "yes", "1":
			c.longLived = append(c.longLived, "annotation "+AnnotationLongLived)
			c.longLivedSeen = true
		case "false", "no", "0":
			c.longLivedOff = true
		default:
			c.badAnnotation(w.obj, path, fmt.Sprintf("annotation %s on %s: %q is not true or false", AnnotationLongLived, w.obj.Ref, v))
		}
	}
	if v, _, ok := c.annotation(AnnotationHAProxyBackend); ok {
		c.haproxyLink = v
	}
	if ns := ix.namespaceObjs[w.ns()]; ns != nil {
		c.nsKnown = true
		c.nsInject = ns.Typed.(*corev1.Namespace).Labels[awsGateInjectLabel] == "enabled"
		c.nsGates = ns.Typed.(*corev1.Namespace).Labels[v1alpha1.GatesNamespaceLabel] == v1alpha1.GatesEnabled
	}
	for _, g := range w.tmpl.Spec.ReadinessGates {
		ct := string(g.ConditionType)
		switch {
		case strings.HasPrefix(ct, "target-health.elbv2.k8s.aws/"), strings.HasPrefix(ct, "target-health.alb.ingress.k8s.aws/"):
			c.awsGate = ct
		case ct == "cloud.google.com/load-balancer-neg-ready":
			c.negGate = true
		default:
			c.customGate = ct
		}
	}
	c.podTiming()
	return c
}

func ignoreSet(vals ...string) map[string]bool {
	m := map[string]bool{}
	for _, v := range vals {
		for _, id := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
			m[strings.ToUpper(strings.TrimSpace(id))] = true
		}
	}
	return m
}

func (c *wctx) ignored(rule string) bool {
	return c.ignore[rule] || c.ignore["ALL"] || c.ignore["*"]
}

// servingContainers returns the containers that receive the Services'
// traffic: those exposing a Service targetPort; else those with ports; else
// all.
func (c *wctx) servingContainers() []int {
	cs := c.w.tmpl.Spec.Containers
	var byPort []int
	for i, ct := range cs {
		match := false
		for _, s := range c.w.services {
			for _, sp := range s.svc.Spec.Ports {
				tp := sp.TargetPort
				if tp.Type == intstr.Int && tp.IntVal == 0 {
					tp = intstr.FromInt32(sp.Port)
				}
				for _, cp := range ct.Ports {
					if tp.Type == intstr.Int && cp.ContainerPort == tp.IntVal || tp.Type == intstr.String && cp.Name == tp.StrVal {
						match = true
					}
				}
			}
		}
		if match {
			byPort = append(byPort, i)
		}
	}
	if len(byPort) > 0 {
		return byPort
	}
	var withPorts, all []int
	for i, ct := range cs {
		all = append(all, i)
		if len(ct.Ports) > 0 {
			withPorts = append(withPorts, i)
		}
	}
	if len(withPorts) > 0 {
		return withPorts
	}
	return all
}

var sleepRE = regexp.MustCompile(`(?:^|[;&|(\s])(?:/bin/|/usr/bin/)?sleep\s+(\d+(?:\.\d+)?)([smh]?)\b`)

// sleepSeconds returns the seconds an exec preStop command sleeps: a direct
// ["sleep", "N"] or the sleeps inside ["sh", "-c", "..."].
func sleepSeconds(cmd []string) (float64, bool) {
	if len(cmd) == 0 {
		return 0, false
	}
	script := strings.Join(cmd, " ")
	if isShell(cmd[0]) && len(cmd) >= 3 {
		script = strings.Join(cmd[2:], " ")
	}
	ms := sleepRE.FindAllStringSubmatch(script, -1)
	if len(ms) == 0 {
		return 0, false
	}
	var total float64
	for _, m := range ms {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil || v > 1e7 {
			return 0, false // not a sleep anyone waits for: unknown length
		}
		switch m[2] {
		case "m":
			v *= 60
		case "h":
			v *= 3600
		}
		total += v
	}
	return total, true
}

func base(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func isShell(p string) bool {
	switch base(p) {
	case "sh", "bash", "ash", "dash", "zsh", "busybox":
		return true
	}
	return false
}

// shellless reports whether an image reference looks like an image without
// a shell or coreutils, and why.
func shellless(image string) (string, bool) {
	im := strings.ToLower(image)
	for _, hint := range []struct{ sub, why string }{
		{"distroless", "distroless"},
		{"cgr.dev/", "Chainguard"},
		{"chainguard", "Chainguard"},
		{"ko://", "ko (distroless base)"},
		{"scratch", "scratch"},
		{"/static:", "distroless static"},
		{"/static-debian", "distroless static"},
		{"/base-debian", "distroless base"},
	} {
		if strings.Contains(im, hint.sub) {
			return hint.why, true
		}
	}
	return "", false
}

// podTiming fills c.pod from the template.
func (c *wctx) podTiming() {
	spec := &c.w.tmpl.Spec
	c.serving = c.servingContainers()
	c.pod.Grace = timing.DefaultGrace
	if spec.TerminationGracePeriodSeconds != nil {
		c.pod.Grace = float64(*spec.TerminationGracePeriodSeconds)
	}
	c.pod.MinReadySeconds = float64(c.w.minReady)
	c.pod.HasReadinessProbe = len(c.serving) > 0
	for _, i := range c.serving {
		if spec.Containers[i].ReadinessProbe == nil {
			c.pod.HasReadinessProbe = false
		}
	}
	for _, ct := range spec.Containers {
		rp := ct.ReadinessProbe
		if rp == nil {
			continue
		}
		start := c.a.Startup
		if sp := ct.StartupProbe; sp != nil {
			// Readiness probes start once the startup probe passed.
			start = math.Max(start, timing.ReadinessTime(c.a.Startup, float64(sp.InitialDelaySeconds), float64(sp.PeriodSeconds), 1))
		}
		t := timing.ReadinessTime(start, float64(rp.InitialDelaySeconds), float64(rp.PeriodSeconds), int(rp.SuccessThreshold))
		c.pod.ContainersReady = math.Max(c.pod.ContainersReady, t)
	}
	// P: the longest preStop among serving containers.
	c.preStopKnown = true
	for n, i := range c.serving {
		ct := &spec.Containers[i]
		field := fmt.Sprintf("%s.spec.containers[%d].lifecycle.preStop", c.tmpl, i)
		if n == 0 {
			c.preStopField = fmt.Sprintf("%s.spec.containers[%d]", c.tmpl, i)
		}
		if ct.Lifecycle == nil || ct.Lifecycle.PreStop == nil {
			continue
		}
		h := ct.Lifecycle.PreStop
		var p float64
		known := true
		switch {
		case h.Sleep != nil:
			p, c.preStopDetail = float64(h.Sleep.Seconds), fmt.Sprintf("sleep action %ds", h.Sleep.Seconds)
		case h.Exec != nil:
			p, known = sleepSeconds(h.Exec.Command)
			c.preStopDetail = fmt.Sprintf("exec %q", h.Exec.Command)
			if cmd := h.Exec.Command; len(cmd) > 0 && (isShell(cmd[0]) || base(cmd[0]) == "sleep") {
				if why, ok := shellless(ct.Image); ok {
					// The hook fails at once (ZD204): no delay at all.
					p, known = 0, true
					c.preStopDetail = fmt.Sprintf("exec %q, which fails at once in the %s image %s", cmd, why, ct.Image)
					c.preStopBroken = true
				}
			}
		default:
			known = false
			c.preStopDetail = "httpGet/tcpSocket hook"
		}
		if p >= c.pod.PreStop {
			c.pod.PreStop = p
			c.preStopField = field
		}
		if !known {
			c.preStopKnown = false
		}
	}
	var p float64
	if c.seconds(AnnotationPreStop, &p) {
		c.pod.PreStop, c.preStopKnown = p, true
	}
}

// frontsFor builds the data paths in front of the workload.
func (c *wctx) frontsFor(ix *index, opts *Options) {
	w := c.w
	if len(w.services) == 0 {
		return
	}
	// In-cluster clients reach the pods through the virtual IP of the
	// first Service that has one; headless Services (in w.services only
	// when an Ingress routes to them) have no kube-proxy rules.
	var first *service
	for _, s := range w.services {
		if s.svc.Spec.ClusterIP != corev1.ClusterIPNone {
			first = s
			break
		}
	}
	if first != nil {
		in := timing.Defaults(timing.InCluster, true, c.a)
		in.Label = "kube-proxy"
		in.Name = "kube-proxy (in-cluster clients of the Service)"
		if dr := ix.destinationRule(first.svc); dr != nil {
			// With Istio, in-cluster clients reach the pods through their Envoy
			// sidecars, fed by istiod from the same EndpointSlices.
			in.Label = "Envoy"
			in.Name = "Istio sidecars of in-cluster clients (" + dr.Ref.String() + ")"
		}
		c.add(&front{lb: in, via: "Service " + qualified(first.svc.Namespace, first.svc.Name), obj: first.obj})
	}
	for _, s := range w.services {
		c.serviceNotes(s)
		if s.svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			c.add(c.serviceLB(s))
		}
		c.longLivedHints(s)
		for _, io := range s.ingresses {
			c.add(c.ingressLB(ix, io, s))
		}
		for _, ro := range s.routes {
			c.add(c.routeLB(ix, ro, s))
		}
	}
	c.add(c.haproxyFront(opts))
	for _, b := range w.bindings {
		c.add(c.bindingFront(b))
	}
	for _, f := range c.fronts {
		if c.registration >= 0 {
			f.lb.Registration = c.registration
		}
		if c.propagation >= 0 {
			f.lb.Deregistration = c.propagation
			f.lb.DetectOnly = false
		}
		f.gated = c.gatedBy(f)
		f.a = c.a
		if f.timeoutSet != "" && !c.longestKnown && f.lb.Timeout > f.a.LongestRequest &&
			f.lb.Timeout > timing.Defaults(f.lb.Kind, f.lb.TargetsPods, c.a).Timeout {
			f.a.LongestRequest = f.lb.Timeout
		}
		pod := c.pod
		pod.Gated = f.gated
		if opts.SkipExplanations { // no one reads the events' notes
			f.startup = timing.StartupBare(pod, f.lb, f.a)
			f.termination = timing.TerminationBare(pod, f.lb, f.a)
		} else {
			f.startup = timing.Startup(pod, f.lb, f.a)
			f.termination = timing.Termination(pod, f.lb, f.a)
		}
		if w.kind != "DaemonSet" {
			r := timing.RolloutOf(f.startup, pod, f.lb, int(w.replicas), c.maxSurge())
			f.rollout = &r
		}
	}
}

// maxSurge returns a Deployment's resolved maxSurge (at least 1); 1 for
// StatefulSets, which replace one pod at a time.
func (c *wctx) maxSurge() int {
	d, ok := c.w.obj.Typed.(*appsv1.Deployment)
	if !ok {
		return 1
	}
	ms := intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
		ms = *ru.MaxSurge
	}
	v, err := intstr.GetScaledValueFromIntOrPercent(&ms, int(c.w.replicas), true)
	if err != nil || v < 1 {
		return 1
	}
	return v
}

func (c *wctx) add(f *front) {
	if f != nil {
		c.fronts = append(c.fronts, f)
	}
}

// gatedBy says whether a working readiness gate ties Ready to the front's
// verdict, and records which gate applies or would.
func (c *wctx) gatedBy(f *front) bool {
	lb := &f.lb
	switch lb.Kind {
	case timing.ALB, timing.NLB:
		f.gate = c.awsGate
		if f.gate == "" && c.nsInject {
			f.gate = "target-health.elbv2.k8s.aws/<TargetGroupBinding> (injected: namespace label)"
		}
	case timing.GCE:
		// GKE injects the NEG gate into pods behind a NEG-backed Ingress.
		if lb.TargetsPods || c.negGate {
			f.gate = "cloud.google.com/load-balancer-neg-ready"
		}
	case timing.HAProxy:
		if b := f.binding; b != nil {
			cond, ok := c.bindingGate(b)
			f.gate, lb.GateCondition = "", cond
			if !ok {
				return false
			}
			if _, _, short := gateTimeoutShort(b, *lb); short && b.tb.Spec.OnGateTimeout() == v1alpha1.FailOpen {
				// The gate opens on its timeout, not on HAProxy's verdict
				// (ZD308): Ready is not tied to the LB.
				return false
			}
			f.gate = cond
			return lb.GateWorks() && lb.HealthChecks
		}
		f.gate = c.customGate
		if f.gate != "" && lb.TargetsPods {
			lb.GateCondition = f.gate
		}
	}
	return f.gate != "" && lb.GateWorks() && lb.HealthChecks
}

// intAnnotation reads an integer LB annotation from the first object that
// has it; bad values are reported and ignored.
func (c *wctx) intAnnotation(dst *float64, key string, objs ...*Object) string {
	for _, o := range objs {
		if o == nil {
			continue
		}
		v, ok := objectAnnotations(o)[key]
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(strings.Trim(v, `'"`)), 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			c.badAnnotation(o, annotationPath("", key), fmt.Sprintf("annotation %s on %s: %q is not a number", key, o.Ref, v))
			return ""
		}
		*dst = f
		return annotationPath("", key)
	}
	return ""
}

func objectAnnotations(o *Object) map[string]string {
	if m, ok := o.Typed.(metav1.Object); ok {
		return m.GetAnnotations()
	}
	return nil
}

// attributes parses "k=v,k2=v2" (commas or newlines) AWS attribute lists.
func attributes(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' }) {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// attribute reads one numeric attribute from an attributes annotation.
func (c *wctx) attribute(dst *float64, annKey, attr string, objs ...*Object) string {
	for _, o := range objs {
		if o == nil {
			continue
		}
		v, ok := objectAnnotations(o)[annKey]
		if !ok {
			continue
		}
		av, ok := attributes(v)[attr]
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(av, 64)
		if err != nil || f < 0 {
			c.badAnnotation(o, annotationPath("", annKey), fmt.Sprintf("annotation %s on %s: %s=%q is not a number of seconds", annKey, o.Ref, attr, av))
			return ""
		}
		*dst = f
		return annotationPath("", annKey)
	}
	return ""
}

// serviceLB models a Service of type LoadBalancer: an AWS NLB or another
// cloud LB (node targets).
func (c *wctx) serviceLB(s *service) *front {
	ann := s.svc.Annotations
	typ := ann["service.beta.kubernetes.io/aws-load-balancer-type"]
	lbClass := ""
	if s.svc.Spec.LoadBalancerClass != nil {
		lbClass = *s.svc.Spec.LoadBalancerClass
	}
	ref := qualified(s.svc.Namespace, s.svc.Name)
	if typ != "nlb" && typ != "external" && typ != "nlb-ip" && lbClass != "service.k8s.aws/nlb" {
		lb := timing.Defaults(timing.CloudLB, false, c.a)
		lb.Name = "cloud LB of Service " + ref + " (node ports)"
		return &front{lb: lb, via: "Service " + ref, obj: s.obj}
	}
	tt := ann["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"]
	ip := tt == "ip" || typ == "nlb-ip"
	lb := timing.Defaults(timing.NLB, ip, c.a)
	f := &front{via: "Service " + ref, obj: s.obj}
	if tt != "" {
		f.targetTypeField = annotationPath("", "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type")
	} else {
		f.targetTypeField = annotationPath("", "service.beta.kubernetes.io/aws-load-balancer-type")
	}
	if ip {
		c.intAnnotation(&lb.Interval, "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval", s.obj)
		var h, u float64
		if c.intAnnotation(&h, "service.beta.kubernetes.io/aws-load-balancer-healthcheck-healthy-threshold", s.obj) != "" {
			lb.HealthyThreshold = int(h)
		}
		if c.intAnnotation(&u, "service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold", s.obj) != "" {
			lb.UnhealthyThreshold = int(u)
		}
	}
	key := "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"
	if fld := c.attribute(&lb.DeregistrationDelay, key, "deregistration_delay.timeout_seconds", s.obj); fld != "" {
		lb.DeregistrationDelayDefault = false
		f.deregField = fld
	} else {
		f.deregField = "metadata.annotations"
	}
	mode := "instance"
	if ip {
		mode = "ip"
	}
	lb.Name = fmt.Sprintf("AWS NLB (target-type %s) of Service %s", mode, ref)
	f.lb = lb
	return f
}

// ingressLB models the LB or ingress controller behind an Ingress.
func (c *wctx) ingressLB(ix *index, io *Object, s *service) *front {
	ing := ingressOf(io)
	ctrl := ix.ingressController(ing)
	iref := qualified(ing.Namespace, ing.Name)
	sref := qualified(s.svc.Namespace, s.svc.Name)
	via := "Ingress " + iref + " -> Service " + sref
	f := &front{via: via, obj: io}
	switch ctrl {
	case "alb":
		// Service annotations override the Ingress's (AWS LBC semantics).
		objs := []*Object{s.obj, io}
		tt := "instance"
		f.targetTypeField = "metadata.annotations"
		for _, o := range objs {
			if v, ok := objectAnnotations(o)["alb.ingress.kubernetes.io/target-type"]; ok {
				tt = v
				if o == io {
					f.targetTypeField = annotationPath("", "alb.ingress.kubernetes.io/target-type")
				}
				break
			}
		}
		lb := timing.Defaults(timing.ALB, tt == "ip", c.a)
		if tt == "ip" {
			c.intAnnotation(&lb.Interval, "alb.ingress.kubernetes.io/healthcheck-interval-seconds", objs...)
			var h, u float64
			if c.intAnnotation(&h, "alb.ingress.kubernetes.io/healthy-threshold-count", objs...) != "" {
				lb.HealthyThreshold = int(h)
			}
			if c.intAnnotation(&u, "alb.ingress.kubernetes.io/unhealthy-threshold-count", objs...) != "" {
				lb.UnhealthyThreshold = int(u)
			}
		}
		key := "alb.ingress.kubernetes.io/target-group-attributes"
		if fld := c.attribute(&lb.DeregistrationDelay, key, "deregistration_delay.timeout_seconds", objs...); fld != "" {
			lb.DeregistrationDelayDefault = false
			f.deregField = fld
		} else {
			f.deregField = "metadata.annotations"
		}
		if fld := c.attribute(&lb.Timeout, "alb.ingress.kubernetes.io/load-balancer-attributes", "idle_timeout.timeout_seconds", io); fld != "" {
			f.timeoutSet = "idle_timeout.timeout_seconds of Ingress " + iref
		}
		lb.Name = fmt.Sprintf("AWS ALB (target-type %s) of Ingress %s", tt, iref)
		f.lb = lb
	case "gce":
		neg := true
		if v, ok := s.svc.Annotations["cloud.google.com/neg"]; ok {
			var n struct {
				Ingress *bool `json:"ingress"`
			}
			if err := json.Unmarshal([]byte(v), &n); err != nil {
				c.badAnnotation(s.obj, annotationPath("", "cloud.google.com/neg"), fmt.Sprintf("annotation cloud.google.com/neg on %s: %v", s.obj.Ref, err))
			} else if n.Ingress != nil {
				neg = *n.Ingress
			}
		}
		lb := timing.Defaults(timing.GCE, neg, c.a)
		if bc := c.backendConfig(ix, s, ing); bc != nil {
			if c.applyBackendConfig(&lb, bc) {
				f.timeoutSet = "timeoutSec of " + bc.Ref.String()
			}
		}
		mode := "NEG"
		if !neg {
			mode = "instance groups"
		}
		lb.Name = fmt.Sprintf("GCLB (%s) of Ingress %s", mode, iref)
		f.lb = lb
	default:
		lb := timing.Defaults(timing.InCluster, true, c.a)
		lb.Label = map[string]string{"nginx": "ingress-nginx", "traefik": "Traefik", "haproxy": "HAProxy Ingress", "": "ingress controller"}[ctrl]
		a := ing.Annotations
		for _, k := range []string{"nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.org/proxy-read-timeout"} {
			if v, ok := a[k]; ok {
				if t, err := parseSeconds(v); err == nil {
					lb.Timeout = t
					if t > 60 { // raised above ingress-nginx's default
						f.timeoutSet = k + " of Ingress " + iref
					}
				} else {
					c.badAnnotation(io, annotationPath("", k), fmt.Sprintf("annotation %s on %s: %v", k, io.Ref, err))
				}
			}
		}
		if ctrl == "nginx" && lb.Timeout == 0 {
			lb.Timeout = 60 // ingress-nginx proxy-read-timeout default
		}
		if ctrl == "" {
			c.unknownController(ix, io, ing, iref)
		}
		for _, k := range []string{"haproxy.org/timeout-server", "haproxy-ingress.github.io/timeout-server"} {
			if v, ok := a[k]; ok {
				if t, err := parseHAProxyTime(v); err == nil {
					lb.Timeout = t
					if t > 50 { // raised above the HAProxy ingress controllers' default
						f.timeoutSet = k + " of Ingress " + iref
					}
				} else {
					c.badAnnotation(io, annotationPath("", k), fmt.Sprintf("annotation %s on %s: %v", k, io.Ref, err))
				}
			}
		}
		lb.Name = fmt.Sprintf("%s of Ingress %s", lb.Label, iref)
		f.lb = lb
	}
	c.ingressLongLivedHints(ing, iref)
	return f
}

// routeLB models the Gateway API data path of an HTTPRoute or GRPCRoute
// by the class of its (first) Gateway: GKE's gke-l7-* classes are GCLB
// with NEGs (container-native, with the NEG readiness gate); the common
// in-cluster implementations are proxies fed by EndpointSlices, like an
// ingress controller. Anything else is checked as such a proxy, with a
// note.
func (c *wctx) routeLB(ix *index, ro *Object, s *service) *front {
	u := unstructuredOf(ro)
	rref := ro.Ref.Kind + " " + qualified(u.GetNamespace(), u.GetName())
	gws, classes := ix.routeGateways(u)
	gw, class := "", ""
	if len(gws) > 0 {
		gw, class = gws[0], classes[0]
	}
	f := &front{via: rref + " -> Service " + qualified(s.svc.Namespace, s.svc.Name), obj: ro}
	if strings.HasPrefix(class, "gke-l7") {
		lb := timing.Defaults(timing.GCE, true, c.a)
		lb.Name = fmt.Sprintf("GCLB (NEG) of Gateway %s", gw)
		f.lb = lb
		return f
	}
	lb := timing.Defaults(timing.InCluster, true, c.a)
	lb.Label = gatewayImplementation(class)
	if lb.Label == "" {
		// Class names are free; the GatewayClass says which controller.
		lb.Label = gatewayImplementation(ix.gatewayController(class))
	}
	if lb.Label == "" {
		lb.Label = "Gateway proxy"
		what := fmt.Sprintf("attaches to Gateway %s of class %q, an implementation zerodrop does not know", gw, class)
		switch {
		case gw == "":
			what = "names no Gateway in parentRefs"
		case class == "":
			what = fmt.Sprintf("attaches to Gateway %s, which is not in the input", gw)
		}
		c.note(ro, "spec.parentRefs",
			fmt.Sprintf("%s %s: %s is checked as if an in-cluster proxy fed by EndpointSlices served it (D %s, no health checks of its own)", rref, what, c.ref(), sec(c.a.Propagation)),
			"if a cloud LB implements the Gateway, its health-check and drain timings are not checked: startup gaps and early exits on that path go unreported",
			"Include the Gateway in the input; classes modelled: gke-l7-* (GCLB with NEGs), istio, Envoy Gateway, NGINX Gateway Fabric, Cilium, Traefik, Kong, Contour, HAProxy. Set `"+AnnotationPropagation+"` if the proxy is slower than kube-proxy.")
	}
	if gw != "" {
		lb.Name = fmt.Sprintf("%s of Gateway %s (%s)", lb.Label, gw, rref)
	} else {
		lb.Name = fmt.Sprintf("%s of %s", lb.Label, rref)
	}
	f.lb = lb
	return f
}

// gatewayImplementation names the in-cluster Gateway API implementation of
// a GatewayClass by the class names their installs use, or by the
// GatewayClass's controllerName (gateway.envoyproxy.io/gatewayclass-controller,
// istio.io/gateway-controller, ...), "" when unknown.
func gatewayImplementation(class string) string {
	c := strings.ToLower(class)
	switch {
	case strings.Contains(c, "istio"):
		return "Istio gateway"
	case c == "eg" || strings.Contains(c, "envoy"):
		return "Envoy Gateway"
	case strings.Contains(c, "nginx"):
		return "NGINX Gateway"
	case strings.Contains(c, "cilium"):
		return "Cilium gateway"
	case strings.Contains(c, "traefik"):
		return "Traefik"
	case strings.Contains(c, "kong"):
		return "Kong"
	case strings.Contains(c, "contour"):
		return "Contour"
	case strings.Contains(c, "haproxy"):
		return "HAProxy gateway"
	}
	return ""
}

// note records a data path zerodrop cannot model (ZD002): the result for
// it is not "clean", it is unknown, and the note says what was assumed.
func (c *wctx) note(o *Object, field, msg, consequence, fix string) {
	if c.ignored(RuleNotModelled) {
		return
	}
	c.bad = append(c.bad, newFinding(RuleNotModelled, o, field, msg, consequence, fix))
}

// unknownController notes an Ingress whose controller is not known: it is
// checked as a generic in-cluster proxy fed by EndpointSlices.
func (c *wctx) unknownController(ix *index, io *Object, ing *networkingv1.Ingress, iref string) {
	class, field := ing.Annotations["kubernetes.io/ingress.class"], annotationPath("", "kubernetes.io/ingress.class")
	if ing.Spec.IngressClassName != nil {
		class, field = *ing.Spec.IngressClassName, "spec.ingressClassName"
	}
	what := "names no IngressClass (and the input marks none as default)"
	if class != "" {
		what = fmt.Sprintf("has class %q, whose controller zerodrop does not know", class)
		if ctrl := ix.ingressClasses[class]; ctrl != "" {
			what = fmt.Sprintf("has class %q of controller %q, which zerodrop does not model", class, ctrl)
		}
	} else {
		field = "spec"
	}
	c.note(io, field,
		fmt.Sprintf("Ingress %s %s: %s is checked as if an in-cluster proxy fed by EndpointSlices served it (D %s, no health checks of its own)", iref, what, c.ref(), sec(c.a.Propagation)),
		"if a cloud LB serves it (on GKE an Ingress without class is served by GCE), its health-check and drain timings are not checked: startup gaps and early exits on that path go unreported",
		"Name the controller: `spec.ingressClassName` (alb, nginx, traefik, haproxy) or, on GKE, `kubernetes.io/ingress.class: gce` (or `cloud.google.com/neg` on the Service). Set `"+AnnotationPropagation+"` if the controller is slower than kube-proxy.")
}

// serviceNotes notes Service settings that change the data path in ways
// zerodrop does not model.
func (c *wctx) serviceNotes(s *service) {
	ref := qualified(s.svc.Namespace, s.svc.Name)
	sp := &s.svc.Spec
	if sp.PublishNotReadyAddresses {
		c.note(s.obj, "spec.publishNotReadyAddresses",
			fmt.Sprintf("Service %s publishes not-ready addresses: its endpoints include pods of %s that are starting or terminating, so readiness probes, gates and preStop do not decide when they get traffic", ref, c.ref()),
			"clients of this Service may reach pods before they listen and after they stopped: the timings checked here do not hold for it",
			"Use `publishNotReadyAddresses: true` only on a headless Service for peer discovery (StatefulSet members), and a second Service without it for clients.")
	}
	ann := s.svc.Annotations
	podTargets := ann["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip" || ann["service.beta.kubernetes.io/aws-load-balancer-type"] == "nlb-ip"
	if sp.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && !podTargets && (sp.Type == corev1.ServiceTypeLoadBalancer || sp.Type == corev1.ServiceTypeNodePort) {
		c.note(s.obj, "spec.externalTrafficPolicy",
			fmt.Sprintf("Service %s has externalTrafficPolicy Local: the LB sends each node's traffic to that node's own pods of %s, and learns that a node has none left only when its health check on healthCheckNodePort fails (interval x unhealthy threshold, not modelled here)", ref, c.ref()),
			"when the last local pod of a node terminates, the LB may keep sending new connections to that node until its check fails: they are dropped",
			"Keep the pod serving for the LB's detection time (preStop longer than interval x unhealthy threshold), use pod (ip/NEG) targets, or `externalTrafficPolicy: Cluster`.")
	}
}

func (c *wctx) backendConfig(ix *index, s *service, ing interface{}) *Object {
	for _, key := range []string{"cloud.google.com/backend-config", "beta.cloud.google.com/backend-config"} {
		v, ok := s.svc.Annotations[key]
		if !ok {
			continue
		}
		var ref struct {
			Default string            `json:"default"`
			Ports   map[string]string `json:"ports"`
		}
		if err := json.Unmarshal([]byte(v), &ref); err != nil {
			c.badAnnotation(s.obj, annotationPath("", key), fmt.Sprintf("annotation %s on %s: %v", key, s.obj.Ref, err))
			return nil
		}
		name := ref.Default
		for _, p := range s.svc.Spec.Ports {
			if n, ok := ref.Ports[strconv.Itoa(int(p.Port))]; ok {
				name = n
				break
			}
			if n, ok := ref.Ports[p.Name]; ok && p.Name != "" {
				name = n
				break
			}
		}
		return ix.backendConfigs[nsName{s.svc.Namespace, name}]
	}
	return nil
}

// applyBackendConfig reads a GKE BackendConfig into lb; true when it sets
// the backend timeout.
func (c *wctx) applyBackendConfig(lb *timing.LB, bc *Object) bool {
	u := unstructuredOf(bc)
	num := func(path ...string) (float64, bool) {
		v, ok, _ := nestedNumber(u, path...)
		return v, ok
	}
	if v, ok := num("spec", "connectionDraining", "drainingTimeoutSec"); ok {
		lb.DrainingTimeout = v
	}
	if v, ok := num("spec", "healthCheck", "checkIntervalSec"); ok && v > 0 {
		lb.Interval = v
	}
	if v, ok := num("spec", "healthCheck", "healthyThreshold"); ok && v >= 1 {
		lb.HealthyThreshold = int(v)
	}
	if v, ok := num("spec", "healthCheck", "unhealthyThreshold"); ok && v >= 1 {
		lb.UnhealthyThreshold = int(v)
	}
	if v, ok := num("spec", "timeoutSec"); ok && v > 0 {
		lb.Timeout = v
		return true
	}
	return false
}

// haproxyFront links the workload to a backend of the --haproxy-config file:
// by annotation zerodrop.dev/haproxy-backend (workload, template or one of
// its Services), by --haproxy-backend, or when the file has one backend;
// nil when that backend is the pool of one of its TargetBindings.
func (c *wctx) haproxyFront(opts *Options) *front {
	cfg := opts.haproxy
	if cfg == nil {
		return nil
	}
	name := c.haproxyLink
	if name == "" {
		for _, s := range c.w.services {
			if v, ok := s.svc.Annotations[AnnotationHAProxyBackend]; ok {
				name = v
				break
			}
		}
	}
	if name == "" {
		name = opts.HAProxyBackend
	}
	if name == "" && len(cfg.Backends) == 1 {
		name = cfg.Backends[0].Name
	}
	b := cfg.Backend(name)
	if b == nil {
		return nil
	}
	// A pool of one of the workload's TargetBindings is not a static list:
	// zerodrop's controller registers and drains its servers, with checks,
	// and the binding's own front models that.
	for _, bd := range c.w.bindings {
		if bd.tb.Spec.Pool == b.Name {
			return nil
		}
	}
	// Servers on a Service's nodePort are node targets (kube-proxy picks
	// pods); other servers are taken to be pods.
	podTargets := true
	for _, s := range c.w.services {
		for _, p := range s.svc.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			for _, srv := range b.Servers {
				if strings.HasSuffix(srv.Addr, ":"+strconv.Itoa(int(p.NodePort))) {
					podTargets = false
				}
			}
		}
	}
	lb := timing.Defaults(timing.HAProxy, podTargets, c.a)
	h := b.Health()
	if podTargets {
		lb.Interval = h.Inter.Seconds()
		lb.FastInterval = h.FastInter.Seconds()
		lb.HealthyThreshold, lb.UnhealthyThreshold = h.Rise, h.Fall
	}
	if d, ok := b.Timeout("server"); ok {
		lb.Timeout = d.Seconds()
	}
	mode := "pod servers"
	if !podTargets {
		mode = "node ports"
	}
	lb.Name = fmt.Sprintf("HAProxy backend %s (%s, %s)", b.Name, cfg.File, mode)
	line := b.Line
	if h.Line > 0 {
		line = h.Line
	}
	return &front{lb: lb, via: "HAProxy backend " + b.Name, hapSrc: Source{File: cfg.File, Line: line}, hapBk: b.Name}
}

// longLivedHints records Service ports that hint at long-lived connections.
func (c *wctx) longLivedHints(s *service) {
	for _, p := range s.svc.Spec.Ports {
		if p.AppProtocol != nil {
			switch ap := strings.ToLower(*p.AppProtocol); {
			case strings.Contains(ap, "grpc"), strings.Contains(ap, "h2c"), strings.HasSuffix(ap, "/ws"), strings.HasSuffix(ap, "/wss"), ap == "ws", ap == "wss":
				c.longLived = append(c.longLived, fmt.Sprintf("Service %s port %d appProtocol %s", s.svc.Name, p.Port, *p.AppProtocol))
				c.longLivedSeen = true
				continue
			}
		}
		if longLivedName(p.Name) {
			c.longLived = append(c.longLived, fmt.Sprintf("Service %s port name %q", s.svc.Name, p.Name))
		}
	}
	for _, i := range c.serving {
		for _, cp := range c.w.tmpl.Spec.Containers[i].Ports {
			if longLivedName(cp.Name) {
				c.longLived = append(c.longLived, fmt.Sprintf("container port name %q", cp.Name))
			}
		}
	}
}

// longLivedByName is true when only port names hint at long-lived
// connections.
func (c *wctx) longLivedByName() bool { return len(c.longLived) > 0 && !c.longLivedSeen }

func longLivedName(n string) bool {
	n = strings.ToLower(n)
	for _, p := range []string{"grpc", "ws", "websocket", "h2c", "stream"} {
		if n == p || strings.HasPrefix(n, p+"-") || strings.HasSuffix(n, "-"+p) {
			return true
		}
	}
	return false
}

func (c *wctx) ingressLongLivedHints(ing interface{ GetAnnotations() map[string]string }, iref string) {
	a := ing.GetAnnotations()
	hint := func(k string) {
		c.longLived = append(c.longLived, fmt.Sprintf("Ingress %s annotation %s: %q", iref, k, a[k]))
		c.longLivedSeen = true
	}
	for _, k := range []string{"nginx.org/websocket-services", "nginx.ingress.kubernetes.io/websocket-services"} {
		if _, ok := a[k]; ok {
			hint(k)
		}
	}
	for _, k := range []string{"nginx.ingress.kubernetes.io/backend-protocol", "alb.ingress.kubernetes.io/backend-protocol-version"} {
		if v := strings.ToUpper(a[k]); strings.HasPrefix(v, "GRPC") {
			hint(k)
		}
	}
	if v, ok := a["nginx.ingress.kubernetes.io/proxy-read-timeout"]; ok {
		if t, err := parseSeconds(v); err == nil && t >= 3600 {
			hint("nginx.ingress.kubernetes.io/proxy-read-timeout")
		}
	}
}
