package haproxy

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Scenario: 12 commands sent at once through one Client (a cycle's
// Registers side by side, several workers), to a Runtime API that takes
// 30 ms per command. Expectation: all 12 are answered, and never more than
// MaxConns connections are open to the instance at once: HAProxy's stats
// socket takes 10 sessions, shared by every process that talks to it.
func TestCommandsSideBySideStayWithinMaxConns(t *testing.T) {
	var open, most atomic.Int32
	c := fakeSocket(t, func(string) (string, bool) {
		n := open.Add(1)
		defer open.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(30 * time.Millisecond)
		return "\n\n", true
	})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 12 {
		wg.Go(func() {
			if err := c.SetServerState(context.Background(), "app", "s1", StateDrain); err != nil {
				t.Log(err)
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of 12 commands failed", f)
	}
	if m := most.Load(); m > MaxConns || m < 2 {
		t.Fatalf("%d connections open at once; want 2 to %d", m, MaxConns)
	}
	// The chart's default processes (the reconcile leader and its event
	// stream, two serve replicas) within the stats socket's 10 sessions.
	if 3*MaxConns+1 > 10 {
		t.Fatalf("MaxConns %d: the reconcile leader, its event stream and two serve replicas would take %d of the stats socket's 10 sessions", MaxConns, 3*MaxConns+1)
	}
}

// Scenario: a command waits for a connection slot (MaxConns commands hang
// on the instance) and its context ends. Expectation: it fails with the
// context's error, without sending anything.
func TestAWaitForAConnectionEndsWithItsContext(t *testing.T) {
	release := make(chan struct{})
	var got atomic.Int32
	c := fakeSocket(t, func(string) (string, bool) {
		got.Add(1)
		<-release
		return "\n\n", true
	})
	defer close(release)
	for range MaxConns {
		go c.SetServerState(context.Background(), "app", "s1", StateDrain)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() < MaxConns && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.SetServerState(ctx, "app", "s2", StateDrain)
	if err == nil || ctx.Err() == nil {
		t.Fatalf("command beyond MaxConns: %v; want the context's deadline", err)
	}
	if n := got.Load(); n != MaxConns {
		t.Fatalf("the instance saw %d commands; want %d (the waiting one never sent)", n, MaxConns)
	}
}
