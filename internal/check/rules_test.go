package check

import (
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	networkingv1beta1 "k8s.io/api/networking/v1beta1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"zerodrop.dev/zerodrop/internal/timing"
)

// wrap turns a typed object into an *Object whose LineOf answers a line
// derived from the field path, so tests can check findings point at it.
func wrap(o runtime.Object) *Object {
	m := o.(metav1.Object)
	gvk := o.GetObjectKind().GroupVersionKind()
	if u, ok := o.(*unstructured.Unstructured); ok {
		gvk = u.GroupVersionKind()
	}
	return &Object{
		Ref:    ObjectRef{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Namespace: m.GetNamespace(), Name: m.GetName()},
		Source: Source{File: "test/" + m.GetName() + ".yaml", Line: 1},
		Typed:  o,
		LineOf: func(p string) int { return 100 + len(p) },
	}
}

func wrapAll(os ...runtime.Object) []*Object {
	var out []*Object
	for _, o := range os {
		out = append(out, wrap(o))
	}
	return out
}

func tm(kind, apiVersion string) metav1.TypeMeta {
	return metav1.TypeMeta{Kind: kind, APIVersion: apiVersion}
}

// goodDeployment is a Deployment every rule accepts behind an in-cluster
// Service: readiness and liveness probes that differ, preStop sleep 5,
// grace 30 (5 + 10 + 10 <= 30), maxUnavailable 0.
func goodDeployment(name string) *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   tm("Deployment", "apps/v1"),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, "tier": "web"}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](30),
					Containers: []corev1.Container{{
						Name: "app", Image: "registry.example.com/" + name + ":1.0",
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 5},
						LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 10, FailureThreshold: 3},
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}},
					}},
				},
			},
		},
	}
}

func svcObj(name string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   tm("Service", "v1"),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
}

func pdb(name string) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   tm("PodDisruptionBudget", "policy/v1"),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}},
	}
}

func ingress(name, svc, class string, ann map[string]string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		TypeMeta:   tm("Ingress", "networking.k8s.io/v1"),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod", Annotations: ann},
		Spec: networkingv1.IngressSpec{IngressClassName: &class, Rules: []networkingv1.IngressRule{{
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}}}}}},
	}
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{TypeMeta: tm("Namespace", "v1"), ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// albIP is a good ALB setup: ip targets, injection label, deregistration
// delay 20 s (>= preStop 5 s).
func albIP(extra map[string]string) []runtime.Object {
	ann := map[string]string{
		"alb.ingress.kubernetes.io/target-type":             "ip",
		"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20",
	}
	for k, v := range extra {
		if v == "" {
			delete(ann, k)
		} else {
			ann[k] = v
		}
	}
	return []runtime.Object{ingress("web", "web", "alb", ann),
		namespace("prod", map[string]string{"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"})}
}

func analyze(t *testing.T, objs []runtime.Object, opts Options) *Report {
	t.Helper()
	r := Analyze(wrapAll(objs...), opts)
	if len(r.Errors) > 0 {
		t.Fatalf("input errors: %v", r.Errors)
	}
	for _, f := range r.Findings {
		if f.Message == "" || f.Consequence == "" || f.Fix == "" || f.Field == "" {
			t.Errorf("%s: incomplete finding %+v", f.RuleID, f)
		}
		if f.Object.APIVersion != "haproxy" && f.Source.Line != 100+len(f.Field) {
			t.Errorf("%s: source line %d is not the line of field %q", f.RuleID, f.Source.Line, f.Field)
		}
		checkFixYAML(t, f)
	}
	return r
}

// checkFixYAML holds a finding's fix to what a user pastes: every ```yaml
// block parses, starts at column 0 (a top-level key or list, not a fragment
// cut out of the middle of a document) and sets no field to null (an empty
// "namespace:" would clear the field instead of setting it).
func checkFixYAML(t *testing.T, f Finding) {
	t.Helper()
	rest := f.Fix
	for {
		i := strings.Index(rest, "```yaml\n")
		if i < 0 {
			return
		}
		rest = rest[i+len("```yaml\n"):]
		j := strings.Index(rest, "```")
		if j < 0 {
			t.Errorf("%s %s: unterminated yaml block in fix:\n%s", f.RuleID, f.Object, f.Fix)
			return
		}
		block := rest[:j]
		rest = rest[j+3:]
		if strings.HasPrefix(block, " ") {
			t.Errorf("%s %s: fix YAML is an indented fragment:\n%s", f.RuleID, f.Object, block)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
			t.Errorf("%s %s: fix YAML does not parse: %v\n%s", f.RuleID, f.Object, err, block)
			continue
		}
		var nulls func(n *yaml.Node)
		nulls = func(n *yaml.Node) {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				t.Errorf("%s %s: fix YAML sets a field to null (line %d):\n%s", f.RuleID, f.Object, n.Line, block)
			}
			for _, c := range n.Content {
				nulls(c)
			}
		}
		nulls(&doc)
	}
}

func findings(r *Report, rule string) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.RuleID == rule {
			out = append(out, f)
		}
	}
	return out
}

