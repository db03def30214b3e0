package haproxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// The name in HAProxy's serving certificate besides 127.0.0.1.
const tlsServerName = "haproxy-a.lb.test"

// startHAProxyTLS runs a real haproxy whose Runtime API is also served over
// mutual TLS (`stats socket ipv4@127.0.0.1:PORT ssl crt ... ca-file ...
// verify required level admin`), with a certificate for 127.0.0.1 and
// tlsServerName, and returns it with the CA and the client certificate.
func startHAProxyTLS(t *testing.T) (*lab.Instance, webhook.MutualTLS) {
	t.Helper()
	testenv.RequireBinary(t, "haproxy")
	anchor := startProbe(t, "anchor")
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1", tlsServerName}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{
		Backends: []lab.Backend{{
			Name:    "app",
			Check:   lab.Check{HTTPPath: "/ready", Interval: testInter, Rise: testRise, Fall: testFall},
			Servers: []lab.Server{{Name: "anchor", Addr: anchor.addr}},
		}},
		AdminTLS: &lab.AdminTLS{Cert: m.ServerCert, Key: m.ServerKey, CA: m.CA},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := in.Stop(); err != nil {
			t.Errorf("stop haproxy: %v", err)
		}
	})
	return in, m
}

// clientTLS is the configuration a client with certificate cert/key (none
// when empty) that trusts ca uses.
func clientTLS(t *testing.T, ca, cert, key []byte, serverName string) func(context.Context) (*tls.Config, error) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA certificate in PEM")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName}
	if len(cert) > 0 {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return func(context.Context) (*tls.Config, error) { return cfg, nil }
}

func tlsClient(t *testing.T, addr string, tlsCfg func(context.Context) (*tls.Config, error)) *hapi.Client {
	t.Helper()
	c, err := hapi.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 3 * time.Second
	c.TLS = tlsCfg
	return c
}

