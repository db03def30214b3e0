package providertest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
	"zerodrop.dev/zerodrop/provider/providertest"
)

// The LB's health check in these tests: fast, with rise > 1 so that "after
// rise passed checks" differs from "after one".
var testCheck = provider.HealthCheck{Interval: 100 * time.Millisecond, Rise: 3, Fall: 2}

// lbSetup is a real HAProxy load balancer of one or more instances, each
// with pool "app" (dynamic servers, or server-template slots) and pool
// "small" of two slots.
type lbSetup struct {
	instances []*lab.Instance
	names     []string
}

func startLB(t *testing.T, n int, slots bool) *lbSetup {
	t.Helper()
	testenv.RequireBinary(t, "haproxy")
	app := lab.Backend{Name: "app", Check: lab.Check{HTTPPath: "/ready", Interval: testCheck.Interval, Rise: testCheck.Rise, Fall: testCheck.Fall, Timeout: time.Second}}
	if slots {
		app.Slots = 16
	} else {
		// A static server that is always healthy: the kit must tell its
		// own targets' requests from the pool's other servers'.
		app.Servers = []lab.Server{{Name: "anchor", Addr: startAnchor(t)}}
	}
	small := lab.Backend{Name: "small", Check: app.Check, Slots: 2}
	s := &lbSetup{}
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{app, small}, Retries: -1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := in.Stop(); err != nil {
				t.Errorf("stop haproxy: %v", err)
			}
		})
		s.instances = append(s.instances, in)
		s.names = append(s.names, fmt.Sprintf("haproxy-%c", 'a'+i))
	}
	return s
}

