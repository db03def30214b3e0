package providertest_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
	"zerodrop.dev/zerodrop/provider/providertest"
	"zerodrop.dev/zerodrop/provider/remote"
)

// behindAdapter serves a new HAProxy provider of cfg through a new adapter
// (bearer token) and returns the controller's client for it: each call is
// an adapter started afresh, which the protocol's statelessness allows.
func behindAdapter(t *testing.T, cfg hapi.Config) (provider.Provider, error) {
	p, err := hapi.New(cfg)
	if err != nil {
		return nil, err
	}
	const token = "kit-token"
	h, err := adapter.New(adapter.Options{Provider: p, Name: "haproxy", Token: []byte(token), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := remote.New(remote.Config{URL: srv.URL, AllowInsecure: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Token: func(context.Context) ([]byte, error) { return []byte(token), nil }})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// Scenario: the HAProxy provider behind the adapter protocol (the
// reference adapter's handler, the controller's remote client), two
// instances with dynamic servers. Expectation: every promise of the
// contract kept through the wire, as in process.
func TestHAProxyBehindTheAdapterKeepsEveryPromise(t *testing.T) {
	s := startLB(t, 2, false)
	h := s.harness(t)
	gone := hapi.Instance{Name: h.UnreachableInstance, Address: filepath.Join(t.TempDir(), "gone.sock")}
	h.New = func() (provider.Provider, error) { return behindAdapter(t, s.config()) }
	h.NewUnreachable = func() (provider.Provider, error) { return behindAdapter(t, s.config(gone)) }
	rep := providertest.Run(t, h)
	if n := rep.Count(providertest.Skipped); n > 0 {
		t.Errorf("%d promise(s) skipped through the adapter with every harness feature given", n)
	}
}
