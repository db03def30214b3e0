package check

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Scenarios from issue 14: public manifests where zerodrop reported errors
// that were not there, or came out clean on paths it does not model.

// unprotected is the baseline Deployment with neither readinessProbe nor
// preStop: every traffic path in front of it gets ZD101 and ZD203.
func unprotected(d *appsv1.Deployment) {
	container(d).ReadinessProbe = nil
	container(d).LivenessProbe = nil
	container(d).Lifecycle = nil
}

// withService replaces the baseline's Service by a modified copy.
func withService(objs []runtime.Object, mod func(s *corev1.Service)) []runtime.Object {
	for _, o := range objs {
		if s, ok := o.(*corev1.Service); ok {
			mod(s)
		}
	}
	return objs
}

func TestServicesThatAreNotTrafficPaths(t *testing.T) {
	headless := func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }
	metricsOnly := func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "https-metrics", Port: 8443, TargetPort: intstr.FromString("http")}}
	}
	var cases []ruleCase
	for _, rule := range []string{RuleNoReadinessProbe, RuleEarlyExit} {
		cases = append(cases,
			ruleCase{name: "headless Service (clusterIP None) only names pods", rule: rule, objs: func() []runtime.Object {
				return withService(baseline(unprotected), headless)
			}},
			ruleCase{name: "Service whose only port is a metrics port exists for scraping", rule: rule, objs: func() []runtime.Object {
				return withService(baseline(unprotected), metricsOnly)
			}},
			ruleCase{name: "metrics port beside an http port still carries traffic", rule: rule, want: true, objs: func() []runtime.Object {
				return withService(baseline(unprotected), func(s *corev1.Service) {
					s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "metrics", Port: 9090})
				})
			}},
		)
	}
	cases = append(cases,
		ruleCase{name: "headless Service: a 1-replica maxUnavailable is not a served rollout", rule: RuleRollingUpdate, objs: func() []runtime.Object {
			return withService(baseline(func(d *appsv1.Deployment) {
				d.Spec.Replicas = ptr.To[int32](1)
				d.Spec.Strategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(1))
			}), headless)
		}},
		ruleCase{name: "headless Service behind an Ingress: the Ingress path counts, not kube-proxy", rule: RuleEarlyExit, want: true,
			contains: []string{"ingress-nginx of Ingress prod/web"}, objs: func() []runtime.Object {
				return append(withService(baseline(unprotected), headless), ingress("web", "web", "nginx", nil))
			}},
	)
	runRuleCases(t, cases)
}

func TestHeadlessServiceIsNotBehindKubeProxy(t *testing.T) {
	objs := append(withService(baseline(unprotected), func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }),
		ingress("web", "web", "nginx", nil))
	r := analyze(t, objs, Options{})
	for _, f := range r.Findings {
		if strings.Contains(f.Message, "kube-proxy") {
			t.Errorf("%s names kube-proxy for a headless Service: %s", f.RuleID, f.Message)
		}
	}
}

func TestReadinessProbeRuleAndGates(t *testing.T) {
	noProbe := func(d *appsv1.Deployment) { container(d).ReadinessProbe = nil }
	negService := func(s *corev1.Service) {
		s.Annotations = map[string]string{"cloud.google.com/neg": `{"ingress": true}`}
	}
	runRuleCases(t, []ruleCase{
		{name: "ALB ip targets with the injected AWS gate: Ready waits for the ALB's check", rule: RuleNoReadinessProbe,
			objs: func() []runtime.Object { return append(baseline(noProbe), albIP(nil)...) }},
		{name: "GKE NEG Ingress: the NEG gate covers the gap", rule: RuleNoReadinessProbe,
			objs: func() []runtime.Object {
				return append(withService(baseline(noProbe), negService), ingress("web", "web", "gce", nil))
			}},
		{name: "ALB ip targets without the gate: ZD101 stays", rule: RuleNoReadinessProbe, want: true,
			objs: func() []runtime.Object {
				return append(baseline(noProbe), ingress("web", "web", "alb", map[string]string{"alb.ingress.kubernetes.io/target-type": "ip"}))
			}},
		{name: "fix reuses the liveness probe's handler instead of guessing /ready", rule: RuleNoReadinessProbe, want: true,
			contains: []string{"httpGet:   # the handler of its livenessProbe", "path: /live", "port: 8080"},
			objs:     func() []runtime.Object { return baseline(noProbe) }},
		{name: "TLS port and no other probe: a TCP check, never plain HTTP", rule: RuleNoReadinessProbe, want: true,
			contains: []string{"tcpSocket:", "port: 8443"},
			objs: func() []runtime.Object {
				return withService(baseline(func(d *appsv1.Deployment) {
					unprotected(d)
					container(d).Ports = []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}}
				}), func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("https") })
			}},
	})
	// The fix must not propose plain HTTP on a TLS port nor a path the app
	// never declared.
	r := analyze(t, withService(baseline(func(d *appsv1.Deployment) {
		unprotected(d)
		container(d).Ports = []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}}
	}), func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("https") }), Options{})
	for _, f := range findings(r, RuleNoReadinessProbe) {
		if strings.Contains(f.Fix, "httpGet") || strings.Contains(f.Fix, "/ready") {
			t.Errorf("fix guesses an HTTP endpoint:\n%s", f.Fix)
		}
	}
}

