package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// Scenario (issue 12): 100 bindings wait in the work queue (their polls
// and pod events, priority 0) when HAProxy reports b-42's new pod UP and
// the verdict wakes b-42. Expectation: b-42's cycle is the next one, not
// the 101st; and after it b-42 is requeued at priority 0 again, so that
// its later polls do not jump the queue.
func TestAWokenBindingGoesFirst(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("wake-test")
	defer q.ShutDown()
	req := func(name string) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: name}}
	}
	for i := range 100 {
		q.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(0)}, req(fmt.Sprintf("b-%d", i)))
	}
	woken := &zv1.TargetBinding{}
	woken.Namespace, woken.Name = "shop", "b-42"
	enqueueFirst().Generic(context.Background(), event.TypedGenericEvent[client.Object]{Object: woken}, q)
	time.Sleep(50 * time.Millisecond) // the queue takes additions asynchronously

	got, priority, _ := q.GetWithPriority()
	if got != req("b-42") {
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
