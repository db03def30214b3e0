package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// ProviderFactory builds the provider for one LoadBalancer.
type ProviderFactory = func(lb *zv1.LoadBalancer) (provider.Provider, error)

// Providers builds one provider per LoadBalancer from an explicit map of
// factories (no init-time registration) and keeps it while the
// LoadBalancer's generation is unchanged, so that a provider's memory (for
// example the HAProxy process epochs that reveal a reload) survives cycles.
//
// When an edit removes an instance or changes how it is reached (socket,
// address, TLS), the old instance still holds the servers the controller
// put there, in rotation. So For keeps the old instance is kept as a
// retired instance, with a provider of its own built from the old spec,
// until every binding of the LoadBalancer has drained and deregistered
// its targets there (TargetBindingReconciler.retire).
type Providers struct {
	// Factories maps a provider type to its constructor.
	Factories map[zv1.ProviderType]ProviderFactory
	// OnEvent, when set, receives the events of every built provider that
	// pushes verdicts (verdicts.go), from the watch's goroutines. Set it
	// before the first For.
	OnEvent func(lb string, ev provider.Event)

	mu      sync.Mutex
	built   map[string]builtProvider
	retired map[string][]*retiredInstance
}

type builtProvider struct {
	uid        string
	generation int64
	spec       *zv1.LoadBalancerSpec
	p          provider.Provider
	watch      *verdictWatch // nil: not watched
}

// retiredInstance is an instance an edit took out of a LoadBalancer, still
// to be emptied of the bindings' targets.
type retiredInstance struct {
	// name is the instance's name; how is its old socket or address.
	name, how string
	p         provider.Provider
	// since is when a binding first handled it (zero before).
	since time.Time
	// done holds the bindings with nothing left on the instance.
	done map[types.NamespacedName]bool
}

// For returns the provider of lb, building it when lb is new or changed.
func (ps *Providers) For(lb *zv1.LoadBalancer) (provider.Provider, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	old, had := ps.built[lb.Name]
	if had && old.uid == string(lb.UID) && old.generation == lb.Generation {
		return old.p, nil
	}
	f, ok := ps.Factories[lb.Spec.Provider]
	if !ok {
		return nil, fmt.Errorf("LoadBalancer %s: provider %q is not built into this controller", lb.Name, lb.Spec.Provider)
	}
	p, err := f(lb)
	if err != nil {
		return nil, fmt.Errorf("LoadBalancer %s: build %s provider: %w", lb.Name, lb.Spec.Provider, err)
	}
	if err := start(p); err != nil {
		return nil, fmt.Errorf("LoadBalancer %s: start %s provider: %w", lb.Name, lb.Spec.Provider, err)
	}
	if had {
		old.watch.stop()
		stop(old.p) // its memory is the controller's: nothing is lost
	}
	if ps.built == nil {
		ps.built = map[string]builtProvider{}
	}
	if had && old.uid == string(lb.UID) && old.spec != nil {
		ps.retireLocked(lb, old.spec, f)
	}
	ps.built[lb.Name] = builtProvider{uid: string(lb.UID), generation: lb.Generation, spec: lb.Spec.DeepCopy(), p: p, watch: ps.watch(lb.Name, p)}
	return p, nil
}

// retireLocked records the instances of the old spec that lb's new spec
// removed or reaches differently, each with a provider built from the old
// spec restricted to it.
func (ps *Providers) retireLocked(lb *zv1.LoadBalancer, old *zv1.LoadBalancerSpec, f ProviderFactory) {
	now := map[string]zv1.LoadBalancerInstance{}
	for _, in := range lb.Spec.Instances {
		now[in.Name] = in
	}
	for _, in := range old.Instances {
		if cur, ok := now[in.Name]; ok && sameEndpoint(cur, in) {
			continue
		}
		one := &zv1.LoadBalancer{ObjectMeta: lb.ObjectMeta, Spec: *old.DeepCopy()}
		one.Spec.Instances = []zv1.LoadBalancerInstance{in}
		p, err := f(one)
		if err != nil || start(p) != nil {
			continue // cannot be driven (e.g. refused settings): nothing to do there
		}
		if ps.retired == nil {
			ps.retired = map[string][]*retiredInstance{}
		}
		ps.retired[lb.Name] = append(ps.retired[lb.Name], &retiredInstance{
			name: in.Name, how: endpointOf(in), p: p, done: map[types.NamespacedName]bool{}})
	}
}

func sameEndpoint(a, b zv1.LoadBalancerInstance) bool {
	if a.Socket != b.Socket || a.Address != b.Address || (a.TLS == nil) != (b.TLS == nil) {
		return false
	}
	return a.TLS == nil || *a.TLS == *b.TLS
}

func endpointOf(in zv1.LoadBalancerInstance) string {
	if in.Socket != "" {
		return in.Socket
	}
	return in.Address
}

// Retired returns the instances of LoadBalancer lb that are still being
// emptied.
func (ps *Providers) Retired(lb string) []*retiredInstance {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]*retiredInstance(nil), ps.retired[lb]...)
}

// retiredStart returns when the instance was first handled, recording now
// on the first call.
func (ps *Providers) retiredStart(ri *retiredInstance, now time.Time) time.Time {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ri.since.IsZero() {
		ri.since = now
	}
	return ri.since
}

// retiredDone records that binding has nothing left on the instance, and
// drops the instance once every binding in users has.
func (ps *Providers) retiredDone(lb string, ri *retiredInstance, binding types.NamespacedName, users []types.NamespacedName) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ri.done[binding] = true
	for _, u := range users {
		if !ri.done[u] {
			return false
		}
	}
	list := ps.retired[lb]
	for i := range list {
		if list[i] == ri {
			stop(ri.p)
			ps.retired[lb] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(ps.retired[lb]) == 0 {
		delete(ps.retired, lb)
	}
	return true
}

// Forget drops the provider of a LoadBalancer that is gone, and its
// retired instances.
func (ps *Providers) Forget(lb string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if b, ok := ps.built[lb]; ok {
		b.watch.stop()
		stop(b.p)
	}
	for _, ri := range ps.retired[lb] {
		stop(ri.p)
	}
	delete(ps.built, lb)
	delete(ps.retired, lb)
}

// startTimeout bounds a provider's Start (provider.Lifecycle).
const startTimeout = 30 * time.Second

// start starts a provider that has a lifecycle.
func start(p provider.Provider) error {
	l, ok := p.(provider.Lifecycle)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return l.Start(ctx)
}

// stop closes a provider that has a lifecycle; a close error only loses
// resources the provider held, so it is not returned.
func stop(p provider.Provider) {
	if l, ok := p.(provider.Lifecycle); ok {
		_ = l.Close()
	}
}
