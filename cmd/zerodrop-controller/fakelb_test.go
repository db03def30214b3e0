package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"zerodrop.dev/zerodrop/provider"
)

// fakeLB is an in-memory load balancer with two instances for the envtest
// suite: the test decides each target's health and sessions, and the
// controller's calls are recorded. The real HAProxy provider has its own
// tests against a real haproxy.
type fakeLB struct {
	mu        sync.Mutex
	instances []string
	pools     map[string]map[provider.TargetID]*fakeTarget
	calls     []string
	// reads counts Status calls: one per binding cycle.
	reads int
}

type fakeTarget struct {
	t        provider.Target
	health   map[string]provider.Health
	sessions int64
}

func newFakeLB(instances ...string) *fakeLB {
	return &fakeLB{instances: instances, pools: map[string]map[provider.TargetID]*fakeTarget{}}
}

func (f *fakeLB) record(op, pool string, id provider.TargetID) {
	f.calls = append(f.calls, fmt.Sprintf("%s %s/%s", op, pool, id))
}

func (f *fakeLB) Register(_ context.Context, pl provider.Pool, t provider.Target) error {
	pool := pl.Name
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("register", pool, t.ID)
	p := f.pools[pool]
	if p == nil {
		p = map[provider.TargetID]*fakeTarget{}
		f.pools[pool] = p
	}
	ft := p[t.ID]
	if ft == nil {
		ft = &fakeTarget{t: t, health: map[string]provider.Health{}}
		p[t.ID] = ft
	}
	for _, in := range f.instances {
		// As HAProxy's Register: a server out of rotation (drain,
		// maintenance) goes back to ready, with health checks to pass.
		if h, ok := ft.health[in]; !ok || h == provider.HealthDraining || h == provider.HealthDrained {
			ft.health[in] = provider.HealthInitial
		}
	}
	return nil
}

func (f *fakeLB) SetDraining(_ context.Context, pl provider.Pool, t provider.Target) error {
	pool := pl.Name
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("drain", pool, t.ID)
	if ft := f.pools[pool][t.ID]; ft != nil {
		for in := range ft.health {
			ft.health[in] = provider.HealthDraining
			if ft.sessions == 0 {
				ft.health[in] = provider.HealthDrained
			}
		}
	}
	return nil
}

func (f *fakeLB) Deregister(_ context.Context, pl provider.Pool, t provider.Target) error {
	pool := pl.Name
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("deregister", pool, t.ID)
	if ft := f.pools[pool][t.ID]; ft != nil {
		if ft.sessions > 0 {
			return fmt.Errorf("deregister %s: %w", t.ID, provider.ErrTargetBusy)
		}
		delete(f.pools[pool], t.ID)
	}
	return nil
}

func (f *fakeLB) Status(_ context.Context, pl provider.Pool) (provider.PoolStatus, error) {
	pool := pl.Name
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	s := provider.PoolStatus{Pool: pool}
	for _, in := range f.instances {
		is := provider.InstanceStatus{Instance: in, Epoch: "1", Targets: map[provider.TargetID]provider.TargetStatus{}}
		for id, ft := range f.pools[pool] {
			if h, ok := ft.health[in]; ok {
				reason := map[provider.Health]string{provider.HealthHealthy: "L7OK", provider.HealthInitial: "INI",
					provider.HealthUnhealthy: "L7STS", provider.HealthDraining: "DRAIN", provider.HealthDrained: "DRAIN"}[h]
				is.Targets[id] = provider.TargetStatus{Health: h, Reason: reason, Addr: ft.t.Addr(), Sessions: ft.sessions}
			}
		}
		s.Instances = append(s.Instances, is)
	}
	return s, nil
}

// setHealth sets a target's health on one instance ("" = every instance).
func (f *fakeLB) setHealth(pool string, id provider.TargetID, instance string, h provider.Health) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.pools[pool][id]
	if ft == nil {
		return
	}
	for in := range ft.health {
		if instance == "" || in == instance {
			ft.health[in] = h
		}
	}
}

// setSessions sets a target's open sessions; a draining target without
// sessions is drained.
func (f *fakeLB) setSessions(pool string, id provider.TargetID, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.pools[pool][id]
	if ft == nil {
		return
	}
	ft.sessions = n
	for in, h := range ft.health {
		if n == 0 && h == provider.HealthDraining {
			ft.health[in] = provider.HealthDrained
		}
	}
}

func (f *fakeLB) has(pool string, id provider.TargetID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.pools[pool][id]
	return ok
}

func (f *fakeLB) called(op, pool string, id provider.TargetID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := fmt.Sprintf("%s %s/%s", op, pool, id)
	for _, c := range f.calls {
		if c == want {
			return true
		}
	}
	return false
}

// reload drops every target of one instance, as an HAProxy reload drops
// the servers added at runtime.
func (f *fakeLB) reload(instance string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.pools {
		for _, ft := range p {
			delete(ft.health, instance)
		}
	}
}

// registrations counts the register calls for a target.
func (f *fakeLB) registrations(pool string, id provider.TargetID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := fmt.Sprintf("register %s/%s", pool, id)
	n := 0
	for _, c := range f.calls {
		if c == want {
			n++
		}
	}
	return n
}

// statusReads returns how many pool status reads (reconcile cycles) the
// fake has answered.
func (f *fakeLB) statusReads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// callsOf returns the recorded calls of one operation ("register", ...).
func (f *fakeLB) callsOf(op string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, op+" ") {
			out = append(out, c)
		}
	}
	return out
}

// Capabilities: the fake stands in for HAProxy.
func (f *fakeLB) Capabilities() provider.Capabilities {
	return provider.Capabilities{Identity: provider.IdentityName, Promotion: provider.PromotionSelf, HealthCheckScope: provider.HealthCheckPerTarget,
		DrainSignal: provider.DrainSessions, Topology: provider.TopologyInstances, VolatileRuntimeState: true, ActiveHealthChecks: true}
}

// Enable does nothing: PromotionSelf.
func (f *fakeLB) Enable(context.Context, provider.Pool, provider.Target) error { return nil }

// pushingFakeLB is a fakeLB that pushes verdicts (provider.Watcher): both
// instances' streams are up from the start, and the test sends verdict
// events on events.
type pushingFakeLB struct {
	*fakeLB
	events chan provider.Event
}

func (f *pushingFakeLB) Capabilities() provider.Capabilities {
	c := f.fakeLB.Capabilities()
	c.PushesVerdicts = true
	return c
}

func (f *pushingFakeLB) Watch(ctx context.Context, fn func(provider.Event)) error {
	for _, in := range f.instances {
		fn(provider.Event{Kind: provider.EventStreamUp, Instance: in})
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-f.events:
			fn(ev)
		}
	}
}