func TestHPAMinReplicasIsTheReplicaCount(t *testing.T) {
	hpaMin := func(min int32) runtime.Object {
		h := hpa("web", nil)
		h.Spec.MinReplicas = ptr.To(min)
		return h
	}
	unset := func(mu int32) func(d *appsv1.Deployment) {
		return func(d *appsv1.Deployment) {
			d.Spec.Replicas = nil
			d.Spec.Strategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(mu))
		}
	}
	sev := SeverityWarning
	runRuleCases(t, []ruleCase{
		{name: "replicas unset, HPA minReplicas 3: maxUnavailable 1 leaves 2", rule: RuleRollingUpdate, want: true, severity: &sev,
			contains: []string{"= 1 of 3 replicas, minReplicas of HorizontalPodAutoscaler prod/web"},
			objs:     func() []runtime.Object { return append(baseline(unset(1)), hpaMin(3)) }},
		{name: "replicas unset, HPA minReplicas 3, no PDB", rule: RuleNoPDB, want: true, contains: []string{"(3 replicas)"},
			objs: func() []runtime.Object { return append(baseline(unset(0))[:2], hpaMin(3)) }},
		{name: "replicas set explicitly wins over the HPA", rule: RuleNoPDB, objs: func() []runtime.Object {
			return append(baseline(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](1) })[:2], hpaMin(3))
		}},
	})
}

func TestUnmodelledPathsGetNotes(t *testing.T) {
	sevInfo := SeverityInfo
	runRuleCases(t, []ruleCase{
		{name: "Ingress of a controller zerodrop does not know", rule: RuleNotModelled, want: true, severity: &sevInfo,
			contains: []string{`class "contour"`},
			objs:     func() []runtime.Object { return append(baseline(nil), ingress("web", "web", "contour", nil)) }},
		{name: "Ingress without any class", rule: RuleNotModelled, want: true, contains: []string{"names no IngressClass", "GCE"},
			objs: func() []runtime.Object {
				ing := ingress("web", "web", "", nil)
				ing.Spec.IngressClassName = nil
				return append(baseline(nil), ing)
			}},
		{name: "Ingress of ingress-nginx is modelled", rule: RuleNotModelled,
			objs: func() []runtime.Object { return append(baseline(nil), ingress("web", "web", "nginx", nil)) }},
		{name: "externalTrafficPolicy Local behind a cloud LB", rule: RuleNotModelled, want: true, contains: []string{"externalTrafficPolicy Local"},
			objs: func() []runtime.Object {
				return withService(baseline(nil), func(s *corev1.Service) {
					s.Spec.Type = corev1.ServiceTypeLoadBalancer
					s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				})
			}},
		{name: "externalTrafficPolicy Local with NLB ip targets: the LB checks pods", rule: RuleNotModelled,
			objs: func() []runtime.Object {
				return withService(baseline(nil), func(s *corev1.Service) {
					s.Spec.Type = corev1.ServiceTypeLoadBalancer
					s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
					s.Annotations = map[string]string{"service.beta.kubernetes.io/aws-load-balancer-type": "external",
						"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type":         "ip",
						"service.beta.kubernetes.io/aws-load-balancer-target-group-attributes": "deregistration_delay.timeout_seconds=20"}
				})
			}},
		{name: "publishNotReadyAddresses", rule: RuleNotModelled, want: true, contains: []string{"publishes not-ready addresses"},
			objs: func() []runtime.Object {
				return withService(baseline(nil), func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true })
			}},
	})
}

