package nginx_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// Under steady load through two instances (clients reuse connections, as a
// real client does): once Status says Draining on every instance the
// drained target gets no request, and no client request fails while its
// server is drained and removed.
func TestNoRequestAfterDrainingUnderLoad(t *testing.T) {
	r := newRig(t, 2)
	a := startProbe(t, "pod-a", false)
	b := startProbe(t, "pod-b", false)
	pl := pool(a, b)
	ctx := context.Background()
	for _, p := range []*probe{a, b} {
		if err := r.p.Register(ctx, pl, p.target); err != nil {
			t.Fatal(err)
		}
		r.waitHealth(pl, p.target.ID, provider.HealthHealthy, 20*time.Second)
	}
	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := http.Client{Timeout: 5 * time.Second}
			addr := r.instances[i%2].Addr()
			for {
				select {
				case <-stop:
					return
				case <-time.After(4 * time.Millisecond):
				}
				sent.Add(1)
				resp, err := c.Get("http://" + addr + "/")
				if err != nil {
					failed.Add(1)
					t.Logf("request failed: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Logf("request failed: status %d", resp.StatusCode)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if a.hits.Load() == 0 {
		t.Fatal("pod-a got no request before the drain")
	}
	start := time.Now()
	if err := r.p.SetDraining(ctx, pl, a.target); err != nil {
		t.Fatal(err)
	}
	var told time.Time
	for {
		st := r.status(pl)
		if h := health(st, "pod-a"); all(h, provider.HealthDraining) || all(h, provider.HealthDrained) ||
			(h[0] == provider.HealthDraining || h[0] == provider.HealthDrained) && (h[1] == provider.HealthDraining || h[1] == provider.HealthDrained) {
			told = time.Now()
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("not draining after 30s: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	drained := r.waitHealth(pl, "pod-a", provider.HealthDrained, 30*time.Second)
	if err := r.p.Deregister(ctx, pl, a.target); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if last := time.Unix(0, a.last.Load()); last.After(told) {
		t.Fatalf("pod-a got a request %v after Status said it was draining", last.Sub(told))
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), sent.Load())
	}
	t.Logf("SetDraining -> Draining on both: %v; -> Drained: %v; %d requests, 0 failed; pod-a's last request %v before Draining was reported",
		told.Sub(start).Round(time.Millisecond), (told.Sub(start) + drained).Round(time.Millisecond), sent.Load(), told.Sub(time.Unix(0, a.last.Load())).Round(time.Millisecond))
}

// The cost of the gate on two instances: Register -> Healthy everywhere
// and SetDraining -> Drained (no request held), ten times each. Logged for
// docs/nginx.md; bounded loosely so that a regression shows.
func TestCostOfTheGate(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement (20 reloads per instance); -short skips it")
	}
	r := newRig(t, 2)
	ctx := context.Background()
	var reg, drain []time.Duration
	for i := range 10 {
		p := startProbe(t, "pod-"+string(rune('a'+i)), false)
		pl := pool(p)
		start := time.Now()
		if err := r.p.Register(ctx, pl, p.target); err != nil {
			t.Fatal(err)
		}
		r.waitHealth(pl, p.target.ID, provider.HealthHealthy, 20*time.Second)
		reg = append(reg, time.Since(start))
		start = time.Now()
		if err := r.p.SetDraining(ctx, pl, p.target); err != nil {
			t.Fatal(err)
		}
		r.waitHealth(pl, p.target.ID, provider.HealthDrained, 30*time.Second)
		drain = append(drain, time.Since(start))
		if err := r.p.Deregister(ctx, pl, p.target); err != nil {
			t.Fatal(err)
		}
	}
	q := func(ds []time.Duration) (p50, worst time.Duration) {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond)
	}
	r50, rmax := q(reg)
	d50, dmax := q(drain)
	t.Logf("2 instances, 2 workers each, load margin 100ms: Register -> Healthy p50 %v max %v; SetDraining -> Drained p50 %v max %v", r50, rmax, d50, dmax)
	if rmax > 5*time.Second || dmax > 5*time.Second {
		// A budget for a machine with CPU to spare: on an overloaded one
		// (CI running packages in parallel) `nginx -t` and NGINX's reload
		// wait for a core, and only the bounds above apply.
		if load, ok := loadPerCPU(); ok && load > 2 {
			t.Logf("too slow (register max %v, drain max %v), but the machine is overloaded (load average %.1f per CPU): budget not enforced", rmax, dmax, load)
			return
		}
		t.Fatalf("too slow: register max %v, drain max %v", rmax, dmax)
	}
}

// Two providers (an old and a new leader) registering at once on the same
// instances: the file lock serializes their edits, so no registration is
// lost and every target ends Healthy everywhere.
func TestConcurrentProvidersLoseNoRegistration(t *testing.T) {
	r := newRig(t, 2)
	ctx := context.Background()
	var probes []*probe
	for i := range 8 {
		probes = append(probes, startProbe(t, "pod-"+string(rune('a'+i)), false))
	}
	pl := pool(probes...)
	other := r.fresh()
	var wg sync.WaitGroup
	errs := make(chan error, len(probes))
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prov := r.p
			if i%2 == 1 {
				prov = other
			}
			errs <- prov.Register(ctx, pl, p.target)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range probes {
		r.waitHealth(pl, p.target.ID, provider.HealthHealthy, 20*time.Second)
	}
	st := r.status(pl)
	for _, in := range st.Instances {
		if len(in.Targets) != len(probes) {
			t.Fatalf("%s: %d targets, want %d: %s", in.Instance, len(in.Targets), len(probes), st)
		}
	}
}

// loadPerCPU returns the 1-minute load average divided by the CPUs.
func loadPerCPU() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	l, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, false
	}
	return l / float64(runtime.NumCPU()), true
}
