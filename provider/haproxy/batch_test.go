package haproxy_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// Scenario: a batch of three state changes whose second names a server the
// backend does not have, sent over the unix socket and over mutual TLS (a
// reused prompt-mode connection).
// Expectation: Run reports the one good command before the refusal (ok 1)
// and an error naming the refused command that matches ErrNoSuchServer;
// HAProxy ran the third command too (it runs every command of a line),
// which is why a batch holds only commands safe in any subset; the batch
// cost one round trip.
func TestBatchChecksEveryAnswer(t *testing.T) {
	in, m := startTLSLab(t, 3, 0)
	var handshakes atomic.Int64
	ctx := context.Background()
	for _, mode := range []struct {
		name string
		c    *hapi.Client
		slot string
	}{{"unix", in.Client(), slot(1)}, {"tls", newTLSClient(t, in, countingTLS(t, m, &handshakes)), slot(2)}} {
		t.Run(mode.name, func(t *testing.T) {
			c := mode.c
			if _, err := c.ShowInfo(ctx); err != nil { // a connection to reuse (TLS)
				t.Fatal(err)
			}
			var b hapi.Batch
			b.SetServerAddr("app", mode.slot, "127.0.0.1", 9)
			b.SetServerState("app", "nosuch", hapi.StateDrain)
			b.SetServerState("app", mode.slot, hapi.StateDrain)
			before := hapi.ClientRoundTrips(c)
			ok, err := c.Run(ctx, &b)
			if trips := hapi.ClientRoundTrips(c) - before; trips != 1 {
				t.Errorf("a batch of 3 cost %d round trips, want 1", trips)
			}
			if ok != 1 || !errors.Is(err, hapi.ErrNoSuchServer) || !strings.Contains(err.Error(), "app/nosuch state drain") {
				t.Fatalf("Run = %d, %v; want 1 and the refusal of app/nosuch", ok, err)
			}
			states, err := in.Client().ShowServersState(ctx, "app")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range states {
				if s.Name == mode.slot && (s.Addr != "127.0.0.1" || s.Port != 9 || s.Admin&hapi.AdminForcedDrain == 0) {
					t.Fatalf("%s after the batch: %s:%d, admin %#x; want 127.0.0.1:9 in drain", s.Name, s.Addr, s.Port, s.Admin)
				}
			}
		})
	}
	if n := handshakes.Load(); n != 1 {
		t.Errorf("%d TLS handshakes, want 1 (the connection reused)", n)
	}
}

// Scenario: the controller's cycle over mutual TLS: a Status read, then a
// Register of a new target into a free server-template slot.
// Expectation: the Register costs at most 4 round trips on the instance
// (the slot's one-row check, the claim, steps 2-4, step 5): the worker
// check of a reused connection rides along in each line instead of a
// round trip of its own per command. The target then becomes Healthy.
func TestSlotRegisterRoundTripsOverTLS(t *testing.T) {
	in, m := startTLSLab(t, 4, 0)
	var handshakes atomic.Int64
	p0, err := hapi.New(hapi.Config{Instances: []hapi.Instance{{Name: "a", Address: in.AdminTLSAddr(), TLS: countingTLS(t, m, &handshakes)}}})
	if err != nil {
		t.Fatal(err)
	}
	p := book(p0)
	ctx := context.Background()
	target := startProbe(t, "pod-a")
	p.learn("app", target.target())
	if _, err := p.Status(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	before := hapi.RoundTrips(p0)
	if err := p.Register(ctx, "app", target.target()); err != nil {
		t.Fatal(err)
	}
	trips := hapi.RoundTrips(p0) - before
	t.Logf("Register into a slot over TLS: %d round trips", trips)
	if trips > 4 {
		t.Errorf("Register cost %d round trips, want at most 4", trips)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		st, err := p.Status(ctx, "app")
		if err != nil {
			return false, err.Error()
		}
		ok, reason, msg := st.Healthy(provider.TargetID("pod-a"))
		return ok, reason + ": " + msg
	})
}
