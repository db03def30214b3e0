package nginx_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	zlab "zerodrop.dev/zerodrop/internal/lab"
	lab "zerodrop.dev/zerodrop/internal/lab/nginx"
	"zerodrop.dev/zerodrop/internal/lab/proc"
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
		// Right after a reload: old workers exiting, new ones starting.
		if i%2 == 1 {
			if err := in.Reload(ctx); err != nil {
				t.Fatal(err)
			}
		}
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

// Scenario: the first SYN NGINX sends to a live server is lost (here: the
// server's accept queue is full for 300 ms, and Linux drops a SYN it cannot
// queue; in the lab, any SYN or SYN-ACK lost or held up on a loaded machine
// does the same) and TCP retransmits it 1 s later.
// Expectation: with the lab's proxy_connect_timeout (lab.NGINXConnectTimeout)
// the request succeeds after about 1 s. With 1 s, the lab's value before,
// the timeout raced the retransmission: about half such requests failed
// with 504 ("upstream timed out (110: Connection timed out) while
// connecting to upstream").
func TestLabConnectTimeoutOutlastsALostSYN(t *testing.T) {
	testenv.RequireBinary(t, "nginx")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A request that was answered at once never had its SYN dropped (on a
	// loaded machine NGINX may connect only after the queue was freed):
	// it proves nothing, and another is tried.
	dropped := 0
	for i := 0; dropped < 3; i++ {
		if i == 10 {
			t.Fatalf("only %d of %d requests had their SYN dropped", dropped, i)
		}
		addr, release := startSYNDropper(t)
		in, err := lab.Start(ctx, lab.Config{
			Pools:          []lab.Pool{{Name: "app", Servers: []string{addr}}},
			ConnectTimeout: zlab.NGINXConnectTimeout,
		})
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(300*time.Millisecond, release)
		start := time.Now()
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + in.Addr() + "/")
		took := time.Since(start)
		if err != nil {
			in.Stop()
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		logTail := proc.TailFile(in.ErrorLog(), 1024)
		in.Stop()
		if took < 900*time.Millisecond {
			t.Logf("request %d: answered after %v: its SYN was not dropped", i, took.Round(time.Millisecond))
			continue
		}
		dropped++
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s after %v, want 200 once TCP retransmitted the SYN; error log:\n%s", i, resp.Status, took.Round(time.Millisecond), logTail)
		}
	}
}

// startSYNDropper serves "ok" on a loopback port whose accept queue is full
// until release is called: Linux drops the SYNs that arrive meanwhile, and
// the client's TCP retransmits them after 1 s.
func startSYNDropper(t *testing.T) (addr string, release func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "syn-dropper")
	defer f.Close()
	// Backlog 0 holds one connection: the filler below.
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	filler, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	done, free := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(free) }) }
	go func() {
		defer close(done)
		select {
		case <-free:
		case <-t.Context().Done():
		}
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
		filler.Close()
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		ln.Close()
		<-done
	})
	return ln.Addr().String(), release
}
