package graceful_test

// In-process tests of a Group: shutdown triggered by a context or by SIGUSR1
// (so that the test binary's own SIGTERM handling is left alone).

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"zerodrop.dev/zerodrop/graceful"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

var testClient = &http.Client{Timeout: 10 * time.Second}

func getStatus(url string) (int, error) {
	resp, err := testClient.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func runAsync(ctx context.Context, g *graceful.Group) chan error {
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	return done
}

func waitRun(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(hangGuard):
		t.Fatal("Run did not return")
		return nil
	}
}

func waitReady(t *testing.T, g *graceful.Group) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !g.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hello(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello\n") }

func TestRun_ContextCancel_PhasesInOrder(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	var logMu sync.Mutex
	g, err := graceful.New(graceful.WithoutEnv(), graceful.WithDrainWait(300*time.Millisecond),
		graceful.WithMetrics(reg), graceful.WithSignals(syscall.SIGUSR1),
		graceful.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))))
	if err != nil {
		t.Fatal(err)
	}
	public, admin := listenLocal(t), listenLocal(t)
	adminMux := http.NewServeMux()
	adminMux.Handle("/ready", g.ReadinessHandler())
	g.AddHTTP("public", &http.Server{Handler: http.HandlerFunc(hello)}, public)
	g.AddHTTP("admin", &http.Server{Handler: adminMux}, admin)

	var mu sync.Mutex
	var events []string
	record := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
	g.OnNotReady(func() { record("not_ready") })
	g.OnStop(func() { record("stop") })

	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, g)
	waitReady(t, g)
	if st, err := getStatus("http://" + admin.Addr().String() + "/ready"); err != nil || st != http.StatusOK {
		t.Fatalf("readiness while serving: %d, %v", st, err)
	}
	cancel()
	<-g.NotReady()
	if st, err := getStatus("http://" + admin.Addr().String() + "/ready"); err != nil || st != http.StatusServiceUnavailable {
		t.Errorf("readiness after the shutdown began: %d, %v; want 503", st, err)
	}
	select {
	case <-g.Stopping():
		t.Errorf("stop phase began before the drain wait")
	default:
		if st, err := getStatus("http://" + public.Addr().String() + "/"); err != nil || st != http.StatusOK {
			t.Errorf("public server during the drain wait: %d, %v; want 200", st, err)
		}
	}
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	<-g.Stopping()
	if _, err := getStatus("http://" + public.Addr().String() + "/"); err == nil {
		t.Errorf("public server still serving after Run returned")
	}
	time.Sleep(50 * time.Millisecond) // OnStop hooks run in their own goroutines
	mu.Lock()
	if strings.Join(events, ",") != "not_ready,stop" {
		t.Errorf("hooks ran as %v, want [not_ready stop]", events)
	}
	mu.Unlock()

	if v := gauge(t, reg, "zerodrop_graceful_phase", "phase", "stopped"); len(v) != 1 || v[0] != 1 {
		t.Errorf("zerodrop_graceful_phase{phase=stopped} = %v, want 1", v)
	}
	if v := gauge(t, reg, "zerodrop_graceful_phase", "phase", "serving"); len(v) != 1 || v[0] != 0 {
		t.Errorf("zerodrop_graceful_phase{phase=serving} = %v, want 0", v)
	}
	if v := gauge(t, reg, "zerodrop_graceful_phase_duration_seconds", "phase", "drain_wait"); len(v) != 1 || v[0] <= 0 {
		t.Errorf("zerodrop_graceful_phase_duration_seconds{phase=drain_wait} = %v, want the drain wait's duration", v)
	}
	logMu.Lock()
	defer logMu.Unlock()
	for _, want := range []string{"phase=not_ready", "phase=drain_wait", "outcome=fixed", "phase=stop", "shutdown complete"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// gauge returns the values of gauge name's series with label=value.
func gauge(t *testing.T, reg *prometheus.Registry, name, label, value string) []float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					out = append(out, m.GetGauge().GetValue())
				}
			}
		}
	}
	return out
}

