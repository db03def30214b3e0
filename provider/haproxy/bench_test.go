package haproxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// BenchmarkStatus measures one Status call (one Runtime API round trip:
// show info, show servers state, show stat) on a real haproxy whose backend
// holds 10 or 200 runtime servers: the cost of one controller cycle per
// instance. Run: go test -run XXX -bench Status ./provider/haproxy/
func BenchmarkStatus(b *testing.B) {
	testenv.RequireBinary(b, "haproxy")
	for _, n := range []int{10, 200} {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			in, err := lab.Start(context.Background(), lab.Config{Backends: []lab.Backend{{Name: "app", Check: lab.Check{HTTPPath: "/ready"}}}})
			if err != nil {
				b.Fatal(err)
			}
			defer in.Stop()
			p0, err := hapi.New(hapi.Config{Instances: []hapi.Instance{{Name: "a", Address: in.Socket()}}})
			if err != nil {
				b.Fatal(err)
			}
			p := book(p0)
			ctx := context.Background()
			for i := 0; i < n; i++ {
				// Port 9 on loopback: nothing listens, checks fail; only the
				// size of the answer matters here.
				t := provider.Target{ID: provider.TargetID(fmt.Sprintf("pod-%d", i)), IP: "127.0.0.1", Port: 9,
					Check: provider.HealthCheck{Interval: 10 * time.Second}}
				if err := p.Register(ctx, "app", t); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				st, err := p.Status(ctx, "app")
				if err != nil || len(st.Instances[0].Targets) != n {
					b.Fatalf("status: %v, %d targets", err, len(st.Instances[0].Targets))
				}
			}
		})
	}
}

// BenchmarkRegisterDeregister measures the safe registration (add, enable
// health, drain, health down, ready: five commands) plus removal (maint,
// del) of one target on a real haproxy.
func BenchmarkRegisterDeregister(b *testing.B) {
	testenv.RequireBinary(b, "haproxy")
	in, err := lab.Start(context.Background(), lab.Config{Backends: []lab.Backend{{Name: "app", Check: lab.Check{HTTPPath: "/ready"}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Stop()
	p0, err := hapi.New(hapi.Config{Instances: []hapi.Instance{{Name: "a", Address: in.Socket()}}})
	if err != nil {
		b.Fatal(err)
	}
	p := book(p0)
	ctx := context.Background()
	t := provider.Target{ID: "pod-a", IP: "127.0.0.1", Port: 9, Check: provider.HealthCheck{Interval: 10 * time.Second}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Register(ctx, "app", t); err != nil {
			b.Fatal(err)
		}
		if err := p.Deregister(ctx, "app", t); err != nil {
			b.Fatal(err)
		}
	}
}
