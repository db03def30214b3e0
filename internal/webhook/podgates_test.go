package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/drain"
)

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := zv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func ns(name string, optIn bool) *corev1.Namespace {
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if optIn {
		n.Labels = map[string]string{zv1.GatesNamespaceLabel: zv1.GatesEnabled}
	}
	return n
}

func svc(namespace, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
}

func tb(namespace, name, service string, hook zv1.PreStopHook) *zv1.TargetBinding {
	return &zv1.TargetBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: zv1.TargetBindingSpec{
			ServiceRef:      zv1.ServiceReference{Name: service, Port: intstr.FromString("http")},
			LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"},
			Pool:            "web",
			Drain:           zv1.DrainSpec{PreStop: hook},
		},
	}
}

func pod(namespace string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: "web-", Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}},
	}
}

func gates(p *corev1.Pod) []string {
	var out []string
	for _, g := range p.Spec.ReadinessGates {
		out = append(out, string(g.ConditionType))
	}
	return out
}

func TestMutate(t *testing.T) {
	web := map[string]string{"app": "web"}
	objs := []runtime.Object{
		ns("shop", true), ns("plain", false), ns("zerodrop-system", true),
		svc("shop", "web", web), svc("shop", "api", map[string]string{"app": "api"}),
		svc("shop", "all-web", web), svc("shop", "headless-manual", nil),
		tb("shop", "web-edge", "web", zv1.PreStopNone),
		tb("shop", "api-edge", "api", zv1.PreStopNone),
		tb("shop", "web-internal", "all-web", zv1.PreStopNone),
		tb("shop", "manual", "headless-manual", zv1.PreStopNone),
		tb("shop", "ghost", "no-such-service", zv1.PreStopNone),
		svc("plain", "web", web), tb("plain", "web-edge", "web", zv1.PreStopNone),
		svc("zerodrop-system", "web", web), tb("zerodrop-system", "web-edge", "web", zv1.PreStopNone),
	}
	inj := &PodGateInjector{
		Reader: fake.NewClientBuilder().WithScheme(testScheme(t)).WithRuntimeObjects(objs...).
			WithIndex(&corev1.Pod{}, drain.TokenIndex, drain.TokenIndexValues).Build(),
		ControllerNamespace: "zerodrop-system",
	}
	cases := []struct {
		name string
		pod  *corev1.Pod
		want []string
	}{
		{"opted-in namespace: one gate per binding whose Service selects the pod",
			pod("shop", web), []string{zv1.GateConditionType("web-edge"), zv1.GateConditionType("web-internal")}},
		{"pod no Service selects gets nothing", pod("shop", map[string]string{"app": "batch"}), nil},
		{"namespace without the label gets nothing", pod("plain", web), nil},
		{"controller namespace gets nothing", pod("zerodrop-system", web), nil},
		{"pod labelled gates=disabled gets nothing",
			pod("shop", map[string]string{"app": "web", SkipLabel: SkipValue}), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			changed, err := inj.Mutate(context.Background(), c.pod)
			if err != nil {
				t.Fatal(err)
			}
			got := gates(c.pod)
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("gates = %v, want %v", got, c.want)
			}
			if changed != (len(c.want) > 0) {
				t.Fatalf("changed = %v with gates %v", changed, got)
			}
			again, err := inj.Mutate(context.Background(), c.pod)
			if err != nil {
				t.Fatal(err)
			}
			if again || len(gates(c.pod)) != len(c.want) {
				t.Fatalf("second Mutate changed the pod: %v", gates(c.pod))
			}
		})
	}
}

func TestMutateDrainHook(t *testing.T) {
	web := map[string]string{"app": "web"}
	inj := &PodGateInjector{
		Reader: fake.NewClientBuilder().WithScheme(testScheme(t)).WithRuntimeObjects(
			ns("shop", true), svc("shop", "web", web), tb("shop", "web-edge", "web", zv1.PreStopHTTPGet),
		).WithIndex(&corev1.Pod{}, drain.TokenIndex, drain.TokenIndexValues).Build(),
		ControllerNamespace: "zerodrop-system",
		DrainHook: &DrainHookTarget{
			Host: func(context.Context) (string, error) { return "10.96.0.50", nil },
			Port: 8082,
		},
	}
	p := pod("shop", web)
	own := &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Lifecycle: &corev1.Lifecycle{PreStop: own}})
	if _, err := inj.Mutate(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	token := p.Annotations[DrainTokenAnnotation]
	if len(token) < 16 {
		t.Fatalf("drain token %q too short", token)
	}
	h := p.Spec.Containers[0].Lifecycle.PreStop.HTTPGet
	if h == nil || h.Host != "10.96.0.50" || h.Port.IntValue() != 8082 ||
		h.Path != "/drain/v1/namespaces/shop/tokens/"+token+"?wait=30s" {
		t.Fatalf("app container hook = %+v", h)
	}
	if p.Spec.Containers[1].Lifecycle.PreStop != own {
		t.Fatalf("sidecar's own preStop hook was replaced: %+v", p.Spec.Containers[1].Lifecycle.PreStop)
	}
	changed, err := inj.Mutate(context.Background(), p)
	if err != nil || changed {
		t.Fatalf("second Mutate: changed=%v err=%v", changed, err)
	}
}

