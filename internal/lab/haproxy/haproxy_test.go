package haproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/testenv"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// countingServer is an HTTP server on 127.0.0.1 that counts health checks
// (GET /ready) and other requests apart.
type countingServer struct {
	addr            string
	checks, serving atomic.Int64
}

func startCountingServer(t *testing.T, name string) *countingServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingServer{addr: l.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			cs.checks.Add(1)
		} else {
			cs.serving.Add(1)
		}
		fmt.Fprintf(w, "%s\n", name)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return cs
}

func get(t *testing.T, c *http.Client, addr string) string {
	t.Helper()
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET through haproxy %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET through haproxy %s: status %d: %s", addr, resp.StatusCode, b)
	}
	return strings.TrimSpace(string(b))
}

func TestStartServesReloadsAndStopsCleanly(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := startCountingServer(t, "static-1")
	in, err := Start(ctx, Config{Backends: []Backend{{
		Name:    "app",
		Check:   Check{HTTPPath: "/ready", Interval: 100 * time.Millisecond, Rise: 1, Fall: 1},
		Servers: []Server{{Name: "static-1", Addr: app.addr}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	httpc := &http.Client{Timeout: 5 * time.Second}

	t.Run("serves through the frontend to a server on loopback", func(t *testing.T) {
		// The static server starts UP (checks on a configured server start
		// from "up"), so the first request already succeeds.
		if got := get(t, httpc, in.Addr()); got != "static-1" {
			t.Fatalf("body %q, want static-1", got)
		}
		if app.serving.Load() == 0 {
			t.Fatal("the backend server saw no request")
		}
	})

	t.Run("runtime API answers at level admin", func(t *testing.T) {
		names, err := in.Client().ShowBackends(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !contains(names, "app") {
			t.Fatalf("backends %v, want app among them", names)
		}
	})

	var oldWorker int
	t.Run("reload starts a new worker, loses runtime servers, keeps serving", func(t *testing.T) {
		c := in.Client()
		other := startCountingServer(t, "dynamic-1")
		if err := c.AddServer(ctx, "app", "dynamic-1", other.addr, hapiOpts()); err != nil {
			t.Fatal(err)
		}
		_, oldWorker = in.Pids()
		if err := in.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		master, worker := in.Pids()
		if worker == oldWorker {
			t.Fatalf("worker pid %d unchanged by reload", worker)
		}
		if !in.Alive(master) {
			t.Fatalf("master %d gone after reload", master)
		}
		states, err := c.ShowServersState(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range states {
			if s.Name == "dynamic-1" {
				t.Fatalf("runtime server survived the reload: %+v", s)
			}
		}
		if got := get(t, httpc, in.Addr()); got != "static-1" {
			t.Fatalf("after reload: body %q, want static-1", got)
		}
	})

	t.Run("stop leaves no process and no directory", func(t *testing.T) {
		master, worker := in.Pids()
		dir := in.Dir()
		if err := in.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, pid := range []int{master, worker, oldWorker} {
			if in.Alive(pid) {
				t.Errorf("haproxy process %d still running after Stop", pid)
			}
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("directory %s still exists after Stop (stat: %v)", dir, err)
		}
		if err := in.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

func TestStartRejectsBadConfigWithoutRunningAnything(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	ctx := context.Background()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"static balance cannot take runtime servers", Config{Backends: []Backend{{Name: "app", Balance: "source"}}}, "not dynamic"},
		{"backend name with a space", Config{Backends: []Backend{{Name: "my app"}}}, "name"},
		{"server address without port", Config{Backends: []Backend{{Name: "app", Servers: []Server{{Name: "s", Addr: "127.0.0.1"}}}}}, "address"},
		{"haproxy refuses the listen address", Config{Backends: []Backend{{Name: "app", Listen: "192.0.2.1:1"}}}, "exited"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.cfg.Dir = dir
			tc.cfg.StartTimeout = 10 * time.Second
			in, err := Start(ctx, tc.cfg)
			if err == nil {
				in.Stop()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestRenderWritesWhatTheLabPromises(t *testing.T) {
	text, err := Render(Config{
		Retries: -1, Redispatch: true,
		Backends: []Backend{{Name: "app", Listen: "127.0.0.1:8080", Check: Check{HTTPPath: "/ready", Interval: 500 * time.Millisecond, Rise: 5, Fall: 2}}},
	}, "/tmp/x/admin.sock")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"stats socket /tmp/x/admin.sock mode 600 level admin expose-fd listeners",
		"retries 0", "option redispatch", "option idle-close-on-response", "bind 127.0.0.1:8080", "balance roundrobin",
		"option httpchk GET /ready", "default-server inter 500ms rise 5 fall 2",
		// Verdicts pushed to the provider's Watch (docs/haproxy.md).
		"ring zerodrop", "format timed", "option log-health-checks", "log ring@zerodrop local0",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hapiOpts() hapi.ServerOptions {
	return hapi.ServerOptions{Check: true, Inter: 100 * time.Millisecond, Rise: 1, Fall: 1}
}

// Scenario: the process that started haproxy is gone (crash, Ctrl-C) and
// `lab down` cleans up from the directory alone.
func TestStopDirStopsAnOrphanedHAProxy(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	dir := t.TempDir()
	in, err := Start(context.Background(), Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	master, worker := in.Pids()
	if err := StopDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{master, worker} {
		deadline := time.Now().Add(10 * time.Second)
		for in.Alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still running after StopDir", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := StopDir(dir); err != nil {
		t.Fatalf("second StopDir: %v", err)
	}
	if err := StopDir(t.TempDir()); err != nil {
		t.Fatalf("StopDir without a pid file: %v", err)
	}
}

// Scenario: a backend with two slots, one filled at runtime (address set,
// in rotation); HAProxy is reloaded from "another process" with
// ReloadMaster given only the recorded master pid, executable, socket and
// state file. Expectation: the rendered config has the slot template and
// the state-file lines; a new worker answers; the filled slot kept its
// address and serves at once, the empty one is still free; ReloadMaster
// refuses a pid that does not run haproxy.
func TestReloadMasterKeepsSlots(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	app := startCountingServer(t, "pod-a")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := Start(ctx, Config{Backends: []Backend{{Name: "app", Slots: 2, Check: Check{HTTPPath: "/ready", Interval: 100 * time.Millisecond}}}, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	cfg, err := os.ReadFile(in.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{SlotTemplate(2), "server-state-file " + in.StateFile(), "load-server-state-from-file global"} {
		if !strings.Contains(string(cfg), want) {
			t.Fatalf("config lacks %q:\n%s", want, cfg)
		}
	}
	c := in.Client()
	host, port, _ := net.SplitHostPort(app.addr)
	var p int
	fmt.Sscan(port, &p)
	slot := SlotPrefix + "1"
	if err := c.SetServerAddr(ctx, "app", slot, host, p); err != nil {
		t.Fatal(err)
	}
	if err := c.SetServerState(ctx, "app", slot, hapi.StateReady); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for app.serving.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the filled slot never served")
		}
		if resp, err := hc.Get("http://" + in.Addr() + "/"); err == nil {
			resp.Body.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}

	master, oldWorker := in.Pids()
	if err := ReloadMaster(ctx, os.Getpid(), in.Binary(), in.Socket(), in.StateFile()); err == nil {
		t.Fatal("ReloadMaster signalled a pid that does not run haproxy")
	}
	if err := ReloadMaster(ctx, master, in.Binary(), in.Socket(), in.StateFile()); err != nil {
		t.Fatal(err)
	}
	info, err := c.ShowInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pid == oldWorker {
		t.Fatalf("worker %d still answers after ReloadMaster", info.Pid)
	}
	in.mu.Lock()
	in.workers[info.Pid] = true // for Stop's wait
	in.mu.Unlock()
	states, err := c.ShowServersState(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		switch s.Name {
		case slot:
			if got := net.JoinHostPort(s.Addr, fmt.Sprint(s.Port)); got != app.addr || !s.Up() || s.Admin.Maint() {
				t.Fatalf("slot %s after reload: %s oper %d admin %#x, want %s UP", slot, got, s.Oper, s.Admin, app.addr)
			}
		case SlotPrefix + "2":
			if !hapi.SlotFree(s) {
				t.Fatalf("empty slot after reload: %+v, want free", s)
			}
		}
	}
	if got := get(t, hc, in.Addr()); got != "pod-a" {
		t.Fatalf("after reload the frontend answered %q, want pod-a", got)
	}
}
