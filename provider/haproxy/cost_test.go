package haproxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// apiMeter is a unix socket in front of an HAProxy Runtime API socket that
// counts what a client costs HAProxy: connections (the Client opens one per
// command, per batch of dumps, or per batch of actions) and the bytes
// HAProxy answers.
type apiMeter struct {
	path  string
	conns atomic.Int64
	bytes atomic.Int64
}

func startAPIMeter(t testing.TB, upstream string) *apiMeter {
	t.Helper()
	m := &apiMeter{path: filepath.Join(t.TempDir(), "meter.sock")}
	l, err := net.Listen("unix", m.path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			m.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u, err := net.Dial("unix", upstream)
				if err != nil {
					return
				}
				defer u.Close()
				go func() {
					// The client's close ends a prompt-mode session.
					io.Copy(u, c)
					u.(*net.UnixConn).CloseWrite()
				}()
				n, _ := io.Copy(c, u)
				m.bytes.Add(n)
			}()
		}
	}()
	return m
}

func (m *apiMeter) read() (conns, bytes int64) { return m.conns.Load(), m.bytes.Load() }

// rolloutCost is what one simulated rollout cost on the Runtime API.
type rolloutCost struct {
	actions                  int
	actionConns, actionBytes int64 // Register, SetDraining, Deregister
	statusConns, statusBytes int64 // the Status read of each cycle
}

func (c rolloutCost) String() string {
	return fmt.Sprintf("%d actions: %d commands, %d bytes (%.1f commands, %.0f bytes per action); Status: %d commands, %d bytes",
		c.actions, c.actionConns, c.actionBytes, float64(c.actionConns)/float64(c.actions), float64(c.actionBytes)/float64(c.actions), c.statusConns, c.statusBytes)
}

// rollout replaces n targets of backend app as the controller's cycles do:
// a cycle reads Status, then acts on every target due; cycle one registers
// n new targets, cycle two drains the n old ones, cycle three deregisters
// them. The old targets are registered first (not counted). Targets point
// at closed ports on 127.0.0.1: only the size of the answers matters.
func rollout(t testing.TB, slots, n int, configure func(*hapi.Provider)) rolloutCost {
	t.Helper()
	testenv.RequireBinary(t, "haproxy")
	ctx := context.Background()
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{{Name: "app", Slots: slots, Check: lab.Check{HTTPPath: "/ready", Interval: 10 * time.Second}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	m := startAPIMeter(t, in.Socket())
	p0, err := hapi.New(hapi.Config{Instances: []hapi.Instance{{Name: "a", Address: m.path}}})
	if err != nil {
		t.Fatal(err)
	}
	p := book(p0)
	if configure != nil {
		configure(p.Provider)
	}
	target := func(gen string, i int) provider.Target {
		return provider.Target{ID: provider.TargetID(fmt.Sprintf("%s-%d", gen, i)), IP: "127.0.0.1", Port: 20000 + i + map[string]int{"old": 0, "new": 5000}[gen],
			Check: provider.HealthCheck{Interval: 10 * time.Second}}
	}
	for i := 0; i < n; i++ {
		if err := p.Register(ctx, "app", target("old", i)); err != nil {
			t.Fatal(err)
		}
	}
	var cost rolloutCost
	cycle := func(act func(provider.Target) error, gen string) {
		c0, b0 := m.read()
		if _, err := p.Status(ctx, "app"); err != nil {
			t.Fatal(err)
		}
		c1, b1 := m.read()
		for i := 0; i < n; i++ {
			if err := act(target(gen, i)); err != nil {
				t.Fatal(err)
			}
		}
		c2, b2 := m.read()
		cost.statusConns += c1 - c0
		cost.statusBytes += b1 - b0
		cost.actionConns += c2 - c1
		cost.actionBytes += b2 - b1
		cost.actions += n
	}
	cycle(func(tg provider.Target) error { return p.Register(ctx, "app", tg) }, "new")
	cycle(func(tg provider.Target) error { return p.SetDraining(ctx, "app", tg) }, "old")
	cycle(func(tg provider.Target) error { return p.Deregister(ctx, "app", tg) }, "old")
	st, err := p.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(st.Instances[0].Targets); got != n {
		t.Fatalf("after the rollout: %d targets, want %d: %s", got, n, st)
	}
	return cost
}

// Scenario: rollouts of 10 and of 40 targets, in dynamic and in slot mode,
// on a real HAProxy behind a meter.
// Expectation: an action (Register, SetDraining, Deregister) costs the same
// Runtime API bytes whatever the size of the pool: the cycle's Status read
// is reused, not the whole backend dumped again per action (O(N) per
// rollout, not O(N²)).
func TestRolloutActionCostDoesNotGrowWithThePool(t *testing.T) {
	for _, mode := range []struct {
		name  string
		slots func(n int) int
	}{{"dynamic", func(int) int { return 0 }}, {"slots", func(n int) int { return 2 * n }}} {
		t.Run(mode.name, func(t *testing.T) {
			small, large := rollout(t, mode.slots(10), 10, nil), rollout(t, mode.slots(40), 40, nil)
			t.Logf("%s, rollout of 10: %s", mode.name, small)
			t.Logf("%s, rollout of 40: %s", mode.name, large)
			perSmall := float64(small.actionBytes) / float64(small.actions)
			perLarge := float64(large.actionBytes) / float64(large.actions)
			if perLarge > 1.5*perSmall {
				t.Fatalf("bytes per action grow with the pool: %.0f at 10 targets, %.0f at 40", perSmall, perLarge)
			}
		})
	}
}

// BenchmarkRolloutRuntimeAPICost prints what a rollout of 100 targets
// costs HAProxy's Runtime API (commands, bytes answered) with every action
// reading the backend afresh (reuse=off, the cost before the cycle's
// snapshot was reused) and with the reuse, and their ratio. Run:
//
//	go test -run XXX -bench RolloutRuntimeAPICost -benchtime 1x ./provider/haproxy/
func BenchmarkRolloutRuntimeAPICost(b *testing.B) {
	const n = 100
	for _, mode := range []struct {
		name  string
		slots int
	}{{"dynamic", 0}, {"slots", 2 * n}} {
		b.Run(mode.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				off := rollout(b, mode.slots, n, func(p *hapi.Provider) { hapi.SetSnapshotReuse(p, 0) })
				on := rollout(b, mode.slots, n, nil)
				total := func(c rolloutCost) (int64, int64) {
					return c.actionConns + c.statusConns, c.actionBytes + c.statusBytes
				}
				offC, offB := total(off)
				onC, onB := total(on)
				b.Logf("%s, rollout of %d, reuse off: %s", mode.name, n, off)
				b.Logf("%s, rollout of %d, reuse on:  %s", mode.name, n, on)
				b.Logf("%s, rollout of %d: commands %d -> %d (%.1fx), bytes %d -> %d (%.1fx)", mode.name, n, offC, onC, float64(offC)/float64(onC), offB, onB, float64(offB)/float64(onB))
				b.ReportMetric(float64(offB)/float64(onB), "bytes-old/new")
				b.ReportMetric(float64(offC)/float64(onC), "commands-old/new")
			}
		})
	}
}