func hookInjector(t *testing.T, host func(context.Context) (string, error), objs ...runtime.Object) *PodGateInjector {
	t.Helper()
	web := map[string]string{"app": "web"}
	objs = append(objs, ns("shop", true), svc("shop", "web", web), tb("shop", "web-edge", "web", zv1.PreStopHTTPGet))
	if host == nil {
		host = func(context.Context) (string, error) { return "10.96.0.50", nil }
	}
	return &PodGateInjector{
		Reader: fake.NewClientBuilder().WithScheme(testScheme(t)).WithRuntimeObjects(objs...).
			WithIndex(&corev1.Pod{}, drain.TokenIndex, drain.TokenIndexValues).Build(),
		Decoder:             admission.NewDecoder(testScheme(t)),
		ControllerNamespace: "zerodrop-system",
		DrainHook:           &DrainHookTarget{Host: host, Port: 8082},
	}
}

// TestTemplateTokenIsReplaced: a drain token the pod brings (copied into a
// template from a live pod) is replaced by a fresh one, so replicas never
// share a token; a reinvocation keeps the token its own hook carries (M1).
func TestTemplateTokenIsReplaced(t *testing.T) {
	inj := hookInjector(t, nil)
	a, b := pod("shop", map[string]string{"app": "web"}), pod("shop", map[string]string{"app": "web"})
	for _, p := range []*corev1.Pod{a, b} {
		p.Annotations = map[string]string{DrainTokenAnnotation: "chosen-by-the-template"}
		if _, err := inj.Mutate(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	ta, tb := a.Annotations[DrainTokenAnnotation], b.Annotations[DrainTokenAnnotation]
	if ta == "chosen-by-the-template" || tb == "chosen-by-the-template" || ta == tb || len(ta) < 16 {
		t.Fatalf("tokens after admission: %q and %q, want two fresh, different tokens", ta, tb)
	}
	if path := a.Spec.Containers[0].Lifecycle.PreStop.HTTPGet.Path; !strings.Contains(path, "/tokens/"+ta+"?") {
		t.Fatalf("hook path %q does not carry the pod's token %q", path, ta)
	}
	if changed, err := inj.Mutate(context.Background(), a); err != nil || changed || a.Annotations[DrainTokenAnnotation] != ta {
		t.Fatalf("reinvocation: changed=%v err=%v token %q, want unchanged %q", changed, err, a.Annotations[DrainTokenAnnotation], ta)
	}
}

// TestHookOnlyInServingContainers: the hook goes into the containers that
// serve a port of the Service, not into sidecars; when no container
// declares such a port, into the first container (L9).
func TestHookOnlyInServingContainers(t *testing.T) {
	inj := hookInjector(t, nil)
	p := pod("shop", map[string]string{"app": "web"})
	p.Spec.Containers = append([]corev1.Container{{Name: "proxy-sidecar", Ports: []corev1.ContainerPort{{ContainerPort: 15090}}}}, p.Spec.Containers...)
	if _, err := inj.Mutate(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if lc := p.Spec.Containers[0].Lifecycle; lc != nil && lc.PreStop != nil {
		t.Fatalf("sidecar serving no port of the Service got a hook: %+v", lc.PreStop)
	}
	if lc := p.Spec.Containers[1].Lifecycle; lc == nil || lc.PreStop == nil || lc.PreStop.HTTPGet == nil {
		t.Fatalf("app container serving port 80 got no hook")
	}

	bare := pod("shop", map[string]string{"app": "web"})
	bare.Spec.Containers = []corev1.Container{{Name: "app"}, {Name: "logger"}}
	if _, err := inj.Mutate(context.Background(), bare); err != nil {
		t.Fatal(err)
	}
	if lc := bare.Spec.Containers[0].Lifecycle; lc == nil || lc.PreStop == nil {
		t.Fatalf("no container declares ports: the first one should get the hook")
	}
	if lc := bare.Spec.Containers[1].Lifecycle; lc != nil && lc.PreStop != nil {
		t.Fatalf("no container declares ports: the second one got a hook too")
	}
}

func admit(t *testing.T, inj *PodGateInjector, p *corev1.Pod) admission.Response {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return inj.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, Namespace: p.Namespace, Object: runtime.RawExtension{Raw: raw}}})
}

