package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider/adapter"
	"zerodrop.dev/zerodrop/provider/haproxy"
)

// serveHAProxyAdapter serves the HAProxy provider of the given instances
// over the adapter protocol with a bearer token; it returns the URL.
func serveHAProxyAdapter(t *testing.T, token string, ins ...haproxy.Instance) string {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := haproxy.New(haproxy.Config{Instances: ins, Timeout: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h, err := adapter.New(adapter.Options{Provider: p, Token: []byte(token), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// Scenario: `zerodrop provider-test --adapter` against an adapter serving a
// real HAProxy, with a token file and an unreachable twin adapter.
// Expectation: the promises asked for are kept through the wire; exit 0.
func TestProviderTestKeptThroughAnAdapter(t *testing.T) {
	in := startProviderTestHAProxy(t)
	fe, err := in.FrontendAddr("app")
	if err != nil {
		t.Fatal(err)
	}
	const token = "cli-token"
	a := haproxy.Instance{Name: "lb-a", Address: in.Socket()}
	url := serveHAProxyAdapter(t, token, a)
	gone := serveHAProxyAdapter(t, token, a, haproxy.Instance{Name: "gone", Address: filepath.Join(t.TempDir(), "gone.sock")})
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runProviderTestCLI(t, "--adapter", url, "--adapter-token-file", tokFile, "--adapter-unreachable", gone+"=gone",
		"--pool", "app", "--frontend", fe, "--check-path", "/ready", "--check-interval", "100ms", "--check-rise", "3", "--check-fall", "2",
		"--limited-pool", "small", "--limited-capacity", "2", "-o", "json",
		"--promise", "NoTrafficBeforeChecksPass", "--promise", "DeregisterBusy", "--promise", "PoolFull", "--promise", "UnreachableInstance")
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var rep struct{ Kept, Broken int }
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Kept != 4 || rep.Broken != 0 {
		t.Fatalf("want 4 kept of 4, got %+v (%v):\n%s", rep, err, out)
	}
}
