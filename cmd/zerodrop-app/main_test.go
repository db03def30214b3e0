package main

// The sample app as a real process (the test binary re-executed), real
// sockets, real SIGTERM: each shutdown mode against a request in flight.

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const childEnv = "ZERODROP_APP_TEST_ARGS"

// hangGuard only keeps a broken app from hanging the suite.
const hangGuard = 60 * time.Second

var client = &http.Client{Timeout: hangGuard}

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(childEnv); ok {
		os.Exit(run(strings.Fields(args), os.LookupEnv, os.Stderr))
	}
	os.Exit(m.Run())
}

type app struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	log    *lockedBuffer
	exited chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listeningRE = regexp.MustCompile(`msg=listening .*addr=(\S+)`)

// startApp runs the app with args and env and waits until it listens.
func startApp(t *testing.T, args string, env ...string) *app {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=--listen 127.0.0.1:0 --log-level debug "+args)
	cmd.Env = append(cmd.Env, env...)
	a := &app{t: t, cmd: cmd, log: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = a.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			cmd.Process.Kill()
			<-a.exited
		}
		if t.Failed() {
			t.Logf("app log:\n%s", a.log.String())
		}
	})
	deadline := time.Now().Add(hangGuard)
	for {
		if m := listeningRE.FindStringSubmatch(a.log.String()); m != nil {
			a.addr = m[1]
			break
		}
		select {
		case <-a.exited:
			t.Fatalf("app exited before listening:\n%s", a.log.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("app did not listen:\n%s", a.log.String())
		}
	}
	return a
}

func (a *app) url(path string) string { return "http://" + a.addr + path }

