package binding

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// ReasonPoolNotGranted is the status condition reason, Event reason and
// admission refusal of a TargetBinding whose namespace the LoadBalancer
// does not grant the binding's pool.
const ReasonPoolNotGranted = "PoolNotGranted"

// Grant is the answer to "may this binding put targets into its pool?".
type Grant struct {
	// Allowed is true when the LoadBalancer grants the pool to the
	// binding's namespace.
	Allowed bool
	// Message says which grant decided, for status, Events and admission
	// answers.
	Message string
}

// PoolGrant returns the grant lb gives pool: the listed one, the implicit
// `from: Same` when lb lists no pools, and ok false when lb lists pools but
// not this one.
func PoolGrant(lb *zv1.LoadBalancer, pool string) (zv1.AllowedNamespaces, bool) {
	if len(lb.Spec.Pools) == 0 {
		return zv1.AllowedNamespaces{From: zv1.NamespacesFromSame}, true
	}
	for _, p := range lb.Spec.Pools {
		if p.Name == pool {
			a := p.AllowedNamespaces
			if a.From == "" {
				a.From = zv1.NamespacesFromSame
			}
			return a, true
		}
	}
	return zv1.AllowedNamespaces{}, false
}

// Granted decides whether b may use its pool of lb. nsLabels are the labels
// of b's namespace (read only for from: Selector); bindings are the
// cluster's TargetBindings (read only for from: Same; b itself may be
// among them, and b may not exist yet, as at admission). It is a pure
// function: the webhook and the reconciler decide alike.
//
// Under from: Same the pool belongs to the namespace of its oldest binding
// (creation time, then namespace/name) that is not being deleted; a binding
// not yet created counts as the newest. So two namespaces that raced past
// admission are still told apart the same way by every process.
func Granted(lb *zv1.LoadBalancer, b *zv1.TargetBinding, nsLabels map[string]string, bindings []zv1.TargetBinding) Grant {
	pool := b.Spec.Pool
	a, ok := PoolGrant(lb, pool)
	if !ok {
		return Grant{Message: fmt.Sprintf("LoadBalancer %s lists its pools in spec.pools and pool %q is not among them", lb.Name, pool)}
	}
	switch a.From {
	case zv1.NamespacesFromAll:
		return Grant{Allowed: true, Message: fmt.Sprintf("LoadBalancer %s grants pool %q to all namespaces", lb.Name, pool)}
	case zv1.NamespacesFromSelector:
		if a.Selector == nil {
			return Grant{Message: fmt.Sprintf("LoadBalancer %s grants pool %q by a selector but has none", lb.Name, pool)}
		}
		sel, err := metav1.LabelSelectorAsSelector(a.Selector)
		if err != nil {
			return Grant{Message: fmt.Sprintf("LoadBalancer %s pool %q: invalid namespace selector: %v", lb.Name, pool, err)}
		}
		if !sel.Matches(labels.Set(nsLabels)) {
			return Grant{Message: fmt.Sprintf("LoadBalancer %s grants pool %q to namespaces matching %q, which namespace %s does not", lb.Name, pool, sel.String(), b.Namespace)}
		}
		return Grant{Allowed: true, Message: fmt.Sprintf("LoadBalancer %s grants pool %q to namespaces matching %q", lb.Name, pool, sel.String())}
	case zv1.NamespacesFromSame:
		holder := Holder(lb.Name, pool, append([]zv1.TargetBinding{*b}, bindings...))
		if holder.Namespace != b.Namespace {
			return Grant{Message: fmt.Sprintf("pool %q of LoadBalancer %s is held by namespace %s (binding %s, the pool's oldest); to share it, list the pool in the LoadBalancer's spec.pools", pool, lb.Name, holder.Namespace, holder)}
		}
		return Grant{Allowed: true, Message: fmt.Sprintf("pool %q of LoadBalancer %s is held by this namespace", pool, lb.Name)}
	default:
		return Grant{Message: fmt.Sprintf("LoadBalancer %s pool %q: unknown allowedNamespaces.from %q", lb.Name, pool, a.From)}
	}
}

