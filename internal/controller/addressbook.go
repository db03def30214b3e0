package controller

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// knowRecord is what a binding last told a provider's address book.
type knowRecord struct {
	book provider.AddressBook
	lb   string
	pool string
	at   time.Time
}

// owner names a binding in a provider's address book.
func owner(key types.NamespacedName) string { return key.Namespace + "/" + key.Name }

// knowAddresses tells a provider that implements provider.AddressBook (the
// HAProxy provider in slot mode) the address of every target the binding
// observes, and of every target it still handles on the load balancer after
// its pod is gone (from the memo), so that Status reports slots under their
// TargetIDs instead of as orphans, also after a controller restart. Called
// every cycle before Status. A binding that moved to another pool or load
// balancer is forgotten in the old one.
func (r *TargetBindingReconciler) knowAddresses(p provider.Provider, lb string, b *zv1.TargetBinding, targets []observedTarget, memo map[provider.TargetID]*memo) {
	ab, ok := p.(provider.AddressBook)
	if !ok {
		return
	}
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	known := knownTargets(b, targets, memo, &r.mu)
	r.mu.Lock()
	prev, had := r.known[key]
	if r.known == nil {
		r.known = map[types.NamespacedName]knowRecord{}
	}
	r.known[key] = knowRecord{book: ab, lb: lb, pool: b.Spec.Pool, at: r.now()}
	r.mu.Unlock()
	if had && (prev.book != ab || prev.pool != b.Spec.Pool) {
		prev.book.Forget(prev.pool, owner(key))
	}
	ab.Know(b.Spec.Pool, owner(key), known)
}

// knownTargets lists the addresses of the binding's targets: those it
// observes, and those it still handles on the load balancer after their
// pod and endpoint are gone (from the memo, read under mu).
func knownTargets(b *zv1.TargetBinding, targets []observedTarget, memo map[provider.TargetID]*memo, mu *sync.Mutex) []provider.Target {
	seen := map[provider.TargetID]bool{}
	known := make([]provider.Target, 0, len(targets))
	for _, t := range targets {
		if t.IP != "" && t.Port > 0 {
			id := TargetID(b.Namespace, b.Name, t.Key.Name)
			seen[id] = true
			known = append(known, provider.Target{ID: id, IP: t.IP, Port: t.Port})
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, m := range memo {
		if !seen[id] && m.target.IP != "" && m.target.Port > 0 {
			known = append(known, provider.Target{ID: id, IP: m.target.IP, Port: m.target.Port})
		}
	}
	return known
}

// forgetAddresses drops the binding's part of the address book it last
// told (the binding is finalized or gone): addresses no other binding
// knows turn into orphans, which the pool's remaining bindings free after
// the orphan grace.
func (r *TargetBindingReconciler) forgetAddresses(key types.NamespacedName) {
	r.mu.Lock()
	prev, had := r.known[key]
	delete(r.known, key)
	r.mu.Unlock()
	if had {
		prev.book.Forget(prev.pool, owner(key))
	}
}

// poolMembers returns the bindings among list that use the pool of lb, are
// not being deleted and were not refused the pool (an ungranted binding
// must not be elected to judge, and so hold up, the pool's orphans), each
// with when it last told ab its addresses for that pool.
func (r *TargetBindingReconciler) poolMembers(list []zv1.TargetBinding, ab provider.AddressBook, lb, pool string) []poolMember {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []poolMember
	for i := range list {
		b := &list[i]
		if b.Spec.LoadBalancerRef.Name != lb || b.Spec.Pool != pool || !b.DeletionTimestamp.IsZero() || refused(b) {
			continue
		}
		key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
		m := poolMember{Key: key}
		if rec, ok := r.known[key]; ok && rec.book == ab && rec.lb == lb && rec.pool == pool {
			m.Known = rec.at
		}
		out = append(out, m)
	}
	return out
}
