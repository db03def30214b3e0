// Package providertest is zerodrop's conformance kit: it checks every
// promise of the provider contract (package provider) against a real load
// balancer, with real traffic and the LB's own health checks.
//
// The kit starts its own targets (HTTP listeners on loopback, or on
// Harness.ListenIP, that answer the LB's health checks on a path, count
// every request, fail their checks on demand and hold a request open),
// registers them through the provider under test, sends requests through
// the LB's frontends and compares what arrives with what the provider
// reports. Which promises apply follows the provider's declared
// Capabilities and what the Harness can do (reload the LB, a pool of
// limited capacity, an unreachable instance).
//
// In a Go test:
//
//	func TestConformance(t *testing.T) {
//		providertest.Run(t, providertest.Harness{New: ..., Pool: "app", Frontends: []string{"127.0.0.1:8080"}, ...})
//	}
//
// Outside `go test` (the `zerodrop provider-test` command), NewSuite and
// Suite.Check return the same results as plain data. docs/provider-conformance.md
// lists each promise and how it is checked.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// Harness is what the kit needs to know about the LB under test.
type Harness struct {
	// New returns a provider over the LB under test. The kit calls it once
	// per promise and again to check statelessness: every provider it
	// returns must drive the same LB. A provider implementing
	// provider.Lifecycle is started and closed by the kit.
	New func() (provider.Provider, error)
	// Pool is the pool the kit registers its targets in. It may hold
	// targets of its own (static servers): the kit only looks at its own.
	Pool string
	// Frontends are the addresses (host:port) where the LB balances plain
	// HTTP requests to Pool: one per LB instance, so that every instance is
	// exercised, or one shared address.
	Frontends []string
	// CheckPath is the path of the LB's HTTP health check of Pool's
	// targets, e.g. "/ready". Required when the provider declares
	// ActiveHealthChecks.
	CheckPath string
	// Check is the health check the LB applies to the kit's targets
	// (interval, rise, fall): the kit passes it with every target, and
	// with HealthCheckScope Pool (or HAProxy's server-template slots,
	// which take theirs from the configuration) it must say what the LB
	// is configured with. Zero fields take the provider's
	// HealthCheckDefaults.
	Check provider.HealthCheck
	// Instances is the number of instances Status must report; 0 accepts
	// any number from one.
	Instances int
	// ListenIP is the IP the kit's targets listen on; the LB must reach
	// it. Default 127.0.0.1.
	ListenIP string
	// LimitedPool, when set, names a pool that holds at most Capacity
	// targets (HAProxy: a backend of Capacity server-template slots), for
	// the PoolFull promise. It must be empty of other targets.
	LimitedPool *LimitedPool
	// NewUnreachable, when set, returns a provider over the same LB plus
	// one instance that cannot be reached, named UnreachableInstance.
	NewUnreachable      func() (provider.Provider, error)
	UnreachableInstance string
	// Reload, when set, reloads or restarts the LB's instances (one or
	// all) the way its operators do, and returns once they serve again.
	Reload func(ctx context.Context) error
	// Timeout bounds every wait of the kit (a target turning Healthy, a
	// drain completing); default from Check: 20 × (Rise+Fall) × Interval,
	// at least 15s.
	Timeout time.Duration
	// Logf, when set, receives a line per step (Run logs to each
	// promise's subtest instead).
	Logf func(format string, args ...any)
}

// LimitedPool is a pool of fixed capacity.
type LimitedPool struct {
	Name     string
	Capacity int
}

// Outcome is a promise's result.
type Outcome string

// Outcomes.
const (
	// Kept: the LB and the provider did what the contract promises.
	Kept Outcome = "kept"
	// Broken: they did not; Detail says what was seen.
	Broken Outcome = "broken"
	// Skipped: the promise does not apply to the provider's declared
	// capabilities, or the harness cannot exercise it; Detail says which.
	Skipped Outcome = "skipped"
)

