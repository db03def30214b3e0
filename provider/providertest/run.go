package providertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// verdict is what a promise's check concludes.
type verdict struct {
	outcome Outcome
	detail  string
}

func kept(format string, args ...any) verdict {
	return verdict{Kept, fmt.Sprintf(format, args...)}
}

func broken(format string, args ...any) verdict {
	return verdict{Broken, fmt.Sprintf(format, args...)}
}

func skipped(format string, args ...any) verdict {
	return verdict{Skipped, fmt.Sprintf(format, args...)}
}

// run is one promise's check in progress: the providers, targets and
// load it started, and the book of known targets it passes with every
// call (as the controller does), all undone by cleanup.
type run struct {
	h    Harness
	caps provider.Capabilities
	id   string
	// logf receives a line per step; nil for none.
	logf func(format string, args ...any)

	known     map[string]map[provider.TargetID]provider.Target // pool -> ID -> target
	providers []provider.Provider
	targets   []*target
	loads     []*load
	helds     []*held
	// registered lists what to deregister at cleanup, in order.
	registered []registration
}

type registration struct {
	pool string
	t    provider.Target
}

var targetSeq atomic.Int64

func (k *run) log(format string, args ...any) {
	if k.logf != nil {
		k.logf(format, args...)
	}
}

// cycle is how often the kit reads Status while it waits: as the
// controller does while anything is pending, but no faster than the
// provider allows.
func (k *run) cycle() time.Duration { return max(50*time.Millisecond, k.caps.MinStatusInterval) }

// provider builds a fresh provider (and starts it, for a Lifecycle).
func (k *run) provider(ctx context.Context) (provider.Provider, error) {
	return k.start(ctx, k.h.New)
}

func (k *run) start(ctx context.Context, build func() (provider.Provider, error)) (provider.Provider, error) {
	p, err := build()
	if err != nil {
		return nil, fmt.Errorf("build the provider: %w", err)
	}
	if lc, ok := p.(provider.Lifecycle); ok {
		if err := lc.Start(ctx); err != nil {
			return nil, fmt.Errorf("start the provider: %w", err)
		}
	}
	k.providers = append(k.providers, p)
	return p, nil
}

// target starts a kit target answering its checks as told.
func (k *run) target(passing bool) (*target, error) {
	var r [3]byte
	_, _ = rand.Read(r[:])
	id := provider.TargetID(fmt.Sprintf("zdkit-%d-%s", targetSeq.Add(1), hex.EncodeToString(r[:])))
	// The controller sends a binding's health check only to a provider
	// whose checks are configured per target.
	var check provider.HealthCheck
	if k.caps.HealthCheckScope == provider.HealthCheckPerTarget {
		check = k.h.Check
	}
	tg, err := listen(k.h.ListenIP, id, k.h.CheckPath, check, passing)
	if err != nil {
		return nil, err
	}
	k.targets = append(k.targets, tg)
	return tg, nil
}

func (k *run) load() *load {
	l := startLoad(k.h.Frontends)
	k.loads = append(k.loads, l)
	return l
}

// pool returns the pool as every call names it: the targets the kit knows.
func (k *run) pool(name string) provider.Pool {
	pl := provider.Pool{Name: name}
	for _, t := range k.known[name] {
		pl.Known = append(pl.Known, t)
	}
	sort.Slice(pl.Known, func(i, j int) bool { return pl.Known[i].ID < pl.Known[j].ID })
	return pl
}

func (k *run) know(pool string, t provider.Target) {
	if k.known[pool] == nil {
		k.known[pool] = map[provider.TargetID]provider.Target{}
	}
	k.known[pool][t.ID] = t
}

// call bounds one provider call by the harness's timeout.
func (k *run) call(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, k.h.Timeout)
	defer cancel()
	return fn(ctx)
}

func (k *run) register(ctx context.Context, p provider.Provider, pool string, t provider.Target) error {
	k.log("Register %s (%s) in pool %s", t.ID, t.Addr(), pool)
	k.know(pool, t)
	k.remember(pool, t)
	return k.call(ctx, func(ctx context.Context) error { return p.Register(ctx, k.pool(pool), t) })
}

func (k *run) remember(pool string, t provider.Target) {
	for _, r := range k.registered {
		if r.pool == pool && r.t.ID == t.ID {
			return
		}
	}
	k.registered = append(k.registered, registration{pool, t})
}

func (k *run) setDraining(ctx context.Context, p provider.Provider, pool string, t provider.Target) error {
	return k.call(ctx, func(ctx context.Context) error { return p.SetDraining(ctx, k.pool(pool), t) })
}

func (k *run) deregisterOnce(ctx context.Context, p provider.Provider, pool string, t provider.Target) error {
	return k.call(ctx, func(ctx context.Context) error { return p.Deregister(ctx, k.pool(pool), t) })
}

func (k *run) enable(ctx context.Context, p provider.Provider, pool string, t provider.Target) error {
	return k.call(ctx, func(ctx context.Context) error { return p.Enable(ctx, k.pool(pool), t) })
}

func (k *run) status(ctx context.Context, p provider.Provider, pool string) (st provider.PoolStatus, err error) {
	err = k.call(ctx, func(ctx context.Context) error {
		st, err = p.Status(ctx, k.pool(pool))
		return err
	})
	return st, err
}

