package controller

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"zerodrop.dev/zerodrop/provider"
)

// poolReads shares one Status read of a pool among the bindings of the
// pool: a binding whose cycle comes while a read of its pool is in flight,
// or started less than the share window ago, takes that read instead of
// making its own. So N bindings on one pool cost about one read per window
// instead of N per cycle, in every process (A11 of the design review),
// and a provider's MinStatusInterval is honoured.
//
// A binding never takes a read that started before its own previous
// cycle did, so each binding's view only moves forward; and it takes only a
// read whose Pool.Known held every target it knows now, with the same
// address: a read made without them (right after a controller start, by
// a binding that cycled first) would report this binding's slots as
// orphans, and a deleting pod's target as gone, hence drained. Even a read that
// started before this binding's own last call would be safe: a target the snapshot shows not yet registered is registered again
// (idempotent), one it shows still in rotation is drained again, and
// nothing it shows drained can have been put back since (a deleting pod
// is never registered).
type poolReads struct {
	mu    sync.Mutex
	reads map[bookKey]*poolRead
	// last maps a binding to when its previous read (own or shared)
	// started.
	last map[types.NamespacedName]time.Time
}

type poolRead struct {
	started time.Time
	known   map[provider.TargetID]string // ID -> address, of the read's Pool.Known
	done    chan struct{}
	st      provider.PoolStatus
	err     error
}

// read returns a read of pool on lb that started within window of now:
// the one in flight or recent, else a new one made with p. shared says
// whether it was another binding's.
func (pr *poolReads) read(ctx context.Context, binding types.NamespacedName, mine []provider.Target, lb string, p provider.Provider, pool provider.Pool, window time.Duration, now time.Time,
	do func(context.Context, provider.Provider, provider.Pool) (provider.PoolStatus, error)) (st provider.PoolStatus, err error, shared bool) {
	k := bookKey{lb, pool.Name}
	pr.mu.Lock()
	if pr.reads == nil {
		pr.reads = map[bookKey]*poolRead{}
		pr.last = map[types.NamespacedName]time.Time{}
	}
	prev, seen := pr.last[binding]
	if cur := pr.reads[k]; cur != nil && window > 0 && now.Sub(cur.started) < window && !now.Before(cur.started) && (!seen || cur.started.After(prev)) && cur.covers(mine) {
		pr.last[binding] = cur.started
		pr.mu.Unlock()
		select {
		case <-cur.done:
			if cur.err == nil || cur.st.Instances != nil {
				return cur.st, cur.err, true
			}
			// The sharer's read failed as a whole (its context ended, for
			// one): read for ourselves.
		case <-ctx.Done():
			return provider.PoolStatus{Pool: pool.Name}, ctx.Err(), true
		}
		pr.mu.Lock()
	}
	cur := &poolRead{started: now, done: make(chan struct{}), known: make(map[provider.TargetID]string, len(pool.Known))}
	for _, t := range pool.Known {
		cur.known[t.ID] = t.Addr()
	}
	pr.reads[k] = cur
	pr.last[binding] = now
	pr.mu.Unlock()
	cur.st, cur.err = do(ctx, p, pool)
	close(cur.done)
	return cur.st, cur.err, false
}

// covers reports whether the read knew every target of mine, at its
// address.
func (r *poolRead) covers(mine []provider.Target) bool {
	for _, t := range mine {
		if addr, ok := r.known[t.ID]; !ok || addr != t.Addr() {
			return false
		}
	}
	return true
}

// forget drops what is kept for binding (gone).
func (pr *poolReads) forget(binding types.NamespacedName) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	delete(pr.last, binding)
}

// shareWindow is how long a pool read serves the pool's other bindings:
// half the pending interval (so a gate waits at most that much longer for
// a verdict), and at least the provider's MinStatusInterval.
func (r *TargetBindingReconciler) shareWindow(p provider.Provider) time.Duration {
	return max(r.pending()/2, p.Capabilities().MinStatusInterval)
}
