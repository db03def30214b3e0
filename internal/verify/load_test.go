package verify

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// collect drains an attack, failing the test if it does not end within a
// generous hang guard.
func collect(t *testing.T, l Load) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := Attack(ctx, l)
	if err != nil {
		t.Fatalf("Attack: %v", err)
	}
	var out []Result
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, r)
		case <-ctx.Done():
			t.Fatalf("attack did not end (hang guard); %d results so far", len(out))
		}
	}
}

// concurrencyServer counts requests, the most in flight at once, and the
// connections opened.
type concurrencyServer struct {
	*httptest.Server
	inflight, maxInflight, requests, conns atomic.Int64
}

func newConcurrencyServer(t *testing.T, delay time.Duration) *concurrencyServer {
	s := &concurrencyServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		for {
			m := s.maxInflight.Load()
			if n <= m || s.maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		s.requests.Add(1)
		time.Sleep(delay)
		fmt.Fprint(w, "ok")
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func TestOpenModelSendsRateTimesDurationRequests(t *testing.T) {
	// Setup: 400 req/s for 0.5 s against a fast server.
	// Expectation: the schedule has exactly ceil(400*0.5) = 200 slots and
	// every one is sent and answered, however the machine is loaded.
	s := newConcurrencyServer(t, 0)
	res := collect(t, Load{Target: Target{URL: s.URL}, Rate: 400, Duration: 500 * time.Millisecond})
	if len(res) != 200 || s.requests.Load() != 200 {
		t.Fatalf("got %d results, server saw %d requests; want 200", len(res), s.requests.Load())
	}
	seen := make(map[uint64]bool)
	for _, r := range res {
		if r.Class != ClassOK {
			t.Errorf("request %d: %s %s", r.Seq, r.Class, r.Error)
		}
		seen[r.Seq] = true
	}
	if len(seen) != 200 {
		t.Fatalf("sequence numbers not unique: %d distinct", len(seen))
	}
}

func TestOpenModelKeepsConnectionsAlive(t *testing.T) {
	// Setup: one worker, so requests go one after the other.
	// Expectation: keep-alive (the default) sends all 20 over one
	// connection; with keep-alive off every request opens its own.
	for _, noKeep := range []bool{false, true} {
		s := newConcurrencyServer(t, 0)
		res := collect(t, Load{Target: Target{URL: s.URL}, Rate: 1000, Requests: 20, Duration: time.Minute, MaxWorkers: 1, DisableKeepAlive: noKeep})
		want := int64(1)
		if noKeep {
			want = 20
		}
		if len(res) != 20 || s.conns.Load() != want {
			t.Errorf("keep-alive off=%v: %d results over %d connections, want 20 over %d", noKeep, len(res), s.conns.Load(), want)
		}
	}
}

func TestOpenModelDoesNotWaitForSlowResponses(t *testing.T) {
	// Setup: every response takes 300 ms; 100 req/s for 0.5 s.
	// Expectation: the schedule keeps going, so many requests are in flight
	// at once (a closed model would have 1), and each latency counts from the
	// scheduled time: latency >= lag + 300 ms.
	const delay = 300 * time.Millisecond
	s := newConcurrencyServer(t, delay)
	res := collect(t, Load{Target: Target{URL: s.URL}, Rate: 100, Duration: 500 * time.Millisecond})
	if len(res) != 50 {
		t.Fatalf("got %d results, want 50", len(res))
	}
	if m := s.maxInflight.Load(); m < 10 {
		t.Errorf("at most %d requests were in flight; an open model at 100/s with 300 ms responses has ~30", m)
	}
	for _, r := range res {
		if r.Latency < r.Lag()+delay {
			t.Errorf("request %d: latency %v < lag %v + server delay %v: not measured from the schedule", r.Seq, r.Latency, r.Lag(), delay)
		}
	}
}

func TestOpenModelWorkerBoundCapsRequestsInFlight(t *testing.T) {
	// Setup: slow responses, MaxWorkers 3.
	// Expectation: never more than 3 requests in flight; all requests still
	// sent (late), and the lateness shows as lag on later requests.
	s := newConcurrencyServer(t, 50*time.Millisecond)
	res := collect(t, Load{Target: Target{URL: s.URL}, Rate: 200, Requests: 30, Duration: time.Minute, MaxWorkers: 3})
	if len(res) != 30 {
		t.Fatalf("got %d results, want 30", len(res))
	}
	if m := s.maxInflight.Load(); m > 3 {
		t.Errorf("%d requests in flight with MaxWorkers 3", m)
	}
	var maxLag time.Duration
	for _, r := range res {
		maxLag = max(maxLag, r.Lag())
	}
	// 30 requests through 3 workers at 50 ms each need >= 450 ms, the
	// schedule only 150 ms: some request must have been sent >= 300 ms late.
	if maxLag < 300*time.Millisecond {
		t.Errorf("max lag %v: a saturated pool must show as lag", maxLag)
	}
}

func TestClosedModelUsesFixedConnections(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noKeep    bool
		wantConns func(int64) bool
	}{
		{"keep-alive: one connection per worker", false, func(c int64) bool { return c == 3 }},
		{"keep-alive off: one connection per request", true, func(c int64) bool { return c == 60 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newConcurrencyServer(t, time.Millisecond)
			res := collect(t, Load{Target: Target{URL: s.URL}, Connections: 3, Requests: 60, Duration: time.Minute, DisableKeepAlive: tc.noKeep})
			if len(res) != 60 {
				t.Fatalf("got %d results, want 60", len(res))
			}
			if m := s.maxInflight.Load(); m > 3 {
				t.Errorf("%d in flight with 3 connections", m)
			}
			if c := s.conns.Load(); !tc.wantConns(c) {
				t.Errorf("%d connections opened", c)
			}
		})
	}
}

func TestAttackStopsWhenContextIsDone(t *testing.T) {
	// Setup: an unbounded count with a long duration, cancelled after 50
	// results. Expectation: the stream ends (no hang) and every request
	// that was sent completes successfully (stopping is not a failure).
	s := newConcurrencyServer(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Attack(ctx, Load{Target: Target{URL: s.URL}, Rate: 1000, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	guard := time.After(time.Minute)
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				if n < 50 {
					t.Fatalf("only %d results", n)
				}
				return
			}
			if r.Class != ClassOK {
				t.Errorf("request %d after stop: %s %s", r.Seq, r.Class, r.Error)
			}
			if n++; n == 50 {
				cancel()
			}
		case <-guard:
			t.Fatal("attack did not stop after cancel (hang guard)")
		}
	}
}

func TestLoadValidateNamesTheBadField(t *testing.T) {
	for _, tc := range []struct {
		load Load
		want string
	}{
		{Load{Target: Target{URL: "http://127.0.0.1:1/"}, Duration: time.Second}, "exactly one of rate"},
		{Load{Target: Target{URL: "http://127.0.0.1:1/"}, Rate: 1, Connections: 1, Duration: time.Second}, "exactly one of rate"},
		{Load{Target: Target{URL: "http://127.0.0.1:1/"}, Rate: 1}, "bounded"},
		{Load{Target: Target{URL: "ftp://x/"}, Rate: 1, Duration: time.Second}, `"ftp://x/"`},
		{Load{Target: Target{URL: "http://x/", Method: "GE T"}, Rate: 1, Duration: time.Second}, "method"},
		{Load{Target: Target{URL: "http://x/"}, Rate: -1, Duration: time.Second}, "negative"},
	} {
		err := tc.load.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", tc.load, err, tc.want)
		}
	}
}

