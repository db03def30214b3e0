package remote_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
	"zerodrop.dev/zerodrop/provider/remote"
)

// pushingLB is a provider whose verdicts the test pushes: each Watch
// reports instance lb-a up, then forwards what the test sends.
type pushingLB struct {
	provider.Provider // unused methods
	push              bool
	mu                sync.Mutex
	watchers          map[int]func(provider.Event)
	next              int
}

func (p *pushingLB) Capabilities() provider.Capabilities {
	return provider.Capabilities{Identity: provider.IdentityName, Promotion: provider.PromotionSelf, HealthCheckScope: provider.HealthCheckPerTarget,
		DrainSignal: provider.DrainSessions, Topology: provider.TopologyInstances, ActiveHealthChecks: true, PushesVerdicts: p.push}
}

func (p *pushingLB) Watch(ctx context.Context, fn func(provider.Event)) error {
	p.mu.Lock()
	id := p.next
	p.next++
	p.watchers[id] = fn
	p.mu.Unlock()
	fn(provider.Event{Kind: provider.EventStreamUp, Instance: "lb-a", At: time.Now()})
	<-ctx.Done()
	p.mu.Lock()
	delete(p.watchers, id)
	p.mu.Unlock()
	return ctx.Err()
}

// verdict sends a verdict to every open watch.
func (p *pushingLB) verdict(entry string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, fn := range p.watchers {
		fn(provider.Event{Kind: provider.EventVerdict, Instance: "lb-a", Pool: "app", Entry: entry, Health: provider.HealthHealthy, At: time.Now()})
	}
}

// servePushing serves lb through the adapter handler; requests counts the
// event stream requests.
func servePushing(t *testing.T, lb *pushingLB) (*httptest.Server, *atomic.Int64) {
	h, err := adapter.New(adapter.Options{Provider: lb, Name: "fake", Token: []byte(token), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/events" {
			requests.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

// watch runs c.Watch until the test ends, sending events to a channel.
func watch(t *testing.T, c *remote.Client) <-chan provider.Event {
	ch := make(chan provider.Event, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Watch(ctx, func(ev provider.Event) { ch <- ev }); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// next returns the next event, or fails after guard.
func next(t *testing.T, ch <-chan provider.Event, guard time.Duration) provider.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(guard):
		t.Fatalf("no event within %s", guard)
		return provider.Event{}
	}
}

// expect reads events until one of kind from instance arrives.
func expect(t *testing.T, ch <-chan provider.Event, kind provider.EventKind, instance string) provider.Event {
	t.Helper()
	for {
		ev := next(t, ch, 5*time.Second)
		if ev.Kind == kind && ev.Instance == instance {
			return ev
		}
	}
}

// Scenario: an adapter whose provider does not push (any adapter older
// than the event stream answers the same capabilities). Expectation: the
// client declares no pushed verdicts, its Watch reports the link down once
// and never asks for the stream: the controller polls.
func TestWatchOfAnAdapterThatDoesNotPush(t *testing.T) {
	lb := &pushingLB{watchers: map[int]func(provider.Event){}}
	srv, requests := servePushing(t, lb)
	c := newClient(t, remote.Config{URL: srv.URL, AllowInsecure: true, Token: staticToken(token)})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Capabilities().PushesVerdicts {
		t.Fatal("capabilities declare pushed verdicts, want none")
	}
	ch := watch(t, c)
	if ev := next(t, ch, 5*time.Second); ev.Kind != provider.EventStreamDown || ev.Instance != remote.AdapterInstance || ev.Err == nil {
		t.Fatalf("first event %+v, want StreamDown of %s with the reason", ev, remote.AdapterInstance)
	}
	select {
	case ev := <-ch:
		t.Fatalf("a second event %+v, want none", ev)
	case <-time.After(300 * time.Millisecond):
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d event stream request(s), want none", n)
	}
}

// Scenario: a pushing adapter whose connections are cut while the stream
// is open. Expectation: the link and the instance come up and a verdict
// is forwarded; the cut is reported at once (StreamDown of the link and
// of lb-a, so the controller polls), the
// stream is back within the first backoff steps (StreamUp again, so the
// controller reads every pool) and forwards verdicts again.
func TestWatchRecoversACutStream(t *testing.T) {
	lb := &pushingLB{push: true, watchers: map[int]func(provider.Event){}}
	srv, requests := servePushing(t, lb)
	c := newClient(t, remote.Config{URL: srv.URL, AllowInsecure: true, Token: staticToken(token)})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !c.Capabilities().PushesVerdicts {
		t.Fatal("capabilities declare no pushed verdicts")
	}
	ch := watch(t, c)
	expect(t, ch, provider.EventStreamUp, remote.AdapterInstance)
	expect(t, ch, provider.EventStreamUp, "lb-a")
	lb.verdict("pod-a")
	if ev := expect(t, ch, provider.EventVerdict, "lb-a"); ev.Entry != "pod-a" || ev.Pool != "app" || ev.Health != provider.HealthHealthy {
		t.Fatalf("verdict %+v, want pod-a Healthy in app", ev)
	}

	cut := time.Now()
	srv.CloseClientConnections()
	down := map[string]bool{}
	for len(down) < 2 {
		ev := next(t, ch, 5*time.Second)
		if ev.Kind != provider.EventStreamDown {
			t.Fatalf("after the cut: %+v, want StreamDown of the link and of lb-a first", ev)
		}
		down[ev.Instance] = true
	}
	if !down[remote.AdapterInstance] || !down["lb-a"] {
		t.Fatalf("StreamDown of %v, want %s and lb-a", down, remote.AdapterInstance)
	}
	up := expect(t, ch, provider.EventStreamUp, remote.AdapterInstance)
	if back := up.At.Sub(cut); back > 2*time.Second {
		t.Errorf("stream back %s after the cut, want within the first backoff steps", back)
	}
	expect(t, ch, provider.EventStreamUp, "lb-a")
	lb.verdict("pod-b")
	if ev := expect(t, ch, provider.EventVerdict, "lb-a"); ev.Entry != "pod-b" {
		t.Fatalf("verdict after the cut %+v, want pod-b", ev)
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("%d event stream requests, want 2 (the first, one after the cut)", n)
	}
}
