package controller

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

type lifecycleLB struct {
	worldLB
	started, closed int
}

func (l *lifecycleLB) Start(context.Context) error { l.started++; return nil }
func (l *lifecycleLB) Close() error                { l.closed++; return nil }

// Scenario: a provider with a lifecycle (provider.Lifecycle). Expectation:
// started once when built, closed when an edit of the LoadBalancer
// replaces it (the new one is started), and closed when the LoadBalancer is
// forgotten; a provider is never used before Start.
func TestProvidersStartAndCloseProvidersWithALifecycle(t *testing.T) {
	var built []*lifecycleLB
	ps := &Providers{Factories: map[zv1.ProviderType]ProviderFactory{zv1.ProviderHAProxy: func(*zv1.LoadBalancer) (provider.Provider, error) {
		l := &lifecycleLB{}
		built = append(built, l)
		return l, nil
	}}}
	lb := &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "edge", UID: "u", Generation: 1},
		Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderHAProxy, Instances: []zv1.LoadBalancerInstance{instA}}}
	if _, err := ps.For(lb); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.For(lb); err != nil {
		t.Fatal(err)
	}
	if len(built) != 1 || built[0].started != 1 || built[0].closed != 0 {
		t.Fatalf("first build: %d provider(s), started %d closed %d; want one, started once", len(built), built[0].started, built[0].closed)
	}
	lb.Generation = 2
	if _, err := ps.For(lb); err != nil {
		t.Fatal(err)
	}
	if len(built) != 2 || built[0].closed != 1 || built[1].started != 1 {
		t.Fatalf("after an edit: old closed %d, new started %d; want 1 and 1", built[0].closed, built[1].started)
	}
	ps.Forget("edge")
	if built[1].closed != 1 {
		t.Fatalf("forgotten LoadBalancer: its provider closed %d times, want 1", built[1].closed)
	}
}