func dump(r *Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "\n  %s %s %s: %s", f.RuleID, f.Object, f.Field, f.Message)
	}
	return b.String()
}

// ruleCase is one scenario: objects built from the good baseline with one
// change. want says whether rule must fire; contains are substrings of its
// message.
type ruleCase struct {
	name     string
	rule     string
	objs     func() []runtime.Object
	opts     Options
	want     bool
	contains []string
	severity *Severity
	// confidence, when set, is the finding's expected confidence.
	confidence *Confidence
}

// base returns the good baseline: Deployment, Service, PDB.
func baseline(mod func(d *appsv1.Deployment)) []runtime.Object {
	d := goodDeployment("web")
	if mod != nil {
		mod(d)
	}
	return []runtime.Object{d, svcObj("web"), pdb("web")}
}

func container(d *appsv1.Deployment) *corev1.Container { return &d.Spec.Template.Spec.Containers[0] }

func TestBaselineHasNoFindings(t *testing.T) {
	for name, objs := range map[string][]runtime.Object{
		"in-cluster": baseline(nil),
		"ALB ip with gate": append(baseline(func(d *appsv1.Deployment) {
			container(d).Lifecycle.PreStop.Sleep.Seconds = 10
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](35)
		}), albIP(nil)...),
	} {
		if r := analyze(t, objs, Options{}); len(r.Findings) != 0 {
			t.Errorf("%s: want no findings, got %s", name, dump(r))
		}
	}
}

func runRuleCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.rule+"/"+c.name, func(t *testing.T) {
			r := analyze(t, c.objs(), c.opts)
			fs := findings(r, c.rule)
			if c.want && len(fs) == 0 {
				t.Fatalf("want %s, got:%s", c.rule, dump(r))
			}
			if !c.want && len(fs) > 0 {
				t.Fatalf("want no %s, got:%s", c.rule, dump(r))
			}
			for _, s := range c.contains {
				if !strings.Contains(fs[0].Message+" | "+fs[0].Consequence+" | "+fs[0].Fix, s) {
					t.Errorf("%s finding lacks %q:\n%s\n%s\n%s", c.rule, s, fs[0].Message, fs[0].Consequence, fs[0].Fix)
				}
			}
			if c.severity != nil && fs[0].Severity != *c.severity {
				t.Errorf("severity %v, want %v", fs[0].Severity, *c.severity)
			}
			if c.confidence != nil && fs[0].Confidence != *c.confidence {
				t.Errorf("confidence %v, want %v", fs[0].Confidence, *c.confidence)
			}
		})
	}
}

var (
	sevError   = SeverityError
	sevWarning = SeverityWarning
)