func TestGKEIngressWithoutClassIsGCE(t *testing.T) {
	// On GKE an Ingress without class is served by GCE; a Service annotated
	// for NEG says the cluster is GKE.
	ing := ingress("web", "web", "", nil)
	ing.Spec.IngressClassName = nil
	objs := append(withService(baseline(func(d *appsv1.Deployment) { container(d).Lifecycle = nil }), func(s *corev1.Service) {
		s.Annotations = map[string]string{"cloud.google.com/neg": `{"ingress": true}`}
	}), ing)
	r := analyze(t, objs, Options{})
	fs := findings(r, RuleEarlyExit)
	if len(fs) != 1 || !strings.Contains(fs[0].Message, "GCLB (NEG) of Ingress prod/web") {
		t.Errorf("want the early exit behind GCLB, got:%s", dump(r))
	}
	if len(findings(r, RuleNotModelled)) != 0 {
		t.Errorf("GCE Ingress is modelled, got a note:%s", dump(r))
	}
}

func TestWebhookRuleOnlyForGateInjectors(t *testing.T) {
	awsHook := func(name, path string, res string) runtime.Object {
		wh := webhook("aws-load-balancer-webhook", name, ptr.To(admissionregistrationv1.Fail))
		wh.Webhooks[0].ClientConfig.Service = &admissionregistrationv1.ServiceReference{Name: "aws-load-balancer-webhook-service", Namespace: "kube-system", Path: ptr.To(path)}
		wh.Webhooks[0].Rules[0].Resources = []string{res}
		return wh
	}
	runRuleCases(t, []ruleCase{
		{name: "AWS chart's QUIC server-id pod webhook injects no gate", rule: RuleWebhookFail,
			objs: func() []runtime.Object {
				return []runtime.Object{awsHook("quicid.elbv2.k8s.aws", "/mutate-v1-pod-server-id", "pods")}
			}},
		{name: "AWS chart's Service mutator injects no gate", rule: RuleWebhookFail,
			objs: func() []runtime.Object {
				return []runtime.Object{awsHook("mservice.elbv2.k8s.aws", "/mutate-v1-service", "services")}
			}},
		{name: "AWS chart's pod mutator injects the gate", rule: RuleWebhookFail, want: true,
			objs: func() []runtime.Object {
				return []runtime.Object{awsHook("mpod.elbv2.k8s.aws", "/mutate-v1-pod", "pods")}
			}},
	})
}

func TestAssumptionOnlyFindingsAreDowngraded(t *testing.T) {
	sevInfo, sevErr := SeverityInfo, SeverityError
	grpcName := func(s *corev1.Service) { s.Spec.Ports[0].Name = "grpc" }
	grace5 := func(d *appsv1.Deployment) {
		container(d).Lifecycle = nil
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](5)
	}
	runRuleCases(t, []ruleCase{
		{name: "port named grpc is a hint, not evidence of streams", rule: RuleLongLived, want: true, severity: &sevInfo,
			contains: []string{"assumption from port names only"},
			objs:     func() []runtime.Object { return withService(baseline(nil), grpcName) }},
		{name: "long-lived annotation false silences the port-name hint", rule: RuleLongLived,
			objs: func() []runtime.Object {
				return withService(baseline(func(d *appsv1.Deployment) {
					d.Annotations = map[string]string{AnnotationLongLived: "false"}
				}), grpcName)
			}},
		{name: "grace 5 s without preStop: only the assumed shutdown 10 s crosses it", rule: RuleSIGKILL, want: true, severity: &sevInfo,
			contains: []string{"shutdown 10s is an assumption"},
			objs:     func() []runtime.Object { return baseline(grace5) }},
		{name: "grace 5 s with a declared shutdown of 10 s", rule: RuleSIGKILL, want: true, severity: &sevErr,
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) {
					grace5(d)
					d.Annotations = map[string]string{AnnotationShutdown: "10"}
				})
			}},
		{name: "grace 0: no shutdown fits, whatever it takes", rule: RuleSIGKILL, want: true, severity: &sevErr,
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) {
					grace5(d)
					d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](0)
				})
			}},
		{name: "exec preStop of unknown length is an info, not an error", rule: RuleEarlyExit, want: true, severity: &sevInfo,
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) {
					container(d).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/wait-shutdown"}}}
				})
			}},
	})
}

