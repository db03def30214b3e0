package haproxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
)

// Check settings of the real-HAProxy tests: fast, so a test takes a second
// or two, with rise > 1 so that "passed rise checks" differs from "passed
// one check".
const (
	testInter = 100 * time.Millisecond
	testRise  = 3
	testFall  = 2
)

// event is one request seen by a probe server, in arrival order.
type event struct {
	check  bool // GET /ready (HAProxy's health check) vs a balanced request
	status int  // the status the probe answered (checks)
}

// probe is an app on 127.0.0.1 that answers health checks on /ready as told
// and logs every request in order, so a test can tell how many checks had
// passed when the first balanced request arrived.
type probe struct {
	name string
	addr string
	ip   string
	port int

	mu     sync.Mutex
	events []event
	// readyStatus is what /ready answers (200 ready, 503 not); hangReady
	// makes /ready block until the probe closes (a check that never ends).
	readyStatus atomic.Int64
	hangReady   atomic.Bool
	slow        chan struct{} // GET /slow blocks until closed
	slowActive  atomic.Int64
	// conns counts the connections open to the probe now (HAProxy's
	// checks and pooled server connections).
	conns  atomic.Int64
	closed chan struct{}
}

func startProbe(t *testing.T, name string) *probe {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().(*net.TCPAddr)
	p := &probe{name: name, addr: a.String(), ip: a.IP.String(), port: a.Port, slow: make(chan struct{}), closed: make(chan struct{})}
	p.readyStatus.Store(200)
	srv := &http.Server{Handler: http.HandlerFunc(p.serve), ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			p.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			p.conns.Add(-1)
		}
	}}
	go srv.Serve(l)
	t.Cleanup(func() {
		close(p.closed)
		p.release()
		srv.Close()
	})
	return p
}

func (p *probe) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ready" {
		if p.hangReady.Load() {
			select {
			case <-r.Context().Done():
			case <-p.closed:
			}
			return
		}
		code := int(p.readyStatus.Load())
		p.log(event{check: true, status: code})
		w.WriteHeader(code)
		return
	}
	p.log(event{status: 200})
	if r.URL.Path == "/slow" {
		p.slowActive.Add(1)
		<-p.slow
		p.slowActive.Add(-1)
	}
	fmt.Fprintln(w, p.name)
}

func (p *probe) log(e event) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

// release ends every blocked /slow request.
func (p *probe) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.slow:
	default:
		close(p.slow)
	}
}

func (p *probe) snapshot() []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event(nil), p.events...)
}

func (p *probe) counts() (checks, balanced int) {
	for _, e := range p.snapshot() {
		if e.check {
			checks++
		} else {
			balanced++
		}
	}
	return
}

func (p *probe) target() provider.Target {
	return provider.Target{ID: provider.TargetID(p.name), IP: p.ip, Port: p.port,
		Check: provider.HealthCheck{Interval: testInter, Rise: testRise, Fall: testFall}}
}

// passesBeforeFirstBalanced returns the length of the run of passed checks
// (200) right before the first balanced request, and whether one arrived.
func passesBeforeFirstBalanced(events []event) (run int, found bool) {
	for _, e := range events {
		if !e.check {
			return run, true
		}
		if e.status == 200 {
			run++
		} else {
			run = 0
		}
	}
	return run, false
}

// startHAProxy runs a real haproxy with backend "app" (HTTP check on
// /ready) whose static server "anchor" is always healthy, so the frontend
// serves while the target under test comes and goes.
func startHAProxy(t *testing.T) (*lab.Instance, *probe) {
	t.Helper()
	testenv.RequireBinary(t, "haproxy")
	anchor := startProbe(t, "anchor")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{
		Backends: []lab.Backend{{
			Name: "app",
			// A long check timeout: a hanging health endpoint keeps its first
			// check pending for seconds, long enough to observe what HAProxy
			// does before any check completed.
			Check:   lab.Check{HTTPPath: "/ready", Interval: testInter, Rise: testRise, Fall: testFall, Timeout: 3 * time.Second},
			Servers: []lab.Server{{Name: "anchor", Addr: anchor.addr}},
		}},
		Retries: -1, // no retry: every refused connection shows
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := in.Stop(); err != nil {
			t.Errorf("stop haproxy: %v", err)
		}
	})
	return in, anchor
}

func newProvider(t *testing.T, ins ...*lab.Instance) *hapi.Provider {
	t.Helper()
	var cfg hapi.Config
	for i, in := range ins {
		cfg.Instances = append(cfg.Instances, hapi.Instance{Name: fmt.Sprintf("haproxy-%d", i), Address: in.Socket()})
	}
	p, err := hapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// load sends GET / through the frontend from a few keep-alive connections
// until stopped, counting answers per worker.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	done    []atomic.Int64 // requests completed, per worker
	failed  atomic.Int64
	lastErr atomic.Value
}

const loadWorkers = 4

func startLoad(t *testing.T, addr string) *load {
	t.Helper()
	l := &load{stop: make(chan struct{}), done: make([]atomic.Int64, loadWorkers)}
	for w := 0; w < loadWorkers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get("http://" + addr + "/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.lastErr.Store(err.Error())
				}
				l.done[w].Add(1)
			}
		}()
	}
	t.Cleanup(l.halt)
	return l
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// waitEveryWorker blocks until every worker completed n more requests: any
// request in flight when it was called has then completed.
func (l *load) waitEveryWorker(t *testing.T, n int64) {
	t.Helper()
	start := make([]int64, loadWorkers)
	for i := range start {
		start[i] = l.done[i].Load()
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		for i := range start {
			if got := l.done[i].Load() - start[i]; got < n {
				return false, fmt.Sprintf("load worker %d completed %d of %d requests", i, got, n)
			}
		}
		return true, ""
	})
}

// eventually polls cond every 10ms; the deadline is only a hang guard.
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
		time.Sleep(10 * time.Millisecond)
	}
}

// targetOn returns the target's status on the first instance.
func targetOn(t *testing.T, p *hapi.Provider, id provider.TargetID) (provider.TargetStatus, bool) {
	t.Helper()
	st, err := p.Status(context.Background(), "app")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	ts, ok := st.Instances[0].Targets[id]
	return ts, ok
}
