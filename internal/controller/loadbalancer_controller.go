package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// +kubebuilder:rbac:groups=zerodrop.dev,resources=loadbalancers,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=zerodrop.dev,resources=loadbalancers/status,verbs=patch
// +kubebuilder:rbac:groups=zerodrop.dev,resources=loadbalancers/finalizers,verbs=update

// LoadBalancerFinalizer keeps a deleted LoadBalancer while TargetBindings
// use it: each of them must first drain and deregister its targets, which
// needs the LoadBalancer's instances.
const LoadBalancerFinalizer = "zerodrop.dev/bindings"

// InstanceTracker remembers what the last pool status reads said about each
// load balancer instance, for the LoadBalancer's status. The binding
// reconciler feeds it; no extra call reaches the load balancer.
type InstanceTracker struct {
	mu   sync.Mutex
	seen map[string]map[string]zv1.InstanceStatus
}

// Observe records one pool status read of load balancer lb.
func (t *InstanceTracker) Observe(lb string, s provider.PoolStatus, restarted []string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[string]map[string]zv1.InstanceStatus{}
	}
	m := t.seen[lb]
	if m == nil {
		m = map[string]zv1.InstanceStatus{}
		t.seen[lb] = m
	}
	for _, in := range s.Instances {
		st := m[in.Instance]
		st.Name = in.Instance
		st.Reachable = in.Err == nil
		st.Message = ""
		if in.Err != nil {
			st.Message = in.Err.Error()
		}
		if slices.Contains(restarted, in.Instance) {
			ts := metav1.NewTime(now)
			st.LastReloadTime = &ts
		}
		m[in.Instance] = st
	}
}

// Forget drops what was recorded about lb.
func (t *InstanceTracker) Forget(lb string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.seen, lb)
}

// Instances returns the recorded state of lb's instances, by name.
func (t *InstanceTracker) Instances(lb string) map[string]zv1.InstanceStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]zv1.InstanceStatus{}
	for k, v := range t.seen[lb] {
		out[k] = v
	}
	return out
}

// LoadBalancerReconciler writes LoadBalancer status from the InstanceTracker.
type LoadBalancerReconciler struct {
	// Client reads from the cache and writes status.
	Client client.Client
	// Instances is fed by the TargetBinding reconciler.
	Instances *InstanceTracker
	// Interval between status refreshes.
	Interval time.Duration
	// TLS, when set, checks the Secret of every instance with tls: a
	// broken one shows in the instance's status at once, before any
	// TargetBinding tries the instance.
	TLS *TLSSecrets
	// Providers is the TargetBinding reconciler's provider cache: a
	// deleted LoadBalancer's provider is dropped from it.
	Providers *Providers
	// Recorder emits Events on the LoadBalancer; nil emits none.
	Recorder events.EventRecorder
	// Metrics, when set, gets zerodrop_loadbalancer_instance_reachable.
	Metrics *Metrics

	mu       sync.Mutex
	reported map[string][]string // LoadBalancer -> instances with a reachable series
}

// reportReachable sets lb's zerodrop_loadbalancer_instance_reachable series
// to up and deletes those of instances no longer in it.
func (r *LoadBalancerReconciler) reportReachable(lb string, up map[string]bool) {
	if r.Metrics == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range r.reported[lb] {
		if _, ok := up[name]; !ok {
			r.Metrics.InstanceReachable.DeleteLabelValues(lb, name)
		}
	}
	names := make([]string, 0, len(up))
	for name, ok := range up {
		v := 0.0
		if ok {
			v = 1
		}
		r.Metrics.InstanceReachable.WithLabelValues(lb, name).Set(v)
		names = append(names, name)
	}
	if r.reported == nil {
		r.reported = map[string][]string{}
	}
	r.reported[lb] = names
	if len(names) == 0 {
		delete(r.reported, lb)
	}
}

