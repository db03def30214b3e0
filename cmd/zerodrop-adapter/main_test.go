package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/haproxy"
	"zerodrop.dev/zerodrop/provider/remote"
)

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--provider", "f5", "--allow-insecure"}, `--provider "f5": want one of haproxy`},
		{[]string{"--haproxy-instance", "a"}, "want name=address"},
		{[]string{"--haproxy-instance", "a=not an address"}, "neither a socket path nor host:port"},
		{[]string{"--token-file", "t"}, "no --tls-cert/--tls-key"},
		{[]string{"--tls-cert", "c", "--tls-key", "k"}, "neither --token-file nor --client-ca"},
		{[]string{"--tls-cert", "c"}, "go together"},
		{[]string{"--client-ca", "ca", "--allow-insecure"}, "--client-ca needs --tls-cert"},
		{[]string{"--allow-insecure", "--check-rise", "-1"}, "must not be negative"},
		{[]string{"--allow-insecure", "extra"}, `unexpected argument "extra"`},
	} {
		if _, err := parse(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("parse(%q): %v, want an error saying %q", tc.args, err, tc.says)
		}
	}
	if err := run(context.Background(), []string{"--allow-insecure"}, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "no --haproxy-instance") {
		t.Errorf("run without an instance: %v, want an error naming --haproxy-instance", err)
	}
}

// Scenario: the binary with flags as a user writes them (TLS files, a
// client CA, a token file, two HAProxy instances, one down) in front of a
// real HAProxy, and the controller's remote client. Expectation: the
// capabilities are HAProxy's; a status names the down instance
// Unreachable and reads the other; readyz says unready; on cancel the
// binary returns.
func TestAdapterBinaryServesHAProxy(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{{Name: "app"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{"tls.crt": m.ServerCert, "tls.key": m.ServerKey, "ca.crt": m.CA, "token": []byte("tok-123\n")}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		done <- run(sctx, []string{"--listen", "127.0.0.1:0",
			"--haproxy-instance", "haproxy-a=" + in.Socket(), "--haproxy-instance", "haproxy-b=" + filepath.Join(dir, "absent.sock"),
			"--tls-cert", filepath.Join(dir, "tls.crt"), "--tls-key", filepath.Join(dir, "tls.key"),
			"--client-ca", filepath.Join(dir, "ca.crt"), "--token-file", filepath.Join(dir, "token"),
			"--check-interval", "250ms", "--lb-timeout", "2s"}, io.Discard, func(a string) { addr <- a })
	}()
	var url string
	select {
	case a := <-addr:
		url = "https://" + a
	case err := <-done:
		t.Fatalf("adapter exited: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.CA)
	pair, _ := tls.X509KeyPair(m.ClientCert, m.ClientKey)
	c, err := remote.New(remote.Config{URL: url,
		TLS: func(context.Context) (*tls.Config, error) {
			return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}, nil
		},
		Token: func(context.Context) ([]byte, error) { return []byte("tok-123"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	caps := c.Capabilities()
	want := (&haproxy.Provider{}).Capabilities()
	if caps.Identity != want.Identity || caps.ReloadGrace != want.ReloadGrace || caps.HealthCheckDefaults != want.HealthCheckDefaults {
		t.Fatalf("capabilities %+v, want HAProxy's %+v", caps, want)
	}
	st, err := c.Status(ctx, provider.Pool{Name: "app"})
	if !errors.Is(err, provider.ErrUnreachable) || len(st.Instances) != 2 || st.Instances[0].Err != nil || st.Instances[1].Instance != "haproxy-b" {
		t.Fatalf("status: %v %v, want haproxy-a read and haproxy-b Unreachable", st, err)
	}
	ready, err := c.Ready(ctx)
	if err == nil || !errors.Is(err, provider.ErrUnreachable) {
		t.Fatalf("readyz with haproxy-b down: %+v %v, want 503", ready, err)
	}

	// The token file rotated in place (a Secret volume): the old token is
	// refused, the new one accepted, without a restart.
	tokPath := filepath.Join(dir, "token")
	if err := os.WriteFile(tokPath, []byte("tok-456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(tokPath, later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx, provider.Pool{Name: "app"}); !errors.Is(err, provider.ErrUnreachable) || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Fatalf("status with the old token: %v, want refused (Unauthenticated)", err)
	}
	rotated, err := remote.New(remote.Config{URL: url,
		TLS: func(context.Context) (*tls.Config, error) {
			return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}, nil
		},
		Token: func(context.Context) ([]byte, error) { return []byte("tok-456"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer rotated.Close()
	if err := rotated.Start(ctx); err != nil {
		t.Fatalf("new token after rotation: %v", err)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("adapter returned %v on cancel, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("adapter did not stop")
	}
}

// Scenario: HAProxy's Runtime API served over mutual TLS only to the
// adapter (--haproxy-tls-dir), as the lab and docs/haproxy.md set it up.
// Expectation: the adapter reads the pool over TLS; without the directory
// the same instance is not read.
func TestAdapterBinaryReachesHAProxyOverMutualTLS(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1"}, "zerodrop-adapter")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{{Name: "app"}}, AdminTLS: &lab.AdminTLS{Cert: m.ServerCert, Key: m.ServerKey, CA: m.CA}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	dir := t.TempDir()
	for name, b := range map[string][]byte{"tls.crt": m.ClientCert, "tls.key": m.ClientKey, "ca.crt": m.CA} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		args    []string
		readErr bool
	}{
		{"with --haproxy-tls-dir", []string{"--haproxy-tls-dir", dir}, false},
		{"without", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := make(chan string, 1)
			done := make(chan error, 1)
			sctx, stop := context.WithCancel(context.Background())
			defer func() { stop(); <-done }()
			args := append([]string{"--listen", "127.0.0.1:0", "--allow-insecure", "--lb-timeout", "2s",
				"--haproxy-instance", "haproxy-a=tcp:" + in.AdminTLSAddr()}, tc.args...)
			go func() { done <- run(sctx, args, io.Discard, func(a string) { addr <- a }) }()
			var url string
			select {
			case a := <-addr:
				url = "http://" + a
			case err := <-done:
				t.Fatalf("adapter exited: %v", err)
			}
			c, err := remote.New(remote.Config{URL: url, AllowInsecure: true, Retries: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st, err := c.Status(ctx, provider.Pool{Name: "app"})
			if tc.readErr != (err != nil) || len(st.Instances) != 1 || st.Instances[0].Instance != "haproxy-a" {
				t.Fatalf("status: %v %v, want read error %v", st, err, tc.readErr)
			}
		})
	}
}