// deregister drains the target and deregisters it, retrying while the LB
// says it is busy, as the controller does; then the kit forgets it.
func (k *run) deregister(ctx context.Context, p provider.Provider, pool string, t provider.Target) error {
	k.log("drain and deregister %s from pool %s", t.ID, pool)
	if err := k.setDraining(ctx, p, pool, t); err != nil {
		return fmt.Errorf("SetDraining %s: %w", t.ID, err)
	}
	var last error
	err := poll(ctx, k.h.Timeout, k.cycle(), func() (bool, string) {
		last = k.deregisterOnce(ctx, p, pool, t)
		if last == nil {
			return true, ""
		}
		return false, fmt.Sprintf("Deregister %s: %v", t.ID, last)
	})
	if err != nil {
		return err
	}
	delete(k.known[pool], t.ID)
	return nil
}

// waitHealthy reads Status until every instance reports the target
// Healthy, and returns the status that did.
func (k *run) waitHealthy(ctx context.Context, p provider.Provider, pool string, id provider.TargetID) (provider.PoolStatus, error) {
	var st provider.PoolStatus
	err := poll(ctx, k.h.Timeout, k.cycle(), func() (bool, string) {
		var err error
		st, err = k.status(ctx, p, pool)
		if err != nil {
			return false, fmt.Sprintf("Status: %v", err)
		}
		ok, reason, msg := st.Healthy(id)
		return ok, fmt.Sprintf("target %s not Healthy on every instance: %s: %s", id, reason, msg)
	})
	if err == nil {
		k.log("%s Healthy on every instance: %s", id, instancesOf(st, id))
	}
	return st, err
}

// waitArrivals waits until a balanced request reached tg through every
// frontend since mark.
func (k *run) waitArrivals(ctx context.Context, tg *target, mark int) error {
	return poll(ctx, k.h.Timeout, 10*time.Millisecond, func() (bool, string) {
		_, arrived := firstBalanced(tg.since(mark), len(k.h.Frontends))
		var missing []string
		for i, ok := range arrived {
			if !ok {
				missing = append(missing, k.h.Frontends[i])
			}
		}
		return len(missing) == 0, fmt.Sprintf("no request reached %s through frontend(s) %s", tg.t.ID, strings.Join(missing, ", "))
	})
}

// admit registers the target, waits until Status says Healthy on every
// instance (then calls Enable with PromotionExplicit, as the controller
// does) and until requests reach it through every frontend. The load must
// be running.
func (k *run) admit(ctx context.Context, p provider.Provider, tg *target) error {
	mark := tg.mark()
	if err := k.register(ctx, p, k.h.Pool, tg.t); err != nil {
		return fmt.Errorf("Register %s: %w", tg.t.ID, err)
	}
	if _, err := k.waitHealthy(ctx, p, k.h.Pool, tg.t.ID); err != nil {
		return err
	}
	if k.caps.Promotion == provider.PromotionExplicit {
		if err := k.enable(ctx, p, k.h.Pool, tg.t); err != nil {
			return fmt.Errorf("Enable %s: %w", tg.t.ID, err)
		}
	}
	return k.waitArrivals(ctx, tg, mark)
}

// hold holds a request open on tg through one of the frontends.
func (k *run) hold(ctx context.Context, tg *target) (*held, error) {
	h, err := hold(ctx, tg, k.h.Frontends, k.h.Timeout)
	if err != nil {
		return nil, err
	}
	k.log("a request through frontend %d is held open on %s", h.frontend, tg.t.ID)
	k.helds = append(k.helds, h)
	return h, nil
}

// cleanup releases held requests, stops the load, deregisters what the
// check registered (with a fresh provider: the check's may be broken on
// purpose), closes the providers and the targets.
func (k *run) cleanup(ctx context.Context) error {
	for _, h := range k.helds {
		h.tg.release(h.tok)
	}
	for _, l := range k.loads {
		l.halt()
	}
	var errs []error
	if len(k.registered) > 0 {
		p, err := k.provider(ctx)
		if err != nil {
			errs = append(errs, err)
		} else {
			for _, r := range k.registered {
				if err := k.deregister(ctx, p, r.pool, r.t); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, p := range k.providers {
		if lc, ok := p.(provider.Lifecycle); ok {
			if err := lc.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close the provider: %w", err))
			}
		}
	}
	for _, tg := range k.targets {
		tg.close()
	}
	return errors.Join(errs...)
}

// observe reads Status every cycle for d (and at least twice), calling
// each with every status read; it stops at the first verdict each returns.
func (k *run) observe(ctx context.Context, p provider.Provider, pool string, d time.Duration, each func(provider.PoolStatus) *verdict) *verdict {
	end := time.Now().Add(d)
	for i := 0; i < 2 || time.Now().Before(end); i++ {
		st, err := k.status(ctx, p, pool)
		if err != nil {
			v := broken("Status: %v", err)
			return &v
		}
		if v := each(st); v != nil {
			return v
		}
		select {
		case <-ctx.Done():
			v := broken("%v", ctx.Err())
			return &v
		case <-time.After(k.cycle()):
		}
	}
	return nil
}

// checkWindow is how long the kit watches a target it expects nothing
// of: long enough for the LB to have made rise+fall checks and more.
func (k *run) checkWindow() time.Duration {
	return max(time.Second, time.Duration(k.h.Check.Rise+k.h.Check.Fall+2)*k.h.Check.Interval)
}

// instancesOf returns the target's health on each instance, for details.
func instancesOf(st provider.PoolStatus, id provider.TargetID) string {
	var parts []string
	for _, in := range st.Instances {
		switch ts, ok := in.Targets[id]; {
		case in.Err != nil:
			parts = append(parts, fmt.Sprintf("%s: error %v", in.Instance, in.Err))
		case !ok:
			parts = append(parts, in.Instance+": absent")
		default:
			parts = append(parts, fmt.Sprintf("%s: %s(%s, %d sessions)", in.Instance, ts.Health, ts.Reason, ts.Sessions))
		}
	}
	return strings.Join(parts, "; ")
}
