package haproxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
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
	at     time.Time
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
	e.at = time.Now()
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

func newProvider(t *testing.T, ins ...*lab.Instance) *booked {
	t.Helper()
	var cfg hapi.Config
	for i, in := range ins {
		cfg.Instances = append(cfg.Instances, hapi.Instance{Name: fmt.Sprintf("haproxy-%d", i), Address: in.Socket()})
	}
	p, err := hapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return book(p)
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
func targetOn(t *testing.T, p *booked, id provider.TargetID) (provider.TargetStatus, bool) {
	t.Helper()
	st, err := p.Status(context.Background(), "app")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	ts, ok := st.Instances[0].Targets[id]
	return ts, ok
}

// booked drives a provider the way the controller does: it owns the
// address book (what each owner knows of a pool's targets, plus what was
// registered or drained through it until deregistered) and passes the
// union with every call as provider.Pool.Known.
type booked struct {
	*hapi.Provider
	mu      sync.Mutex
	owners  map[string]map[string][]provider.Target          // pool -> owner -> targets
	learned map[string]map[provider.TargetID]provider.Target // pool -> ID -> target
}

func book(p *hapi.Provider) *booked {
	return &booked{Provider: p, owners: map[string]map[string][]provider.Target{}, learned: map[string]map[provider.TargetID]provider.Target{}}
}

func (b *booked) pool(name string) provider.Pool {
	b.mu.Lock()
	defer b.mu.Unlock()
	pl := provider.Pool{Name: name}
	owners := make([]string, 0, len(b.owners[name]))
	for o := range b.owners[name] {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	for _, o := range owners {
		pl.Known = append(pl.Known, b.owners[name][o]...)
	}
	for _, t := range b.learned[name] {
		pl.Known = append(pl.Known, t)
	}
	return pl
}

func (b *booked) learn(pool string, t provider.Target) {
	if t.IP == "" || t.Port == 0 || provider.IsOrphan(t.ID) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.learned[pool] == nil {
		b.learned[pool] = map[provider.TargetID]provider.Target{}
	}
	b.learned[pool][t.ID] = provider.Target{ID: t.ID, IP: t.IP, Port: t.Port}
}

// Know replaces what owner knows of pool's targets.
func (b *booked) Know(pool, owner string, ts []provider.Target) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.owners[pool] == nil {
		b.owners[pool] = map[string][]provider.Target{}
	}
	b.owners[pool][owner] = append([]provider.Target(nil), ts...)
}

// Forget drops owner's part of pool's book, and what was learned of it.
func (b *booked) Forget(pool, owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range b.owners[pool][owner] {
		delete(b.learned[pool], t.ID)
	}
	delete(b.owners[pool], owner)
}

func (b *booked) Register(ctx context.Context, pool string, t provider.Target) error {
	b.learn(pool, t)
	return b.Provider.Register(ctx, b.pool(pool), t)
}

func (b *booked) SetDraining(ctx context.Context, pool string, t provider.Target) error {
	b.learn(pool, t)
	return b.Provider.SetDraining(ctx, b.pool(pool), t)
}

func (b *booked) Deregister(ctx context.Context, pool string, t provider.Target) error {
	err := b.Provider.Deregister(ctx, b.pool(pool), t)
	if err == nil {
		b.mu.Lock()
		delete(b.learned[pool], t.ID)
		b.mu.Unlock()
	}
	return err
}

func (b *booked) Status(ctx context.Context, pool string) (provider.PoolStatus, error) {
	return b.Provider.Status(ctx, b.pool(pool))
}
