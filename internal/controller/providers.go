package controller

import (
	"fmt"
	"sync"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/provider"
)

// ProviderFactory builds the provider for one LoadBalancer.
type ProviderFactory func(lb *zv1.LoadBalancer) (provider.Provider, error)

// Providers builds one provider per LoadBalancer from an explicit map of
// factories (no init-time registration) and keeps it while the
// LoadBalancer's generation is unchanged, so that a provider's memory (for
// example the HAProxy process epochs that reveal a reload) survives cycles.
type Providers struct {
	// Factories maps a provider type to its constructor.
	Factories map[zv1.ProviderType]ProviderFactory

	mu    sync.Mutex
	built map[string]builtProvider
}

type builtProvider struct {
	uid        string
	generation int64
	p          provider.Provider
}

// For returns the provider of lb, building it when lb is new or changed.
func (ps *Providers) For(lb *zv1.LoadBalancer) (provider.Provider, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if b, ok := ps.built[lb.Name]; ok && b.uid == string(lb.UID) && b.generation == lb.Generation {
		return b.p, nil
	}
	f, ok := ps.Factories[lb.Spec.Provider]
	if !ok {
		return nil, fmt.Errorf("LoadBalancer %s: provider %q is not built into this controller", lb.Name, lb.Spec.Provider)
	}
	p, err := f(lb)
	if err != nil {
		return nil, fmt.Errorf("LoadBalancer %s: build %s provider: %w", lb.Name, lb.Spec.Provider, err)
	}
	if ps.built == nil {
		ps.built = map[string]builtProvider{}
	}
	ps.built[lb.Name] = builtProvider{uid: string(lb.UID), generation: lb.Generation, p: p}
	return p, nil
}
