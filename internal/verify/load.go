package verify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Load's zero fields.
const (
	DefaultTimeout    = 5 * time.Second
	DefaultMaxWorkers = 4096
	initialWorkers    = 8
)

// Target is the request every load request sends.
type Target struct {
	// Method is the HTTP method; empty means GET.
	Method string `json:"method"`
	// URL is the absolute http:// or https:// URL.
	URL string `json:"url"`
	// Header is sent with every request. A "Host" entry sets the Host header.
	Header http.Header `json:"header,omitempty"`
	// Body is sent with every request.
	Body []byte `json:"-"`
}

// Load configures the load generator. Exactly one of Rate (open model) and
// Connections (closed model) must be set.
type Load struct {
	Target Target
	// Rate is the constant request rate per second of the open model:
	// request i is due at start + i/Rate, whether or not earlier requests
	// have been answered.
	Rate float64
	// Connections is the number of connections of the closed model: each
	// sends its next request when the previous one ends.
	Connections int
	// Duration bounds the schedule: no request is sent after start+Duration.
	// Zero means until the context is done or Requests are sent.
	Duration time.Duration
	// Requests bounds the number of requests; zero means no count bound.
	Requests uint64
	// MaxWorkers bounds the open model's worker pool (and so the requests in
	// flight); when every worker is busy the schedule slips, which shows as
	// lag. Zero means DefaultMaxWorkers.
	MaxWorkers int
	// Timeout bounds each request, from connect to the end of the body.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// DisableKeepAlive opens a new connection for every request. By default
	// connections are kept alive and reused, as LBs and browsers do.
	DisableKeepAlive bool
	// InsecureSkipVerify skips TLS certificate verification.
	InsecureSkipVerify bool
	// Transport, when set, replaces the transports the generator builds
	// (then DisableKeepAlive, InsecureSkipVerify and the closed model's one
	// connection per worker are the caller's business).
	Transport http.RoundTripper
}

// Validate checks the configuration and names the first bad field.
func (l *Load) Validate() error {
	if l.Rate < 0 || l.Connections < 0 {
		return fmt.Errorf("load: rate %v and connections %d must not be negative", l.Rate, l.Connections)
	}
	if (l.Rate > 0) == (l.Connections > 0) {
		return fmt.Errorf("load: set exactly one of rate (open model, got %v) and connections (closed model, got %d)", l.Rate, l.Connections)
	}
	if l.Duration <= 0 && l.Requests == 0 {
		return errors.New("load: set a duration or a request count: load must be bounded")
	}
	if l.MaxWorkers < 0 || l.Timeout < 0 || l.Duration < 0 {
		return fmt.Errorf("load: max workers %d, timeout %v and duration %v must not be negative", l.MaxWorkers, l.Timeout, l.Duration)
	}
	u, err := url.Parse(l.Target.URL)
	if err != nil {
		return fmt.Errorf("load: target URL %q: %w", l.Target.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("load: target URL %q: want http://host[:port]/path or https://...", l.Target.URL)
	}
	if m := l.Target.Method; m != "" && strings.ContainsAny(m, " \t\r\n") {
		return fmt.Errorf("load: method %q is not a valid HTTP method", m)
	}
	return nil
}

func (l *Load) timeout() time.Duration {
	if l.Timeout > 0 {
		return l.Timeout
	}
	return DefaultTimeout
}

func (l *Load) maxWorkers() int {
	if l.MaxWorkers > 0 {
		return l.MaxWorkers
	}
	return DefaultMaxWorkers
}

// newTransport builds an HTTP/1.1 transport for idle connections.
func (l *Load) newTransport(idle int) http.RoundTripper {
	if l.Transport != nil {
		return l.Transport
	}
	d := &net.Dialer{Timeout: l.timeout(), KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:         d.DialContext,
		DisableKeepAlives:   l.DisableKeepAlive,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: l.timeout(),
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: l.InsecureSkipVerify}, //nolint:gosec // the user's explicit choice
		DisableCompression:  true,
	}
}

// ticket is one scheduled request handed to a worker.
type ticket struct {
	seq uint64
	due time.Time
}

// attacker sends the requests of one Attack.
type attacker struct {
	load    Load
	method  string
	host    string
	timeout time.Duration
	results chan Result
}

// Attack starts the load described by l and returns the stream of results,
// one per request, closed when the last request has ended. The schedule
// starts at once. When ctx is done or the duration or count bound is
// reached, no further request is sent; requests in flight run to completion
// (each bounded by the timeout), so stopping never turns into failures.
func Attack(ctx context.Context, l Load) (<-chan Result, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	a := &attacker{
		load:    l,
		method:  l.Target.Method,
		timeout: l.timeout(),
		results: make(chan Result, 4096),
	}
	if a.method == "" {
		a.method = http.MethodGet
	}
	if h := l.Target.Header.Get("Host"); h != "" {
		a.host = h
	}
	start := time.Now()
	end := time.Time{}
	if l.Duration > 0 {
		end = start.Add(l.Duration)
	}
	if l.Rate > 0 {
		go a.open(ctx, start, end)
	} else {
		go a.closed(ctx, end)
	}
	return a.results, nil
}

