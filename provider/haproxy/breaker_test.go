package haproxy

import (
	"errors"
	"testing"
	"time"
)

// Scenario: an instance times out, stays dead for one probe, then answers.
// Expectation: closed, every command goes; after a timeout it is skipped
// for the backoff; then exactly one probe goes while others are skipped; a
// failed probe doubles the backoff; a successful one closes the breaker. A
// fast failure (connection refused) or a command cut by the caller's
// context does not open it.
func TestBreakerSkipsATimedOutInstanceAndProbesIt(t *testing.T) {
	b := newBreaker(time.Second)
	t0 := time.Unix(1000, 0)
	errTimeout := errors.New("i/o timeout")
	mustGo := func(at time.Duration, wantProbe bool) {
		t.Helper()
		probe, err := b.allow(t0.Add(at))
		if err != nil || probe != wantProbe {
			t.Fatalf("at %s: probe %v, err %v; want probe %v and no error", at, probe, err, wantProbe)
		}
	}
	mustSkip := func(at time.Duration) {
		t.Helper()
		if _, err := b.allow(t0.Add(at)); !errors.Is(err, ErrInstanceSkipped) {
			t.Fatalf("at %s: %v, want ErrInstanceSkipped", at, err)
		}
	}
	mustGo(0, false)
	b.done(t0, false, errors.New("connection refused"), false, false)
	mustGo(0, false) // a fast failure costs nothing: stays closed
	b.done(t0, false, errTimeout, true, true)
	mustGo(0, false) // cut by the caller's context: says nothing
	b.done(t0, false, errTimeout, true, false)
	mustSkip(500 * time.Millisecond)
	mustGo(time.Second, true) // the probe
	mustSkip(time.Second)     // others while it runs
	b.done(t0.Add(1500*time.Millisecond), true, errTimeout, true, false)
	mustSkip(3 * time.Second) // backoff doubled: open until 3.5 s
	mustGo(3500*time.Millisecond, true)
	b.done(t0.Add(3600*time.Millisecond), true, nil, false, false)
	mustGo(3600*time.Millisecond, false)
	mustGo(3600*time.Millisecond, false)
	if newBreaker(-1) != nil {
		t.Fatal("a negative backoff still builds a breaker")
	}
}