// Result is one promise's outcome.
type Result struct {
	// Promise is the promise's ID (the Go subtest's name).
	Promise string `json:"promise"`
	// Title says the promise in one line.
	Title   string  `json:"title"`
	Outcome Outcome `json:"outcome"`
	// Detail is what the kit saw: the figures behind a kept promise, the
	// violation behind a broken one.
	Detail   string        `json:"detail"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
}

// Report is the outcome of a run.
type Report struct {
	Pool         string                `json:"pool"`
	Capabilities provider.Capabilities `json:"capabilities"`
	Results      []Result              `json:"results"`
}

// Count returns the number of results with the outcome.
func (r Report) Count(o Outcome) int {
	n := 0
	for _, res := range r.Results {
		if res.Outcome == o {
			n++
		}
	}
	return n
}

// Result returns the result of a promise, if it ran.
func (r Report) Result(id string) (Result, bool) {
	for _, res := range r.Results {
		if res.Promise == id {
			return res, true
		}
	}
	return Result{}, false
}

// Promise is one promise of the contract the kit checks.
type Promise struct {
	// ID names the promise (and the Go subtest).
	ID string
	// Title says it in one line.
	Title string
	check func(ctx context.Context, k *run) verdict
}

// Promises returns the promises in the order the kit checks them.
func Promises() []Promise { return append([]Promise(nil), promises...) }

// Suite runs the promises against one LB.
type Suite struct {
	h    Harness
	caps provider.Capabilities
}

// NewSuite checks the harness, builds a provider once to read its
// Capabilities, and returns a Suite.
func NewSuite(h Harness) (*Suite, error) {
	if h.New == nil {
		return nil, errors.New("providertest: Harness.New is nil")
	}
	if h.Pool == "" {
		return nil, errors.New("providertest: Harness.Pool is empty")
	}
	if len(h.Frontends) == 0 {
		return nil, errors.New("providertest: Harness.Frontends is empty: the kit sends requests through the LB")
	}
	for i, fe := range h.Frontends {
		if _, _, err := net.SplitHostPort(fe); err != nil {
			return nil, fmt.Errorf("providertest: Harness.Frontends[%d] %q: %w", i, fe, err)
		}
	}
	if h.ListenIP == "" {
		h.ListenIP = "127.0.0.1"
	}
	if ip := net.ParseIP(h.ListenIP); ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("providertest: Harness.ListenIP %q: want the one IP the LB reaches the kit's targets at", h.ListenIP)
	}
	if h.LimitedPool != nil && (h.LimitedPool.Name == "" || h.LimitedPool.Capacity < 1) {
		return nil, fmt.Errorf("providertest: Harness.LimitedPool %+v: needs a name and a capacity of at least 1", *h.LimitedPool)
	}
	if (h.NewUnreachable == nil) != (h.UnreachableInstance == "") {
		return nil, errors.New("providertest: Harness.NewUnreachable and UnreachableInstance go together")
	}
	if h.Instances < 0 {
		return nil, fmt.Errorf("providertest: Harness.Instances %d is negative", h.Instances)
	}
	p, err := h.New()
	if err != nil {
		return nil, fmt.Errorf("providertest: build the provider: %w", err)
	}
	caps := p.Capabilities()
	if lc, ok := p.(provider.Lifecycle); ok {
		_ = lc.Close() // never started: Capabilities needs no Start
	}
	if caps.ActiveHealthChecks && h.CheckPath == "" {
		return nil, errors.New("providertest: the provider declares ActiveHealthChecks: Harness.CheckPath must name the LB's health-check path")
	}
	d := caps.HealthCheckDefaults
	if h.Check.Interval <= 0 {
		h.Check.Interval = d.Interval
	}
	if h.Check.Rise <= 0 {
		h.Check.Rise = d.Rise
	}
	if h.Check.Fall <= 0 {
		h.Check.Fall = d.Fall
	}
	if h.Check.Interval <= 0 {
		h.Check.Interval = time.Second
	}
	if h.Check.Rise <= 0 {
		h.Check.Rise = 1
	}
	if h.Check.Fall <= 0 {
		h.Check.Fall = 1
	}
	if h.Timeout <= 0 {
		h.Timeout = max(15*time.Second, 20*time.Duration(h.Check.Rise+h.Check.Fall)*h.Check.Interval)
	}
	return &Suite{h: h, caps: caps}, nil
}

// Capabilities returns what the provider under test declares.
func (s *Suite) Capabilities() provider.Capabilities { return s.caps }

// Check runs one promise and returns its result. It cleans up what it
// registered (deregistered, listeners closed) before it returns.
func (s *Suite) Check(ctx context.Context, id string) Result {
	for _, p := range promises {
		if p.ID == id {
			return s.check(ctx, p, s.h.Logf)
		}
	}
	return Result{Promise: id, Outcome: Broken, Detail: "no such promise"}
}

func (s *Suite) check(ctx context.Context, p Promise, logf func(string, ...any)) Result {
	start := time.Now()
	k := &run{h: s.h, caps: s.caps, id: p.ID, logf: logf, known: map[string]map[provider.TargetID]provider.Target{}}
	v := p.check(ctx, k)
	if err := k.cleanup(ctx); err != nil && v.outcome == Kept {
		v = broken("cleanup: %v", err)
	}
	d := time.Since(start)
	// One line: joined per-instance errors carry newlines.
	detail := strings.Join(strings.Fields(strings.ReplaceAll(v.detail, "\n", " | ")), " ")
	return Result{Promise: p.ID, Title: p.Title, Outcome: v.outcome, Detail: detail, Duration: d, Seconds: d.Round(time.Millisecond).Seconds()}
}

// CheckAll runs the promises named (all of them when none is) in order.
func (s *Suite) CheckAll(ctx context.Context, ids ...string) (Report, error) {
	rep := Report{Pool: s.h.Pool, Capabilities: s.caps}
	want := map[string]bool{}
	for _, id := range ids {
		found := false
		for _, p := range promises {
			found = found || p.ID == id
		}
		if !found {
			return rep, fmt.Errorf("providertest: no promise %q (have %s)", id, promiseIDs())
		}
		want[id] = true
	}
	for _, p := range promises {
		if len(want) > 0 && !want[p.ID] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Results = append(rep.Results, s.check(ctx, p, s.h.Logf))
	}
	return rep, nil
}

func promiseIDs() string {
	var s string
	for i, p := range promises {
		if i > 0 {
			s += ", "
		}
		s += p.ID
	}
	return s
}

// Run checks every promise as a subtest of t (named by the promise's ID,
// so -run selects them): a broken promise fails its subtest, one that does
// not apply is skipped with the reason. It logs the table and returns the
// report.
func Run(t *testing.T, h Harness) Report {
	t.Helper()
	s, err := NewSuite(h)
	if err != nil {
		t.Fatal(err)
	}
	rep := Report{Pool: h.Pool, Capabilities: s.caps}
	for _, p := range promises {
		t.Run(p.ID, func(t *testing.T) {
			r := s.check(t.Context(), p, t.Logf)
			rep.Results = append(rep.Results, r)
			switch r.Outcome {
			case Broken:
				t.Errorf("promise broken: %s: %s", p.Title, r.Detail)
			case Skipped:
				t.Skip(r.Detail)
			default:
				t.Log(r.Detail)
			}
		})
	}
	var b strings.Builder
	_ = rep.WriteTable(&b)
	t.Logf("conformance of pool %s:\n%s", h.Pool, b.String())
	return rep
}
