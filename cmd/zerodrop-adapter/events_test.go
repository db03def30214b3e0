package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/remote"
)

// pushBound is how late a pushed verdict may reach the client after
// HAProxy's own timestamp on it: "tens of milliseconds", with room for a
// loaded CI machine; the measured figure is logged.
const pushBound = 100 * time.Millisecond

// adapterProcess is the adapter binary running as its own process.
type adapterProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startAdapterProcess runs bin with args and waits until it answers
// /healthz on addr.
func startAdapterProcess(t *testing.T, bin, addr string, args ...string) *adapterProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--listen", addr}, args...)...)
	cmd.Stderr = io.Discard
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &adapterProcess{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("adapter process exited before serving: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("adapter process not serving on %s after 20s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL (no shutdown: its streams break).
func (p *adapterProcess) kill(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Errorf("kill adapter process %d: %v", p.cmd.Process.Pid, err)
	}
	<-p.done
}

// buildAdapter builds this command into a temporary directory.
func buildAdapter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "zerodrop-adapter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// checkedApp answers HAProxy's checks on /ready with 200 while passing,
// else 503.
func checkedApp(t *testing.T) (addr *net.TCPAddr, passing *atomic.Bool) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	passing = &atomic.Bool{}
	passing.Store(true)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !passing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr), passing
}

// received is an event and when the watcher got it.
type received struct {
	ev provider.Event
	at time.Time
}

// eventLog collects a watch's events.
type eventLog struct {
	mu  sync.Mutex
	all []received
	new chan struct{}
}

func (l *eventLog) add(ev provider.Event) {
	l.mu.Lock()
	l.all = append(l.all, received{ev, time.Now()})
	l.mu.Unlock()
	select {
	case l.new <- struct{}{}:
	default:
	}
}

// wait returns the first event from index from on that matches, or fails
// after guard.
func (l *eventLog) wait(t *testing.T, from int, guard time.Duration, what string, match func(provider.Event) bool) (received, int) {
	t.Helper()
	deadline := time.After(guard)
	for {
		l.mu.Lock()
		for i := from; i < len(l.all); i++ {
			if match(l.all[i].ev) {
				r := l.all[i]
				l.mu.Unlock()
				return r, i + 1
			}
		}
		l.mu.Unlock()
		select {
		case <-l.new:
		case <-deadline:
			t.Fatalf("no %s within %s; events: %v", what, guard, l.kinds())
		}
	}
}

