package controller

import (
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// addressBook is the controller's memory of which address belongs to which
// target: for each (LoadBalancer, pool), what each binding of the pool
// knows of its targets (the pods it observes, and those it still drains or
// deregisters after they are gone). Every provider call carries the union
// (provider.Pool.Known), so that a provider whose LB knows only addresses
// (HAProxy's server-template slots) maps them back to targets without any
// memory of its own, and an entry whose address nobody knows is an orphan.
//
// After a restart the book is empty until each binding has cycled once;
// orphans are judged only when every binding of the pool has told the book
// recently (orphanDuty, knowWindow).
type addressBook struct {
	mu    sync.Mutex
	pools map[bookKey]map[types.NamespacedName]bookPart
	// where maps a binding to the pool it last told.
	where map[types.NamespacedName]bookKey
}

type bookKey struct{ lb, pool string }

type bookPart struct {
	targets []provider.Target
	at      time.Time
}

// know replaces what binding knows of the targets of pool on lb; a
// binding that moved to another pool or load balancer is dropped from the
// old one.
func (bk *addressBook) know(lb, pool string, binding types.NamespacedName, targets []provider.Target, now time.Time) {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if bk.pools == nil {
		bk.pools = map[bookKey]map[types.NamespacedName]bookPart{}
		bk.where = map[types.NamespacedName]bookKey{}
	}
	k := bookKey{lb, pool}
	if old, ok := bk.where[binding]; ok && old != k {
		bk.dropLocked(old, binding)
	}
	bk.where[binding] = k
	if bk.pools[k] == nil {
		bk.pools[k] = map[types.NamespacedName]bookPart{}
	}
	bk.pools[k][binding] = bookPart{targets: targets, at: now}
}

// forget drops what binding told the book (finalized or gone): addresses
// no other binding knows turn into orphans.
func (bk *addressBook) forget(binding types.NamespacedName) {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if k, ok := bk.where[binding]; ok {
		bk.dropLocked(k, binding)
		delete(bk.where, binding)
	}
}

func (bk *addressBook) dropLocked(k bookKey, binding types.NamespacedName) {
	delete(bk.pools[k], binding)
	if len(bk.pools[k]) == 0 {
		delete(bk.pools, k)
	}
}

// pool returns what a provider call on pool of lb carries: every target
// any binding of the pool knows, in binding order (deterministic).
func (bk *addressBook) pool(lb, pool string) provider.Pool {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	parts := bk.pools[bookKey{lb, pool}]
	owners := make([]types.NamespacedName, 0, len(parts))
	n := 0
	for o, p := range parts {
		owners = append(owners, o)
		n += len(p.targets)
	}
	sort.Slice(owners, func(i, j int) bool { return owners[i].String() < owners[j].String() })
	pl := provider.Pool{Name: pool, Known: make([]provider.Target, 0, n)}
	for _, o := range owners {
		pl.Known = append(pl.Known, parts[o].targets...)
	}
	return pl
}

// toldAt returns when binding last told the book about pool of lb (zero
// if it has not, or told about another pool since).
func (bk *addressBook) toldAt(lb, pool string, binding types.NamespacedName) time.Time {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	return bk.pools[bookKey{lb, pool}][binding].at
}

// size counts the bindings the book holds (for tests of forgetting).
func (bk *addressBook) size() int {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	return len(bk.where)
}

// knowAddresses records the address of every target the binding observes,
// and of every target it still handles on the load balancer after its pod
// is gone (from the memo), and returns them (mine) and what provider calls
// on the pool carry. Called every cycle before Status.
func (r *TargetBindingReconciler) knowAddresses(lb string, b *zv1.TargetBinding, targets []observedTarget, memo map[provider.TargetID]*memo) (mine []provider.Target, pool provider.Pool) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	mine = knownTargets(b, targets, memo, &r.mu)
	r.book.know(lb, b.Spec.Pool, key, mine, r.now())
	return mine, r.book.pool(lb, b.Spec.Pool)
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
	sort.Slice(known, func(i, j int) bool { return known[i].ID < known[j].ID })
	return known
}

// forgetAddresses drops the binding's part of the address book (the
// binding is finalized or gone).
func (r *TargetBindingReconciler) forgetAddresses(key types.NamespacedName) { r.book.forget(key) }

// poolMembers returns the bindings among list that use the pool of lb, are
// not being deleted and were not refused the pool (an ungranted binding
// must not be elected to judge, and so hold up, the pool's orphans), each
// with when it last told the book its addresses for that pool.
func (r *TargetBindingReconciler) poolMembers(list []zv1.TargetBinding, lb, pool string) []poolMember {
	var out []poolMember
	for i := range list {
		b := &list[i]
		if b.Spec.LoadBalancerRef.Name != lb || b.Spec.Pool != pool || !b.DeletionTimestamp.IsZero() || refused(b) {
			continue
		}
		key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
		out = append(out, poolMember{Key: key, Known: r.book.toldAt(lb, pool, key)})
	}
	return out
}
