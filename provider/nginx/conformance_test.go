package nginx_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/nginx"
	"zerodrop.dev/zerodrop/provider/providertest"
)

// The conformance kit against two real NGINX instances: every promise that
// applies to NGINX open source is kept. With no active health checks the
// two promises about failing checks do not apply; the unreachable instance
// is one whose upstream file's directory and pid file do not exist.
func TestConformance(t *testing.T) {
	// The kit holds requests open through drains for as long as its
	// checks take; on a loaded machine that can pass NGINX's 10 s the
	// other tests use, and NGINX would then cut them.
	r := newRigWith(t, 2, 2*time.Minute)
	// The kit expects a drain to show in the first Status after
	// SetDraining returns: let calls wait out a slow reload.
	r.cfg.ReloadWait = 30 * time.Second
	build := func(extra ...nginx.Instance) func() (provider.Provider, error) {
		return func() (provider.Provider, error) {
			cfg := r.cfg
			cfg.Instances = append(append([]nginx.Instance(nil), r.cfg.Instances...), extra...)
			return nginx.New(cfg)
		}
	}
	gone := filepath.Join(t.TempDir(), "gone")
	h := providertest.Harness{
		New:       build(),
		Pool:      "app",
		Instances: len(r.instances),
		NewUnreachable: build(nginx.Instance{
			Name: "gone", UpstreamFile: filepath.Join(gone, "up.conf"), PidFile: filepath.Join(gone, "nginx.pid"),
		}),
		UnreachableInstance: "gone",
		Reload: func(ctx context.Context) error {
			for _, in := range r.instances {
				if err := in.Reload(ctx); err != nil {
					return err
				}
			}
			return nil
		},
		// A loaded machine forks workers slowly; the kit's waits are
		// bounds, not expectations.
		Timeout: 60 * time.Second,
	}
	for _, in := range r.instances {
		h.Frontends = append(h.Frontends, in.Addr())
	}
	rep := providertest.Run(t, h)
	if n := rep.Count(providertest.Broken); n != 0 {
		t.Fatalf("%d promise(s) broken", n)
	}
	if n := rep.Count(providertest.Kept); n != 11 {
		t.Errorf("%d promises kept, want 11 (14 less the 2 about active health checks and the one about pushed verdicts)", n)
	}
}