func TestStartupRules(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "no readinessProbe", rule: RuleNoReadinessProbe, want: true, severity: &sevError,
			contains: []string{`container "app"`, "no readinessProbe", "listens at T+5s", "readinessProbe:\n  httpGet"},
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) { container(d).ReadinessProbe = nil })
			}},
		{name: "probe present", rule: RuleNoReadinessProbe, objs: func() []runtime.Object { return baseline(nil) }},
		{name: "not served: no Service selects it", rule: RuleNoReadinessProbe, objs: func() []runtime.Object {
			d := goodDeployment("worker")
			container(d).ReadinessProbe = nil
			return []runtime.Object{d, svcObj("web")}
		}},
		{name: "sidecar without ports is not the serving container", rule: RuleNoReadinessProbe, objs: func() []runtime.Object {
			return baseline(func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, corev1.Container{Name: "log-shipper", Image: "fluent-bit:3"})
			})
		}},

		{name: "identical probes", rule: RuleSameProbes, want: true, objs: func() []runtime.Object {
			return baseline(func(d *appsv1.Deployment) { container(d).LivenessProbe = container(d).ReadinessProbe.DeepCopy() })
		}},
		{name: "different probes", rule: RuleSameProbes, objs: func() []runtime.Object { return baseline(nil) }},

		{name: "ALB ip without gate, minReadySeconds 0", rule: RuleStartupGap, want: true, severity: &sevError,
			contains: []string{"minReadySeconds 0s < health-check time 15s x 2 + registration 3s = 33s", "kubectl label namespace prod elbv2.k8s.aws/pod-readiness-gate-inject=enabled", "minReadySeconds: 33",
				"in a rollout of 3 replicas ALB has no healthy target at all from T+18s to T+38s (20s)"},
			objs: func() []runtime.Object {
				objs := append(baseline(nil), albIP(nil)...)
				objs[len(objs)-1] = namespace("prod", nil)
				return objs
			}},
		{name: "ALB ip without gate, minReadySeconds covers I x H + R", rule: RuleStartupGap, objs: func() []runtime.Object {
			return append(baseline(func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = 33 }), ingress("web", "web", "alb", map[string]string{
				"alb.ingress.kubernetes.io/target-type": "ip", "alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20"}))
		}},
		{name: "ALB ip with explicit readinessGates", rule: RuleStartupGap, objs: func() []runtime.Object {
			return append(baseline(func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "target-health.elbv2.k8s.aws/k8s-prod-web-0123456789"}}
			}), ingress("web", "web", "alb", map[string]string{
				"alb.ingress.kubernetes.io/target-type": "ip", "alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20"}))
		}},
		{name: "ALB health-check annotations on the Service override the Ingress", rule: RuleStartupGap, want: true,
			contains: []string{"health-check time 30s x 2"},
			objs: func() []runtime.Object {
				objs := baseline(nil)
				s := objs[1].(*corev1.Service)
				s.Annotations = map[string]string{"alb.ingress.kubernetes.io/healthcheck-interval-seconds": "30"}
				return append(objs, ingress("web", "web", "alb", map[string]string{"alb.ingress.kubernetes.io/target-type": "ip",
					"alb.ingress.kubernetes.io/healthcheck-interval-seconds": "5",
					"alb.ingress.kubernetes.io/target-group-attributes":      "deregistration_delay.timeout_seconds=20"}))
			}},
		{name: "HAProxy pod servers, minReadySeconds short", rule: RuleStartupGap, want: true,
			contains: []string{"health-check time 3s x 2 + registration 1s = 7s"},
			opts:     Options{HAProxyConfig: "../../examples/seed000-onprem-haproxy.cfg"},
			objs:     func() []runtime.Object { return baseline(nil) }},

		{name: "maxUnavailable 25% default", rule: RuleRollingUpdate, want: true, severity: &sevWarning,
			contains: []string{"maxUnavailable 25% (= 1 of 4 replicas)"},
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) { d.Spec.Strategy.RollingUpdate = nil; d.Spec.Replicas = ptr.To[int32](4) })
			}},
		{name: "maxUnavailable 1 of 1 replica", rule: RuleRollingUpdate, want: true, severity: &sevError, objs: func() []runtime.Object {
			return baseline(func(d *appsv1.Deployment) {
				d.Spec.Replicas = ptr.To[int32](1)
				d.Spec.Strategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(1))
			})
		}},
		{name: "Recreate", rule: RuleRollingUpdate, want: true, severity: &sevError, objs: func() []runtime.Object {
			return baseline(func(d *appsv1.Deployment) {
				d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
			})
		}},
		{name: "maxUnavailable 0 maxSurge 1", rule: RuleRollingUpdate, objs: func() []runtime.Object { return baseline(nil) }},
		{name: "StatefulSet with one replica", rule: RuleRollingUpdate, want: true, objs: func() []runtime.Object {
			d := goodDeployment("db")
			ss := &appsv1.StatefulSet{TypeMeta: tm("StatefulSet", "apps/v1"), ObjectMeta: d.ObjectMeta,
				Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), Selector: d.Spec.Selector, Template: d.Spec.Template}}
			return []runtime.Object{ss, svcObj("db")}
		}},
		{name: "StatefulSet with three replicas", rule: RuleRollingUpdate, objs: func() []runtime.Object {
			d := goodDeployment("db")
			ss := &appsv1.StatefulSet{TypeMeta: tm("StatefulSet", "apps/v1"), ObjectMeta: d.ObjectMeta,
				Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3), Selector: d.Spec.Selector, Template: d.Spec.Template}}
			return []runtime.Object{ss, svcObj("db"), pdb("db")}
		}},
		{name: "DaemonSet without maxSurge", rule: RuleRollingUpdate, want: true, objs: func() []runtime.Object {
			d := goodDeployment("proxy")
			ds := &appsv1.DaemonSet{TypeMeta: tm("DaemonSet", "apps/v1"), ObjectMeta: d.ObjectMeta,
				Spec: appsv1.DaemonSetSpec{Selector: d.Spec.Selector, Template: d.Spec.Template}}
			return []runtime.Object{ds, svcObj("proxy")}
		}},
		{name: "DaemonSet with maxSurge 1", rule: RuleRollingUpdate, objs: func() []runtime.Object {
			d := goodDeployment("proxy")
			ds := &appsv1.DaemonSet{TypeMeta: tm("DaemonSet", "apps/v1"), ObjectMeta: d.ObjectMeta,
				Spec: appsv1.DaemonSetSpec{Selector: d.Spec.Selector, Template: d.Spec.Template,
					UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType, RollingUpdate: &appsv1.RollingUpdateDaemonSet{
						MaxSurge: ptr.To(intstr.FromInt32(1)), MaxUnavailable: ptr.To(intstr.FromInt32(0))}}}}
			return []runtime.Object{ds, svcObj("proxy")}
		}},
	})
}

func hpa(target string, b *autoscalingv2.HorizontalPodAutoscalerBehavior) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   tm("HorizontalPodAutoscaler", "autoscaling/v2"),
		ObjectMeta: metav1.ObjectMeta{Name: target, Namespace: "prod"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target},
			MinReplicas:    ptr.To[int32](3), MaxReplicas: 10, Behavior: b},
	}
}