// TestHookResolutionFailureKeepsGates: when the drain endpoint's address
// cannot be resolved (the drain Service is missing), the pod still gets its
// readiness gates, and the API server passes on a Warning (L11, M5).
func TestHookResolutionFailureKeepsGates(t *testing.T) {
	inj := hookInjector(t, func(context.Context) (string, error) {
		return "", errors.New("drain Service zerodrop-system/zerodrop-drain not found")
	})
	resp := admit(t, inj, pod("shop", map[string]string{"app": "web"}))
	if !resp.Allowed || len(resp.Patches) == 0 {
		t.Fatalf("hook host unresolvable: allowed=%v patches=%v result=%+v, want the gates patched in", resp.Allowed, resp.Patches, resp.Result)
	}
	gated := false
	for _, op := range resp.Patches {
		if strings.HasPrefix(op.Path, "/spec/readinessGates") {
			gated = true
		}
	}
	if !gated || !strings.Contains(strings.Join(resp.Warnings, " "), "preStop") {
		t.Fatalf("patches %+v warnings %q: want the readiness gate and a warning about the preStop hook", resp.Patches, resp.Warnings)
	}
}

// TestShortGracePeriodWarns: a pod whose terminationGracePeriodSeconds is
// shorter than drain.timeout plus the app's shutdown gets an admission
// Warning (L9).
func TestShortGracePeriodWarns(t *testing.T) {
	inj := hookInjector(t, nil)
	p := pod("shop", map[string]string{"app": "web"})
	p.Spec.TerminationGracePeriodSeconds = ptrTo(int64(20))
	resp := admit(t, inj, p)
	if !resp.Allowed || !strings.Contains(strings.Join(resp.Warnings, " "), "terminationGracePeriodSeconds") {
		t.Fatalf("grace 20s, drain.timeout 30s: warnings %q, want one about terminationGracePeriodSeconds", resp.Warnings)
	}
	p.Spec.TerminationGracePeriodSeconds = ptrTo(int64((30*time.Second + 10*time.Second) / time.Second))
	if resp := admit(t, inj, p); len(resp.Warnings) != 0 {
		t.Fatalf("grace 40s, drain.timeout 30s: warnings %q, want none", resp.Warnings)
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestCopiedHookAndTokenAreReplaced: a pod created from a live pod's spec
// (kubectl get -o yaml, edited and applied) brings both that pod's drain
// token and its injected hook, which looks like the webhook's own earlier
// pass. The live pod exists, so the token is taken: the new pod gets a
// fresh token and a hook that carries it, never the live pod's (M1).
func TestCopiedHookAndTokenAreReplaced(t *testing.T) {
	live := pod("shop", map[string]string{"app": "web"})
	live.Name = "web-live"
	if _, err := hookInjector(t, nil).Mutate(context.Background(), live); err != nil {
		t.Fatal(err)
	}
	token := live.Annotations[DrainTokenAnnotation]
	inj := hookInjector(t, nil, live.DeepCopy())
	copied := live.DeepCopy()
	copied.Name = "web-copy"
	if _, err := inj.Mutate(context.Background(), copied); err != nil {
		t.Fatal(err)
	}
	got := copied.Annotations[DrainTokenAnnotation]
	if got == token || got == "" {
		t.Fatalf("copied pod's token %q, want a fresh one (the live pod has %q)", got, token)
	}
	if path := copied.Spec.Containers[0].Lifecycle.PreStop.HTTPGet.Path; !strings.Contains(path, "/tokens/"+got+"?") {
		t.Fatalf("copied pod's hook path %q does not carry its own token %q", path, got)
	}
	again := copied.DeepCopy()
	if changed, err := inj.Mutate(context.Background(), again); err != nil || changed || again.Annotations[DrainTokenAnnotation] != got {
		t.Fatalf("reinvocation of the copy: changed=%v err=%v token %q, want unchanged %q", changed, err, again.Annotations[DrainTokenAnnotation], got)
	}
}
