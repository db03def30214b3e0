package remote_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/haproxy"
	"zerodrop.dev/zerodrop/provider/remote"
)

// Scenario: through the adapter (mutual TLS and a bearer token), the
// controller's calls against a real HAProxy under load: register a target,
// drain it while a request to it is in flight, deregister it.
// Expectation: the capabilities are HAProxy's; the target gets no balanced
// request before Rise checks passed and is Healthy only then; draining
// stops new requests; Deregister while the request is in flight fails with
// a Busy error that errors.Is matches with provider.ErrTargetBusy, naming
// the instance; once the request ends it succeeds and the target is gone.
func TestRoundTripRegisterDrainDeregister(t *testing.T) {
	in := startHAProxy(t, 0)
	w := serveAdapter(t, haproxy.Instance{Name: "haproxy-a", Address: in.Socket()})
	ctx := context.Background()
	if err := w.client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	want := (&haproxy.Provider{}).Capabilities()
	if got := w.client.Capabilities(); got != want {
		t.Fatalf("capabilities through the adapter %+v, want HAProxy's %+v", got, want)
	}

	a := startApp(t, "pod-a")
	pool := provider.Pool{Name: "app", Known: []provider.Target{a.target()}}
	ld := startLoad(t, in.Addr())
	if err := w.client.Register(ctx, pool, a.target()); err != nil {
		t.Fatal(err)
	}
	if err := w.client.Register(ctx, pool, a.target()); err != nil {
		t.Fatalf("Register again (idempotent): %v", err)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		st, err := w.client.Status(ctx, pool)
		if err != nil {
			return false, err.Error()
		}
		ok, reason, msg := st.Healthy("pod-a")
		if ok {
			if n, _ := a.checksBeforeFirstBalanced(); n < testRise {
				t.Fatalf("Healthy after %d passed checks, want %d", n, testRise)
			}
		}
		return ok, reason + ": " + msg
	})
	eventually(t, 30*time.Second, func() (bool, string) { return a.balanced.Load() > 0, "healthy target gets no request" })
	if n, found := a.checksBeforeFirstBalanced(); !found || n < testRise {
		t.Fatalf("first balanced request after %d passed checks, want at least %d", n, testRise)
	}

	// A request held open on pod-a.
	go func() {
		c := &http.Client{Timeout: 60 * time.Second}
		for a.slowActive.Load() == 0 {
			if resp, err := c.Get("http://" + in.Addr() + "/slow"); err == nil {
				resp.Body.Close()
			}
		}
	}()
	eventually(t, 30*time.Second, func() (bool, string) { return a.slowActive.Load() > 0, "no /slow request reached pod-a" })

	if err := w.client.SetDraining(ctx, pool, a.target()); err != nil {
		t.Fatal(err)
	}
	ld.after(t, 2)
	before := a.balanced.Load()
	ld.after(t, 50)
	if got := a.balanced.Load(); got != before {
		t.Fatalf("draining target got %d new requests, want none", got-before)
	}
	st, err := w.client.Status(ctx, pool)
	if ts, ok := on(st, "haproxy-a", "pod-a"); err != nil || !ok || ts.Health != provider.HealthDraining || ts.Sessions < 1 {
		t.Fatalf("status while a request is in flight: %+v %v, want Draining with a session", ts, err)
	}

	err = w.client.Deregister(ctx, pool, a.target())
	if !errors.Is(err, provider.ErrTargetBusy) || provider.CodeOf(err) != provider.CodeBusy || !strings.Contains(err.Error(), "haproxy-a") {
		t.Fatalf("Deregister with a request in flight: %v (code %q), want a Busy error naming haproxy-a", err, provider.CodeOf(err))
	}
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Instance != "haproxy-a" {
		t.Fatalf("Deregister error %#v, want a *provider.Error of instance haproxy-a", err)
	}
	a.release()
	eventually(t, 30*time.Second, func() (bool, string) {
		err := w.client.Deregister(ctx, pool, a.target())
		return err == nil, "Deregister: " + errString(err)
	})
	st, err = w.client.Status(ctx, pool)
	if _, ok := on(st, "haproxy-a", "pod-a"); err != nil || ok {
		t.Fatalf("after Deregister: %v %v, want pod-a gone", st, err)
	}
	if err := w.client.Deregister(ctx, pool, a.target()); err != nil {
		t.Fatalf("Deregister again (idempotent): %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// Scenario: a backend with one server-template slot, taken; a second target
// registered through the adapter, alone and in a batch. Expectation: a
// PoolFull error that errors.Is matches with provider.ErrPoolFull; in the
// batch, the other changes' results are independent.
func TestRoundTripPoolFull(t *testing.T) {
	in := startHAProxy(t, 1)
	w := serveAdapter(t, haproxy.Instance{Name: "haproxy-a", Address: in.Socket()})
	ctx := context.Background()
	a, b := startApp(t, "pod-a"), startApp(t, "pod-b")
	pool := provider.Pool{Name: "app", Known: []provider.Target{a.target(), b.target()}}
	if err := w.client.Register(ctx, pool, a.target()); err != nil {
		t.Fatal(err)
	}
	err := w.client.Register(ctx, pool, b.target())
	if !errors.Is(err, provider.ErrPoolFull) || !strings.Contains(err.Error(), "app") {
		t.Fatalf("Register with every slot taken: %v, want PoolFull naming the pool", err)
	}
	res, err := w.client.Apply(ctx, pool, []remote.Change{{Op: "register", Target: a.target()}, {Op: "register", Target: b.target()}, {Op: "drain", Target: b.target()}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != nil || !errors.Is(res[1], provider.ErrPoolFull) || res[2] != nil {
		t.Fatalf("batch results %v, want [nil PoolFull nil]", res)
	}
}

// Scenario: an adapter with two instances, one of which has no Runtime API
// socket. Expectation: Status reads the other and reports the missing one
// with an Unreachable error naming it (errors.Is provider.ErrUnreachable);
// Register changes the reachable one and fails naming the other.
func TestRoundTripUnreachableInstance(t *testing.T) {
	in := startHAProxy(t, 0)
	w := serveAdapter(t, haproxy.Instance{Name: "haproxy-a", Address: in.Socket()},
		haproxy.Instance{Name: "haproxy-b", Address: filepath.Join(t.TempDir(), "absent.sock")})
	ctx := context.Background()
	a := startApp(t, "pod-a")
	pool := provider.Pool{Name: "app", Known: []provider.Target{a.target()}}
	err := w.client.Register(ctx, pool, a.target())
	if !errors.Is(err, provider.ErrUnreachable) || !strings.Contains(err.Error(), "haproxy-b") || strings.Contains(err.Error(), "haproxy-a") {
		t.Fatalf("Register: %v, want Unreachable naming haproxy-b only", err)
	}
	st, err := w.client.Status(ctx, pool)
	if !errors.Is(err, provider.ErrUnreachable) || len(st.Instances) != 2 || st.Instances[0].Err != nil ||
		provider.CodeOf(st.Instances[1].Err) != provider.CodeUnreachable || st.Instances[1].Instance != "haproxy-b" {
		t.Fatalf("Status: %v %v, want haproxy-a read and haproxy-b Unreachable", st, err)
	}
	if _, ok := on(st, "haproxy-a", "pod-a"); !ok {
		t.Fatalf("Status: %v, want pod-a registered on haproxy-a", st)
	}
	if st.Instances[0].Epoch == "" || st.Instances[0].StartedAt.IsZero() || time.Since(st.Instances[0].StartedAt) > time.Minute {
		t.Fatalf("haproxy-a epoch %q startedAt %s, want both from HAProxy", st.Instances[0].Epoch, st.Instances[0].StartedAt)
	}
	if ok, _, _ := st.Healthy("pod-a"); ok {
		t.Fatal("Healthy with an instance unreachable, want not")
	}
}

// Scenario: clients without the right credentials: a wrong token, no
// token, no client certificate, one of another CA, a server certificate
// the client does not trust. Expectation: every call fails with an error
// (code Unreachable: the adapter cannot be used) that says why; nothing is
// registered.
func TestRoundTripRefusedCredentials(t *testing.T) {
	in := startHAProxy(t, 0)
	w := serveAdapter(t, haproxy.Instance{Name: "haproxy-a", Address: in.Socket()})
	other, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := startApp(t, "pod-a")
	pool := provider.Pool{Name: "app", Known: []provider.Target{a.target()}}
	for _, tc := range []struct {
		name string
		cfg  remote.Config
		says string
	}{
		{"wrong token", remote.Config{Token: staticToken("nope"), TLS: clientTLS(t, w.pki.CA, w.pki.ClientCert, w.pki.ClientKey)}, "bearer token not accepted"},
		{"no token", remote.Config{TLS: clientTLS(t, w.pki.CA, w.pki.ClientCert, w.pki.ClientKey)}, "Authorization: Bearer"},
		{"no client certificate", remote.Config{Token: staticToken(token), TLS: clientTLS(t, w.pki.CA, nil, nil)}, "client certificate is required"},
		{"client certificate of another CA", remote.Config{Token: staticToken(token), TLS: clientTLS(t, w.pki.CA, other.ClientCert, other.ClientKey)}, "not accepted"},
		{"adapter certificate not trusted", remote.Config{Token: staticToken(token), TLS: clientTLS(t, other.CA, w.pki.ClientCert, w.pki.ClientKey)}, "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.URL, tc.cfg.Retries = w.url, -1
			c := newClient(t, tc.cfg)
			if err := c.Start(ctx); !errors.Is(err, provider.ErrUnreachable) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Start: %v, want Unreachable saying %q", err, tc.says)
			}
			if err := c.Register(ctx, pool, a.target()); !errors.Is(err, provider.ErrUnreachable) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Register: %v, want Unreachable saying %q", err, tc.says)
			}
			if got := c.Capabilities(); got != remote.Unknown {
				t.Fatalf("Capabilities of an adapter that refuses us: %+v, want remote.Unknown", got)
			}
		})
	}
	st, err := w.client.Status(ctx, pool)
	if _, ok := on(st, "haproxy-a", "pod-a"); err != nil || ok {
		t.Fatalf("after refused calls: %v %v, want pod-a not registered", st, err)
	}
}

// Scenario: the adapter's port is closed. Expectation: Start and every
// call fail with an Unreachable error naming the adapter's URL, within the
// bounded retries; Status reports one instance, "adapter", unreadable, so
// no target reads as healthy or drained.
func TestAdapterUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	c := newClient(t, remote.Config{URL: url, AllowInsecure: true, Timeout: time.Second})
	ctx := context.Background()
	start := time.Now()
	if err := c.Start(ctx); !errors.Is(err, provider.ErrUnreachable) || !strings.Contains(err.Error(), url) {
		t.Fatalf("Start: %v, want Unreachable naming %s", err, url)
	}
	// Two retries after 100ms and 200ms.
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Start took %s, want the bounded retries (about 300ms)", took)
	}
	st, err := c.Status(ctx, provider.Pool{Name: "app"})
	if !errors.Is(err, provider.ErrUnreachable) || len(st.Instances) != 1 || st.Instances[0].Instance != remote.AdapterInstance || st.NoneRead() != true {
		t.Fatalf("Status: %v %v, want one unreadable instance %q", st, err, remote.AdapterInstance)
	}
	if ok, reason, _ := st.Healthy("pod-a"); ok || reason != "InstanceUnreachable" {
		t.Fatalf("Healthy: %v %s, want false InstanceUnreachable", ok, reason)
	}
	if err := c.SetDraining(ctx, provider.Pool{Name: "app"}, provider.Target{ID: "pod-a", IP: "10.0.0.1", Port: 80}); !errors.Is(err, provider.ErrUnreachable) {
		t.Fatalf("SetDraining: %v, want Unreachable", err)
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, tc := range []struct {
		cfg  remote.Config
		says string
	}{
		{remote.Config{URL: "http://adapter:8080"}, "use https://"},
		{remote.Config{URL: "ftp://adapter"}, `scheme "ftp"`},
		{remote.Config{URL: "https://"}, "no host"},
		{remote.Config{URL: "https://adapter/?x=1"}, "no query"},
	} {
		if _, err := remote.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("New(%q): %v, want an error saying %q", tc.cfg.URL, err, tc.says)
		}
	}
}
