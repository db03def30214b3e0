package adapter_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
	"zerodrop.dev/zerodrop/provider/haproxy"
)

const token = "s3cret-token"

// served is an adapter over TLS in front of an HAProxy provider whose one
// instance has no socket (the protocol's checks come before any LB call).
type served struct {
	url    string
	pki    webhook.MutualTLS // the adapter's CA, serving and client certificates
	client *http.Client      // trusts the adapter, presents pki's client certificate
	h      *adapter.Handler
}

func serve(t *testing.T, mutate func(*adapter.Options)) served {
	t.Helper()
	p, err := haproxy.New(haproxy.Config{Instances: []haproxy.Instance{{Name: "haproxy-a", Address: filepath.Join(t.TempDir(), "absent.sock")}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(m.CA)
	o := adapter.Options{Provider: p, Name: "haproxy", Token: []byte(token), ClientCAs: cas, MaxBodyBytes: 4096, Instances: []string{"haproxy-a"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mutate != nil {
		mutate(&o)
	}
	h, err := adapter.New(o)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(m.ServerCert, m.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = adapter.ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }, o.ClientCAs)
	srv.TLS.Certificates = []tls.Certificate{pair} // else StartTLS adds its own, which wins without SNI
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return served{url: srv.URL, pki: m, client: httpsClient(t, m.CA, m.ClientCert, m.ClientKey), h: h}
}

// httpsClient trusts ca and presents cert/key (none when nil).
func httpsClient(t *testing.T, ca, cert, key []byte) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: roots}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

type call struct {
	method, path, body string
	header             map[string]string
}

// do sends c with the token and JSON content type unless c.header
// overrides them ("" deletes), and returns the status and the error body.
func do(t *testing.T, client *http.Client, base string, c call) (int, adapter.ErrorResponse, []byte) {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range c.header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != adapter.ContentType {
		t.Errorf("%s %s: Content-Type %q, want %q", c.method, c.path, ct, adapter.ContentType)
	}
	var er adapter.ErrorResponse
	if resp.StatusCode != http.StatusOK && c.path != "/readyz" {
		if err := json.Unmarshal(raw, &er); err != nil || er.Error.Code == "" || er.Error.Message == "" {
			t.Errorf("%s %s: %d answer is not a JSON error with code and message: %s", c.method, c.path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, er, raw
}

// Scenario: requests without a token, with a wrong token, without a client
// certificate and with a certificate of another CA. Expectation: each is
// refused with 401 and a JSON error saying why, before anything else is
// looked at; the right token and certificate get 200.
func TestAuthenticationRefusesWithout(t *testing.T) {
	s := serve(t, nil)
	other, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"127.0.0.1"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	noCert := httpsClient(t, s.pki.CA, nil, nil)
	strangerCert := httpsClient(t, s.pki.CA, other.ClientCert, other.ClientKey)
	for _, tc := range []struct {
		name   string
		client *http.Client
		auth   string
		want   int
		says   string
	}{
		{"token and certificate", s.client, "Bearer " + token, 200, ""},
		{"no token", s.client, "", 401, "Authorization: Bearer"},
		{"wrong token", s.client, "Bearer not-" + token, 401, "bearer token not accepted"},
		{"basic scheme", s.client, "Basic " + token, 401, "Authorization: Bearer"},
		{"no client certificate", noCert, "Bearer " + token, 401, "client certificate is required"},
		{"client certificate of another CA", strangerCert, "Bearer " + token, 401, "not accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Authorization": tc.auth}
			// An unknown field too: authentication is checked first.
			for _, c := range []call{{method: "GET", path: "/v1/capabilities", header: h},
				{method: "POST", path: "/v1/pools/app/status", body: `{"known":[],"bogus":1}`, header: h}} {
				code, er, _ := do(t, tc.client, s.url, c)
				if tc.want == 200 {
					if c.method == "GET" && code != 200 {
						t.Fatalf("%s %s: %d %+v, want 200", c.method, c.path, code, er)
					}
					continue
				}
				if code != tc.want || er.Error.Code != adapter.CodeUnauthenticated || !strings.Contains(er.Error.Message, tc.says) {
					t.Fatalf("%s %s: %d %+v, want %d Unauthenticated saying %q", c.method, c.path, code, er, tc.want, tc.says)
				}
			}
		})
	}
	t.Run("liveness needs no credentials", func(t *testing.T) {
		code, _, raw := do(t, noCert, s.url, call{method: "GET", path: "/healthz", header: map[string]string{"Authorization": ""}})
		if code != 200 || !strings.Contains(string(raw), `"ok"`) {
			t.Fatalf("/healthz: %d %s", code, raw)
		}
	})
	t.Run("readiness without credentials names instances, not errors", func(t *testing.T) {
		code, _, raw := do(t, noCert, s.url, call{method: "GET", path: "/readyz", header: map[string]string{"Authorization": ""}})
		if code != 200 || !strings.Contains(string(raw), `"haproxy-a"`) {
			t.Fatalf("/readyz: %d %s", code, raw)
		}
	})
}

func TestNewRefusesAnAdapterWithoutAuthentication(t *testing.T) {
	p, _ := haproxy.New(haproxy.Config{Instances: []haproxy.Instance{{Name: "a", Address: "/nonexistent.sock"}}})
	if _, err := adapter.New(adapter.Options{Provider: p}); err == nil || !strings.Contains(err.Error(), "AllowUnauthenticated") {
		t.Fatalf("New without token or client CAs: %v, want a refusal naming AllowUnauthenticated", err)
	}
}

// Scenario: malformed requests. Expectation: 400 (or 404, 405, 413, 415)
// with code Invalid and a message naming the field or the rule broken.
func TestBadRequestsNameTheField(t *testing.T) {
	s := serve(t, nil)
	big := `{"known":[` + strings.Repeat(`{"id":"x","ip":"10.0.0.1","port":80},`, 200) + `{"id":"y","ip":"10.0.0.1","port":80}]}`
	for _, tc := range []struct {
		name string
		c    call
		want int
		code string
		says string
	}{
		{"unknown top-level field", call{method: "POST", path: "/v1/pools/app/status", body: `{"known":[],"bogus":1}`}, 400, "Invalid", `unknown field "bogus"`},
		{"unknown nested field", call{method: "POST", path: "/v1/pools/app/changes", body: `{"known":[],"changes":[{"op":"register","target":{"id":"a","ip":"10.0.0.1","port":80,"weight":3}}]}`}, 400, "Invalid", `unknown field "weight"`},
		{"wrong type", call{method: "POST", path: "/v1/pools/app/changes", body: `{"known":[],"changes":[{"op":"register","target":{"id":"a","ip":"10.0.0.1","port":"80"}}]}`}, 400, "Invalid", "changes.target.port: want an integer"},
		{"unknown op", call{method: "POST", path: "/v1/pools/app/changes", body: `{"known":[],"changes":[{"op":"delete","target":{"id":"a","ip":"10.0.0.1","port":80}}]}`}, 400, "Invalid", `changes[0].op: "delete"`},
		{"no changes", call{method: "POST", path: "/v1/pools/app/changes", body: `{"known":[],"changes":[]}`}, 400, "Invalid", "at least one change"},
		{"bad ip", call{method: "POST", path: "/v1/pools/app/status", body: `{"known":[{"id":"a","ip":"10.0.0","port":80}]}`}, 400, "Invalid", `known[0].ip: "10.0.0"`},
		{"port out of range", call{method: "POST", path: "/v1/pools/app/changes", body: `{"known":[],"changes":[{"op":"drain","target":{"id":"a","ip":"10.0.0.1","port":70000}}]}`}, 400, "Invalid", "changes[0].target.port: 70000"},
		{"bad duration", call{method: "POST", path: "/v1/pools/app/changes", body: `{"known":[],"changes":[{"op":"register","target":{"id":"a","ip":"10.0.0.1","port":80,"check":{"interval":100}}}]}`}, 400, "Invalid", `duration string like "30s"`},
		{"duplicate known", call{method: "POST", path: "/v1/pools/app/status", body: `{"known":[{"id":"a","ip":"10.0.0.1","port":80},{"id":"a","ip":"10.0.0.2","port":80}]}`}, 400, "Invalid", `known[1].id: "a" is also known[0]`},
		{"trailing data", call{method: "POST", path: "/v1/pools/app/status", body: `{"known":[]} {}`}, 400, "Invalid", "data after the JSON object"},
		{"empty body", call{method: "POST", path: "/v1/pools/app/status"}, 400, "Invalid", "empty"},
		{"bad pool name", call{method: "POST", path: "/v1/pools/a%20b/status", body: `{"known":[]}`}, 400, "Invalid", `pool "a b"`},
		{"body too large", call{method: "POST", path: "/v1/pools/app/status", body: big}, 413, adapter.CodeTooLarge, "larger than 4096 bytes"},
		{"form content type", call{method: "POST", path: "/v1/pools/app/status", body: `{"known":[]}`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "Invalid", "want application/json"},
		{"content type of another version", call{method: "POST", path: "/v1/pools/app/status", body: `{"known":[]}`, header: map[string]string{"Content-Type": adapter.MediaType + ";version=2"}}, 415, "Invalid", "want application/json"},
		{"wrong method", call{method: "GET", path: "/v1/pools/app/status"}, 405, "Invalid", "takes POST"},
		{"unknown endpoint", call{method: "GET", path: "/v1/pools"}, 404, "NotFound", "no endpoint /v1/pools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, er, _ := do(t, s.client, s.url, tc.c)
			if code != tc.want || er.Error.Code != tc.code || !strings.Contains(er.Error.Message, tc.says) {
				t.Fatalf("%d %+v, want %d %s saying %q", code, er, tc.want, tc.code, tc.says)
			}
		})
	}
}

// Scenario: clients asking for protocol versions by Accept. Expectation: an
// unknown version gets 406 with the versions served; version 1, no version,
// application/json, */* and no Accept at all get 200 and version 1.
func TestVersionNegotiation(t *testing.T) {
	s := serve(t, nil)
	for _, tc := range []struct {
		accept string
		want   int
	}{
		{adapter.MediaType + ";version=2", 406},
		{adapter.MediaType + "; version=2, text/html", 406},
		{"text/html", 406},
		{adapter.MediaType + ";version=1", 200},
		{adapter.MediaType + ";version=2, " + adapter.MediaType + ";version=1;q=0.5", 200},
		{adapter.MediaType, 200},
		{"application/json", 200},
		{"*/*", 200},
		{"", 200},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			code, er, raw := do(t, s.client, s.url, call{method: "GET", path: "/v1/capabilities", header: map[string]string{"Accept": tc.accept}})
			if code != tc.want {
				t.Fatalf("%d %s, want %d", code, raw, tc.want)
			}
			if code == 406 {
				if er.Error.Code != adapter.CodeNotAcceptable || len(er.Versions) != 1 || er.Versions[0] != "1" {
					t.Fatalf("406 answer %+v, want code NotAcceptable and versions [1]", er)
				}
				return
			}
			var caps adapter.CapabilitiesResponse
			if err := json.Unmarshal(raw, &caps); err != nil || caps.APIVersion != provider.Version || caps.Provider != "haproxy" {
				t.Fatalf("capabilities %s (%v), want apiVersion %s of provider haproxy", raw, err, provider.Version)
			}
			want := (&haproxy.Provider{}).Capabilities()
			if got := adapter.ToCapabilities(caps.Capabilities); got != want {
				t.Fatalf("capabilities through the wire %+v, want %+v", got, want)
			}
		})
	}
}

// Scenario: an adapter whose only instance has no socket. Expectation:
// /readyz answers 503 "unready", and to an authenticated caller names the
// instance with code Unreachable; status reports the instance's error with
// code Unreachable in a 200 answer.
func TestUnreachableInstance(t *testing.T) {
	s := serve(t, func(o *adapter.Options) {
		p := o.Provider.(*haproxy.Provider)
		o.Ready = func(ctx context.Context) error {
			_, err := p.Status(ctx, provider.Pool{Name: "app"})
			return err
		}
	})
	code, _, raw := do(t, s.client, s.url, call{method: "GET", path: "/readyz"})
	var hr adapter.HealthResponse
	if err := json.Unmarshal(raw, &hr); err != nil || code != 503 || hr.Status != "unready" || len(hr.Instances) != 1 ||
		hr.Instances[0].Reachable || hr.Instances[0].Error == nil || hr.Instances[0].Error.Code != "Unreachable" {
		t.Fatalf("/readyz: %d %s, want 503 unready naming haproxy-a Unreachable", code, raw)
	}
	code, _, raw = do(t, s.client, s.url, call{method: "POST", path: "/v1/pools/app/status", body: `{"known":[]}`})
	var ps adapter.PoolStatus
	if err := json.Unmarshal(raw, &ps); err != nil || code != 200 || len(ps.Instances) != 1 || ps.Instances[0].Error == nil ||
		ps.Instances[0].Error.Code != "Unreachable" || ps.Instances[0].Error.Instance != "haproxy-a" {
		t.Fatalf("status: %d %s, want 200 with haproxy-a Unreachable", code, raw)
	}
}
