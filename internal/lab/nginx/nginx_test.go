package nginx_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/nginx"
	"zerodrop.dev/zerodrop/internal/nginxproc"
	"zerodrop.dev/zerodrop/internal/testenv"
)

// Start, proxy to a static server, reload, stop: no process is left.
func TestStartReloadStop(t *testing.T) {
	testenv.RequireBinary(t, "nginx")
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") }))
	defer app.Close()
	ctx := context.Background()
	in, err := lab.Start(ctx, lab.Config{Pools: []lab.Pool{{Name: "app", Servers: []string{strings.TrimPrefix(app.URL, "http://")}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	get := func() string {
		t.Helper()
		resp, err := http.Get("http://" + in.Addr() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get(); got != "app" {
		t.Fatalf("through nginx: got %q, want app", got)
	}
	before, err := in.Workers()
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 2 {
		t.Fatalf("workers: %+v, want 2", before)
	}
	if err := in.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := in.Workers()
	for _, w := range after {
		for _, b := range before {
			if w.PID == b.PID && !w.ShuttingDown {
				t.Fatalf("worker %d of before the reload still current: %+v", w.PID, after)
			}
		}
	}
	if got := get(); got != "app" {
		t.Fatalf("after reload: got %q, want app", got)
	}
	master := in.MasterPID()
	all, _ := in.Workers()
	dir := in.Dir()
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	for _, pid := range append([]int{master}, pids(all)...) {
		if nginxproc.Alive(pid) {
			t.Errorf("pid %d still alive after Stop", pid)
		}
	}
	if _, err := http.Get("http://" + in.Addr() + "/"); err == nil {
		t.Error("listener still answers after Stop")
	}
	if _, err := nginxproc.Read(dir + "/nginx.pid"); err == nil {
		t.Error("pid file still names a master after Stop")
	}
}

func pids(ws []nginxproc.Worker) []int {
	var out []int
	for _, w := range ws {
		out = append(out, w.PID)
	}
	return out
}

// Kill crashes master and workers together: no worker survives it (a
// running master respawns a worker killed under it, and the respawned one
// would keep the listener), so Restart can bind the same address again.
func TestKillLeavesNoWorkerBehind(t *testing.T) {
	testenv.RequireBinary(t, "nginx")
	ctx := context.Background()
	in, err := lab.Start(ctx, lab.Config{Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	for i := range 15 {
		ws, err := in.Workers()
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Kill(); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		// Killed processes close their sockets as they exit: give a
		// loaded machine time.
		for deadline := time.Now().Add(3 * time.Second); ; {
			c, err := net.DialTimeout("tcp", in.Addr(), 200*time.Millisecond)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: %s still accepts connections (workers before: %v)", i, in.Addr(), pids(ws))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := in.Restart(ctx); err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
	}
}