// Holder returns the binding that holds pool of lb under from: Same: the
// oldest of bindings that uses it and is not being deleted (creation time,
// then namespace/name; an uncreated binding is the newest).
func Holder(lb, pool string, bindings []zv1.TargetBinding) types.NamespacedName {
	var uses []*zv1.TargetBinding
	for i := range bindings {
		o := &bindings[i]
		if o.Spec.LoadBalancerRef.Name == lb && o.Spec.Pool == pool && o.DeletionTimestamp.IsZero() {
			uses = append(uses, o)
		}
	}
	if len(uses) == 0 {
		return types.NamespacedName{}
	}
	sort.SliceStable(uses, func(i, j int) bool {
		ti, tj := uses[i].CreationTimestamp, uses[j].CreationTimestamp
		if ti.IsZero() != tj.IsZero() {
			return tj.IsZero()
		}
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		if uses[i].Namespace != uses[j].Namespace {
			return uses[i].Namespace < uses[j].Namespace
		}
		return uses[i].Name < uses[j].Name
	})
	return types.NamespacedName{Namespace: uses[0].Namespace, Name: uses[0].Name}
}

// PoolIndex is the TargetBinding field index of the load balancer and pool
// a binding uses: PoolKey(lb, pool), and PoolKey(lb, "") for every pool of
// lb. The controller registers it (controller.SetupWithManager) for its
// cycles, its pushed verdicts and the admission webhook's grant checks.
const PoolIndex = "zerodrop.dev/loadbalancer-pool"

// PoolKey is the PoolIndex value of pool on lb ("" : every pool of lb).
func PoolKey(lb, pool string) string { return lb + "/" + pool }

// PoolIndexValues is the indexer of PoolIndex.
func PoolIndexValues(o client.Object) []string {
	b, ok := o.(*zv1.TargetBinding)
	if !ok {
		return nil
	}
	return []string{PoolKey(b.Spec.LoadBalancerRef.Name, b.Spec.Pool), PoolKey(b.Spec.LoadBalancerRef.Name, "")}
}

// CheckGrant reads what Granted needs through r (the binding's namespace
// for from: Selector, the cluster's TargetBindings for from: Same) and
// decides. An error means the decision could not be made: callers refuse.
func CheckGrant(ctx context.Context, r client.Reader, lb *zv1.LoadBalancer, b *zv1.TargetBinding) (Grant, error) {
	a, ok := PoolGrant(lb, b.Spec.Pool)
	var nsLabels map[string]string
	var bindings []zv1.TargetBinding
	switch {
	case !ok:
	case a.From == zv1.NamespacesFromSelector:
		var ns corev1.Namespace
		if err := r.Get(ctx, types.NamespacedName{Name: b.Namespace}, &ns); err != nil {
			return Grant{}, fmt.Errorf("get namespace %q: %w", b.Namespace, err)
		}
		nsLabels = ns.Labels
	case a.From == zv1.NamespacesFromSame:
		var list zv1.TargetBindingList
		// Read only, so not copied out of a cache: the controller checks
		// the grant every cycle of every binding. Only the pool's bindings
		// decide, so only they are read, by PoolIndex: listing every
		// binding of the cluster made each cycle cost O(bindings), a
		// fifth of the controller's allocation at 1,000 bindings.
		if err := r.List(ctx, &list, client.MatchingFields{PoolIndex: PoolKey(lb.Name, b.Spec.Pool)}, client.UnsafeDisableDeepCopy); err != nil {
			// A reader without the index (a plain client): list and filter.
			list = zv1.TargetBindingList{}
			if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
				return Grant{}, fmt.Errorf("list TargetBindings: %w", err)
			}
		}
		for _, o := range list.Items {
			if (o.Namespace != b.Namespace || o.Name != b.Name) && o.Spec.LoadBalancerRef.Name == lb.Name && o.Spec.Pool == b.Spec.Pool {
				bindings = append(bindings, o)
			}
		}
	}
	return Granted(lb, b, nsLabels, bindings), nil
}