// Reconcile implements reconcile.Reconciler.
func (r *LoadBalancerReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var lb zv1.LoadBalancer
	if err := r.Client.Get(ctx, req.NamespacedName, &lb); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var users []string
	if !lb.DeletionTimestamp.IsZero() {
		if !controllerutil.ContainsFinalizer(&lb, LoadBalancerFinalizer) {
			return reconcile.Result{}, nil
		}
		var err error
		if users, err = r.bindingsUsing(ctx, lb.Name); err != nil {
			return reconcile.Result{}, err
		}
		if len(users) == 0 {
			controllerutil.RemoveFinalizer(&lb, LoadBalancerFinalizer)
			if err := r.Client.Update(ctx, &lb); err != nil && !apierrors.IsNotFound(err) {
				return reconcile.Result{}, fmt.Errorf("remove finalizer from LoadBalancer %s: %w", lb.Name, err)
			}
			r.forget(lb.Name)
			return reconcile.Result{}, nil
		}
	} else if controllerutil.AddFinalizer(&lb, LoadBalancerFinalizer) {
		if err := r.Client.Update(ctx, &lb); err != nil {
			return reconcile.Result{}, fmt.Errorf("add finalizer to LoadBalancer %s: %w", lb.Name, err)
		}
	}
	seen := r.Instances.Instances(lb.Name)
	next := lb.Status.DeepCopy()
	next.ObservedGeneration = lb.Generation
	next.Instances = nil
	next.ReachableInstances = 0
	var unreachable, unknown []string
	up := map[string]bool{}
	for _, in := range lb.Spec.Instances {
		st, ok := seen[in.Name]
		if in.TLS != nil && r.TLS != nil {
			if _, err := r.TLS.Config(ctx, in.TLS.SecretRef); err != nil {
				st, ok = zv1.InstanceStatus{Name: in.Name, Message: "tls: " + err.Error(), LastReloadTime: st.LastReloadTime}, true
			}
		}
		if !ok {
			unknown = append(unknown, in.Name)
			continue
		}
		up[in.Name] = st.Reachable
		if st.Reachable {
			next.ReachableInstances++
		} else {
			unreachable = append(unreachable, in.Name+": "+st.Message)
		}
		next.Instances = append(next.Instances, st)
	}
	sort.Slice(next.Instances, func(i, j int) bool { return next.Instances[i].Name < next.Instances[j].Name })
	r.reportReachable(lb.Name, up)
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Reachable",
		Message: fmt.Sprintf("%d instance(s) reachable", next.ReachableInstances), ObservedGeneration: lb.Generation}
	switch {
	case len(unreachable) > 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InstanceUnreachable", strings.Join(unreachable, "; ")
	case len(unknown) > 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionUnknown, "NotObserved",
			"no TargetBinding has read these instances yet: "+strings.Join(unknown, ", ")
	}
	if len(users) > 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonDeletionBlocked
		cond.Message = fmt.Sprintf("deletion waits for the TargetBindings using this LoadBalancer to drain and deregister their targets: delete them first: %s",
			strings.Join(users, ", "))
		if old := meta.FindStatusCondition(lb.Status.Conditions, ConditionReady); r.Recorder != nil && (old == nil || old.Message != cond.Message) {
			r.Recorder.Eventf(&lb, nil, corev1.EventTypeWarning, ReasonDeletionBlocked, "Delete", "%s", cond.Message)
		}
	}
	meta.SetStatusCondition(&next.Conditions, cond)
	if !lbStatusEqual(&lb.Status, next) {
		raw, err := json.Marshal(map[string]any{"status": next})
		if err != nil {
			return reconcile.Result{}, err
		}
		if err := r.Client.Status().Patch(ctx, &lb, client.RawPatch(types.MergePatchType, raw)); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("update status of LoadBalancer %s: %w", lb.Name, err)
		}
	}
	every := r.Interval
	if every <= 0 {
		every = 5 * time.Second
	}
	return reconcile.Result{RequeueAfter: every}, nil
}

// bindingsUsing lists the TargetBindings (namespace/name, sorted) that
// reference the LoadBalancer, including those being deleted: they still
// drain through it.
func (r *LoadBalancerReconciler) bindingsUsing(ctx context.Context, lb string) ([]string, error) {
	var list zv1.TargetBindingList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list TargetBindings: %w", err)
	}
	var out []string
	for _, b := range list.Items {
		if b.Spec.LoadBalancerRef.Name == lb {
			out = append(out, b.Namespace+"/"+b.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// forget drops what the controller keeps about a LoadBalancer that is
// gone: its provider (and the instances it was retiring) and its
// instances' last status.
func (r *LoadBalancerReconciler) forget(lb string) {
	if r.Providers != nil {
		r.Providers.Forget(lb)
	}
	if r.Instances != nil {
		r.Instances.Forget(lb)
	}
	r.reportReachable(lb, nil)
}

// lbStatusEqual reports whether status a already says what b says, so that
// the status patch can be skipped. The condition count matters too: a
// condition that only a has (one written by an older controller) is dropped
// only by a patch.
func lbStatusEqual(a, b *zv1.LoadBalancerStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.ReachableInstances != b.ReachableInstances ||
		len(a.Instances) != len(b.Instances) || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Instances {
		x, y := a.Instances[i], b.Instances[i]
		if x.Name != y.Name || x.Reachable != y.Reachable || x.Message != y.Message || !x.LastReloadTime.Equal(y.LastReloadTime) {
			return false
		}
	}
	return conditionsCover(a.Conditions, b.Conditions)
}

// conditionsCover reports whether every condition of want stands in have
// with the same status, reason, message and observed generation (the last
// transition time is left out: it changes only with the status).
func conditionsCover(have, want []metav1.Condition) bool {
	for _, c := range want {
		o := meta.FindStatusCondition(have, c.Type)
		if o == nil || o.Status != c.Status || o.Reason != c.Reason || o.Message != c.Message || o.ObservedGeneration != c.ObservedGeneration {
			return false
		}
	}
	return true
}

// SetupWithManager registers the reconciler.
func (r *LoadBalancerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	// A binding's deletion may unblock its LoadBalancer's.
	lbOf := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		b, ok := o.(*zv1.TargetBinding)
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: b.Spec.LoadBalancerRef.Name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).Named("loadbalancer").For(&zv1.LoadBalancer{}).
		Watches(&zv1.TargetBinding{}, lbOf).Complete(r)
}
