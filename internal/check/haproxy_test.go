package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recommendedCfg is an haproxy.cfg for the TargetBinding of bindingSet
// (pool be_web) as docs/haproxy.md recommends it: the zerodrop ring with
// timestamps, the backend logging its checks to it, and idle keep-alive
// connections kept over a reload. haproxy -c accepts it.
const recommendedCfg = `global
    stats socket /run/haproxy/admin.sock mode 600 level admin

defaults
    mode http
    option idle-close-on-response
    timeout connect 5s
    timeout client 30s
    timeout server 30s

ring zerodrop
    format timed
    maxlen 1024
    size 1048576

frontend fe_web
    bind :80
    default_backend be_web

backend be_web
    balance roundrobin
    option httpchk GET /ready
    option log-health-checks
    log ring@zerodrop local0
    server-template zd-slot 1-8 0.0.0.0:80 disabled
`

// edit applies old -> new replacements to cfg, failing when one does not
// apply (a fixture that silently stays the recommended one tests nothing).
func edit(t *testing.T, cfg string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(cfg, pairs[i]) {
			t.Fatalf("fixture: %q not in the config", pairs[i])
		}
		cfg = strings.Replace(cfg, pairs[i], pairs[i+1], 1)
	}
	return cfg
}

// lineOf is the 1-based line of cfg that starts with s (blanks aside).
func lineOf(t *testing.T, cfg, s string) int {
	t.Helper()
	for i, l := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), s) {
			return i + 1
		}
	}
	t.Fatalf("fixture: %q not in the config", s)
	return 0
}

// analyzeWithCfg checks the manifests with cfg as --haproxy-config.
func analyzeWithCfg(t *testing.T, yaml, cfg string) (*Report, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Analyze(decodeYAML(t, "test/binding.yaml", []byte(yaml)), Options{HAProxyConfig: path})
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %v", r.Errors)
	}
	return r, path
}

// Scenario: a TargetBinding whose pool is the only backend of the file,
// configured as docs/haproxy.md recommends. Expect: no finding at all; in
// particular the pool is not also read as a static server list (its slots
// have no check: ZD306; nothing deregisters them: ZD203), since the
// controller registers and drains its servers.
func TestBoundPoolWithRecommendedConfig(t *testing.T) {
	r, _ := analyzeWithCfg(t, bindingSet(gatesOn, slowChecks, goodGate, goodDrain, grace45, "http"), recommendedCfg)
	if got := ids(r); len(got) != 0 {
		logFindings(t, r)
		t.Fatalf("rules = %v, want none", got)
	}
	for _, e := range r.Explanations {
		for _, f := range e.Frontends {
			if strings.HasPrefix(f.Via, "HAProxy backend") {
				t.Errorf("front %q: the binding's pool is modelled as a static HAProxy backend too", f.Via)
			}
		}
	}
}
