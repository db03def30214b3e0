package remote_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
	"zerodrop.dev/zerodrop/provider/remote"
)

// Scenario: an adapter behind a proxy that answers 503 twice, then passes
// (a rolling restart); one that always answers 502; one that answers a 400
// and one that answers a code this client does not know. Expectation: the
// first call succeeds on the third attempt; the 502 is retried twice and
// then fails Unreachable; a 400 is not retried and keeps its code; an
// unknown code reads as Internal with the code in the message.
func TestRetriesAreBoundedAndOnlyForTransientFailures(t *testing.T) {
	caps := `{"apiVersion":"v1","capabilities":{"identity":"Name","promotion":"Self","healthCheckScope":"Target","drainSignal":"Sessions","topology":"Instances","volatileRuntimeState":true,"reloadGrace":"30s","healthCheckDefaults":{"interval":"2s","rise":2,"fall":3},"activeHealthChecks":true}}`
	var calls atomic.Int64
	var answer func(n int64, w http.ResponseWriter, r *http.Request)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.URL.Path == "/v1/capabilities" {
			w.Write([]byte(caps))
			return
		}
		answer(n, w, r)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, remote.Config{URL: srv.URL, AllowInsecure: true, Timeout: time.Second})
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pool := provider.Pool{Name: "app"}
	ta := provider.Target{ID: "a", IP: "10.0.0.1", Port: 80}

	calls.Store(0)
	answer = func(n int64, w http.ResponseWriter, r *http.Request) {
		if n <= 2 {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"results":[{"ok":true}]}`))
	}
	if err := c.Register(ctx, pool, ta); err != nil || calls.Load() != 3 {
		t.Fatalf("after two 503s: %v in %d attempts, want success in 3", err, calls.Load())
	}

	calls.Store(0)
	answer = func(_ int64, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}
	if err := c.SetDraining(ctx, pool, ta); !errors.Is(err, provider.ErrUnreachable) || calls.Load() != 3 {
		t.Fatalf("always 502: %v in %d attempts, want Unreachable after 3", err, calls.Load())
	}

	calls.Store(0)
	answer = func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":{"code":"Invalid","message":"changes[0].target.port: 0 out of range 1-65535"}}`))
	}
	if err := c.Deregister(ctx, pool, ta); !errors.Is(err, provider.ErrInvalid) || calls.Load() != 1 || !strings.Contains(err.Error(), "changes[0].target.port") {
		t.Fatalf("400: %v in %d attempts, want Invalid naming the field, not retried", err, calls.Load())
	}

	answer = func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"results":[{"ok":false,"errors":[{"code":"Throttled","instance":"f5-a","message":"slow down"}]}]}`))
	}
	err := c.Register(ctx, pool, ta)
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Code != provider.CodeInternal || pe.Instance != "f5-a" || !strings.Contains(pe.Message, "Throttled") {
		t.Fatalf("unknown code: %#v, want Internal for f5-a naming Throttled", err)
	}
	if _, err := c.Apply(ctx, pool, []remote.Change{{Op: adapter.OpRegister, Target: ta}, {Op: adapter.OpDrain, Target: ta}}); err == nil || !strings.Contains(err.Error(), "1 results for 2 changes") {
		t.Fatalf("answer with too few results: %v, want an error", err)
	}
}
