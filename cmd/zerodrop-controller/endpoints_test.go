package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
)

// Scenario (review finding L3): someone who may write EndpointSlices in the
// namespace, but is not the EndpointSlice controller, tries to make the load
// balancer send traffic elsewhere: a hand-made slice gives web-2 an outside
// address, and a slice labelled as the EndpointSlice controller's
// gives web-3 web-1's address. Neither is registered; the second is
// reported once with a Warning Event on the binding, not every cycle.
func TestForeignEndpointAddressesAreNotRegistered(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopNone)
	startPod(t, ns, "web-1", "web", "10.1.0.91")
	eventually(t, "web-1 registered", func() (bool, string) {
		return suite.lb.called("register", pool, controller.TargetID(ns, b.Name, "web-1")), ""
	})
	web2 := runPodIn(t, suite.c, ns, "web-2", "web", "10.1.0.92")
	web3 := runPodIn(t, suite.c, ns, "web-3", "web", "10.1.0.93")
	for _, s := range []struct {
		name, managedBy, addr string
		pod                   *corev1.Pod
	}{
		{"web-by-hand", "", "203.0.113.7", web2},
		{"web-aliased", controller.EndpointSliceControllerName, "10.1.0.91", web3},
	} {
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: s.name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{s.addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: s.pod.Name, UID: s.pod.UID}}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		if s.managedBy != "" {
			sl.Labels[discoveryv1.LabelManagedBy] = s.managedBy
		}
		if err := suite.c.Create(ctx, sl); err != nil {
			t.Fatal(err)
		}
	}
	mismatches := func() []eventsv1.Event {
		var evs eventsv1.EventList
		if err := suite.c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		var out []eventsv1.Event
		for _, e := range evs.Items {
			if e.Reason == controller.ReasonEndpointAddressMismatch {
				out = append(out, e)
			}
		}
		return out
	}
	time.Sleep(2 * time.Second) // several pending cycles (the pods wait for an endpoint)
	for _, pod := range []string{"web-2", "web-3"} {
		if suite.lb.called("register", pool, controller.TargetID(ns, b.Name, pod)) {
			t.Errorf("%s registered from an EndpointSlice address that is not its own", pod)
		}
	}
	eventually(t, "Warning Event on the binding", func() (bool, string) {
		evs := mismatches()
		return len(evs) > 0, fmt.Sprint(evs)
	})
	evs := mismatches()
	if len(evs) != 1 {
		t.Fatalf("%d %s Events: %+v; want one", len(evs), controller.ReasonEndpointAddressMismatch, evs)
	}
	e := evs[0]
	if e.Type != corev1.EventTypeWarning || e.Regarding.Name != b.Name || e.Related == nil || e.Related.Name != "web-3" {
		t.Fatalf("Event %s %s regarding %s related %+v; want a Warning on binding %s related to web-3", e.Type, e.Reason, e.Regarding.Name, e.Related, b.Name)
	}
	if e.Series != nil {
		t.Fatalf("Event emitted %d times; want once, not every cycle", e.Series.Count)
	}
}
