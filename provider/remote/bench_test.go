package remote_test

import (
	"context"
	"testing"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/haproxy"
)

// BenchmarkStatus reads a pool of 10 registered targets on a real HAProxy
// in process and through the adapter (mutual TLS, token, keep-alive): the
// protocol's cost per call.
func BenchmarkStatus(b *testing.B) {
	in := startHAProxy(b, 0)
	hp, err := haproxy.New(haproxy.Config{Instances: []haproxy.Instance{{Name: "haproxy-a", Address: in.Socket()}}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	w := serveAdapter(b, haproxy.Instance{Name: "haproxy-a", Address: in.Socket()})
	ctx := context.Background()
	pool := provider.Pool{Name: "app"}
	for i := range 10 {
		tg := provider.Target{ID: provider.TargetID("t" + string(rune('0'+i))), IP: "127.0.0.1", Port: 20000 + i}
		pool.Known = append(pool.Known, tg)
		if err := hp.Register(ctx, pool, tg); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		p    provider.Provider
	}{{"in-process", hp}, {"adapter", w.client}} {
		b.Run(tc.name, func(b *testing.B) {
			if _, err := tc.p.Status(ctx, pool); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := tc.p.Status(ctx, pool); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
