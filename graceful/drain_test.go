package graceful

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func testDrainClient(t *testing.T, h http.HandlerFunc) (*drainClient, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	m, _ := newMetrics(nil)
	return &drainClient{
		url:     srv.URL + "/drain/v1/namespaces/ns/pods/p",
		client:  srv.Client(),
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		metrics: m,
	}, &calls
}

func plan(fixed, minWait, capWait time.Duration) drainPlan {
	now := time.Now()
	return drainPlan{signal: now, fixedUntil: now.Add(fixed), minUntil: now.Add(minWait), capUntil: now.Add(capWait)}
}

func TestWaitExact_DrainedAtOnceStillHonoursMinWait(t *testing.T) {
	c, _ := testDrainClient(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	start := time.Now()
	if got := c.waitExact(plan(time.Minute, 300*time.Millisecond, time.Minute), nil); got != DrainDrained {
		t.Fatalf("outcome %s, want %s", got, DrainDrained)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Errorf("returned before the minimum drain wait")
	}
}

func TestWaitExact_FirstPollAsksWithoutWaiting(t *testing.T) {
	// The first poll (wait=0s) finds out at once whether the endpoint is
	// reachable; later ones long-poll.
	var mu sync.Mutex
	var waits []string
	c, _ := testDrainClient(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, r.URL.Query().Get("wait"))
		if len(waits) < 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	if got := c.waitExact(plan(time.Minute, 0, time.Minute), nil); got != DrainDrained {
		t.Fatalf("outcome %s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 2 || waits[0] != "0s" || waits[1] == "0s" {
		t.Errorf("wait parameters %v, want [0s, <long poll>]", waits)
	}
}

func TestWaitExact_NotGatedRunsFixedWait(t *testing.T) {
	c, calls := testDrainClient(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	start := time.Now()
	if got := c.waitExact(plan(300*time.Millisecond, 0, time.Minute), nil); got != DrainNotGated {
		t.Fatalf("outcome %s, want %s", got, DrainNotGated)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Errorf("a pod the controller does not gate skipped the fixed wait")
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls after a 404, want 1", calls.Load())
	}
}

func TestWaitExact_ServerErrorsFallBackToFixedWait(t *testing.T) {
	c, calls := testDrainClient(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	if got := c.waitExact(plan(500*time.Millisecond, 0, time.Minute), nil); got != DrainUnreachable {
		t.Fatalf("outcome %s, want %s", got, DrainUnreachable)
	}
	if calls.Load() < 2 {
		t.Errorf("%d calls: errors were not retried", calls.Load())
	}
}

func TestWaitExact_NeverDrainedStopsAtCap(t *testing.T) {
	c, _ := testDrainClient(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	if got := c.waitExact(plan(100*time.Millisecond, 0, 800*time.Millisecond), nil); got != DrainCapped {
		t.Fatalf("outcome %s, want %s", got, DrainCapped)
	}
}

func TestWaitExact_HangingEndpointBoundedByFallback(t *testing.T) {
	// An endpoint that accepts and never answers counts as unreachable: the
	// fallback applies, the poll does not wait for its own timeout.
	release := make(chan struct{})
	c, _ := testDrainClient(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	done := make(chan string, 1)
	go func() { done <- c.waitExact(plan(300*time.Millisecond, 0, time.Minute), nil) }()
	select {
	case got := <-done:
		if got != DrainUnreachable {
			t.Errorf("outcome %s, want %s", got, DrainUnreachable)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("waitExact hung on an endpoint that never answers")
	}
}

func TestWaitExact_StopEndsAtOnce(t *testing.T) {
	c, _ := testDrainClient(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	stop := make(chan struct{})
	done := make(chan string, 1)
	go func() { done <- c.waitExact(plan(time.Hour, 0, time.Hour), stop) }()
	time.Sleep(200 * time.Millisecond)
	close(stop)
	select {
	case got := <-done:
		if got != DrainInterrupted {
			t.Errorf("outcome %s, want %s", got, DrainInterrupted)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("waitExact ignored stop")
	}
}