func TestHPARule(t *testing.T) {
	gated := func(b *autoscalingv2.HorizontalPodAutoscalerBehavior) func() []runtime.Object {
		return func() []runtime.Object {
			return append(append(baseline(nil), albIP(nil)...), hpa("web", b))
		}
	}
	runRuleCases(t, []ruleCase{
		{name: "stabilization 30 s, pod available at T+8s+30s", rule: RuleHPAFasterThanGates, want: true,
			contains: []string{"30s stabilization window", "needs 38s"},
			objs:     gated(&autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](30)}})},
		{name: "100% every 15 s while draining takes 15 s", rule: RuleHPAFasterThanGates, want: true,
			contains: []string{"100% of Deployment prod/web every 10s"},
			objs: gated(&autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{
				Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 10}}}})},
		{name: "default behavior (300 s window)", rule: RuleHPAFasterThanGates, objs: gated(nil)},
		{name: "one pod per minute", rule: RuleHPAFasterThanGates, objs: gated(&autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{
			StabilizationWindowSeconds: ptr.To[int32](300),
			Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 60}}}})},
	})
}

var inject = map[string]string{"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}

func withNS(labels map[string]string, objs ...runtime.Object) []runtime.Object {
	return append(objs, namespace("prod", labels))
}

func TestTerminationRules(t *testing.T) {
	grace := func(g int64, p int32) func(d *appsv1.Deployment) {
		return func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = &g
			container(d).Lifecycle.PreStop.Sleep.Seconds = int64(p)
		}
	}
	shutdown := func(s string) func(d *appsv1.Deployment) {
		return func(d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationShutdown: s} }
	}
	both := func(fs ...func(d *appsv1.Deployment)) func(d *appsv1.Deployment) {
		return func(d *appsv1.Deployment) {
			for _, f := range fs {
				f(d)
			}
		}
	}
	runRuleCases(t, []ruleCase{
		{name: "seed 000 wrong: P35 + S15 = 50 > G45", rule: RuleSIGKILL, want: true, severity: &sevError,
			contains: []string{"preStop 35s + shutdown 15s = 50s > terminationGracePeriodSeconds 45s", "SIGKILL at 45s while shutdown may need 50s", "terminationGracePeriodSeconds: 60"},
			objs:     func() []runtime.Object { return baseline(both(grace(45, 35), shutdown("15"))) }},
		{name: "seed 001 step 2: preStop 40 > default grace 30", rule: RuleSIGKILL, want: true,
			contains: []string{"preStop 40s is longer than terminationGracePeriodSeconds 30s (default)", "SIGKILL at 32s"},
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) {
					d.Spec.Template.Spec.TerminationGracePeriodSeconds = nil
					container(d).Lifecycle.PreStop.Sleep.Seconds = 40
				})
			}},
		{name: "seed 000 right: P18 + S20 = 38 <= 45", rule: RuleSIGKILL, objs: func() []runtime.Object { return baseline(both(grace(45, 18), shutdown("20s"))) }},
		{name: "global --shutdown-seconds 25 pushes 5 + 25 over 29", rule: RuleSIGKILL, want: true,
			opts: func() Options {
				o := Options{}
				o.Assumptions = defaultsWith(func(a *Assumptions) { a.Shutdown = 25 })
				return o
			}(),
			objs: func() []runtime.Object { return baseline(grace(29, 5)) }},

		{name: "margin 7 s below buffer 10 s", rule: RuleGraceBuffer, want: true, severity: &sevWarning,
			contains: []string{"leaves 7s", "less than the buffer 10s"},
			objs:     func() []runtime.Object { return baseline(both(grace(45, 18), shutdown("20"))) }},
		{name: "per-object buffer annotation 5 s", rule: RuleGraceBuffer, objs: func() []runtime.Object {
			return baseline(both(grace(45, 18), func(d *appsv1.Deployment) {
				d.Spec.Template.Annotations = map[string]string{AnnotationShutdown: "20", AnnotationBuffer: "5"}
			}))
		}},

		{name: "no preStop, in-cluster D 3 s", rule: RuleEarlyExit, want: true, severity: &sevError,
			contains: []string{"no preStop, so SIGTERM comes at T+0s while kube-proxy sends new requests until T+3s", "seconds: 5",
				"terminationGracePeriodSeconds 30s already covers preStop 5s + shutdown 10s + buffer 10s = 25s"},
			objs: func() []runtime.Object { return baseline(func(d *appsv1.Deployment) { container(d).Lifecycle = nil }) }},
		{name: "preStop 5 s covers D 3 s", rule: RuleEarlyExit, objs: func() []runtime.Object { return baseline(nil) }},
		{name: "propagation annotation 8 s exceeds preStop 5 s", rule: RuleEarlyExit, want: true, contains: []string{"until T+8s"},
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationPropagation: "8"} })
			}},
		{name: "exec sleep parsed from sh -c", rule: RuleEarlyExit, objs: func() []runtime.Object {
			return baseline(func(d *appsv1.Deployment) {
				container(d).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "echo draining; sleep 4 && kill -USR1 1"}}}
			})
		}},
		{name: "httpGet preStop of unknown length", rule: RuleEarlyExit, want: true, contains: []string{"unknown duration", AnnotationPreStop},
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) {
					container(d).Lifecycle.PreStop = &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/drain", Port: intstr.FromInt32(8080)}}
				})
			}},
		{name: "httpGet preStop with prestop-seconds annotation", rule: RuleEarlyExit, objs: func() []runtime.Object {
			return baseline(func(d *appsv1.Deployment) {
				d.Annotations = map[string]string{AnnotationPreStop: "6"}
				container(d).Lifecycle.PreStop = &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/drain", Port: intstr.FromInt32(8080)}}
			})
		}},
		{name: "GKE NEG drain latency 10 s > preStop 5 s", rule: RuleEarlyExit, want: true, contains: []string{"GCLB sends new requests until T+10s", "seconds: 12",
			"raise `terminationGracePeriodSeconds: 32` (preStop 12s + shutdown 10s + buffer 10s = 32s)"},
			objs: func() []runtime.Object { return append(baseline(nil), ingress("web", "web", "gce", nil)) }},

		// The ALB's drain start is its own assumption (AWS LBC deregistration
		// plus ELB propagation), not kube-proxy's D.
		{name: "ALB ip targets: preStop 5 s covers the ALB's drain start 3 s", rule: RuleEarlyExit,
			objs: func() []runtime.Object { return append(baseline(nil), albIP(nil)...) }},
		{name: "ALB drain start annotation 8 s exceeds preStop 5 s", rule: RuleEarlyExit, want: true, contains: []string{"ALB sends new requests until T+8s"},
			objs: func() []runtime.Object {
				return append(baseline(func(d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationALBDrainStart: "8"} }), albIP(nil)...)
			}},
		{name: "--alb-drain-start-seconds 12 exceeds preStop 5 s", rule: RuleEarlyExit, want: true, contains: []string{"ALB sends new requests until T+12s"},
			opts: Options{Assumptions: defaultsWith(func(a *Assumptions) { a.ALBDrainStart = 12 })},
			objs: func() []runtime.Object { return append(baseline(nil), albIP(nil)...) }},
		{name: "the ALB drain start does not move kube-proxy's D", rule: RuleEarlyExit,
			opts: Options{Assumptions: defaultsWith(func(a *Assumptions) { a.ALBDrainStart = 12 })},
			objs: func() []runtime.Object { return baseline(nil) }},

		{name: "sh -c sleep in distroless", rule: RuleShellSleep, want: true, severity: &sevError,
			contains: []string{"distroless", "sleep:\n      seconds: 10"},
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) {
					container(d).Image = "gcr.io/distroless/java21-debian12:nonroot"
					container(d).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "sleep 10"}}}
				})
			}},
		{name: "sleep binary in a Chainguard image", rule: RuleShellSleep, want: true, objs: func() []runtime.Object {
			return baseline(func(d *appsv1.Deployment) {
				container(d).Image = "cgr.dev/chainguard/nginx:latest"
				container(d).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "10"}}}
			})
		}},
		{name: "sh -c sleep in a Debian image", rule: RuleShellSleep, objs: func() []runtime.Object {
			return baseline(func(d *appsv1.Deployment) {
				container(d).Image = "docker.io/library/python:3.13-slim"
				container(d).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "sleep 5"}}}
			})
		}},
		{name: "app binary as preStop in distroless", rule: RuleShellSleep, objs: func() []runtime.Object {
			return baseline(func(d *appsv1.Deployment) {
				container(d).Image = "gcr.io/distroless/static-debian12"
				container(d).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/app", "drain", "--wait=5s"}}}
				d.Annotations = map[string]string{AnnotationPreStop: "5"}
			})
		}},

		{name: "requests up to the ALB timeout 60 s, shutdown 30 s", rule: RuleInFlightCut, want: true, severity: &sevWarning,
			contains: []string{"may run 60s", "gone at T+35s"},
			objs: func() []runtime.Object {
				return withNS(inject, append(baseline(func(d *appsv1.Deployment) {
					d.Annotations = map[string]string{AnnotationLongestRequest: "60", AnnotationShutdown: "30"}
					d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](60)
				})[:1], svcObj("web"), pdb("web"), ingress("web", "web", "alb", map[string]string{"alb.ingress.kubernetes.io/target-type": "ip",
					"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=90"}))...)
			}},
		{name: "app shutdown timeout shorter than requests", rule: RuleInFlightCut, want: true, contains: []string{"gone at T+7s"},
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) {
					d.Annotations = map[string]string{AnnotationShutdown: "2", AnnotationLongestRequest: "30"}
					d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](60)
				})
			}},

		{name: "gRPC appProtocol, grace 30 < 5 + 10 + 30", rule: RuleLongLived, want: true, contains: []string{"appProtocol grpc", "= 45s", "terminationGracePeriodSeconds: 45"},
			objs: func() []runtime.Object {
				objs := baseline(nil)
				objs[1].(*corev1.Service).Spec.Ports[0].AppProtocol = ptr.To("kubernetes.io/h2c")
				objs[1].(*corev1.Service).Spec.Ports[0].AppProtocol = ptr.To("grpc")
				return objs
			}},
		{name: "WebSocket via nginx annotation, grace 90", rule: RuleLongLived, objs: func() []runtime.Object {
			return append(baseline(func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](90)
			}), ingress("web", "web", "nginx", map[string]string{"nginx.org/websocket-services": "web"}))
		}},
		{name: "WebSocket via nginx annotation, grace 30", rule: RuleLongLived, want: true, contains: []string{"nginx.org/websocket-services"},
			objs: func() []runtime.Object {
				return append(baseline(nil), ingress("web", "web", "nginx", map[string]string{"nginx.org/websocket-services": "web"}))
			}},
		{name: "plain HTTP", rule: RuleLongLived, objs: func() []runtime.Object { return baseline(nil) }},
	})
}