// startAnchor serves 200 on every path (health checks included).
func startAnchor(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "anchor") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func (s *lbSetup) config(extra ...hapi.Instance) hapi.Config {
	cfg := hapi.Config{Timeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for i, in := range s.instances {
		cfg.Instances = append(cfg.Instances, hapi.Instance{Name: s.names[i], Address: in.Socket()})
	}
	cfg.Instances = append(cfg.Instances, extra...)
	return cfg
}

func (s *lbSetup) newProvider() (provider.Provider, error) { return hapi.New(s.config()) }

// harness describes the setup to the kit: every feature it can exercise.
func (s *lbSetup) harness(t *testing.T) providertest.Harness {
	gone := hapi.Instance{Name: "haproxy-gone", Address: filepath.Join(t.TempDir(), "gone.sock")}
	h := providertest.Harness{
		New:         s.newProvider,
		Pool:        "app",
		CheckPath:   "/ready",
		Check:       testCheck,
		Instances:   len(s.instances),
		LimitedPool: &providertest.LimitedPool{Name: "small", Capacity: 2},
		NewUnreachable: func() (provider.Provider, error) {
			return hapi.New(s.config(gone))
		},
		UnreachableInstance: gone.Name,
		Reload: func(ctx context.Context) error {
			for _, in := range s.instances {
				if err := in.Reload(ctx); err != nil {
					return err
				}
			}
			return nil
		},
		Timeout: 20 * time.Second,
	}
	for _, in := range s.instances {
		fe, err := in.FrontendAddr("app")
		if err != nil {
			t.Fatal(err)
		}
		h.Frontends = append(h.Frontends, fe)
	}
	return h
}

// runKit runs the whole kit and requires every promise kept but the ones
// that do not apply to HAProxy (none, with every harness feature given).
func runKit(t *testing.T, slots bool) {
	s := startLB(t, 2, slots)
	rep := providertest.Run(t, s.harness(t))
	if n := rep.Count(providertest.Skipped); n > 0 {
		t.Errorf("%d promise(s) skipped against HAProxy with every harness feature given", n)
	}
	if len(rep.Results) != len(providertest.Promises()) && !testing.Short() {
		t.Logf("ran %d of %d promises (-run selects)", len(rep.Results), len(providertest.Promises()))
	}
}

// Scenario: the HAProxy provider with dynamic servers (`add server`),
// two instances, keeps every promise of the contract.
func TestHAProxyDynamicServersKeepEveryPromise(t *testing.T) { runKit(t, false) }

// Scenario: the HAProxy provider with server-template slots (identity by
// address, state kept across reloads), two instances, keeps every promise.
func TestHAProxySlotsKeepEveryPromise(t *testing.T) { runKit(t, true) }

// naive registers the way most scripts do (hapi.RegisterNaively): HAProxy
// marks the server UP at once, before any check.
type naive struct {
	*hapi.Provider
	clients []*hapi.Client
}

func (n naive) Register(ctx context.Context, pool provider.Pool, t provider.Target) error {
	opts := hapi.ServerOptions{Check: true, Inter: t.Check.Interval, Rise: t.Check.Rise, Fall: t.Check.Fall}
	for _, c := range n.clients {
		err := hapi.RegisterNaively(ctx, c, pool.Name, string(t.ID), t.Addr(), opts)
		if err != nil && !errors.Is(err, hapi.ErrServerExists) {
			return err
		}
	}
	return nil
}

// earlyDrained reports a draining target Drained while it still has
// sessions: the shortcut that cuts requests in flight.
type earlyDrained struct{ *hapi.Provider }

func (e earlyDrained) Status(ctx context.Context, pool provider.Pool) (provider.PoolStatus, error) {
	st, err := e.Provider.Status(ctx, pool)
	for _, in := range st.Instances {
		for id, ts := range in.Targets {
			if ts.Health == provider.HealthDraining {
				ts.Health, ts.Sessions = provider.HealthDrained, 0
				in.Targets[id] = ts
			}
		}
	}
	return st, err
}

// checkBroken runs the promises against a wrapped provider and requires
// each of them broken: the kit can fail.
func checkBroken(t *testing.T, wrap func(*lbSetup, *hapi.Provider) provider.Provider, ids ...string) {
	s := startLB(t, 1, false)
	h := s.harness(t)
	build := func(cfg hapi.Config) (provider.Provider, error) {
		p, err := hapi.New(cfg)
		if err != nil {
			return nil, err
		}
		return wrap(s, p), nil
	}
	gone := hapi.Instance{Name: h.UnreachableInstance, Address: filepath.Join(t.TempDir(), "gone.sock")}
	h.New = func() (provider.Provider, error) { return build(s.config()) }
	h.NewUnreachable = func() (provider.Provider, error) { return build(s.config(gone)) }
	h.Logf = t.Logf
	suite, err := providertest.NewSuite(h)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := suite.CheckAll(t.Context(), ids...)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.WriteTable(&b)
	t.Logf("\n%s", b.String())
	for _, id := range ids {
		r, ok := rep.Result(id)
		if !ok || r.Outcome != providertest.Broken {
			t.Errorf("%s: %s (%s), want broken", id, r.Outcome, r.Detail)
		}
	}
}

// drainIgnored does nothing on SetDraining: the target stays in rotation.
type drainIgnored struct{ *hapi.Provider }

func (drainIgnored) SetDraining(context.Context, provider.Pool, provider.Target) error { return nil }

// riseIgnored registers every target with rise 1 instead of its own: UP
// after the first passed check.
type riseIgnored struct{ *hapi.Provider }

func (r riseIgnored) Register(ctx context.Context, pool provider.Pool, t provider.Target) error {
	t.Check.Rise = 1
	return r.Provider.Register(ctx, pool, t)
}

// busySwallowed reports success when HAProxy refuses to delete a server
// that still has connections.
type busySwallowed struct{ *hapi.Provider }

func (b busySwallowed) Deregister(ctx context.Context, pool provider.Pool, t provider.Target) error {
	if err := b.Provider.Deregister(ctx, pool, t); err != nil && !errors.Is(err, provider.ErrTargetBusy) {
		return err
	}
	return nil
}

// codeless returns errors without the provider API's codes (plain text),
// as a provider written without package provider's errors would.
type codeless struct{ *hapi.Provider }

func flatten(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(err.Error())
}

func (c codeless) Status(ctx context.Context, pool provider.Pool) (provider.PoolStatus, error) {
	st, err := c.Provider.Status(ctx, pool)
	for i := range st.Instances {
		st.Instances[i].Err = flatten(st.Instances[i].Err)
	}
	return st, flatten(err)
}

func (c codeless) Register(ctx context.Context, pool provider.Pool, t provider.Target) error {
	return flatten(c.Provider.Register(ctx, pool, t))
}

// silentWatch declares pushed verdicts and reports every instance's stream
// up, but pushes no verdict.
type silentWatch struct {
	*hapi.Provider
	instances []string
}

func (w silentWatch) Watch(ctx context.Context, fn func(provider.Event)) error {
	for _, in := range w.instances {
		fn(provider.Event{Kind: provider.EventStreamUp, Instance: in, At: time.Now()})
	}
	<-ctx.Done()
	return ctx.Err()
}

// Scenario: the kit fails a provider that breaks a promise. Each broken
// provider wraps the real HAProxy provider and breaks one thing; the
// promises listed must come out broken.
func TestKitCatchesBrokenProviders(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(*lbSetup, *hapi.Provider) provider.Provider
		want []string
	}{
		{"naive registration (UP before any check)", func(s *lbSetup, p *hapi.Provider) provider.Provider {
			n := naive{Provider: p}
			for _, in := range s.instances {
				n.clients = append(n.clients, in.Client())
			}
			return n
		}, []string{"NoTrafficBeforeChecksPass", "FailingTargetStaysOut"}},
		{"rise 1 instead of the target's", func(_ *lbSetup, p *hapi.Provider) provider.Provider { return riseIgnored{p} },
			[]string{"NoTrafficBeforeChecksPass"}},
		{"Drained while a request is open", func(_ *lbSetup, p *hapi.Provider) provider.Provider { return earlyDrained{p} },
			[]string{"DrainedOnlyWhenIdle"}},
		{"SetDraining ignored", func(_ *lbSetup, p *hapi.Provider) provider.Provider { return drainIgnored{p} },
			[]string{"DrainStopsNewRequests"}},
		{"busy Deregister reported as done", func(_ *lbSetup, p *hapi.Provider) provider.Provider { return busySwallowed{p} },
			[]string{"DeregisterBusy"}},
		{"errors without codes", func(_ *lbSetup, p *hapi.Provider) provider.Provider { return codeless{p} },
			[]string{"UnreachableInstance", "PoolFull"}},
		{"pushed verdicts declared, none pushed", func(s *lbSetup, p *hapi.Provider) provider.Provider { return silentWatch{p, s.names} },
			[]string{"VerdictsPushed"}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkBroken(t, tc.wrap, tc.want...) })
	}
}