// rawServer accepts connections on 127.0.0.1 and hands each to handle after
// reading one request.
func rawServer(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				handle(c.(*net.TCPConn))
			})
		}
	})
	return "http://" + ln.Addr().String() + "/"
}

func TestEveryFailureClassFromARealServer(t *testing.T) {
	status := func(code int) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
		t.Cleanup(s.Close)
		return s.URL
	}
	closedPort := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr + "/"
	}
	for _, tc := range []struct {
		name    string
		url     func() string
		method  string
		timeout time.Duration
		want    Class
		code    int
	}{
		{"200 is ok", func() string { return status(200) }, "", 0, ClassOK, 200},
		{"301 is ok (redirects are not followed)", func() string { return status(301) }, "", 0, ClassOK, 301},
		{"502 Bad Gateway", func() string { return status(502) }, "", 0, Class502, 502},
		{"503 Service Unavailable", func() string { return status(503) }, "", 0, Class503, 503},
		{"504 Gateway Timeout", func() string { return status(504) }, "", 0, Class504, 504},
		{"500 is another 5xx", func() string { return status(500) }, "", 0, Class5xx, 500},
		{"404 is a 4xx", func() string { return status(404) }, "", 0, Class4xx, 404},
		{"closed port refuses", closedPort, "", 0, ClassRefused, 0},
		{"SO_LINGER 0 close resets", func() string {
			return rawServer(t, func(c *net.TCPConn) { c.SetLinger(0) })
		}, "", 0, ClassReset, 0},
		{"hijack and close is EOF", func() string {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				c, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					c.Close()
				}
			}))
			t.Cleanup(s.Close)
			return s.URL
		}, "POST", 0, ClassEOF, 0},
		{"body cut short after 200 is EOF", func() string {
			return rawServer(t, func(c *net.TCPConn) {
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
			})
		}, "", 0, ClassEOF, 200},
		{"no answer within the timeout", func() string {
			release := make(chan struct{})
			u := rawServer(t, func(*net.TCPConn) { <-release })
			t.Cleanup(func() { close(release) }) // runs before rawServer's cleanup waits
			return u
		}, "", 200 * time.Millisecond, ClassTimeout, 0},
	} {
		// The open model sends through net/http, the closed model over its
		// own connections (wire): both must classify alike.
		for _, model := range []struct {
			name string
			load func(Load) Load
		}{
			{"open", func(l Load) Load { l.Rate = 100; return l }},
			{"closed", func(l Load) Load { l.Connections = 1; return l }},
		} {
			t.Run(tc.name+"/"+model.name, func(t *testing.T) {
				res := collect(t, model.load(Load{Target: Target{URL: tc.url(), Method: tc.method}, Requests: 1, Duration: time.Minute, Timeout: tc.timeout}))
				if len(res) != 1 {
					t.Fatalf("%d results", len(res))
				}
				r := res[0]
				if r.Class != tc.want || r.Code != tc.code {
					t.Fatalf("class %q code %d (error %q); want class %q code %d", r.Class, r.Code, r.Error, tc.want, tc.code)
				}
				if r.Failed() != (tc.want != ClassOK) {
					t.Fatalf("Failed() = %v", r.Failed())
				}
			})
		}
	}
}

