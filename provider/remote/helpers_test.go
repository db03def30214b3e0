package remote_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
	"zerodrop.dev/zerodrop/provider/haproxy"
	"zerodrop.dev/zerodrop/provider/remote"
)

// Health checks of the real-HAProxy tests: fast, with rise > 1 so that
// "passed rise checks" differs from "passed one".
const (
	testInter = 100 * time.Millisecond
	testRise  = 3
	testFall  = 2
	token     = "adapter-test-token"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// app is a backend on 127.0.0.1: /ready answers HAProxy's checks and is
// logged in order with balanced requests; /slow blocks until released.
type app struct {
	name       string
	ip         string
	port       int
	mu         sync.Mutex
	log        []bool // true: a passed check, false: a balanced request
	balanced   atomic.Int64
	slowActive atomic.Int64
	slow       chan struct{}
	once       sync.Once
}

func startApp(t testing.TB, name string) *app {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &app{name: name, ip: "127.0.0.1", port: l.Addr().(*net.TCPAddr).Port, slow: make(chan struct{})}
	srv := &http.Server{Handler: a}
	go srv.Serve(l)
	t.Cleanup(func() { a.release(); srv.Close() })
	return a
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.log = append(a.log, r.URL.Path == "/ready")
	a.mu.Unlock()
	if r.URL.Path == "/ready" {
		return
	}
	a.balanced.Add(1)
	if r.URL.Path == "/slow" {
		a.slowActive.Add(1)
		<-a.slow
		a.slowActive.Add(-1)
	}
	fmt.Fprintln(w, a.name)
}

func (a *app) release() { a.once.Do(func() { close(a.slow) }) }

func (a *app) addr() string { return fmt.Sprintf("%s:%d", a.ip, a.port) }

func (a *app) target() provider.Target {
	return provider.Target{ID: provider.TargetID(a.name), IP: a.ip, Port: a.port,
		Check: provider.HealthCheck{Interval: testInter, Rise: testRise, Fall: testFall}}
}

// checksBeforeFirstBalanced returns how many checks passed before the first
// balanced request, and whether one arrived.
func (a *app) checksBeforeFirstBalanced() (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, check := range a.log {
		if !check {
			return n, true
		}
		n++
	}
	return n, false
}

// startHAProxy runs a real haproxy with backend "app" (HTTP check on
// /ready), `slots` server-template slots (0: dynamic servers) and an always
// healthy static server "anchor" whose /slow does not block.
func startHAProxy(t testing.TB, slots int) *lab.Instance {
	t.Helper()
	testenv.RequireBinary(t, "haproxy")
	anchor := startApp(t, "anchor")
	anchor.release()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{
		Backends: []lab.Backend{{Name: "app", Slots: slots,
			Check:   lab.Check{HTTPPath: "/ready", Interval: testInter, Rise: testRise, Fall: testFall, Timeout: 3 * time.Second},
			Servers: []lab.Server{{Name: "anchor", Addr: anchor.addr()}}}},
		Retries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := in.Stop(); err != nil {
			t.Errorf("stop haproxy: %v", err)
		}
	})
	return in
}

// wired is an adapter serving an HAProxy provider over mutual TLS with a
// bearer token, and a remote client configured to reach it.
type wired struct {
	url    string
	pki    webhook.MutualTLS
	client *remote.Client
}

// serveAdapter serves the HAProxy provider of the given instances
// (name -> Runtime API address) and returns a remote client for it.
func serveAdapter(t testing.TB, instances ...haproxy.Instance) wired {
	t.Helper()
	p, err := haproxy.New(haproxy.Config{Instances: instances, Timeout: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1", "adapter.test"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(m.CA)
	h, err := adapter.New(adapter.Options{Provider: p, Name: "haproxy", Token: []byte(token), ClientCAs: cas, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(m.ServerCert, m.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = adapter.ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }, cas)
	srv.TLS.Certificates = []tls.Certificate{pair}
	srv.Config.ErrorLog = slog.NewLogLogger(quiet.Handler(), slog.LevelWarn)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	w := wired{url: srv.URL, pki: m}
	w.client = newClient(t, remote.Config{URL: srv.URL, Token: staticToken(token), TLS: clientTLS(t, m.CA, m.ClientCert, m.ClientKey)})
	return w
}

func newClient(t testing.TB, cfg remote.Config) *remote.Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	c, err := remote.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func staticToken(tok string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) { return []byte(tok), nil }
}

// clientTLS trusts ca and presents cert/key (none when nil), as the
// controller's TLS Secret reader does.
func clientTLS(t testing.TB, ca, cert, key []byte) func(context.Context) (*tls.Config, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return func(context.Context) (*tls.Config, error) { return cfg, nil }
}

// eventually polls cond every 20ms; the guard only stops a hang.
func eventually(t *testing.T, guard time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not true after %s: %s", guard, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load sends GET path through the frontend from two keep-alive
// connections until the test ends.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup
	done atomic.Int64
}

func startLoad(t *testing.T, addr string) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	for range 2 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			defer c.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if resp, err := c.Get("http://" + addr + "/"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				l.done.Add(1)
			}
		}()
	}
	t.Cleanup(func() { close(l.stop); l.wg.Wait() })
	return l
}

// after waits until n more requests completed.
func (l *load) after(t *testing.T, n int64) {
	t.Helper()
	start := l.done.Load()
	eventually(t, 30*time.Second, func() (bool, string) {
		return l.done.Load()-start >= n, "load makes no progress"
	})
}

// on returns the target's status on the instance named in.
func on(st provider.PoolStatus, in string, id provider.TargetID) (provider.TargetStatus, bool) {
	for _, is := range st.Instances {
		if is.Instance == in {
			ts, ok := is.Targets[id]
			return ts, ok
		}
	}
	return provider.TargetStatus{}, false
}