// Scenario: an HAProxy instance without the event ring (no `ring`
// section): the provider declares PushesVerdicts, and its watch reports
// the instance's stream down with the reason. Expectation: VerdictsPushed
// is skipped, naming the instance and the missing ring, not broken: the
// controller polls such an instance, as the contract allows.
func TestKitSkipsPushWithoutEventRing(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	app := lab.Backend{Name: "app", Check: lab.Check{HTTPPath: "/ready", Interval: testCheck.Interval, Rise: testCheck.Rise, Fall: testCheck.Fall, Timeout: time.Second},
		Servers: []lab.Server{{Name: "anchor", Addr: startAnchor(t)}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{app}, Retries: -1, NoEventRing: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	s := &lbSetup{instances: []*lab.Instance{in}, names: []string{"haproxy-a"}}
	h := s.harness(t)
	h.LimitedPool = nil
	suite, err := providertest.NewSuite(h)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := suite.CheckAll(t.Context(), "VerdictsPushed")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := rep.Result("VerdictsPushed")
	if r.Outcome != providertest.Skipped || !strings.Contains(r.Detail, "haproxy-a") || !strings.Contains(r.Detail, "no such event ring") {
		t.Fatalf("VerdictsPushed without a ring: %s (%s), want skipped naming haproxy-a and the missing ring", r.Outcome, r.Detail)
	}
}

// declared overrides the capabilities a provider declares.
type declared struct {
	provider.Provider
	caps provider.Capabilities
}

func (d declared) Capabilities() provider.Capabilities { return d.caps }

// Scenario: the promises follow the declared capabilities: a provider
// that declares no active checks and a drain signal Timer is not held to
// the promises those need (skipped, with the reason), and the ones left
// are still checked against the traffic.
func TestKitFollowsDeclaredCapabilities(t *testing.T) {
	s := startLB(t, 1, false)
	h := s.harness(t)
	h.New = func() (provider.Provider, error) {
		p, err := hapi.New(s.config())
		if err != nil {
			return nil, err
		}
		caps := p.Capabilities()
		caps.ActiveHealthChecks, caps.DrainSignal = false, provider.DrainTimer
		return declared{p, caps}, nil
	}
	suite, err := providertest.NewSuite(h)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := suite.CheckAll(t.Context(), "NoTrafficBeforeChecksPass", "FailingTargetStaysOut", "DrainedOnlyWhenIdle", "DeregisterBusy", "Enable")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.WriteTable(&b)
	t.Logf("\n%s", b.String())
	want := map[string]providertest.Outcome{
		"NoTrafficBeforeChecksPass": providertest.Kept,
		"FailingTargetStaysOut":     providertest.Skipped,
		"DrainedOnlyWhenIdle":       providertest.Skipped,
		"DeregisterBusy":            providertest.Skipped,
		"Enable":                    providertest.Kept,
	}
	for id, o := range want {
		if r, _ := rep.Result(id); r.Outcome != o {
			t.Errorf("%s: %s (%s), want %s", id, r.Outcome, r.Detail, o)
		}
	}
}