// Assumptions is a shorthand for tests.
type Assumptions = timingAssumptions

func TestGKEDrainRule(t *testing.T) {
	bc := func(draining int64) runtime.Object {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("cloud.google.com/v1")
		u.SetKind("BackendConfig")
		u.SetName("web-bc")
		u.SetNamespace("prod")
		_ = unstructured.SetNestedField(u.Object, draining, "spec", "connectionDraining", "drainingTimeoutSec")
		_ = unstructured.SetNestedField(u.Object, int64(5), "spec", "healthCheck", "checkIntervalSec")
		return u
	}
	gke := func(preStop int64, grace int64, draining int64) func() []runtime.Object {
		return func() []runtime.Object {
			objs := baseline(func(d *appsv1.Deployment) {
				container(d).Lifecycle.PreStop.Sleep.Seconds = preStop
				d.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
			})
			objs[1].(*corev1.Service).Annotations = map[string]string{
				"cloud.google.com/neg":            `{"ingress": true}`,
				"cloud.google.com/backend-config": `{"default": "web-bc"}`,
			}
			return append(objs, bc(draining), ingress("web", "web", "gce", nil))
		}
	}
	runRuleCases(t, []ruleCase{
		{name: "seed 002: drainingTimeoutSec 60, preStop 120, grace 210", rule: RuleGKEDrain, objs: gke(120, 210, 60)},
		{name: "preStop 30 < 60 + 10", rule: RuleGKEDrain, want: true, contains: []string{"preStop 30s < drainingTimeoutSec 60s + drain latency 10s = 70s", "seconds: 70",
			"raise `terminationGracePeriodSeconds: 90`"},
			objs: gke(30, 60, 60)},
		{name: "no draining configured", rule: RuleGKEDrain, objs: gke(15, 40, 0)},
	})
}