// open runs the open model: a pacer hands tickets to a worker pool that
// grows whenever no worker is idle, up to MaxWorkers. With keep-alive, each
// worker keeps a connection of its own.
func (a *attacker) open(ctx context.Context, start, end time.Time) {
	client := &http.Client{
		Transport:     a.load.newTransport(a.load.maxWorkers()),
		CheckRedirect: noRedirect,
	}
	tickets := make(chan ticket)
	var wg sync.WaitGroup
	var inflight atomic.Int64 // workers between taking a ticket and ending its request
	workers := 0
	spawn := func() {
		workers++
		// Each worker sends over a connection of its own (wire) where it
		// can, else through the shared net/http client.
		send := func(t ticket) Result { return a.hit(client, t.seq, t.due) }
		var w *wire
		if a.load.Transport == nil && !a.load.DisableKeepAlive {
			if w, _ = newWire(a.load.Target, a.method, a.host, a.timeout); w != nil {
				send = func(t ticket) Result { return a.hitWire(w, t.seq, t.due) }
			}
		}
		wg.Go(func() {
			if w != nil {
				defer w.close()
			}
			for t := range tickets {
				inflight.Add(1)
				r := send(t)
				inflight.Add(-1)
				a.results <- r
			}
		})
	}
	for range min(initialWorkers, a.load.maxWorkers()) {
		spawn()
	}
	interval := float64(time.Second) / a.load.Rate
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
pacing:
	for seq := uint64(0); a.load.Requests == 0 || seq < a.load.Requests; seq++ {
		// Computing each due time from start (not from the previous one)
		// keeps rounding and oversleeping from accumulating into drift.
		due := start.Add(time.Duration(float64(seq) * interval))
		if !end.IsZero() && !due.Before(end) {
			break
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break pacing
			case <-timer.C:
			}
		} else {
			select {
			case <-ctx.Done():
				break pacing
			default:
			}
		}
		t := ticket{seq, due}
		select {
		case tickets <- t:
			continue
		default:
		}
		// No worker took the ticket at once. Grow the pool only if every
		// worker is inside a request: a worker that finished its request
		// and merely waits for the CPU will be back in a moment, and a new
		// worker would cost a new connection, making a busy machine busier.
		if workers < a.load.maxWorkers() && inflight.Load() >= int64(workers) {
			spawn()
		}
		select {
		case tickets <- t:
		case <-ctx.Done():
			break pacing
		}
	}
	close(tickets)
	wg.Wait()
	client.CloseIdleConnections()
	close(a.results)
}

// closed runs the closed model: Connections workers, each with a transport
// of its own holding one connection, sending back to back.
func (a *attacker) closed(ctx context.Context, end time.Time) {
	var seq atomic.Uint64
	var wg sync.WaitGroup
	var shared http.RoundTripper
	if a.load.Transport != nil {
		shared = a.load.Transport
	}
	// loop is one connection's worker: the next request as soon as the
	// last one answered, until ctx ends, the end time or the request count.
	loop := func(send func(seq uint64, now time.Time) Result) {
		for ctx.Err() == nil {
			now := time.Now()
			if !end.IsZero() && !now.Before(end) {
				return
			}
			s := seq.Add(1) - 1
			if a.load.Requests > 0 && s >= a.load.Requests {
				return
			}
			a.results <- send(s, now)
		}
	}
	for range a.load.Connections {
		if shared == nil && !a.load.DisableKeepAlive {
			if w, ok := newWire(a.load.Target, a.method, a.host, a.timeout); ok {
				wg.Go(func() {
					defer w.close()
					loop(func(s uint64, now time.Time) Result { return a.hitWire(w, s, now) })
				})
				continue
			}
		}
		tr := shared
		if tr == nil {
			tr = a.load.newTransport(1)
		}
		client := &http.Client{Transport: tr, CheckRedirect: noRedirect}
		wg.Go(func() {
			defer client.CloseIdleConnections()
			loop(func(s uint64, now time.Time) Result { return a.hit(client, s, now) })
		})
	}
	wg.Wait()
	close(a.results)
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// hitWire is hit over the worker's own connection (see wire).
func (a *attacker) hitWire(w *wire, seq uint64, due time.Time) Result {
	r := Result{Seq: seq, Scheduled: due, Sent: time.Now()}
	code, n, err := w.do()
	r.Latency = time.Since(due)
	r.Code, r.BytesIn = code, n
	r.Class = Classify(code, err)
	if err != nil {
		if code != 0 {
			r.Error = fmt.Sprintf("reading body after status %d: %v", code, err)
		} else {
			r.Error = fmt.Sprintf("%s %q: %v", a.method, a.load.Target.URL, err)
		}
	}
	return r
}

// hit sends one request due at due and reports what happened.
//
// net/http transparently retries an idempotent request once when a reused
// keep-alive connection turns out to be closed by the server, as browsers
// do; the retry goes to a new connection. A client would not see that
// failure either, so it is not one. Keep-alive connections closed while a
// request was in flight, or non-idempotent requests (POST), are not retried
// and end as ClassEOF.
func (a *attacker) hit(client *http.Client, seq uint64, due time.Time) Result {
	r := Result{Seq: seq, Scheduled: due}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	var body io.Reader
	if len(a.load.Target.Body) > 0 {
		body = bytes.NewReader(a.load.Target.Body)
	}
	req, err := http.NewRequestWithContext(ctx, a.method, a.load.Target.URL, body)
	if err != nil {
		r.Sent = time.Now()
		r.Class, r.Error = ClassOther, err.Error()
		return r
	}
	if a.load.Target.Header != nil {
		req.Header = a.load.Target.Header
	}
	if a.host != "" {
		req.Host = a.host
	}
	r.Sent = time.Now()
	resp, err := client.Do(req)
	if err != nil {
		r.Latency = time.Since(due)
		r.Class, r.Error = Classify(0, err), err.Error()
		return r
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r.Latency = time.Since(due)
	r.Code, r.BytesIn = resp.StatusCode, n
	r.Class = Classify(resp.StatusCode, err)
	if err != nil {
		r.Error = fmt.Sprintf("reading body after status %d: %v", resp.StatusCode, err)
	}
	return r
}