func TestClosedModelRetriesAKeepAliveConnectionTheServerClosed(t *testing.T) {
	// The server answers one request per connection, then closes it without
	// saying so: the next request on that connection finds it closed and is
	// sent again on a new one, as net/http does; no request fails.
	var conns atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(20 * time.Millisecond)
			}()
		}
	}()
	res := collect(t, Load{Target: Target{URL: "http://" + ln.Addr().String() + "/"}, Connections: 1, Requests: 5, Duration: time.Minute})
	if len(res) != 5 {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res {
		if r.Failed() {
			t.Errorf("request %d failed: %s %s", r.Seq, r.Class, r.Error)
		}
	}
	if c := conns.Load(); c < 5 {
		t.Errorf("%d connections for 5 requests, want one each", c)
	}
}

func TestWireEncodesTheRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		got <- r
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(s.Close)
	h := http.Header{"X-Test": {"1"}, "Host": {"shop.example.com"}}
	res := collect(t, Load{Target: Target{URL: s.URL + "/a/b?q=1", Method: "POST", Header: h, Body: []byte("hello")}, Connections: 1, Requests: 1, Duration: time.Minute})
	if len(res) != 1 || res[0].Failed() || res[0].BytesIn != 2 {
		t.Fatalf("results %+v", res)
	}
	r := <-got
	b, _ := io.ReadAll(r.Body)
	if r.Method != "POST" || r.URL.String() != "/a/b?q=1" || r.Host != "shop.example.com" || r.Header.Get("X-Test") != "1" || string(b) != "hello" {
		t.Errorf("server got %s %s Host %q X-Test %q body %q", r.Method, r.URL, r.Host, r.Header.Get("X-Test"), b)
	}
}
