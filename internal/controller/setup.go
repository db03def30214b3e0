package controller

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
)

// DefaultWorkers is how many bindings are reconciled at once by default.
// A cycle spends most of its time waiting on the API server (its gate and
// status patches), so at 100 bindings, each with something pending, 4
// workers made a woken binding wait seconds in the work queue (issue 12).
// More workers do not mean more load-balancer connections: the provider
// bounds those per instance (haproxy.MaxConns); 16 workers, before that
// bound, took more than HAProxy's stats socket allows.
const DefaultWorkers = 8

// SetupWithManager registers the reconciler with the manager. Every watch
// maps back to the bindings concerned, so a pod turning ContainersReady, an
// endpoint turning terminating or a drain request from the drain endpoint
// (nudges) starts a cycle at once instead of at the next requeue. A pod
// turning terminating, its endpoint turning terminating, a nudge and a
// pushed verdict go first in the work queue (wakePriority), and the pod's
// target is drained at once (drainnow.go).
//
// A DrainOnly reconciler is named targetbinding-drain and is not
// leader-elected: every serve replica runs one, whoever leads.
func (r *TargetBindingReconciler) SetupWithManager(mgr ctrl.Manager, nudges <-chan event.GenericEvent, workers int) error {
	if workers <= 0 {
		workers = DefaultWorkers
	}
	name := "targetbinding"
	opts := controller.Options{MaxConcurrentReconciles: workers}
	if r.DrainOnly {
		name = "targetbinding-drain"
		opts.NeedLeaderElection = ptr.To(false)
	}
	// Verdicts pushed by a load balancer wake its pools' bindings
	// (verdicts.go). The drain-only reconciler does not listen: no LB
	// pushes "drained".
	// Each cycle reads only the pods carrying its binding's gate (observe).
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, gateIndex, gateIndexValues); err != nil {
		return fmt.Errorf("Pod index %s: %w", gateIndex, err)
	}
	// Bindings by pool: every cycle's grant check (binding.CheckGrant),
	// the admission webhook's in the same process, and pushed verdicts.
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &zv1.TargetBinding{}, binding.PoolIndex, binding.PoolIndexValues); err != nil {
		return fmt.Errorf("TargetBinding index %s: %w", binding.PoolIndex, err)
	}
	// Each pod update is mapped to the bindings whose Service selects the
	// pod through these (bindingsOfPod), not through every binding and
	// Service of the namespace.
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &zv1.TargetBinding{}, binding.ServiceIndex, binding.ServiceIndexValues); err != nil {
		return fmt.Errorf("TargetBinding index %s: %w", binding.ServiceIndex, err)
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Service{}, binding.SelectorIndex, binding.SelectorIndexValues); err != nil {
		return fmt.Errorf("Service index %s: %w", binding.SelectorIndex, err)
	}
	r.wakes = make(chan event.GenericEvent, wakeBuffer)
	r.drainSlots = make(chan struct{}, drainNowWidth)
	if !r.DrainOnly && !r.NoVerdictEvents && r.Providers != nil && r.Providers.OnEvent == nil {
		r.Providers.OnEvent = r.verdictEvent
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(&zv1.TargetBinding{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Pod{}, r.podEvents(), builder.WithPredicates(podChanged())).
		Watches(&discoveryv1.EndpointSlice{}, r.sliceEvents()).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.bindingsOfService)).
		Watches(&zv1.LoadBalancer{}, handler.EnqueueRequestsFromMapFunc(r.bindingsOfLoadBalancer),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(nudges, enqueueFirst())).
		WatchesRawSource(source.Channel(r.wakes, enqueueFirst())).
		WithOptions(opts).
		Complete(atNormalPriority(r))
}

// wakePriority is the work queue priority of a binding woken by a verdict
// the load balancer pushed, by a drain request, or by a pod or endpoint
// turning terminating (podEvents, sliceEvents): the gate or the drain it
// concerns is decided by the next cycle, so that cycle goes before the
// bindings that only poll or saw a watch event (priority 0). Without it a
// woken binding waited behind every other binding: at 1,000 pods over 100
// bindings the queue held all 100, and the woken one waited 12-17 s
// (issue 12).
const wakePriority = 10