// Findings carry how much of them rests on assumptions: high when the
// manifests and documented defaults show the hazard, medium when its numbers
// use an assumed app timing (shutdown, longest request) but the hazard does
// not depend on it, low when it exists only if the assumption holds. Low
// confidence findings are info by default; stating the assumption (an
// annotation) makes them high and gives back the rule's severity.
func TestFindingsRestingOnAssumptionsCarryConfidence(t *testing.T) {
	low, medium, high := ConfidenceLow, ConfidenceMedium, ConfidenceHigh
	sevInfo, sevWarn, sevErr := SeverityInfo, SeverityWarning, SeverityError
	grace := func(g int64, preStop int64) func(d *appsv1.Deployment) {
		return func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To(g)
			if preStop == 0 {
				container(d).Lifecycle = nil
			} else {
				container(d).Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: preStop}}}
			}
		}
	}
	runRuleCases(t, []ruleCase{
		{name: "no readinessProbe: a fact of the manifest", rule: RuleNoReadinessProbe, want: true, severity: &sevErr, confidence: &high,
			objs: func() []runtime.Object { return baseline(unprotected) }},
		{name: "grpc port name only: low", rule: RuleLongLived, want: true, severity: &sevInfo, confidence: &low,
			objs: func() []runtime.Object {
				return withService(baseline(nil), func(s *corev1.Service) { s.Spec.Ports[0].Name = "grpc" })
			}},
		{name: "only the assumed shutdown crosses the grace period: low, info", rule: RuleSIGKILL, want: true, severity: &sevInfo, confidence: &low,
			objs: func() []runtime.Object { return baseline(grace(5, 0)) }},
		{name: "declared shutdown crosses the grace period: high, error", rule: RuleSIGKILL, want: true, severity: &sevErr, confidence: &high,
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) {
					grace(5, 0)(d)
					d.Annotations = map[string]string{AnnotationShutdown: "10"}
				})
			}},
		{name: "buffer short by the assumed shutdown: medium, still a warning", rule: RuleGraceBuffer, want: true, severity: &sevWarn, confidence: &medium,
			objs: func() []runtime.Object { return baseline(grace(20, 5)) }},
		{name: "preStop of unknown length: low, info", rule: RuleEarlyExit, want: true, severity: &sevInfo, confidence: &low,
			objs: func() []runtime.Object {
				return baseline(func(d *appsv1.Deployment) {
					container(d).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/wait-shutdown"}}}
				})
			}},
	})
}

func TestInstanceTargetsHaveNoDeregistrationDelayRule(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "ALB instance targets: the target group holds nodes", rule: RuleDeregistrationDefault,
			objs: func() []runtime.Object {
				return append(baseline(nil), ingress("web", "web", "alb", map[string]string{"alb.ingress.kubernetes.io/target-type": "instance"}))
			}},
		{name: "NLB instance targets", rule: RuleDeregistrationDefault,
			objs: func() []runtime.Object {
				return withService(baseline(nil), func(s *corev1.Service) {
					s.Spec.Type = corev1.ServiceTypeLoadBalancer
					s.Annotations = map[string]string{"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
				})
			}},
	})
}