func TestLBRules(t *testing.T) {
	alb := func(ann map[string]string) runtime.Object {
		a := map[string]string{"alb.ingress.kubernetes.io/target-type": "ip"}
		for k, v := range ann {
			a[k] = v
		}
		return ingress("web", "web", "alb", a)
	}
	p20 := func(d *appsv1.Deployment) {
		container(d).Lifecycle.PreStop.Sleep.Seconds = 20
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](45)
	}
	runRuleCases(t, []ruleCase{
		{name: "deregistration delay 10 < preStop 20", rule: RuleDeregistrationShort, want: true,
			contains: []string{"deregistration delay 10s < preStop 20s", "deregistration_delay.timeout_seconds=30"},
			objs: func() []runtime.Object {
				return withNS(inject, append(baseline(p20), alb(map[string]string{"alb.ingress.kubernetes.io/target-group-attributes": "stickiness.enabled=false,deregistration_delay.timeout_seconds=10"}))...)
			}},
		{name: "deregistration delay 30 >= preStop 20", rule: RuleDeregistrationShort, objs: func() []runtime.Object {
			return withNS(inject, append(baseline(p20), alb(map[string]string{"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=30"}))...)
		}},
		{name: "NLB attribute on the Service", rule: RuleDeregistrationShort, want: true, objs: func() []runtime.Object {
			objs := baseline(p20)
			s := objs[1].(*corev1.Service)
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Annotations = map[string]string{
				"service.beta.kubernetes.io/aws-load-balancer-type":                    "external",
				"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type":         "ip",
				"service.beta.kubernetes.io/aws-load-balancer-target-group-attributes": "deregistration_delay.timeout_seconds=5",
			}
			return objs
		}},

		{name: "300 s default", rule: RuleDeregistrationDefault, want: true, contains: []string{"300s default"},
			objs: func() []runtime.Object { return withNS(inject, append(baseline(nil), alb(nil))...) }},
		{name: "set explicitly", rule: RuleDeregistrationDefault, objs: func() []runtime.Object {
			return withNS(inject, append(baseline(nil), alb(map[string]string{"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20"}))...)
		}},

		{name: "namespace label with target-type instance", rule: RuleGateCannotWork, want: true, severity: &sevError,
			contains: []string{"target-type instance", "alb.ingress.kubernetes.io/target-type: ip"},
			objs: func() []runtime.Object {
				return withNS(inject, append(baseline(nil), alb(map[string]string{"alb.ingress.kubernetes.io/target-type": "instance",
					"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20"}))...)
			}},
		{name: "readinessGates with ALB default target type (instance)", rule: RuleGateCannotWork, want: true, objs: func() []runtime.Object {
			return append(baseline(func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "target-health.elbv2.k8s.aws/k8s-prod-web"}}
			}), ingress("web", "web", "alb", map[string]string{"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20"}))
		}},
		{name: "NEG gate without NEG", rule: RuleGateCannotWork, want: true, contains: []string{"cloud.google.com/neg"}, objs: func() []runtime.Object {
			objs := baseline(func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "cloud.google.com/load-balancer-neg-ready"}}
			})
			objs[1].(*corev1.Service).Annotations = map[string]string{"cloud.google.com/neg": `{"ingress": false}`}
			return append(objs, ingress("web", "web", "gce", nil))
		}},
		{name: "label with ip targets", rule: RuleGateCannotWork, objs: func() []runtime.Object {
			return withNS(inject, append(baseline(nil), alb(map[string]string{"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20"}))...)
		}},

		{name: "namespace without label, ip targets", rule: RuleGateNotInjected, want: true,
			contains: []string{"Namespace prod has no label", "elbv2.k8s.aws/pod-readiness-gate-inject: enabled"},
			objs: func() []runtime.Object {
				return withNS(nil, append(baseline(nil), alb(map[string]string{"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20"}))...)
			}},
		{name: "namespace not in the input", rule: RuleGateNotInjected, objs: func() []runtime.Object {
			return append(baseline(nil), alb(map[string]string{"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20"}))
		}},
		{name: "namespace labelled", rule: RuleGateNotInjected, objs: func() []runtime.Object {
			return withNS(inject, append(baseline(nil), alb(map[string]string{"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=20"}))...)
		}},

		{name: "AWS pod mutator with failurePolicy Fail", rule: RuleWebhookFail, want: true, contains: []string{"mpod.elbv2.k8s.aws", "failurePolicy: Ignore"},
			objs: func() []runtime.Object {
				return []runtime.Object{webhook("aws-load-balancer-webhook", "mpod.elbv2.k8s.aws", ptr.To(admissionregistrationv1.Fail))}
			}},
		{name: "AWS pod mutator without failurePolicy (defaults to Fail)", rule: RuleWebhookFail, want: true, contains: []string{"defaults to Fail"},
			objs: func() []runtime.Object {
				return []runtime.Object{webhook("aws-load-balancer-webhook", "mpod.elbv2.k8s.aws", nil)}
			}},
		{name: "AWS pod mutator with Ignore", rule: RuleWebhookFail,
			objs: func() []runtime.Object {
				return []runtime.Object{webhook("aws-load-balancer-webhook", "mpod.elbv2.k8s.aws", ptr.To(admissionregistrationv1.Ignore))}
			}},
		{name: "unrelated webhook with Fail", rule: RuleWebhookFail,
			objs: func() []runtime.Object {
				return []runtime.Object{webhook("cert-manager-webhook", "webhook.cert-manager.io", ptr.To(admissionregistrationv1.Fail))}
			}},

		{name: "HAProxy backend without check", rule: RuleHAProxyNoCheck, want: true, opts: Options{HAProxyConfig: "testdata/nocheck.cfg"},
			objs: func() []runtime.Object { return baseline(nil) }},
		{name: "HAProxy backend with check", rule: RuleHAProxyNoCheck, opts: Options{HAProxyConfig: "../../examples/seed000-onprem-haproxy-nodeport.cfg"},
			objs: func() []runtime.Object { return baseline(nil) }},

		{name: "HTTP frontend without idle-close-on-response", rule: RuleIdleClose, want: true, severity: &sevWarning, opts: Options{HAProxyConfig: "testdata/noidleclose.cfg"},
			contains: []string{"HAProxy frontend fe_web (mode http) routes to web (line 11; used by Deployment prod/web)", "POSTs fail", "option idle-close-on-response"},
			objs:     func() []runtime.Object { return baseline(nil) }},
		{name: "HTTP frontend with idle-close-on-response in defaults", rule: RuleIdleClose, opts: Options{HAProxyConfig: "../../examples/seed000-onprem-haproxy-nodeport.cfg"},
			objs: func() []runtime.Object { return baseline(nil) }},
		{name: "TCP backend, no frontend in the file", rule: RuleIdleClose, opts: Options{HAProxyConfig: "testdata/nocheck.cfg"},
			objs: func() []runtime.Object { return baseline(nil) }},
	})
}