// Scenario: the controller holds a client certificate signed by the CA
// HAProxy's admin socket trusts, and the CA that signed HAProxy's serving
// certificate. Expectation: register, status and drain work over mutual
// TLS exactly as over the unix socket, and the name verified defaults to
// the address's host (an IP address here).
func TestTLSRuntimeAPIWithClientCertificate(t *testing.T) {
	in, m := startHAProxyTLS(t)
	p0, err := hapi.New(hapi.Config{Instances: []hapi.Instance{{
		Name: "haproxy-a", Address: in.AdminTLSAddr(), TLS: clientTLS(t, m.CA, m.ClientCert, m.ClientKey, ""),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	p := book(p0)
	ctx := context.Background()
	target := startProbe(t, "pod-a")
	if err := p.Register(ctx, "app", target.target()); err != nil {
		t.Fatalf("register over mutual TLS: %v", err)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		st, err := p.Status(ctx, "app")
		if err != nil {
			return false, err.Error()
		}
		ok, reason, msg := st.Healthy("pod-a")
		return ok, reason + ": " + msg
	})
	if err := p.SetDraining(ctx, "app", target.target()); err != nil {
		t.Fatalf("drain over mutual TLS: %v", err)
	}
	st, err := p.Status(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if ts := st.Instances[0].Targets["pod-a"]; ts.Reason != "DRAIN" || (ts.Health != provider.HealthDraining && ts.Health != provider.HealthDrained) {
		t.Fatalf("after SetDraining over TLS: %+v, want draining", ts)
	}
	// No server can be put in front of the admin socket itself, not even
	// by an authenticated client (a TargetBinding naming that backend).
	admin := tlsClient(t, in.AdminTLSAddr(), clientTLS(t, m.CA, m.ClientCert, m.ClientKey, ""))
	if err := admin.AddServer(ctx, "runtime_api", "pod-x", target.addr, hapi.ServerOptions{}); err == nil {
		t.Fatal("add server in the runtime_api backend succeeded: a pod could answer in HAProxy's place")
	}
	// The unix socket sees what the TLS client did: one HAProxy, two doors.
	states, err := in.Client().ShowServersState(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range states {
		found = found || s.Name == "pod-a"
	}
	if !found {
		t.Fatalf("pod-a registered over TLS is not in the backend seen on the unix socket: %+v", states)
	}
}

// Scenario: clients that must not get in try the mutual-TLS admin socket:
// one without a client certificate, one whose certificate another CA
// signed, one speaking plaintext, and one that expects another server name.
// Expectation: each command fails with an error that says why, and none of
// them changed HAProxy (the server each tried to add is absent).
func TestTLSRuntimeAPIRefusesUnauthenticatedClients(t *testing.T) {
	in, m := startHAProxyTLS(t)
	other, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1"}, "intruder")
	if err != nil {
		t.Fatal(err)
	}
	addr := in.AdminTLSAddr()
	cases := []struct {
		name string
		tls  func(context.Context) (*tls.Config, error)
		want string // in the error
	}{
		{"no client certificate", clientTLS(t, m.CA, nil, nil, ""), "certificate required"},
		{"client certificate of another CA", clientTLS(t, m.CA, other.ClientCert, other.ClientKey, ""), "tls:"},
		{"plaintext", nil, "not an HAProxy Runtime API"},
		{"wrong server name", clientTLS(t, m.CA, m.ClientCert, m.ClientKey, "haproxy-b.lb.test"), "haproxy-b.lb.test"},
		{"server from another CA", clientTLS(t, other.CA, m.ClientCert, m.ClientKey, ""), "unknown authority"},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := tlsClient(t, addr, c.tls)
			err := cl.AddServer(ctx, "app", "intruder", "127.0.0.1:1", hapi.ServerOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("add server: %v; want an error mentioning %q", err, c.want)
			}
			t.Logf("refused: %v", err)
			if _, err := cl.ShowInfo(ctx); err == nil {
				t.Fatal("show info succeeded")
			}
			if len(err.Error()) > 400 {
				t.Fatalf("error of %d bytes: the peer's answer is reflected: %v", len(err.Error()), err)
			}
		})
	}
	states, err := in.Client().ShowServersState(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Name == "intruder" {
			t.Fatal("a refused client added a server")
		}
	}
}

// Scenario: a TLS client reaches a plaintext admin socket (the TLS line was
// forgotten on HAProxy's side, or someone answers in its place).
// Expectation: the client refuses to send commands in the clear.
func TestTLSClientRefusesAPlaintextSocket(t *testing.T) {
	in, m := startHAProxyTLS(t)
	// A plaintext TCP admin socket on the same HAProxy is not configured by
	// the lab; a unix socket spoken to with TLS shows the same refusal.
	c := tlsClient(t, in.Socket(), clientTLS(t, m.CA, m.ClientCert, m.ClientKey, "127.0.0.1"))
	_, err := c.ShowInfo(context.Background())
	if err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("show info with TLS on a plaintext socket: %v; want a TLS handshake error", err)
	}
}

// Scenario: the TLS configuration cannot be loaded (a Secret without its
// CA, say). Expectation: no connection is opened, and the error says so.
func TestTLSConfigErrorOpensNoConnection(t *testing.T) {
	broken := errors.New(`Secret zerodrop-system/haproxy-client: no key "ca.crt"`)
	c := tlsClient(t, "127.0.0.1:1", func(context.Context) (*tls.Config, error) { return nil, broken })
	_, err := c.ShowInfo(context.Background())
	if !errors.Is(err, broken) || !strings.Contains(err.Error(), "ca.crt") {
		t.Fatalf("error %v, want the configuration's error", err)
	}
}

// Scenario: the obvious configuration, `ssl crt ... verify required` on the
// `stats socket` line itself (HAProxy documents that the line takes bind
// options). Expectation, on HAProxy 2.6: the socket still answers
// plaintext, which is why docs/haproxy.md puts a TLS frontend in front of
// the admin socket instead. If this test fails, HAProxy now honours `ssl`
// there: docs/haproxy.md may offer the shorter line.
func TestTLSOnTheStatsSocketLineIsIgnoredByHAProxy(t *testing.T) {
	bin := testenv.RequireBinary(t, "haproxy")
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, ca := filepath.Join(dir, "admin.pem"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(crt, append(append(m.ServerCert, '\n'), m.ServerKey...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, m.CA, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf("global\n    stats socket ipv4@%s ssl crt %s ca-file %s verify required level admin\n", addr, crt, ca)
	if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	plain, err := hapi.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	plain.Timeout = time.Second
	eventually(t, 10*time.Second, func() (bool, string) {
		_, err := plain.ShowInfo(context.Background())
		return err == nil, fmt.Sprint(err)
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