func TestDaemonSetWithHostPortCannotSurge(t *testing.T) {
	ds := func(hostPort int32) []runtime.Object {
		d := goodDeployment("web")
		set := &appsv1.DaemonSet{TypeMeta: tm("DaemonSet", "apps/v1"), ObjectMeta: d.ObjectMeta,
			Spec: appsv1.DaemonSetSpec{Selector: d.Spec.Selector, Template: d.Spec.Template}}
		set.Spec.Template.Spec.Containers[0].Ports[0].HostPort = hostPort
		return []runtime.Object{set, svcObj("web")}
	}
	sevInfo, sevWarn := SeverityInfo, SeverityWarning
	runRuleCases(t, []ruleCase{
		{name: "hostPort rules maxSurge out: info, with a fix that does not ask for it", rule: RuleRollingUpdate, want: true, severity: &sevInfo,
			contains: []string{"host port 8080 rules out"}, objs: func() []runtime.Object { return ds(8080) }},
		{name: "no hostPort: maxSurge is the fix", rule: RuleRollingUpdate, want: true, severity: &sevWarn,
			contains: []string{"maxSurge: 1"}, objs: func() []runtime.Object { return ds(0) }},
	})
}

func TestOmittedNamespaceIsNotPrintedAsSlash(t *testing.T) {
	objs := baseline(func(d *appsv1.Deployment) { container(d).ReadinessProbe = nil })
	for _, o := range objs {
		o.(metav1.Object).SetNamespace("")
	}
	r := analyze(t, objs, Options{})
	fs := findings(r, RuleNoReadinessProbe)
	if len(fs) != 1 || !strings.Contains(fs[0].Message, "from Service web ") {
		t.Errorf("want ZD101 naming Service web, got:%s", dump(r))
	}
	for _, f := range r.Findings {
		if strings.Contains(f.Message, " /web") {
			t.Errorf("%s: %s", f.RuleID, f.Message)
		}
	}
}

func TestRaisedProxyTimeoutIsRequestLengthEvidence(t *testing.T) {
	nginx := func(timeout string) func() []runtime.Object {
		return func() []runtime.Object {
			return append(baseline(nil), ingress("web", "web", "nginx", map[string]string{"nginx.ingress.kubernetes.io/proxy-read-timeout": timeout}))
		}
	}
	runRuleCases(t, []ruleCase{
		{name: "proxy-read-timeout raised to 300 s: requests run that long", rule: RuleInFlightCut, want: true,
			contains: []string{"longest request 300s: the nginx.ingress.kubernetes.io/proxy-read-timeout of Ingress prod/web raised to it"},
			objs:     nginx("300")},
		{name: "proxy-read-timeout at the 60 s default is no evidence", rule: RuleInFlightCut, objs: nginx("60")},
		{name: "longest-request annotation wins over the timeout", rule: RuleInFlightCut, objs: func() []runtime.Object {
			objs := nginx("300")()
			objs[0].(*appsv1.Deployment).Annotations = map[string]string{AnnotationLongestRequest: "5"}
			return objs
		}},
	})
}

// gatewayAPI returns a Gateway of class and an HTTPRoute from it to the
// Service web.
func gatewayAPI(class string) []runtime.Object {
	gw := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
		"metadata": map[string]interface{}{"name": "gw", "namespace": "prod"},
		"spec":     map[string]interface{}{"gatewayClassName": class},
	}}
	route := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]interface{}{"name": "web", "namespace": "prod"},
		"spec": map[string]interface{}{
			"parentRefs": []interface{}{map[string]interface{}{"name": "gw"}},
			"rules": []interface{}{map[string]interface{}{
				"backendRefs": []interface{}{map[string]interface{}{"name": "web", "port": int64(80)}}}},
		},
	}}
	return []runtime.Object{gw, route}
}

// gatewayClass returns a GatewayClass served by controller.
func gatewayClass(name, controller string) runtime.Object {
	return &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
		"metadata": map[string]interface{}{"name": name},
		"spec":     map[string]interface{}{"controllerName": controller},
	}}
}

