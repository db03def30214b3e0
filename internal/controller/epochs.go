package controller

import (
	"sync"
	"time"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// epochs is the controller's memory of each load-balancer instance's
// process: the epoch it last saw and when it first saw a new one. It is
// kept per LoadBalancer name and instance, apart from the providers, so a
// provider rebuilt after an edit of the LoadBalancer forgets no reload
// (A7, A8 of the 2026-12-06 design review); providers only report.
type epochs struct {
	mu   sync.Mutex
	seen map[epochKey]epochSeen
}

type epochKey struct{ lb, instance string }

type epochSeen struct {
	epoch string
	// changedAt is when this process saw the epoch change (zero for the
	// first epoch it saw).
	changedAt time.Time
}

// observe records the epochs of a pool status read of lb and returns the
// instances whose epoch changed since the previous read by any binding (a
// reload or restart: runtime state is lost on a provider with
// VolatileRuntimeState). Each change is returned once per process.
func (e *epochs) observe(lb string, st provider.PoolStatus, now time.Time) (changed []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen == nil {
		e.seen = map[epochKey]epochSeen{}
	}
	for _, in := range st.Instances {
		if in.Err != nil || in.Epoch == "" {
			continue
		}
		k := epochKey{lb, in.Instance}
		prev, ok := e.seen[k]
		switch {
		case !ok:
			e.seen[k] = epochSeen{epoch: in.Epoch}
		case prev.epoch != in.Epoch:
			e.seen[k] = epochSeen{epoch: in.Epoch, changedAt: now}
			changed = append(changed, in.Instance)
		}
	}
	return changed
}

// oldWorkers reports whether a previous process of some instance of lb may
// still send requests: its current process started less than grace ago,
// by the LB's own word (StartedAt, which survives a controller restart) or,
// for an LB that does not say, by when this process saw its epoch change.
func (e *epochs) oldWorkers(lb string, st provider.PoolStatus, grace time.Duration, now time.Time) bool {
	if grace <= 0 {
		return false
	}
	if len(st.StartedWithin(now, grace)) > 0 {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, in := range st.Instances {
		if at := e.seen[epochKey{lb, in.Instance}].changedAt; !at.IsZero() && now.Sub(at) < grace {
			return true
		}
	}
	return false
}

// forget drops what was seen of lb's instances (the LoadBalancer is gone).
func (e *epochs) forget(lb string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.seen {
		if k.lb == lb {
			delete(e.seen, k)
		}
	}
}

// reloadGrace is the LoadBalancer's spec.reloadGrace, else the provider's
// default.
func reloadGrace(lb *zv1.LoadBalancer, p provider.Provider) time.Duration {
	if lb != nil && lb.Spec.ReloadGrace != nil {
		return lb.Spec.ReloadGrace.Duration
	}
	return p.Capabilities().ReloadGrace
}