// find returns the first event from index from on that matches, if any.
func (l *eventLog) find(from int, match func(provider.Event) bool) (received, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.all[from:] {
		if match(r.ev) {
			return r, true
		}
	}
	return received{}, false
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

func (l *eventLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.all {
		out = append(out, fmt.Sprintf("%s/%s/%s/%s", r.ev.Kind, r.ev.Instance, r.ev.Entry, r.ev.Health))
	}
	return out
}

// Scenario: a real HAProxy that logs its verdicts to the event ring, the
// adapter binary running as its own process on a loopback port (bearer
// token from a file), and the controller's remote client watching its
// event stream. Expectation: a registered target's UP verdict reaches the
// client by push within tens of milliseconds of HAProxy's own timestamp;
// the adapter process killed, the watch reports the loss (StreamDown for
// the link and the instance) at once, and a verdict HAProxy reaches
// meanwhile is not pushed; a new adapter process on the same port is
// found again (StreamUp, which tells the controller to read every pool:
// the missed DOWN verdict is then read by polling), and the next verdict
// is pushed again.
func TestAdapterProcessPushesVerdicts(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	bin := buildAdapter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	check := lab.Check{HTTPPath: "/ready", Interval: 100 * time.Millisecond, Rise: 2, Fall: 2, Timeout: time.Second}
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{{Name: "app", Check: check}}, Retries: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	app, passing := checkedApp(t)
	dir := t.TempDir()
	tokPath := filepath.Join(dir, "token")
	if err := os.WriteFile(tokPath, []byte("tok-push\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	args := []string{"--allow-insecure", "--token-file", tokPath, "--haproxy-instance", "haproxy-a=" + in.Socket(), "--lb-timeout", "2s"}
	proc := startAdapterProcess(t, bin, addr, args...)

	c, err := remote.New(remote.Config{URL: "http://" + addr, AllowInsecure: true, Timeout: 2 * time.Second, Retries: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Token:  func(context.Context) ([]byte, error) { return []byte("tok-push"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.Capabilities().PushesVerdicts {
		t.Fatalf("capabilities through the adapter: %+v, want pushesVerdicts", c.Capabilities())
	}
	events := &eventLog{new: make(chan struct{}, 1)}
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- c.Watch(wctx, events.add) }()
	defer func() { stopWatch(); <-watched }()
	streamUp := func(instance string) func(provider.Event) bool {
		return func(ev provider.Event) bool { return ev.Kind == provider.EventStreamUp && ev.Instance == instance }
	}
	_, pos := events.wait(t, 0, 10*time.Second, "StreamUp of the link", streamUp(remote.AdapterInstance))
	_, pos = events.wait(t, pos, 10*time.Second, "StreamUp of haproxy-a", streamUp("haproxy-a"))

	pool := provider.Pool{Name: "app"}
	tg := provider.Target{ID: "pod-a", IP: app.IP.String(), Port: app.Port, Check: provider.HealthCheck{Interval: check.Interval, Rise: check.Rise, Fall: check.Fall}}
	pool.Known = []provider.Target{tg}
	verdict := func(h provider.Health) func(provider.Event) bool {
		return func(ev provider.Event) bool {
			return ev.Kind == provider.EventVerdict && ev.Pool == "app" && ev.Entry == string(tg.ID) && ev.Health == h
		}
	}
	registered := time.Now()
	if err := c.Register(ctx, pool, tg); err != nil {
		t.Fatal(err)
	}
	up, pos := events.wait(t, pos, 10*time.Second, "pushed UP verdict", verdict(provider.HealthHealthy))
	late := up.at.Sub(up.ev.At)
	t.Logf("UP pushed %s after HAProxy's timestamp (%s after Register): %q", late.Round(time.Microsecond), up.at.Sub(registered).Round(time.Millisecond), up.ev.Message)
	if late < 0 || late > pushBound {
		t.Errorf("UP verdict reached the client %s after HAProxy's timestamp, want within %s", late, pushBound)
	}
	if st, err := c.Status(ctx, pool); err != nil || !healthy(st, tg.ID) {
		t.Fatalf("status right after the pushed UP: %v %v, want Healthy", st, err)
	}

	// The adapter dies: the stream is lost, and says so at once.
	killed := time.Now()
	proc.kill(t)
	down, _ := events.wait(t, pos, 5*time.Second, "StreamDown of the link", func(ev provider.Event) bool {
		return ev.Kind == provider.EventStreamDown && ev.Instance == remote.AdapterInstance
	})
	t.Logf("StreamDown %s after the kill: %v", down.at.Sub(killed).Round(time.Millisecond), down.ev.Err)
	events.wait(t, pos, time.Second, "StreamDown of haproxy-a", func(ev provider.Event) bool {
		return ev.Kind == provider.EventStreamDown && ev.Instance == "haproxy-a"
	})
	// A verdict while nobody streams: HAProxy marks the target DOWN.
	passing.Store(false)
	waitFor(t, 10*time.Second, "HAProxy marks pod-a DOWN", func() bool {
		st, err := in.Client().ShowStat(ctx, "app")
		for _, s := range st {
			if err == nil && s.Name == string(tg.ID) {
				return s.Status == "DOWN"
			}
		}
		return false
	})
	missed := events.len()

	// A new adapter process on the same address: the watch finds it by
	// itself (backoff from 100 ms), and polling reads the DOWN it missed.
	restarted := time.Now()
	startAdapterProcess(t, bin, addr, args...)
	back, pos := events.wait(t, missed, 15*time.Second, "StreamUp of the link after the restart", streamUp(remote.AdapterInstance))
	events.wait(t, pos, 10*time.Second, "StreamUp of haproxy-a after the restart", streamUp("haproxy-a"))
	t.Logf("stream back %s after the new process started (down %s in all)", back.at.Sub(restarted).Round(time.Millisecond), back.at.Sub(killed).Round(time.Millisecond))
	if st, err := c.Status(ctx, pool); err != nil || healthy(st, tg.ID) {
		t.Fatalf("status after the restart: %v %v, want pod-a read and not Healthy (the DOWN the stream missed)", st, err)
	}
	if r, found := events.find(missed, verdict(provider.HealthUnhealthy)); found {
		t.Fatalf("the DOWN verdict of a time without stream was pushed after the restart: %q", r.ev.Message)
	}

	// Pushed again.
	passing.Store(true)
	up2, _ := events.wait(t, pos, 10*time.Second, "pushed UP verdict after the restart", verdict(provider.HealthHealthy))
	late = up2.at.Sub(up2.ev.At)
	t.Logf("UP pushed %s after HAProxy's timestamp, after the restart", late.Round(time.Microsecond))
	if late < 0 || late > pushBound {
		t.Errorf("UP verdict after the restart reached the client %s after HAProxy's timestamp, want within %s", late, pushBound)
	}
}

func healthy(st provider.PoolStatus, id provider.TargetID) bool {
	ok, _, _ := st.Healthy(id)
	return ok
}

func waitFor(t *testing.T, guard time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, guard)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
