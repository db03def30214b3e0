package nginx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/nginx"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/nginx"
)

// probe is an app on 127.0.0.1 that counts the requests it gets; GET /slow
// blocks until released when hold is set (a long request to keep an old
// NGINX worker busy).
type probe struct {
	name   string
	target provider.Target
	hits   atomic.Int64
	// last is when the latest request other than a held /slow arrived
	// (unix nanoseconds).
	last   atomic.Int64
	hold   bool
	slow   chan struct{}
	active atomic.Int64
	once   sync.Once
}

func startProbe(t *testing.T, name string, hold bool) *probe {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().(*net.TCPAddr)
	p := &probe{name: name, hold: hold, slow: make(chan struct{}),
		target: provider.Target{ID: provider.TargetID(name), IP: a.IP.String(), Port: a.Port}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" && p.hold {
			p.active.Add(1)
			<-p.slow
			p.active.Add(-1)
		} else {
			p.hits.Add(1)
			p.last.Store(time.Now().UnixNano())
		}
		io.WriteString(w, p.name)
	})}
	go srv.Serve(l)
	t.Cleanup(func() {
		p.release()
		srv.Close()
	})
	return p
}

func (p *probe) release() { p.once.Do(func() { close(p.slow) }) }

// rig is real NGINX instances and a provider over them.
type rig struct {
	t         *testing.T
	instances []*lab.Instance
	cfg       nginx.Config
	p         *nginx.Provider
}

func newRig(t *testing.T, n int) *rig { return newRigWith(t, n, 10*time.Second) }

// newRigWith is newRig with the instances' worker_shutdown_timeout: how
// long NGINX lets an old worker keep a request before it cuts it.
func newRigWith(t *testing.T, n int, shutdown time.Duration) *rig {
	t.Helper()
	testenv.RequireBinary(t, "nginx")
	r := &rig{t: t}
	for i := range n {
		in, err := lab.Start(context.Background(), lab.Config{ShutdownTimeout: shutdown})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Stop() })
		r.instances = append(r.instances, in)
		r.cfg.Instances = append(r.cfg.Instances, nginx.Instance{
			Name: fmt.Sprintf("nginx-%c", 'a'+i), UpstreamFile: in.UpstreamFile(), PidFile: in.PidFile(),
		})
	}
	r.cfg.ReloadWait = 500 * time.Millisecond
	r.p = r.fresh()
	return r
}

// fresh builds a new provider over the same instances: no memory.
func (r *rig) fresh() *nginx.Provider {
	p, err := nginx.New(r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

func pool(ps ...*probe) provider.Pool {
	pl := provider.Pool{Name: "app"}
	for _, p := range ps {
		pl.Known = append(pl.Known, p.target)
	}
	return pl
}

func (r *rig) status(pl provider.Pool) provider.PoolStatus {
	r.t.Helper()
	st, err := r.p.Status(context.Background(), pl)
	if err != nil {
		r.t.Fatalf("status: %v", err)
	}
	return st
}

// health returns the target's health on each instance ("-" when absent).
func health(st provider.PoolStatus, id provider.TargetID) []provider.Health {
	var out []provider.Health
	for _, in := range st.Instances {
		ts, ok := in.Targets[id]
		if !ok {
			out = append(out, "-")
			continue
		}
		out = append(out, ts.Health)
	}
	return out
}

func all(hs []provider.Health, h provider.Health) bool {
	for _, x := range hs {
		if x != h {
			return false
		}
	}
	return len(hs) > 0
}

// waitHealth polls Status until the target has h on every instance.
func (r *rig) waitHealth(pl provider.Pool, id provider.TargetID, h provider.Health, within time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	for {
		st := r.status(pl)
		if all(health(st, id), h) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			r.t.Fatalf("%s not %s on every instance after %v: %+v", id, h, within, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get sends one request through an instance and returns the status code
// (0 on a transport error).
func get(addr, path string) int { return getWithin(addr, path, 5*time.Second) }

// getWithin is get with a client timeout. A client that gives up closes its
// connection, and NGINX then drops the request it was proxying: a held
// request must outlive the test's waits.
func getWithin(addr, path string, timeout time.Duration) int {
	c := http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func isUnreachable(err error) bool { return errors.Is(err, provider.ErrUnreachable) }
