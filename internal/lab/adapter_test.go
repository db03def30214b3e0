package lab

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/lab/labtest"
	"zerodrop.dev/zerodrop/internal/providers"
)

// Scenario: the lab's LoadBalancer turned towards the adapter.
// Expectation: it satisfies the CRD's rules for provider external (no
// instances, spec.external set, https) and the controller's registry
// builds a remote client from it that reads the two lab Secrets.
func TestAdapterLoadBalancer(t *testing.T) {
	lb := adapterLoadBalancer(labLoadBalancer(Target{HAProxy: []HAProxyState{{Name: "haproxy-0", Socket: "/x.sock"}}}), "https://127.0.0.1:9443")
	if lb.Spec.Provider != zv1.ProviderExternal || len(lb.Spec.Instances) != 0 || lb.Spec.External == nil || !strings.HasPrefix(lb.Spec.External.URL, "https://") {
		t.Fatalf("spec %+v breaks the CRD's rules for provider external", lb.Spec)
	}
	if len(lb.Spec.Pools) != 1 || lb.Spec.ReloadGrace == nil {
		t.Fatalf("spec %+v lost the lab's pool grant or reload grace", lb.Spec)
	}
	var secrets []string
	o := providers.Options{
		Secret: func(_ context.Context, ref zv1.SecretReference, key string) ([]byte, error) {
			secrets = append(secrets, ref.Namespace+"/"+ref.Name+"#"+key)
			return []byte("t"), nil
		},
	}
	if _, err := providers.ExternalConfig(o, lb); err == nil || !strings.Contains(err.Error(), "spec.external.tls") {
		t.Fatalf("without a TLS reader: %v, want an error naming spec.external.tls", err)
	}
	o.TLS = func(ref zv1.SecretReference, serverName string) func(context.Context) (*tls.Config, error) {
		secrets = append(secrets, ref.Namespace+"/"+ref.Name)
		return func(context.Context) (*tls.Config, error) { return &tls.Config{}, nil }
	}
	cfg, err := providers.ExternalConfig(o, lb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Token(context.Background()); err != nil || len(secrets) != 2 || secrets[0] != ControllerNamespace+"/"+AdapterTLSSecret ||
		secrets[1] != ControllerNamespace+"/"+AdapterTokenSecret+"#token" {
		t.Fatalf("token read %v (%v), want key token of %s", secrets, err, AdapterTokenSecret)
	}
}

// Scenario: the zerodrop scenario through the adapter: 2 HAProxy
// instances, 1,000 requests/s, rollouts plain, under reload and with the
// reconciler killed. Expectation: as TestZerodropScenarioDropsNothing, no
// failed request.
func TestZerodropAdapterScenarioDropsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lab run")
	}
	labtest.Adapter(t)
	ctx, l, opts := controllerLab(t)
	for _, tc := range []struct {
		fault    Fault
		rollouts int
	}{{FaultNone, 3}, {FaultReload, 2}, {FaultKillController, 2}} {
		res, err := Run(ctx, l.Target(), ZerodropAdapterScenario, RunOptions{
			Rollouts: tc.rollouts, Rate: 1000, Replicas: 3, Settle: 2 * time.Second, Fault: tc.fault, Logger: opts.Logger,
		})
		requireNoneFailed(t, res, err)
		if min := uint64(tc.rollouts) * 10000; res.Requests < min {
			t.Errorf("%s: only %d requests sent, want at least %d", res.Name(), res.Requests, min)
		}
	}
}