// enqueueFirst enqueues the binding of a channel event at wakePriority
// (a queue without priorities: at the end, as any event).
func enqueueFirst() handler.TypedEventHandler[client.Object, reconcile.Request] {
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			addFirst(q, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: e.Object.GetNamespace(), Name: e.Object.GetName()}})
		},
	}
}

// atNormalPriority requeues every binding at priority 0 whatever woke it:
// the work queue would otherwise keep a woken binding's wakePriority for
// all its later polls.
func atNormalPriority(r reconcile.Reconciler) reconcile.Reconciler {
	return reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		res, err := r.Reconcile(ctx, req)
		if res.Priority == nil {
			res.Priority = ptr.To(0)
		}
		return res, err
	})
}

// podChanged passes pod updates that matter to a binding: labels,
// deletion, phase, ContainersReady and the gate conditions themselves.
func podChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Pod)
		n, ok2 := e.ObjectNew.(*corev1.Pod)
		if !ok1 || !ok2 {
			return true
		}
		if !o.DeletionTimestamp.Equal(n.DeletionTimestamp) || o.Status.Phase != n.Status.Phase ||
			o.Status.PodIP != n.Status.PodIP || !equalLabels(o.Labels, n.Labels) {
			return true
		}
		return conditionKey(o) != conditionKey(n)
	}}
}

func conditionKey(p *corev1.Pod) string {
	var b strings.Builder
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.ContainersReady || strings.HasPrefix(string(c.Type), zv1.GateConditionPrefix) {
			b.WriteString(string(c.Type) + "=" + string(c.Status) + "/" + c.Reason + ";")
		}
	}
	return b.String()
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (r *TargetBindingReconciler) bindingsOfPod(ctx context.Context, o client.Object) []reconcile.Request {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return nil
	}
	seen := map[string]bool{}
	var out []reconcile.Request
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: pod.Namespace, Name: name}})
		}
	}
	for _, g := range pod.Spec.ReadinessGates {
		if name, ok := strings.CutPrefix(string(g.ConditionType), zv1.GateConditionPrefix); ok {
			add(name)
		}
	}
	bs, err := binding.Selecting(ctx, r.Client, pod)
	if err != nil {
		r.Log.Warn("map pod to bindings", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
	for _, b := range bs {
		add(b.Name)
	}
	return out
}

func (r *TargetBindingReconciler) bindingsInNamespace(ctx context.Context, namespace string, match func(*zv1.TargetBinding) bool) []reconcile.Request {
	var list zv1.TargetBindingList
	opts := []client.ListOption{client.UnsafeDisableDeepCopy} // read only
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := r.Client.List(ctx, &list, opts...); err != nil {
		r.Log.Warn("list TargetBindings", "namespace", namespace, "err", err)
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if match(&list.Items[i]) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}})
		}
	}
	return out
}

func (r *TargetBindingReconciler) bindingsOfSlice(ctx context.Context, o client.Object) []reconcile.Request {
	svc := o.GetLabels()[discoveryv1.LabelServiceName]
	if svc == "" {
		return nil
	}
	return r.bindingsInNamespace(ctx, o.GetNamespace(), func(b *zv1.TargetBinding) bool { return b.Spec.ServiceRef.Name == svc })
}

func (r *TargetBindingReconciler) bindingsOfService(ctx context.Context, o client.Object) []reconcile.Request {
	return r.bindingsInNamespace(ctx, o.GetNamespace(), func(b *zv1.TargetBinding) bool { return b.Spec.ServiceRef.Name == o.GetName() })
}

func (r *TargetBindingReconciler) bindingsOfLoadBalancer(ctx context.Context, o client.Object) []reconcile.Request {
	// A LoadBalancer gone from the cache is gone: drop its provider here,
	// in every role (serve replicas run no LoadBalancer reconciler).
	if err := r.Client.Get(ctx, types.NamespacedName{Name: o.GetName()}, &zv1.LoadBalancer{}); apierrors.IsNotFound(err) {
		r.Providers.Forget(o.GetName())
	}
	return r.bindingsInNamespace(ctx, "", func(b *zv1.TargetBinding) bool { return b.Spec.LoadBalancerRef.Name == o.GetName() })
}