func TestRun_SecondSignal_ForceExitThatReturns_GivesErrForced(t *testing.T) {
	forced := make(chan struct{})
	g, err := graceful.New(graceful.WithoutEnv(), graceful.WithLogger(quietLogger()),
		graceful.WithSignals(syscall.SIGUSR1), graceful.WithDrainWait(10*time.Minute),
		graceful.WithGracePeriod(time.Hour), graceful.WithForceExit(func() { close(forced) }))
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLocal(t)
	g.AddHTTP("public", &http.Server{Handler: http.HandlerFunc(hello)}, ln)
	done := runAsync(context.Background(), g)
	waitReady(t, g)
	syscall.Kill(syscall.Getpid(), syscall.SIGUSR1)
	<-g.NotReady()
	syscall.Kill(syscall.Getpid(), syscall.SIGUSR1)
	if err := waitRun(t, done); !errors.Is(err, graceful.ErrForced) {
		t.Errorf("Run: %v, want ErrForced", err)
	}
	if !isClosed(forced) {
		t.Errorf("ForceExit not called")
	}
	if _, err := getStatus("http://" + ln.Addr().String() + "/"); err == nil {
		t.Errorf("server still serving after a forced end")
	}
}

func TestRun_DrainWaitCutShortToKeepShutdownReserve(t *testing.T) {
	// Grace 1.5 s - margin 0.5 s - reserve 0.5 s leaves 0.5 s for a drain wait
	// configured to 10 minutes.
	var logs bytes.Buffer
	var mu sync.Mutex
	g, err := graceful.New(graceful.WithoutEnv(), graceful.WithSignals(syscall.SIGUSR1),
		graceful.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))),
		graceful.WithDrainWait(10*time.Minute), graceful.WithGracePeriod(1500*time.Millisecond),
		graceful.WithGraceMargin(500*time.Millisecond), graceful.WithShutdownReserve(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	g.AddHTTP("public", &http.Server{Handler: http.HandlerFunc(hello)}, listenLocal(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, g)
	waitReady(t, g)
	cancel()
	if err := waitRun(t, done); err != nil {
		t.Errorf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "drain wait cut short") {
		t.Errorf("log lacks the warning about the cut drain wait:\n%s", logs.String())
	}
}

func TestRun_ServerFailureStopsTheOthers(t *testing.T) {
	g, err := graceful.New(graceful.WithoutEnv(), graceful.WithLogger(quietLogger()),
		graceful.WithSignals(syscall.SIGUSR1), graceful.WithDrainWait(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	broken, healthy := listenLocal(t), listenLocal(t)
	g.AddHTTP("broken", &http.Server{Handler: http.HandlerFunc(hello)}, broken)
	g.AddHTTP("healthy", &http.Server{Handler: http.HandlerFunc(hello)}, healthy)
	done := runAsync(context.Background(), g)
	waitReady(t, g)
	broken.Close() // Serve returns an accept error
	err = waitRun(t, done)
	if err == nil || !strings.Contains(err.Error(), "server broken") {
		t.Errorf("Run: %v, want the broken server's error", err)
	}
	if _, err := getStatus("http://" + healthy.Addr().String() + "/"); err == nil {
		t.Errorf("the healthy server still serves after the other failed")
	}
}

func TestRun_ListenErrorNamesTheServer(t *testing.T) {
	busy := listenLocal(t)
	defer busy.Close()
	g, err := graceful.New(graceful.WithoutEnv(), graceful.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	first := listenLocal(t)
	g.AddHTTP("first", &http.Server{Handler: http.HandlerFunc(hello)}, first)
	g.AddHTTP("admin", &http.Server{Addr: busy.Addr().String()}, nil)
	err = g.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "server admin") {
		t.Fatalf("Run: %v, want a listen error naming server admin", err)
	}
	if _, err := getStatus("http://" + first.Addr().String() + "/"); err == nil {
		t.Errorf("first server's listener left open after the failed start")
	}
}

func TestRun_MisuseIsAnError(t *testing.T) {
	g, _ := graceful.New(graceful.WithoutEnv(), graceful.WithLogger(quietLogger()))
	if err := g.Run(context.Background()); err == nil {
		t.Errorf("Run without servers succeeded")
	}
	if err := g.Run(context.Background()); err == nil {
		t.Errorf("second Run succeeded")
	}
	reg := prometheus.NewRegistry()
	if _, err := graceful.New(graceful.WithoutEnv(), graceful.WithMetrics(reg)); err != nil {
		t.Fatal(err)
	}
	if _, err := graceful.New(graceful.WithoutEnv(), graceful.WithMetrics(reg)); err == nil {
		t.Errorf("two Groups registered their metrics on one registry")
	}
}