func webhook(cfg, name string, fp *admissionregistrationv1.FailurePolicyType) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   tm("MutatingWebhookConfiguration", "admissionregistration.k8s.io/v1"),
		ObjectMeta: metav1.ObjectMeta{Name: cfg},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: name, FailurePolicy: fp,
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"CREATE"},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}}},
	}
}

func TestStructuralRules(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "3 replicas, no PDB", rule: RuleNoPDB, want: true, contains: []string{"matchLabels: {app: web, tier: web}"},
			objs: func() []runtime.Object { return baseline(nil)[:2] }},
		{name: "3 replicas, no PDB, namespace left to kubectl", rule: RuleNoPDB, want: true, contains: []string{"metadata:\n  name: web\nspec:"},
			objs: func() []runtime.Object {
				objs := baseline(nil)[:2]
				objs[0].(*appsv1.Deployment).Namespace = ""
				objs[1].(*corev1.Service).Namespace = ""
				return objs
			}},
		{name: "PDB selects the pods", rule: RuleNoPDB, objs: func() []runtime.Object { return baseline(nil) }},
		{name: "single replica", rule: RuleNoPDB, objs: func() []runtime.Object {
			d := goodDeployment("web")
			d.Spec.Replicas = ptr.To[int32](1)
			return []runtime.Object{d, svcObj("web")}
		}},
		{name: "PDB maxUnavailable 0", rule: RulePDBBlocks, want: true, objs: func() []runtime.Object {
			objs := baseline(nil)
			objs[2].(*policyv1.PodDisruptionBudget).Spec.MaxUnavailable = ptr.To(intstr.FromInt32(0))
			return objs
		}},
		{name: "PDB minAvailable 100%", rule: RulePDBBlocks, want: true, contains: []string{"minAvailable 100% >= the 3 replicas"}, objs: func() []runtime.Object {
			objs := baseline(nil)
			p := objs[2].(*policyv1.PodDisruptionBudget)
			p.Spec.MaxUnavailable, p.Spec.MinAvailable = nil, ptr.To(intstr.FromString("100%"))
			return objs
		}},
		{name: "PDB minAvailable 2 of 3", rule: RulePDBBlocks, objs: func() []runtime.Object {
			objs := baseline(nil)
			p := objs[2].(*policyv1.PodDisruptionBudget)
			p.Spec.MaxUnavailable, p.Spec.MinAvailable = nil, ptr.To(intstr.FromInt32(2))
			return objs
		}},
	})
}

