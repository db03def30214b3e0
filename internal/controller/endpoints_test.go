package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// recordedEvent is one Event a test recorder saw.
type recordedEvent struct {
	Regarding, Related string // kind-less "namespace/name"
	Type, Reason, Note string
}

// eventLog is an events.EventRecorder that keeps what it is given.
type eventLog struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (l *eventLog) Eventf(regarding, related runtime.Object, kind, reason, _ string, note string, args ...any) {
	name := func(o runtime.Object) string {
		if co, ok := o.(client.Object); ok && co != nil {
			return co.GetNamespace() + "/" + co.GetName()
		}
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, recordedEvent{name(regarding), name(related), kind, reason, fmt.Sprintf(note, args...)})
}

// withReason returns the recorded Events of one reason.
func (l *eventLog) withReason(reason string) []recordedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []recordedEvent
	for _, e := range l.events {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// coreScheme knows Kubernetes' own types.
func coreScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

// webService is the Service "web" of namespace shop: selector app=web,
// port http 80.
func webService() *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
}

// slicePod is a running, gated pod of the Service "web" with the given IP
// ("" before the kubelet reported one).
func slicePod(name, ip string) *corev1.Pod {
	p := gatedPod(name, true, nil)
	p.UID = types.UID(name + "-uid")
	p.Labels = map[string]string{"app": "web"}
	if ip != "" {
		p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	}
	return p
}

// slice is an EndpointSlice of the Service "web" (port http 8080) whose
// endpoints name the given pods at the given addresses; managedBy "" leaves
// the managed-by label out.
func slice(name, managedBy string, addrs map[*corev1.Pod]string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
	if managedBy != "" {
		s.Labels[discoveryv1.LabelManagedBy] = managedBy
	}
	for p, addr := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{addr},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}})
	}
	return s
}

// Scenario (review finding L3): whoever may write EndpointSlices in the
// namespace must not be able to make the load balancer send traffic to an
// address of their choosing. The controller reads only the slices the
// EndpointSlice controller manages, and of those only endpoints whose
// address is one of their pod's own IPs. A mismatch is ignored (the pod
// counts as having no endpoint yet) and reported once, with a Warning Event
// on the binding, not every cycle.
func TestObserveTrustsOnlyManagedSlicesAndPodAddresses(t *testing.T) {
	scheme := coreScheme(t)
	svc := webService()
	honest := slicePod("web-1", "10.0.0.1")
	handMade := slicePod("web-2", "10.0.0.2")
	aliased := slicePod("web-3", "10.0.0.3")
	noIPYet := slicePod("web-4", "")
	objs := []client.Object{svc, honest, handMade, aliased, noIPYet,
		slice("web-managed", EndpointSliceControllerName, map[*corev1.Pod]string{
			honest:  "10.0.0.1",
			aliased: "10.0.0.1", // another pod's address
			noIPYet: "10.0.0.4", // the pod cache has not seen the IP yet
		}),
		slice("web-by-hand", "", map[*corev1.Pod]string{handMade: "169.254.169.254"}),
		slice("web-mirrored", "endpointslicemirroring-controller.k8s.io", map[*corev1.Pod]string{handMade: "192.0.2.1"}),
	}
	b := testBinding(zv1.FailClosed)
	b.Spec.ServiceRef.Name = "web"
	b.Spec.ServiceRef.Port = intstr.FromString("http")
	events := &eventLog{}
	r := &TargetBindingReconciler{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build(),
		Recorder: events, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	for cycle := 0; cycle < 3; cycle++ {
		targets, _, err := r.observe(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, tg := range targets {
			addr := "no endpoint"
			if tg.HasEndpoint {
				addr = fmt.Sprintf("%s:%d", tg.IP, tg.Port)
			}
			got[tg.Key.Name] = addr
		}
		want := map[string]string{"web-1": "10.0.0.1:8080", "web-2": "no endpoint", "web-3": "no endpoint", "web-4": "no endpoint"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cycle %d: targets %v; want %v", cycle, got, want)
		}
	}
	warned := events.withReason(ReasonEndpointAddressMismatch)
	if len(warned) != 1 {
		t.Fatalf("Events %s after 3 cycles: %+v; want one, for web-3 only", ReasonEndpointAddressMismatch, warned)
	}
	if e := warned[0]; e.Type != corev1.EventTypeWarning || e.Regarding != "shop/web" || e.Related != "shop/web-3" {
		t.Fatalf("Event %+v; want a Warning on the binding shop/web, related to the pod shop/web-3", e)
	}
}
