package graceful_test

// Process tests: a real server in a child process, real signals, real sockets,
// and a test-side "LB" that keeps sending until it has seen readiness fail.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hangGuard bounds every wait of these tests. It is never an assertion on
// speed: it only keeps a broken shutdown from hanging the suite.
const hangGuard = 60 * time.Second

// child is a server process started from the test binary.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   map[string]string
	stderr *syncBuffer
	exited chan struct{}
	err    error // Wait's error, valid after exited
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startChild runs the child in mode with env (KEY=VALUE) and waits until it
// listens.
func startChild(t *testing.T, mode string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Env = append(cmd.Env, env...)
	c := &child{t: t, cmd: cmd, addr: map[string]string{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting child %s: %v", mode, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			t.Logf("child %s stderr:\n%s", mode, c.stderr.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "LISTEN ") {
				lines <- sc.Text()
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-lines:
		for _, kv := range strings.Fields(strings.TrimPrefix(line, "LISTEN ")) {
			k, v, _ := strings.Cut(kv, "=")
			c.addr[k] = v
		}
	case <-c.exited:
		t.Fatalf("child %s exited before listening: %v\n%s", mode, c.err, c.stderr.String())
	case <-time.After(hangGuard):
		t.Fatalf("child %s did not listen", mode)
	}
	// Ready means Run has installed its signal handler: a signal before that
	// would kill the child the default way.
	deadline := time.Now().Add(hangGuard)
	for {
		resp, err := guardClient.Get(c.url("admin", "/ready"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %s never became ready: %v\n%s", mode, err, c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

func (c *child) url(server, path string) string { return "http://" + c.addr[server] + path }

func (c *child) signal(sig syscall.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits for the child to exit and returns its exit code.
func (c *child) waitExit() int {
	c.t.Helper()
	select {
	case <-c.exited:
	case <-time.After(hangGuard):
		c.t.Fatalf("child did not exit within %s\n%s", hangGuard, c.stderr.String())
	}
	return c.cmd.ProcessState.ExitCode()
}

// waitLog waits until the child's log contains s.
func (c *child) waitLog(s string) {
	c.t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(c.stderr.String(), s) {
		select {
		case <-c.exited:
			if strings.Contains(c.stderr.String(), s) {
				return
			}
			c.t.Fatalf("child exited before logging %q\n%s", s, c.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("child did not log %q\n%s", s, c.stderr.String())
		}
	}
}

// lb plays a load balancer in front of one target: workers send requests at
// a steady pace over kept-alive connections while the target is up; a health
// checker polls readiness and takes the target out after fall failures in a
// row. It never takes it back: the test is about removal.
type lb struct {
	target, ready string
	client        *http.Client

	up       atomic.Bool
	inflight atomic.Int64
	ok       atomic.Int64
	okAfter  atomic.Int64 // successes that started after readinessFailedAt
	mu       sync.Mutex
	failures []string
	// readinessFailed is closed when the checker first saw readiness fail.
	readinessFailed chan struct{}
	down            chan struct{}
	stop            chan struct{}
	wg              sync.WaitGroup
}

func newLB(target, ready string) *lb {
	return &lb{
		target: target, ready: ready,
		client:          &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}},
		readinessFailed: make(chan struct{}), down: make(chan struct{}), stop: make(chan struct{}),
	}
}

// start runs workers senders and the health checker (interval, fall).
func (l *lb) start(workers int, interval time.Duration, fall int) {
	l.up.Store(true)
	for range workers {
		l.wg.Go(l.send)
	}
	l.wg.Go(func() {
		failed := 0
		checker := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(interval):
			}
			resp, err := checker.Get(l.ready)
			healthy := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				resp.Body.Close()
			}
			if healthy {
				failed = 0
				continue
			}
			if failed == 0 && !isClosed(l.readinessFailed) {
				close(l.readinessFailed)
			}
			failed++
			if failed >= fall && l.up.Load() {
				l.up.Store(false)
				close(l.down)
			}
		}
	})
}

// send is one worker. POST, because Go's client silently retries idempotent
// requests on a closed kept-alive connection, and an LB test must see every
// failure.
func (l *lb) send() {
	for {
		select {
		case <-l.stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		l.inflight.Add(1)
		if !l.up.Load() {
			l.inflight.Add(-1)
			continue
		}
		afterReadinessFailed := isClosed(l.readinessFailed)
		resp, err := l.client.Post(l.target, "text/plain", strings.NewReader("x"))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		l.inflight.Add(-1)
		if err != nil {
			l.mu.Lock()
			l.failures = append(l.failures, err.Error())
			l.mu.Unlock()
			continue
		}
		l.ok.Add(1)
		if afterReadinessFailed {
			l.okAfter.Add(1)
		}
	}
}

// drained reports what a real LB's drain state would: the target is out and
// no request to it is in flight.
func (l *lb) drained() bool { return !l.up.Load() && l.inflight.Load() == 0 }

func (l *lb) halt() []string {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.failures...)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func waitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(hangGuard):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitServed waits until the LB has n successful requests.
func waitServed(t *testing.T, l *lb, n int64) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for l.ok.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("LB got only %d successful requests", l.ok.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownUnderLoad_FixedDrainWait_NoFailedRequests(t *testing.T) {
	// The LB needs fall x interval (3 x 50 ms) plus scheduling to take the
	// target out; the drain wait is far longer, as a preStop sleep would be.
	c := startChild(t, "http", "ZERODROP_DRAIN_WAIT=3s", "ZERODROP_GRACE_PERIOD=30s")
	l := newLB(c.url("public", "/"), c.url("admin", "/ready"))
	l.start(4, 50*time.Millisecond, 3)
	waitServed(t, l, 50)

	c.signal(syscall.SIGTERM)
	waitClosed(t, l.down, "the LB to take the target out")
	code := c.waitExit()
	failures := l.halt()
	t.Logf("%d requests succeeded (%d after readiness failed), %d failed", l.ok.Load(), l.okAfter.Load(), len(failures))

	if len(failures) > 0 {
		t.Errorf("%d requests failed across the shutdown, first: %s", len(failures), failures[0])
	}
	if l.okAfter.Load() == 0 {
		t.Errorf("no request succeeded after readiness failed: the server did not keep serving during the drain wait")
	}
	if code != exitClean {
		t.Errorf("exit code %d, want %d", code, exitClean)
	}
	log := c.stderr.String()
	for _, want := range []string{"phase=not_ready", "phase=drain_wait", "outcome=fixed", "phase=stop", "shutdown complete"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestPlainShutdownOnSIGTERM_DropsRequests(t *testing.T) {
	// The "before": http.Server.Shutdown at SIGTERM closes the listener while
	// the LB still sends (it has not yet seen fall failed checks). This is
	// the failure the package exists to prevent; if it stops happening, the
	// test above proves nothing.
	c := startChild(t, "plain")
	l := newLB(c.url("public", "/"), c.url("admin", "/ready"))
	l.start(4, 50*time.Millisecond, 3)
	waitServed(t, l, 50)

	c.signal(syscall.SIGTERM)
	waitClosed(t, l.down, "the LB to take the target out")
	c.waitExit()
	failures := l.halt()
	if len(failures) == 0 {
		t.Fatalf("no request failed with a plain Shutdown at SIGTERM; the LB model does not reproduce the race")
	}
	t.Logf("plain Shutdown: %d requests succeeded, %d failed, first: %s", l.ok.Load(), len(failures), failures[0])
}

func TestShutdownUnderLoad_DrainEndpoint_NoFailedRequests(t *testing.T) {
	// The exact wait: the controller's drain endpoint (here backed by the LB's
	// own state) answers 200 only once the LB took the target out and has no
	// request to it in flight. No guessed duration is involved.
	var lbRef atomic.Pointer[lb]
	var polls atomic.Int64
	var badPath atomic.Value
	ctrl := newDrainController(t, func(r *http.Request) int {
		polls.Add(1)
		if r.URL.Path != "/drain/v1/namespaces/shop/pods/web-7" || r.URL.Query().Get("wait") == "" {
			badPath.Store(r.URL.String())
		}
		if l := lbRef.Load(); l != nil && l.drained() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	c := startChild(t, "http",
		"ZERODROP_DRAIN_URL="+ctrl, "POD_NAMESPACE=shop", "POD_NAME=web-7",
		"ZERODROP_DRAIN_WAIT=1s", "ZERODROP_GRACE_PERIOD=40s")
	l := newLB(c.url("public", "/"), c.url("admin", "/ready"))
	lbRef.Store(l)
	// A slow checker: the LB keeps sending for a while after readiness fails.
	l.start(4, 200*time.Millisecond, 3)
	waitServed(t, l, 50)

	c.signal(syscall.SIGTERM)
	code := c.waitExit()
	failures := l.halt()
	t.Logf("%d requests succeeded (%d after readiness failed), %d failed", l.ok.Load(), l.okAfter.Load(), len(failures))

	if len(failures) > 0 {
		t.Errorf("%d requests failed across the shutdown, first: %s", len(failures), failures[0])
	}
	if !isClosed(l.down) {
		t.Errorf("the child exited before the LB took it out: the exact wait did not wait for the drain endpoint")
	}
	if l.okAfter.Load() == 0 {
		t.Errorf("no request succeeded after readiness failed")
	}
	if code != exitClean {
		t.Errorf("exit code %d, want %d", code, exitClean)
	}
	if v := badPath.Load(); v != nil {
		t.Errorf("drain endpoint called as %s, want /drain/v1/namespaces/shop/pods/web-7?wait=...", v)
	}
	if polls.Load() == 0 {
		t.Errorf("drain endpoint never called")
	}
	if !strings.Contains(c.stderr.String(), "outcome=drained") {
		t.Errorf("log lacks outcome=drained")
	}
}

// newDrainController serves the drain protocol with status(r) deciding the
// answer; like the real controller it holds a not-drained answer for up to
// ?wait= (long poll), re-checking every 20 ms.
func newDrainController(t *testing.T, status func(*http.Request) int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
		end := time.Now().Add(wait)
		for {
			st := status(r)
			if st != http.StatusServiceUnavailable || !time.Now().Before(end) {
				w.WriteHeader(st)
				fmt.Fprintf(w, `{"drained":%t}`, st == http.StatusOK)
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestDrainEndpoint_ServesUntilDrained(t *testing.T) {
	// The controller says "not drained" well past the fallback duration: the
	// child must keep serving; when it says "drained", the child stops.
	var drained atomic.Bool
	var polls atomic.Int64
	ctrl := newDrainController(t, func(*http.Request) int {
		polls.Add(1)
		if drained.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	c := startChild(t, "http", "ZERODROP_DRAIN_URL="+ctrl+"/drain/v1/namespaces/shop/pods/web-1",
		"ZERODROP_DRAIN_WAIT=200ms", "ZERODROP_GRACE_PERIOD=60s")
	c.signal(syscall.SIGTERM)
	c.waitLog("drain endpoint reachable")
	time.Sleep(1 * time.Second) // past the 200 ms fallback, so that falling back would show

	resp, err := guardClient.Get(c.url("public", "/"))
	if err != nil {
		t.Fatalf("the child stopped serving while the drain endpoint said not drained: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s during the drain wait", resp.Status)
	}
	if !resp.Close {
		t.Errorf("response during the drain wait lacks Connection: close")
	}
	ready, err := guardClient.Get(c.url("admin", "/ready"))
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readiness %s during the drain wait, want 503", ready.Status)
	}

	drained.Store(true)
	if code := c.waitExit(); code != exitClean {
		t.Errorf("exit code %d, want %d", code, exitClean)
	}
	if !strings.Contains(c.stderr.String(), "outcome=drained") {
		t.Errorf("log lacks outcome=drained:\n%s", c.stderr.String())
	}
}

func TestDrainEndpoint_Unreachable_FallsBack(t *testing.T) {
	// A port nobody listens on: the child runs the fixed wait, then stops.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	c := startChild(t, "http", "ZERODROP_DRAIN_URL=http://"+dead+"/drain/v1/namespaces/a/pods/b",
		"ZERODROP_DRAIN_WAIT=500ms", "ZERODROP_GRACE_PERIOD=60s")
	c.signal(syscall.SIGTERM)
	if code := c.waitExit(); code != exitClean {
		t.Errorf("exit code %d, want %d", code, exitClean)
	}
	if !strings.Contains(c.stderr.String(), "outcome=unreachable") {
		t.Errorf("log lacks outcome=unreachable:\n%s", c.stderr.String())
	}
}

func TestInFlightSlowRequestCompletes(t *testing.T) {
	c := startChild(t, "http", "ZERODROP_DRAIN_WAIT=200ms", "ZERODROP_GRACE_PERIOD=60s")
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := guardClient.Get(c.url("public", "/?sleep=3s"))
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp, string(b), err}
	}()
	c.waitLog("slow request started")
	c.signal(syscall.SIGTERM)
	c.waitLog("stopping servers")

	// The listeners close: new connections are refused while the slow
	// request is still being served.
	for {
		conn, err := net.Dial("tcp", c.addr["public"])
		if err != nil {
			break
		}
		conn.Close()
		if isDone(done) {
			t.Fatalf("the slow request finished before the listener closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if isDone(done) {
		t.Errorf("the slow request finished before the listener closed")
	}

	var r result
	select {
	case r = <-done:
	case <-time.After(hangGuard):
		t.Fatal("slow request did not finish")
	}
	if r.err != nil {
		t.Fatalf("in-flight slow request failed: %v", r.err)
	}
	if r.resp.StatusCode != http.StatusOK || !strings.HasPrefix(r.body, "ok") {
		t.Errorf("slow request: %s %q", r.resp.Status, r.body)
	}
	if !r.resp.Close {
		t.Errorf("response finished during shutdown lacks Connection: close")
	}
	if code := c.waitExit(); code != exitClean {
		t.Errorf("exit code %d, want %d", code, exitClean)
	}
}

func isDone[T any](c chan T) bool { return len(c) > 0 }

func TestDeadlineCutsLongRequestsAndConnections(t *testing.T) {
	// Grace 3 s - margin 0.5 s: a 60 s request and a hijacked connection that
	// ignores the stop hook are both cut at the deadline, and the process
	// exits then, not when the request would have ended.
	c := startChild(t, "http", "ZERODROP_DRAIN_WAIT=300ms", "ZERODROP_GRACE_PERIOD=3s",
		"ZERODROP_GRACE_MARGIN=500ms", "ZERODROP_SHUTDOWN_RESERVE=1s")
	done := make(chan error, 1)
	go func() {
		resp, err := guardClient.Get(c.url("public", "/?sleep=60s"))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				err = errors.New("completed")
			}
		}
		done <- err
	}()
	hj := dialHijack(t, c.addr["public"], "/hijack?ignore=1")
	c.waitLog("slow request started")
	c.signal(syscall.SIGTERM)

	var err error
	select {
	case err = <-done:
	case <-time.After(hangGuard):
		t.Fatal("long request neither completed nor was cut")
	}
	if err.Error() == "completed" {
		t.Fatalf("a 60 s request completed: the deadline was not honoured")
	}
	if _, rerr := hj.ReadString('\n'); rerr == nil {
		t.Errorf("hijacked connection got data instead of being closed at the deadline")
	}
	if code := c.waitExit(); code != exitDeadline {
		t.Errorf("exit code %d, want %d (ErrDeadline)", code, exitDeadline)
	}
	for _, want := range []string{"deadline reached with requests in flight", "closing hijacked connections"} {
		if !strings.Contains(c.stderr.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// dialHijack opens a connection to path (a hijacking handler) and reads its
// greeting.
func dialHijack(t *testing.T, addr, path string) *bufio.Reader {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(hangGuard))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path)
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Fatalf("hijacked greeting %q, %v", line, err)
	}
	return rd
}

func TestLongLivedConnectionsToldToFinish(t *testing.T) {
	// A hijacked connection and a server-sent-event stream end themselves
	// when the stop phase begins (Group.Stopping), so the shutdown is clean.
	c := startChild(t, "http", "ZERODROP_DRAIN_WAIT=200ms", "ZERODROP_GRACE_PERIOD=60s")
	hj := dialHijack(t, c.addr["public"], "/hijack")

	resp, err := guardClient.Get(c.url("public", "/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	if line, err := events.ReadString('\n'); err != nil || line != "data: tick\n" {
		t.Fatalf("first event %q, %v", line, err)
	}

	c.signal(syscall.SIGTERM)

	if line, err := hj.ReadString('\n'); err != nil || line != "bye\n" {
		t.Errorf("hijacked connection: got %q, %v; want the handler's goodbye", line, err)
	}
	if _, err := hj.ReadString('\n'); err != io.EOF {
		t.Errorf("hijacked connection not closed after goodbye: %v", err)
	}
	rest, err := io.ReadAll(events)
	if err != nil {
		t.Errorf("event stream ended with an error, not cleanly: %v", err)
	}
	if !strings.Contains(string(rest), "event: bye") {
		t.Errorf("event stream ended without the goodbye event: %q", rest)
	}
	if code := c.waitExit(); code != exitClean {
		t.Errorf("exit code %d, want %d", code, exitClean)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	// A drain wait of 10 minutes: only the second signal can end it within
	// the hang guard.
	c := startChild(t, "http", "ZERODROP_DRAIN_WAIT=10m", "ZERODROP_GRACE_PERIOD=20m")
	c.signal(syscall.SIGTERM)
	c.waitLog("phase=not_ready")
	c.signal(syscall.SIGINT)
	if code := c.waitExit(); code != exitForced {
		t.Errorf("exit code %d, want %d", code, exitForced)
	}
	if !strings.Contains(c.stderr.String(), "second signal") {
		t.Errorf("log lacks the second signal")
	}
}

// guardClient bounds requests the tests make outside the LB.
var guardClient = &http.Client{Timeout: hangGuard}