type timingAssumptions = timing.Assumptions

func defaultsWith(f func(a *timing.Assumptions)) timing.Assumptions {
	a := timing.DefaultAssumptions()
	f(&a)
	return a
}

func TestLBTimeoutBoundsRequestsPerPath(t *testing.T) {
	// Requests may run 600 s for in-cluster clients, but the ALB gives up
	// after its 60 s idle timeout: on the ALB's path a request admitted at
	// D = 3 s ends by T+63s at the latest.
	objs := withNS(inject, baseline(func(d *appsv1.Deployment) {
		d.Annotations = map[string]string{AnnotationLongestRequest: "600", AnnotationShutdown: "30"}
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](60)
	})...)
	objs = append(objs, ingress("web", "web", "alb", map[string]string{"alb.ingress.kubernetes.io/target-type": "ip",
		"alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=90"}))
	r := analyze(t, objs, Options{})
	if len(r.Explanations) != 1 || len(r.Explanations[0].Frontends) != 2 {
		t.Fatalf("explanations = %+v", r.Explanations)
	}
	ends := map[string]float64{}
	for _, f := range r.Explanations[0].Frontends {
		w, ok := f.Termination.Window(timing.CauseInFlightCut)
		if !ok {
			t.Fatalf("%s: no in-flight window", f.LB.Name)
		}
		ends[f.LB.Actor()] = w.End
	}
	if ends["kube-proxy"] != 603 || ends["ALB"] != 63 {
		t.Errorf("in-flight windows end at %v, want kube-proxy 603 and ALB 63", ends)
	}
}

func TestIstioDestinationRuleNamesTheSidecars(t *testing.T) {
	dr := &unstructured.Unstructured{}
	dr.SetAPIVersion("networking.istio.io/v1beta1")
	dr.SetKind("DestinationRule")
	dr.SetName("web")
	dr.SetNamespace("prod")
	_ = unstructured.SetNestedField(dr.Object, "web.prod.svc.cluster.local", "spec", "host")
	r := analyze(t, append(baseline(func(d *appsv1.Deployment) { container(d).Lifecycle = nil }), dr), Options{})
	fs := findings(r, RuleEarlyExit)
	if len(fs) != 1 || !strings.Contains(fs[0].Message, "Istio sidecars") || !strings.Contains(fs[0].Message, "Envoy sends new requests") {
		t.Errorf("findings:%s", dump(r))
	}
	if r.Objects != 4 {
		t.Errorf("objects = %d, want the DestinationRule counted", r.Objects)
	}
}

func TestBetaIngressIsUnderstood(t *testing.T) {
	// Old charts still emit networking.k8s.io/v1beta1 Ingresses.
	b := &networkingv1beta1.Ingress{
		TypeMeta:   tm("Ingress", "networking.k8s.io/v1beta1"),
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "prod", Annotations: map[string]string{"kubernetes.io/ingress.class": "alb", "alb.ingress.kubernetes.io/target-type": "ip"}},
		Spec: networkingv1beta1.IngressSpec{Rules: []networkingv1beta1.IngressRule{{IngressRuleValue: networkingv1beta1.IngressRuleValue{
			HTTP: &networkingv1beta1.HTTPIngressRuleValue{Paths: []networkingv1beta1.HTTPIngressPath{{Path: "/",
				Backend: networkingv1beta1.IngressBackend{ServiceName: "web", ServicePort: intstr.FromInt32(80)}}}}}}}},
	}
	r := analyze(t, append(baseline(nil), b), Options{})
	if len(findings(r, RuleStartupGap)) != 1 || len(findings(r, RuleDeregistrationDefault)) != 1 || r.Objects != 4 {
		t.Errorf("objects %d, findings:%s", r.Objects, dump(r))
	}
}
