package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
)

func runProviderTestCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runIO(append([]string{"provider-test"}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// startProviderTestHAProxy runs a real HAProxy with pool "app" (dynamic
// servers, HTTP check on /ready) and pool "small" (two slots).
func startProviderTestHAProxy(t *testing.T) *lab.Instance {
	t.Helper()
	testenv.RequireBinary(t, "haproxy")
	chk := lab.Check{HTTPPath: "/ready", Interval: 100 * time.Millisecond, Rise: 3, Fall: 2, Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{{Name: "app", Check: chk}, {Name: "small", Check: chk, Slots: 2}},
		Retries: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := in.Stop(); err != nil {
			t.Errorf("stop haproxy: %v", err)
		}
	})
	return in
}

func providerTestArgs(t *testing.T, in *lab.Instance, frontend string) []string {
	return []string{"--haproxy-instance", "lb-a=" + in.Socket(),
		"--unreachable-instance", "gone=" + filepath.Join(t.TempDir(), "gone.sock"),
		"--pool", "app", "--frontend", frontend, "--check-path", "/ready",
		"--check-interval", "100ms", "--check-rise", "3", "--check-fall", "2",
		"--limited-pool", "small", "--limited-capacity", "2"}
}

// Scenario: against a real HAProxy, the promises asked for are kept: exit
// 0 and a JSON report that says so.
func TestProviderTestKeptAgainstHAProxy(t *testing.T) {
	in := startProviderTestHAProxy(t)
	fe, err := in.FrontendAddr("app")
	if err != nil {
		t.Fatal(err)
	}
	args := append(providerTestArgs(t, in, fe), "-o", "json",
		"--promise", "NoTrafficBeforeChecksPass", "--promise", "DrainStopsNewRequests",
		"--promise", "PoolFull", "--promise", "UnreachableInstance")
	code, out, errOut := runProviderTestCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var rep struct {
		Results []struct{ Promise, Outcome, Detail string }
		Kept    int
		Broken  int
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if rep.Kept != 4 || rep.Broken != 0 || len(rep.Results) != 4 {
		t.Fatalf("want 4 kept of 4, got %d kept, %d broken:\n%s", rep.Kept, rep.Broken, out)
	}
}

// Scenario: requests sent to a frontend that does not reach the pool
// never arrive: the promise is broken, the table says so, exit 1.
func TestProviderTestBrokenExitsOne(t *testing.T) {
	in := startProviderTestHAProxy(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	args := append(providerTestArgs(t, in, dead), "--promise", "NoTrafficBeforeChecksPass", "--timeout", "2s")
	code, out, errOut := runProviderTestCLI(t, args...)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "NoTrafficBeforeChecksPass  broken") || !strings.Contains(out, "0 kept, 1 broken") {
		t.Fatalf("table does not show the broken promise:\n%s", out)
	}
}

// Scenario: bad command lines exit 2 with a message naming the flag.
func TestProviderTestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no provider", []string{"--pool", "app", "--frontend", "127.0.0.1:1"}, "--haproxy-instance name=address"},
		{"two providers", []string{"--haproxy-instance", "a=/x.sock", "--adapter", "http://127.0.0.1:1", "--pool", "app", "--frontend", "127.0.0.1:1"}, "one provider at a time"},
		{"instance without address", []string{"--haproxy-instance", "a", "--pool", "app", "--frontend", "127.0.0.1:1"}, `instance "a": want name=address`},
		{"address neither socket nor host:port", []string{"--haproxy-instance", "a=sock", "--pool", "app", "--frontend", "127.0.0.1:1"}, "neither a socket path"},
		{"instance twice", []string{"--haproxy-instance", "a=/x.sock", "--haproxy-instance", "a=/y.sock", "--pool", "app", "--frontend", "127.0.0.1:1"}, `"a" named twice`},
		{"no pool", []string{"--haproxy-instance", "a=/x.sock", "--frontend", "127.0.0.1:1"}, "Pool is empty"},
		{"no frontend", []string{"--haproxy-instance", "a=/x.sock", "--pool", "app"}, "Frontends is empty"},
		{"bad frontend", []string{"--haproxy-instance", "a=/x.sock", "--pool", "app", "--frontend", "nowhere"}, `Frontends[0] "nowhere"`},
		{"no check path", []string{"--haproxy-instance", "a=/x.sock", "--pool", "app", "--frontend", "127.0.0.1:1"}, "CheckPath"},
		{"unknown promise", []string{"--haproxy-instance", "a=/x.sock", "--pool", "app", "--frontend", "127.0.0.1:1", "--check-path", "/ready", "--promise", "Nope"}, `--promise "Nope"`},
		{"limited pool without capacity", []string{"--haproxy-instance", "a=/x.sock", "--pool", "app", "--frontend", "127.0.0.1:1", "--limited-pool", "small"}, "--limited-capacity"},
		{"listen on every address", []string{"--haproxy-instance", "a=/x.sock", "--pool", "app", "--frontend", "127.0.0.1:1", "--listen-ip", "0.0.0.0"}, `ListenIP "0.0.0.0"`},
		{"bad output", []string{"--haproxy-instance", "a=/x.sock", "-o", "yaml"}, `-o "yaml"`},
		{"adapter not built in", []string{"--adapter", "http://127.0.0.1:1", "--pool", "app", "--frontend", "127.0.0.1:1"}, "provider/remote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "adapter not built in" {
				// A build without provider/remote (the variable is how
				// it is wired in): the flag is refused, naming it.
				saved := newAdapterProvider
				newAdapterProvider = nil
				t.Cleanup(func() { newAdapterProvider = saved })
			}
			code, out, errOut := runProviderTestCLI(t, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q (stdout %q)", code, errOut, tc.want, out)
			}
		})
	}
}

// FuzzParseInstanceFlag: any string is parsed or refused, never a panic;
// what is accepted has a name and exactly one of socket or address.
func FuzzParseInstanceFlag(f *testing.F) {
	for _, s := range []string{"a=/run/haproxy.sock", "b=10.0.0.1:9999", "c=[::1]:9999", "=x", "a=", "a", "a b=/x", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		in, err := parseInstanceFlag(s)
		if err != nil {
			return
		}
		if in.Name == "" || (in.Socket == "") == (in.Address == "") {
			t.Fatalf("%q parsed to %+v", s, in)
		}
	})
}