func (a *app) waitLog(s string) {
	a.t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(a.log.String(), s) {
		if time.Now().After(deadline) {
			a.t.Fatalf("app did not log %q", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (a *app) waitExit() int {
	a.t.Helper()
	select {
	case <-a.exited:
	case <-time.After(hangGuard):
		a.t.Fatalf("app did not exit")
	}
	return a.cmd.ProcessState.ExitCode()
}

type result struct {
	status int
	body   response
	err    error
}

// slowRequest starts GET /?sleep=d and returns where its result arrives once
// the app has logged that it started.
func (a *app) slowRequest(d string) chan result {
	a.t.Helper()
	out := make(chan result, 1)
	go func() {
		resp, err := client.Get(a.url("/?sleep=" + d))
		if err != nil {
			out <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var r result
		r.status = resp.StatusCode
		r.err = json.NewDecoder(resp.Body).Decode(&r.body)
		out <- r
	}()
	a.waitLog("msg=\"request started\"")
	return out
}

func wait(t *testing.T, c chan result) result {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(hangGuard):
		t.Fatal("request neither finished nor failed")
		return result{}
	}
}

func TestImmediateMode_SIGTERMCutsRequestInFlight(t *testing.T) {
	a := startApp(t, "--shutdown immediate")
	inflight := a.slowRequest("5s")
	a.cmd.Process.Signal(syscall.SIGTERM)
	r := wait(t, inflight)
	if r.err == nil {
		t.Errorf("request in flight completed (%d) although the app exited at SIGTERM", r.status)
	}
	if code := a.waitExit(); code != exitSIGTERM {
		t.Errorf("exit code %d, want %d", code, exitSIGTERM)
	}
}

func TestShutdownMode_ListenerClosesAtOnce_InFlightCompletes(t *testing.T) {
	a := startApp(t, "--shutdown shutdown")
	inflight := a.slowRequest("2s")
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.waitLog("http.Server.Shutdown")
	// What the LB meets while it still sends: a closed port.
	refused := false
	for !refused && len(inflight) == 0 {
		conn, err := net.Dial("tcp", a.addr)
		if err != nil {
			refused = true
			break
		}
		conn.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !refused {
		t.Errorf("new connections were accepted until the in-flight request finished")
	}
	if r := wait(t, inflight); r.err != nil || r.status != http.StatusOK {
		t.Errorf("in-flight request: %d, %v; want 200", r.status, r.err)
	}
	if code := a.waitExit(); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestDrainMode_ServesDuringDrainWait_CompletesRequestInFlight(t *testing.T) {
	a := startApp(t, "--shutdown drain --drain-wait 500ms --grace-period 30s",
		"POD_NAME=web-1", "APP_VERSION=v2")
	inflight := a.slowRequest("2s")
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.waitLog("phase=not_ready")

	ready, err := client.Get(a.url("/ready"))
	if err != nil {
		t.Fatalf("readiness during the drain wait: %v", err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readiness %d after SIGTERM, want 503", ready.StatusCode)
	}
	if !strings.Contains(a.log.String(), "phase=stop") {
		// Still in the drain wait: new requests are served.
		resp, err := client.Get(a.url("/"))
		if err != nil {
			t.Errorf("new request during the drain wait failed: %v", err)
		} else {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("new request during the drain wait: %d", resp.StatusCode)
			}
		}
	}
	r := wait(t, inflight)
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("in-flight request: %d, %v; want 200", r.status, r.err)
	}
	if r.body.Pod != "web-1" || r.body.Version != "v2" || r.body.SleptMS != 2000 {
		t.Errorf("response %+v, want pod web-1, version v2, slept 2000 ms", r.body)
	}
	if code := a.waitExit(); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestKnobsFromEnvironment(t *testing.T) {
	a := startApp(t, "", "APP_STARTUP_DELAY=300ms", "APP_READY_PATH=/r", "APP_LIVE_PATH=/live",
		"APP_LATENCY=50ms", "POD_NAME=web-9", "APP_VERSION=v7")
	if !strings.Contains(a.log.String(), "startup_delay=300ms") {
		t.Errorf("startup delay not taken from APP_STARTUP_DELAY")
	}
	for _, p := range []string{"/r", "/live"} {
		resp, err := client.Get(a.url(p))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %v %v", p, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	resp, err := client.Get(a.url("/anything"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body response
	json.NewDecoder(resp.Body).Decode(&body)
	want := response{Pod: "web-9", Version: "v7", SleptMS: 50, Path: "/anything"}
	if body != want {
		t.Errorf("response %+v, want %+v", body, want)
	}
	if resp.Header.Get("X-Pod-Name") != "web-9" {
		t.Errorf("X-Pod-Name %q", resp.Header.Get("X-Pod-Name"))
	}
}

func TestFlagWinsOverEnvironment(t *testing.T) {
	a := startApp(t, "--app-version flag", "APP_VERSION=env")
	resp, err := client.Get(a.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v := resp.Header.Get("X-App-Version"); v != "flag" {
		t.Errorf("version %q, want the flag's", v)
	}
}

func TestSIGTERMDuringStartupDelayExitsAtOnce(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=--listen 127.0.0.1:0 --startup-delay 10m --shutdown drain")
	var log lockedBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(log.String(), "msg=starting") {
		if time.Now().After(deadline) {
			t.Fatalf("app did not start:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatal("app in its startup delay ignored SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != exitSIGTERM {
		t.Errorf("exit code %d, want %d", code, exitSIGTERM)
	}
}

func TestBadKnobsNameTheKnob(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"APP_SHUTDOWN": "graceful"}, "APP_SHUTDOWN \"graceful\""},
		{[]string{"--latency", "fast"}, nil, "--latency / APP_LATENCY"},
		{nil, map[string]string{"APP_READY_PATH": "ready"}, "must start with /"},
		{[]string{"--listen", "8080"}, nil, "want host:port"},
		{[]string{"--drain-wait", "-5s"}, nil, "--drain-wait / ZERODROP_DRAIN_WAIT"},
		{[]string{"--live-path", "/ready"}, nil, "must differ"},
	}
	for _, tc := range cases {
		var stderr bytes.Buffer
		lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		code := run(tc.args, lookup, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("args %v env %v: exit %d, stderr %q; want exit %d mentioning %q",
				tc.args, tc.env, code, stderr.String(), exitUsage, tc.want)
		}
	}
}

// Scenario: a POST with a body (the lab's non-idempotent stream) is read to
// the end and answered with the length the app received.
func TestPOSTBodyIsReadAndCounted(t *testing.T) {
	a := startApp(t, "--shutdown immediate")
	body := strings.Repeat("x", 3000)
	resp, err := client.Post(a.url("/orders"), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || r.Received != int64(len(body)) || r.Path != "/orders" {
		t.Errorf("POST /orders with %d bytes: status %d, %+v; want 200 and received %d", len(body), resp.StatusCode, r, len(body))
	}
}
