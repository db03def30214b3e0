package haproxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/internal/webhook"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// startTLSLab runs a real haproxy with the mutual-TLS Runtime API, backend
// "app" with slots server-template slots (all in maintenance, unchecked),
// and the given `timeout client` (0: the lab's 30 s).
func startTLSLab(t testing.TB, slots int, timeoutClient time.Duration) (*lab.Instance, webhook.MutualTLS) {
	t.Helper()
	testenv.RequireBinary(t, "haproxy")
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{
		Backends:      []lab.Backend{{Name: "app", Slots: slots}},
		TimeoutClient: timeoutClient,
		AdminTLS:      &lab.AdminTLS{Cert: m.ServerCert, Key: m.ServerKey, CA: m.CA},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	return in, m
}

// countingTLS is a client configuration that counts full handshakes: Go
// calls GetClientCertificate once per handshake in which HAProxy asks for a
// certificate (every one: `verify required`, no resumption).
func countingTLS(t testing.TB, m webhook.MutualTLS, n *atomic.Int64) func(context.Context) (*tls.Config, error) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(m.CA) {
		t.Fatal("no CA certificate in PEM")
	}
	pair, err := tls.X509KeyPair(m.ClientCert, m.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		n.Add(1)
		return &pair, nil
	}}
	return func(context.Context) (*tls.Config, error) { return cfg, nil }
}

func newTLSClient(t testing.TB, in *lab.Instance, cfg func(context.Context) (*tls.Config, error)) *hapi.Client {
	t.Helper()
	c, err := hapi.NewClient(in.AdminTLSAddr())
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 3 * time.Second
	c.TLS = cfg
	t.Cleanup(func() { c.Close() })
	return c
}

func slot(i int) string { return fmt.Sprintf("%s%d", lab.SlotPrefix, i) }

