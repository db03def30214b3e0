package haproxy

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// holdAll takes every slot of q.
func holdAll(t *testing.T, q *connQueue) {
	t.Helper()
	for range MaxConns {
		if err := q.acquire(context.Background(), laneBulk); err != nil {
			t.Fatal(err)
		}
	}
}

// queue starts a waiter in lane l and returns once it waits; its name is
// sent on got when it has a slot (or with its error when ctx ends).
func queue(t *testing.T, ctx context.Context, q *connQueue, l lane, name string, got chan<- string) {
	t.Helper()
	before := q.waiting(l)
	go func() {
		if err := q.acquire(ctx, l); err != nil {
			got <- name + ": " + err.Error()
			return
		}
		got <- name
	}()
	waitFor(t, fmt.Sprintf("%s waiting in lane %s", name, l), func() bool { return q.waiting(l) > before })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
	}
}

// next releases one slot and returns who took it.
func next(t *testing.T, q *connQueue, got <-chan string) string {
	t.Helper()
	q.release()
	select {
	case name := <-got:
		return name
	case <-time.After(5 * time.Second):
		t.Fatal("a released slot went to nobody")
		return ""
	}
}

// Scenario: every slot is busy; a Register's command waits, then a status
// read's, then two drains, then another Register's. Expectation: the
// freed slots go to the drains first (in their order), then the read,
// then the Registers in theirs: urgent commands pass queued Registers,
// first come first served within a lane.
func TestADrainGetsTheNextFreeConnectionBeforeQueuedRegisters(t *testing.T) {
	var q connQueue
	holdAll(t, &q)
	got := make(chan string, 8)
	ctx := context.Background()
	queue(t, ctx, &q, laneBulk, "register 1", got)
	queue(t, ctx, &q, laneRead, "read", got)
	queue(t, ctx, &q, laneDrain, "drain 1", got)
	queue(t, ctx, &q, laneDrain, "drain 2", got)
	queue(t, ctx, &q, laneBulk, "register 2", got)
	want := []string{"drain 1", "drain 2", "read", "register 1", "register 2"}
	for i, w := range want {
		if name := next(t, &q, got); name != w {
			t.Fatalf("slot %d went to %q; want %q (order %v)", i+1, name, w, want)
		}
	}
	for range MaxConns {
		q.release()
	}
	if q.held != 0 {
		t.Fatalf("%d slots held after every release; want 0", q.held)
	}
}

// Scenario: a Register's command waits while drains keep arriving, one
// more each time a slot frees. Expectation: the Register has a slot after
// at most maxPassed drains passed it: it is never starved.
func TestQueuedRegistersAreNotStarvedByDrains(t *testing.T) {
	var q connQueue
	holdAll(t, &q)
	got := make(chan string, 4)
	ctx := context.Background()
	queue(t, ctx, &q, laneBulk, "register", got)
	for i := 1; ; i++ {
		queue(t, ctx, &q, laneDrain, fmt.Sprintf("drain %d", i), got)
		if name := next(t, &q, got); name == "register" {
			if i != maxPassed+1 {
				t.Fatalf("the Register had a slot after %d drains passed it; want %d", i-1, maxPassed)
			}
			return
		}
		if i > maxPassed+1 {
			t.Fatalf("%d drains passed the waiting Register; want at most %d", i, maxPassed)
		}
	}
}

// Scenario: a drain waits for a slot and its context ends; a Register
// waits behind it. Expectation: the drain fails with its context's error,
// leaves the queue, and the next freed slot goes to the Register.
func TestAWaiterLeavesTheQueueWhenItsContextEnds(t *testing.T) {
	var q connQueue
	holdAll(t, &q)
	got := make(chan string, 4)
	queue(t, context.Background(), &q, laneBulk, "register", got)
	ctx, cancel := context.WithCancel(context.Background())
	queue(t, ctx, &q, laneDrain, "drain", got)
	cancel()
	if name := <-got; name != "drain: "+context.Canceled.Error() {
		t.Fatalf("cancelled drain: %q; want the context's error", name)
	}
	if n := q.waiting(laneDrain); n != 0 {
		t.Fatalf("%d drains still waiting; want 0", n)
	}
	if name := next(t, &q, got); name != "register" {
		t.Fatalf("the freed slot went to %q; want the Register", name)
	}
}

// Scenario: every connection slot of the instance is busy, and the
// provider's calls wait for one. Expectation: SetDraining and Deregister
// wait in the drain lane, Status in the read lane, Register in the bulk
// lane, whatever lane the caller's context carried; none sends anything.
func TestProviderCallsWaitInTheirLanes(t *testing.T) {
	sent := make(chan string, 16)
	c := fakeSocket(t, func(line string) (string, bool) { sent <- line; return "\n\n", true })
	p, err := New(Config{Instances: []Instance{{Name: "a", Address: c.Address()}}})
	if err != nil {
		t.Fatal(err)
	}
	q := &p.clients[0].conns
	holdAll(t, q)
	pool := provider.Pool{Name: "app"}
	target := provider.Target{ID: "ns/b/pod-1", IP: "10.0.0.1", Port: 8080}
	calls := []struct {
		name string
		lane lane
		call func(context.Context) error
	}{
		{"Register", laneBulk, func(ctx context.Context) error { return p.Register(ctx, pool, target) }},
		{"Status", laneRead, func(ctx context.Context) error { _, err := p.Status(ctx, pool); return err }},
		{"SetDraining", laneDrain, func(ctx context.Context) error { return p.SetDraining(ctx, pool, target) }},
		{"Deregister", laneDrain, func(ctx context.Context) error { return p.Deregister(ctx, pool, target) }},
	}
	for _, tc := range calls {
		for _, outer := range []lane{laneBulk, laneDrain} {
			ctx, cancel := context.WithCancel(withLane(context.Background(), outer))
			done := make(chan error, 1)
			go func() { done <- tc.call(ctx) }()
			waitFor(t, tc.name+" waiting in lane "+tc.lane.String(), func() bool { return q.waiting(tc.lane) == 1 })
			for l := laneBulk; l < numLanes; l++ {
				if n := q.waiting(l); l != tc.lane && n != 0 {
					t.Errorf("%s (caller's lane %s): %d command(s) wait in lane %s; want them in %s", tc.name, outer, n, l, tc.lane)
				}
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v; want the context's error", tc.name, err)
			}
		}
	}
	select {
	case line := <-sent:
		t.Fatalf("sent %q while every slot was busy", line)
	default:
	}
}