func TestGatewayAPIRoutesAreTrafficPaths(t *testing.T) {
	noPreStop := func(d *appsv1.Deployment) { container(d).Lifecycle = nil }
	headless := func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }
	runRuleCases(t, []ruleCase{
		{name: "HTTPRoute to a headless Service through Envoy Gateway", rule: RuleEarlyExit, want: true,
			contains: []string{"Envoy Gateway of Gateway prod/gw (HTTPRoute prod/web)"},
			objs: func() []runtime.Object {
				return append(withService(baseline(noPreStop), headless), gatewayAPI("eg")...)
			}},
		{name: "GKE gke-l7 class: GCLB with NEGs and its drain latency", rule: RuleEarlyExit, want: true,
			contains: []string{"GCLB (NEG) of Gateway prod/gw", "until T+10s"},
			objs: func() []runtime.Object {
				return append(baseline(noPreStop), gatewayAPI("gke-l7-global-external-managed")...)
			}},
		{name: "GKE gke-l7 class: the NEG gate covers a missing readinessProbe", rule: RuleNoReadinessProbe,
			objs: func() []runtime.Object {
				return append(baseline(func(d *appsv1.Deployment) { container(d).ReadinessProbe = nil }), gatewayAPI("gke-l7-global-external-managed")...)
			}},
		{name: "Gateway of an unknown class", rule: RuleNotModelled, want: true, contains: []string{`class "acme-lb"`},
			objs: func() []runtime.Object { return append(baseline(nil), gatewayAPI("acme-lb")...) }},
		{name: "Gateway of a known class", rule: RuleNotModelled,
			objs: func() []runtime.Object { return append(baseline(nil), gatewayAPI("istio")...) }},
		// Envoy Gateway's examples name their class freely; the GatewayClass
		// in the same input says which controller serves it.
		{name: "class named freely, its GatewayClass names Envoy Gateway's controller", rule: RuleNotModelled,
			objs: func() []runtime.Object {
				return append(append(baseline(nil), gatewayAPI("example-gateway-class")...),
					gatewayClass("example-gateway-class", "gateway.envoyproxy.io/gatewayclass-controller"))
			}},
		{name: "class named freely, its GatewayClass names Envoy Gateway's controller: the path is Envoy Gateway's", rule: RuleEarlyExit, want: true,
			contains: []string{"Envoy Gateway of Gateway prod/gw (HTTPRoute prod/web)"},
			objs: func() []runtime.Object {
				return append(append(withService(baseline(noPreStop), headless), gatewayAPI("example-gateway-class")...),
					gatewayClass("example-gateway-class", "gateway.envoyproxy.io/gatewayclass-controller"))
			}},
		{name: "GatewayClass of an unknown controller", rule: RuleNotModelled, want: true, contains: []string{`class "acme-lb"`},
			objs: func() []runtime.Object {
				return append(append(baseline(nil), gatewayAPI("acme-lb")...), gatewayClass("acme-lb", "acme.example/lb"))
			}},
	})
}

func TestPerPodServiceSelectsItsStatefulSet(t *testing.T) {
	// redis-ha's announce Services select one pod each by the label the
	// StatefulSet controller adds, which the template never carries.
	sts := func() []runtime.Object {
		d := goodDeployment("redis")
		set := &appsv1.StatefulSet{TypeMeta: tm("StatefulSet", "apps/v1"), ObjectMeta: d.ObjectMeta,
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3), Selector: d.Spec.Selector, Template: d.Spec.Template}}
		svc := svcObj("redis-announce-0")
		svc.Spec.Selector = map[string]string{"app": "redis", podNameLabel: "redis-0"}
		svc.Spec.PublishNotReadyAddresses = true
		return []runtime.Object{set, svc, pdb("redis")}
	}
	runRuleCases(t, []ruleCase{
		{name: "announce Service with publishNotReadyAddresses reaches the StatefulSet", rule: RuleNotModelled, want: true,
			contains: []string{"Service prod/redis-announce-0 publishes not-ready addresses", "StatefulSet prod/redis"}, objs: sts},
	})
}

// Fixes for a container name it, so merged patches can use the name
// (strategic merge patches match containers by name).
func TestContainerFindingsNameTheirContainer(t *testing.T) {
	r := analyze(t, baseline(unprotected), Options{})
	for _, rule := range []string{RuleNoReadinessProbe, RuleEarlyExit} {
		fs := findings(r, rule)
		if len(fs) == 0 {
			t.Fatalf("want %s, got:%s", rule, dump(r))
		}
		if fs[0].Container != "app" {
			t.Errorf("%s on %s: container %q, want app", rule, fs[0].Field, fs[0].Container)
		}
	}
}
