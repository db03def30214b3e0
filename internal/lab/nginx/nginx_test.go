package nginx_test

import (
	"context"
	"io"
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
