package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// shopRequest is the work queue request of binding name in namespace shop.
func shopRequest(name string) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: name}}
}

// hundredWaiting is a work queue in which bindings b-0 … b-99 of
// namespace shop wait at priority 0, in that order.
func hundredWaiting(t *testing.T) priorityqueue.PriorityQueue[reconcile.Request] {
	q := priorityqueue.New[reconcile.Request](t.Name())
	t.Cleanup(q.ShutDown)
	for i := range 100 {
		q.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(0)}, shopRequest(fmt.Sprintf("b-%d", i)))
	}
	return q
}

// Scenario (issue 12): 100 bindings wait in the work queue (their polls
// and pod events, priority 0) when HAProxy reports b-42's new pod UP and
// the verdict wakes b-42. Expectation: b-42's cycle is the next one, not
// the 101st; and after it b-42 is requeued at priority 0 again, so that
// its later polls do not jump the queue.
func TestAWokenBindingGoesFirst(t *testing.T) {
	q := hundredWaiting(t)
	woken := &zv1.TargetBinding{}
	woken.Namespace, woken.Name = "shop", "b-42"
	enqueueFirst().Generic(context.Background(), event.TypedGenericEvent[client.Object]{Object: woken}, q)
	time.Sleep(50 * time.Millisecond) // the queue takes additions asynchronously

	got, priority, _ := q.GetWithPriority()
	if got != shopRequest("b-42") {
		t.Fatalf("next cycle: %s (priority %d); want shop/b-42, woken by a verdict", got, priority)
	}
	q.Done(got)

	polled := atNormalPriority(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}))
	res, err := polled.Reconcile(context.Background(), got)
	if err != nil || res.Priority == nil || *res.Priority != 0 || res.RequeueAfter != time.Second {
		t.Fatalf("woken binding's cycle result %+v (err %v); want its poll requeued after 1s at priority 0", res, err)
	}
}

// Scenario (issue 12, drain latency): 100 bindings wait in the work queue
// when pod b-42-0, gated by b-42, is deleted; then an endpoint of b-7's
// Service turns terminating. Expectation: b-42's cycle is the next one,
// then b-7's, ahead of the 98 others; a pod update that is no deletion
// (a condition changed) jumps nothing.
func TestATerminatingPodsBindingsGoFirst(t *testing.T) {
	ctx := context.Background()
	b7 := &zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "b-7"},
		Spec: zv1.TargetBindingSpec{ServiceRef: zv1.ServiceReference{Name: "svc-7"}}}
	r := &TargetBindingReconciler{
		Client: fake.NewClientBuilder().WithScheme(hScheme(t)).WithObjects(b7).Build(),
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	q := hundredWaiting(t)
	pod := func(binding string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: binding + "-0", ResourceVersion: "1"},
			Spec: corev1.PodSpec{ReadinessGates: []corev1.PodReadinessGate{{ConditionType: corev1.PodConditionType(zv1.GateConditionType(binding))}}}}
	}

	// A condition changed: no jump.
	old, changed := pod("b-99"), pod("b-99")
	changed.ResourceVersion = "2"
	changed.Status.Conditions = []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}}
	r.podEvents().Update(ctx, event.UpdateEvent{ObjectOld: old, ObjectNew: changed}, q)
	// b-42's pod deleted.
	alive, deleted := pod("b-42"), pod("b-42")
	deleted.ResourceVersion = "2"
	deleted.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	r.podEvents().Update(ctx, event.UpdateEvent{ObjectOld: alive, ObjectNew: deleted}, q)
	// An endpoint of b-7's Service turns terminating.
	slice := func(terminating bool) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "svc-7-x", ResourceVersion: map[bool]string{false: "1", true: "2"}[terminating],
				Labels: map[string]string{discoveryv1.LabelServiceName: "svc-7"}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.7"}, Conditions: discoveryv1.EndpointConditions{Terminating: ptr.To(terminating)},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "b-7-0"}}},
		}
	}
	r.sliceEvents().Update(ctx, event.UpdateEvent{ObjectOld: slice(false), ObjectNew: slice(true)}, q)
	time.Sleep(50 * time.Millisecond) // the queue takes additions asynchronously

	for _, want := range []string{"b-42", "b-7", "b-0"} {
		got, priority, _ := q.GetWithPriority()
		if got != shopRequest(want) {
			t.Fatalf("next cycle: %s (priority %d); want shop/%s", got, priority, want)
		}
		q.Done(got)
	}
}