// Scenario: 30 commands (dumps, state changes, a refused command) over the
// mutual-TLS socket, one after the other. Expectation: at most 2 TLS
// handshakes (one connection in prompt mode, reused), and every answer is
// the right one.
func TestTLSCommandsReuseTheConnection(t *testing.T) {
	in, m := startTLSLab(t, 3, 0)
	var handshakes atomic.Int64
	c := newTLSClient(t, in, countingTLS(t, m, &handshakes))
	ctx := context.Background()
	const n = 30
	for i := 0; i < n; i++ {
		switch i % 5 {
		case 0:
			if _, err := c.ShowInfo(ctx); err != nil {
				t.Fatal(err)
			}
		case 1:
			snap, err := c.Snapshot(ctx, "app")
			if err != nil || len(snap.Servers) != 3 {
				t.Fatalf("snapshot: %v, %d servers", err, len(snap.Servers))
			}
		case 2:
			if err := c.SetServerState(ctx, "app", slot(1), hapi.StateDrain); err != nil {
				t.Fatal(err)
			}
		case 3:
			if err := c.SetServerState(ctx, "app", "nope", hapi.StateDrain); err == nil {
				t.Fatal("drain of a missing server succeeded")
			}
		case 4:
			if err := c.SetServerState(ctx, "app", slot(1), hapi.StateMaint); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := handshakes.Load(); got > 2 {
		t.Fatalf("%d commands over TLS cost %d handshakes, want <= 2 (connections reused)", n, got)
	}
	t.Logf("%d commands, %d TLS handshakes", n, handshakes.Load())
}

// Scenario: 8 goroutines share one client over TLS against a backend of 300
// servers: dumps of the whole backend (tens of kilobytes), one-server
// stats and state changes, interleaved. Expectation: every answer belongs
// to its command (300 servers in every dump, the asked server's row in
// every one-server stat), and the handshakes stay well below the commands.
func TestTLSPromptModeInterleavedCommands(t *testing.T) {
	const slots = 300
	in, m := startTLSLab(t, slots, 0)
	var handshakes atomic.Int64
	c := newTLSClient(t, in, countingTLS(t, m, &handshakes))
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	const workers, rounds = 8, 15
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				id := 1 + (w*rounds+r)%slots
				switch r % 3 {
				case 0:
					snap, err := c.Snapshot(ctx, "app")
					if err != nil {
						errs <- err
						return
					}
					if len(snap.Servers) != slots || len(snap.Stats) != slots+1 {
						errs <- fmt.Errorf("snapshot: %d servers, %d stat rows, want %d, %d", len(snap.Servers), len(snap.Stats), slots, slots+1)
						return
					}
				case 1:
					st, found, err := c.ShowServerStat(ctx, "app", id)
					if err != nil || !found || st.Name != slot(id) {
						errs <- fmt.Errorf("show stat app 4 %d: %v, found %v, server %q", id, err, found, st.Name)
						return
					}
				case 2:
					if err := c.SetServerState(ctx, "app", slot(id), hapi.StateDrain); err != nil {
						errs <- err
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// At most 2 connections stay idle, so goroutines beyond those dial;
	// still far fewer handshakes than commands.
	if got := handshakes.Load(); got > workers*rounds/3 {
		t.Errorf("%d commands cost %d handshakes, want at most %d", workers*rounds, got, workers*rounds/3)
	}
	t.Logf("%d commands from %d goroutines: %d TLS handshakes", workers*rounds, workers, handshakes.Load())
}

// Scenario: HAProxy closes idle connections after 300 ms (`timeout
// client`), while the client would keep them 5 s. Expectation: commands
// after the pause, read-only and state-changing alike, succeed on a new
// connection; none fails for the connection HAProxy closed.
func TestTLSPromptConnectionClosedByHAProxy(t *testing.T) {
	in, m := startTLSLab(t, 2, 300*time.Millisecond)
	var handshakes atomic.Int64
	c := newTLSClient(t, in, countingTLS(t, m, &handshakes))
	c.IdleTimeout = 5 * time.Second
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.ShowInfo(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(600 * time.Millisecond)
		if err := c.SetServerState(ctx, "app", slot(1), hapi.StateDrain); err != nil {
			t.Fatalf("state change after HAProxy closed the idle connection: %v", err)
		}
		time.Sleep(600 * time.Millisecond)
	}
	if got := handshakes.Load(); got < 2 {
		t.Fatalf("%d handshakes: HAProxy's closes were not noticed", got)
	}
}

// Scenario: the client holds an idle prompt-mode connection, and HAProxy
// is reloaded (a new worker; the old one stops). Expectation: the next
// commands reach the new worker: a state change over TLS is seen on the
// unix socket, and show info names the new worker's pid.
func TestTLSPromptConnectionAcrossReload(t *testing.T) {
	in, m := startTLSLab(t, 2, 0)
	var handshakes atomic.Int64
	c := newTLSClient(t, in, countingTLS(t, m, &handshakes))
	ctx := context.Background()
	before, err := c.ShowInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := in.Reload(rctx); err != nil {
		t.Fatal(err)
	}
	after, err := c.ShowInfo(ctx)
	if err != nil {
		t.Fatalf("show info after reload: %v", err)
	}
	if after.Pid == before.Pid {
		t.Fatalf("show info after reload still from the old worker (pid %d)", before.Pid)
	}
	// Again, with a state change as the first command after the reload.
	if err := in.Reload(rctx); err != nil {
		t.Fatal(err)
	}
	if err := c.SetServerState(ctx, "app", slot(2), hapi.StateDrain); err != nil {
		t.Fatal(err)
	}
	states, err := in.Client().ShowServersState(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Name == slot(2) && s.Admin&hapi.AdminForcedDrain == 0 {
			t.Fatalf("drain over TLS after reload not seen on the unix socket: %+v", s)
		}
	}
	t.Logf("3 commands across 2 reloads: %d TLS handshakes", handshakes.Load())
}

// BenchmarkRuntimeAPILatency measures one state change (`set server ...
// state drain|ready`, a drain gate's command) over the unix socket, over
// TLS with a new connection per command, and over TLS reusing the
// prompt-mode connection, in one run; each reports its median and p99.
// Run: go test -run XXX -bench RuntimeAPILatency ./provider/haproxy/
func BenchmarkRuntimeAPILatency(b *testing.B) {
	in, m := startTLSLab(b, 2, 0)
	var handshakes atomic.Int64
	modes := []struct {
		name string
		c    func() *hapi.Client
	}{
		{"unix", func() *hapi.Client { return in.Client() }},
		{"tls-new-connection", func() *hapi.Client {
			c := newTLSClient(b, in, countingTLS(b, m, &handshakes))
			c.Close() // a closed pool keeps nothing: one connection per command
			return c
		}},
		{"tls-reused", func() *hapi.Client { return newTLSClient(b, in, countingTLS(b, m, &handshakes)) }},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			c := mode.c()
			ctx := context.Background()
			d := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				st := hapi.StateDrain
				if i%2 == 1 {
					st = hapi.StateReady
				}
				start := time.Now()
				if err := c.SetServerState(ctx, "app", slot(1), st); err != nil {
					b.Fatal(err)
				}
				d = append(d, time.Since(start))
			}
			b.StopTimer()
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			p50, p99 := d[len(d)/2], d[min(len(d)-1, len(d)*99/100)]
			b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
		})
	}
}
