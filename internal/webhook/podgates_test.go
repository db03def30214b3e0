package webhook

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
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
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
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
		Reader:              fake.NewClientBuilder().WithScheme(testScheme(t)).WithRuntimeObjects(objs...).Build(),
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
		).Build(),
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
