package controller

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Times read from the API (a pod's deletion, a condition's transition) are
// wall-clock times of another machine's clock, without Go's monotonic
// reading: comparing one with time.Now on every cycle makes a timeout fire
// early when this machine's wall clock is stepped forward (NTP correcting
// it, `date -s`) or runs ahead of the API server's, and late when it is
// stepped back. So each such time is anchored once, when first seen: how
// long ago it was is computed then (allowing for the API server's clock
// offset, below) and the instant is kept as now minus that, which carries
// now's monotonic reading; every later comparison is immune to steps.

// anchor returns the local instant at which the API time t happened: now
// minus how long ago t was, with offset the API server's clock minus this
// machine's (its lower bound, APIClock.Offset, so that the elapsed time is
// never overestimated and no timeout fires early). A time that looks in the
// future counts as now. The result carries now's monotonic reading.
func anchor(t, now time.Time, offset time.Duration) time.Time {
	elapsed := now.Round(0).Sub(t.Round(0)) + offset
	if t.IsZero() || elapsed < 0 {
		elapsed = 0
	}
	return now.Add(-elapsed)
}

// driftRate bounds how fast two NTP-disciplined clocks drift apart (100
// ppm is ten times what NTP tolerates): the offset's bounds widen by it
// between samples.
const driftRate = 1e-4

// APIClock estimates the offset of the API server's clock from this
// process's (server minus local) from the Date header of the API server's
// responses. A response whose Date header says D (whole seconds: the
// server's clock read somewhere in [D, D+1s)), sent at local time s and
// received at r, bounds the offset to [D - r, D + 1s - s]. The bounds of
// successive responses are intersected; samples that contradict them mean
// a clock was stepped, and the estimate starts again from the new sample.
// Its zero value is ready to use and assumes synchronised clocks until a
// response is seen.
type APIClock struct {
	// Now is the local clock; time.Now when nil.
	Now func() time.Time

	mu     sync.Mutex
	known  bool
	lo, hi time.Duration
	last   time.Time // local time of the last sample, for the drift
	resets int
	gauge  prometheus.Gauge
}

func (c *APIClock) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Wrap returns a RoundTripper that samples every response of rt (for
// rest.Config.Wrap).
func (c *APIClock) Wrap(rt http.RoundTripper) http.RoundTripper {
	return apiClockTransport{c: c, rt: rt}
}

type apiClockTransport struct {
	c  *APIClock
	rt http.RoundTripper
}

func (t apiClockTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := t.c.now()
	resp, err := t.rt.RoundTrip(req)
	if err == nil {
		if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			t.c.Sample(d, sent, t.c.now())
		}
	}
	return resp, err
}

// stepSlack is how far the wall and monotonic clocks may disagree over one
// request before it counts as straddling a step of the local clock.
const stepSlack = 10 * time.Millisecond

// Sample records a response whose Date header said date, for a request
// sent at local time sent whose response headers arrived at received. A
// request during which the local wall clock was stepped (its wall and
// monotonic durations disagree) bounds nothing and is dropped.
func (c *APIClock) Sample(date, sent, received time.Time) {
	if d := received.Sub(sent) - received.Round(0).Sub(sent.Round(0)); d > stepSlack || d < -stepSlack {
		return
	}
	lo := date.Sub(received.Round(0))
	hi := date.Add(time.Second).Sub(sent.Round(0))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known {
		slack := time.Duration(float64(received.Sub(c.last)) * driftRate)
		curLo, curHi := c.lo-slack, c.hi+slack
		if lo <= curHi && hi >= curLo {
			lo, hi = max(lo, curLo), min(hi, curHi)
		} else {
			c.resets++ // a step of either clock
		}
	}
	c.known, c.lo, c.hi, c.last = true, lo, hi, received
	if c.gauge != nil {
		c.gauge.Set(((lo + hi) / 2).Seconds())
	}
}

// Offset returns the bounds of the API server's clock minus this
// process's, and whether any response was seen (if not, both are 0).
func (c *APIClock) Offset() (lo, hi time.Duration, known bool) {
	if c == nil {
		return 0, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lo, c.hi, c.known
}

// Resets counts the samples that contradicted the estimate (a clock step).
func (c *APIClock) Resets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resets
}

// Report sets g to the estimate (the middle of the bounds) from now on.
func (c *APIClock) Report(g prometheus.Gauge) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gauge = g
	if c.known {
		g.Set(((c.lo + c.hi) / 2).Seconds())
	}
}

// readOffset is the offset to anchor a time read from the API with: the
// lower bound, so that no elapsed time is overestimated.
func (c *APIClock) readOffset() time.Duration {
	lo, _, _ := c.Offset()
	return lo
}

// apiTime is the time to write into the API for the local instant now: the
// upper bound of the API server's clock then, so that a later anchor of it
// (by the lower bound) never makes it look older than it is.
func (c *APIClock) apiTime(now time.Time) time.Time {
	_, hi, _ := c.Offset()
	return now.Round(0).Add(hi)
}
