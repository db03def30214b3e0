package check

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zerodrop.dev/zerodrop/internal/haproxycfg"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
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

// The ring check reads the name the provider reads.
func TestEventRingIsTheProvidersDefault(t *testing.T) {
	if eventRing != hapi.DefaultEventRing {
		t.Fatalf("check looks for ring %q, the HAProxy provider reads %q", eventRing, hapi.DefaultEventRing)
	}
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

// Scenario: the binding's backend, each way its verdicts can miss the
// controller. Expect: one ZD311 (info) per way, at the line to change, with
// the consequence that way has.
func TestEventRing(t *testing.T) {
	rec := recommendedCfg
	const backendLine = "backend be_web"
	cases := []struct {
		name   string
		cfg    string
		at     string // the config line the finding points at; "" for none
		field  string
		object string
		says   []string
	}{
		{name: "recommended", cfg: rec},
		{name: "no ring section, no log line",
			cfg: edit(t, rec, "ring zerodrop\n    format timed\n    maxlen 1024\n    size 1048576\n", "", "    log ring@zerodrop local0\n", ""),
			at:  backendLine, field: "log", object: "backend be_web",
			says: []string{"pool of TargetBinding shop/web", "has no `ring zerodrop` section", "event stream (`show events zerodrop -w`) fails", "250 ms", "drains are polled as before", "ring zerodrop\n    format timed"}},
		{name: "no ring section, log line to it",
			cfg: edit(t, rec, "ring zerodrop\n    format timed\n    maxlen 1024\n    size 1048576\n", ""),
			at:  "log ring@zerodrop", field: "log", object: "backend be_web",
			says: []string{"HAProxy refuses to start: unknown ring", "250 ms"}},
		{name: "ring, backend does not log",
			cfg: edit(t, rec, "    log ring@zerodrop local0\n", ""),
			at:  backendLine, field: "log", object: "backend be_web",
			says: []string{"does not log to ring zerodrop (line 11)", "--pushed-poll-interval (1 s)", "later than with no ring at all", "log ring@zerodrop local0"}},
		{name: "ring, backend logs to another ring",
			cfg: edit(t, rec, "log ring@zerodrop local0", "log ring@audit local0", "frontend fe_web", "ring audit\n    format timed\n\nfrontend fe_web"),
			at:  backendLine, field: "log", object: "backend be_web",
			says: []string{"it logs to ring@audit, which the controller does not read", "1 s"}},
		{name: "log through defaults and log global",
			cfg: edit(t, rec, "    log ring@zerodrop local0\n", "", "admin\n", "admin\n    log ring@zerodrop local0\n", "    mode http\n", "    mode http\n    log global\n")},
		{name: "no log drops the defaults' line",
			cfg: edit(t, rec, "    log ring@zerodrop local0\n", "    no log\n", "    mode http\n", "    mode http\n    log ring@zerodrop local0\n"),
			at:  backendLine, field: "log", object: "backend be_web",
			says: []string{"does not log to ring zerodrop"}},
		{name: "level that drops notice",
			cfg: edit(t, rec, "log ring@zerodrop local0", "log ring@zerodrop local0 warning"),
			at:  "log ring@zerodrop local0 warning", field: "log", object: "backend be_web",
			says: []string{"at level warning", "drops notice lines", "is UP\" never reaches the ring", "1 s"}},
		{name: "level that drops notice, through log global",
			cfg: edit(t, rec, "    log ring@zerodrop local0\n", "    log global\n", "admin\n", "admin\n    log ring@zerodrop local0 err\n"),
			at:  "log ring@zerodrop local0 err", field: "log", object: "backend be_web",
			says: []string{"at level err (line 3)"}},
		{name: "level notice",
			cfg: edit(t, rec, "log ring@zerodrop local0", "log ring@zerodrop local0 notice")},
		{name: "no option log-health-checks",
			cfg: edit(t, rec, "    option log-health-checks\n", ""),
			at:  backendLine, field: "option log-health-checks", object: "backend be_web",
			says: []string{"without `option log-health-checks` (neither the backend nor its defaults section sets it)", "cannot catch the verdict up", "the 1 s resync"}},
		{name: "log-health-checks from defaults, turned off",
			cfg: edit(t, rec, "    option log-health-checks\n", "    no option log-health-checks\n", "    mode http\n", "    mode http\n    option log-health-checks\n"),
			at:  "no option log-health-checks", field: "option log-health-checks", object: "backend be_web",
			says: []string{"`no option log-health-checks` at line"}},
		{name: "ring without format: raw",
			cfg: edit(t, rec, "    format timed\n", ""),
			at:  "ring zerodrop", field: "format", object: "ring zerodrop",
			says: []string{"ring zerodrop, which the controller reads for the verdicts of be_web, stores lines without a timestamp (no format line: HAProxy's default, raw)", "resumes with new lines only (-n)", "lines written meanwhile are lost", "format timed"}},
		{name: "ring format rfc3164",
			cfg: edit(t, rec, "format timed", "format rfc3164"),
			at:  "format rfc3164", field: "format", object: "ring zerodrop",
			says: []string{"(format rfc3164)"}},
		{name: "ring format iso", cfg: edit(t, rec, "format timed", "format iso")},
		{name: "ring format rfc5424", cfg: edit(t, rec, "format timed", "format rfc5424")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := soleFinding(t, bindingSet(gatesOn, slowChecks, goodGate, goodDrain, grace45, "http"), c.cfg, RuleEventRing, c.at, c.says)
			if f == nil {
				return
			}
			if f.Severity != SeverityInfo || f.Object.String() != c.object || f.Field != c.field {
				t.Errorf("finding %s %s field %q, want info, %s, %q", f.Severity, f.Object, f.Field, c.object, c.field)
			}
		})
	}
}

// Scenario: the ring is missing, but no binding drives the backend through
// the HAProxy provider: the binding names another pool, or its
// LoadBalancer is an adapter's (which pushes no verdicts). Expect: no ZD311.
func TestEventRingOnlyForPoolsTheProviderDrives(t *testing.T) {
	noRing := edit(t, recommendedCfg, "ring zerodrop\n    format timed\n    maxlen 1024\n    size 1048576\n", "", "    log ring@zerodrop local0\n", "")
	set := bindingSet(gatesOn, slowChecks, goodGate, goodDrain, grace45, "http")
	for name, y := range map[string]string{
		"other pool": edit(t, set, "pool: be_web", "pool: be_api"),
		"external provider": edit(t, set, "spec:\n  instances:\n  - {name: a, address: \"10.0.0.1:9999\"}\n",
			"spec:\n  provider: external\n  external: {url: \"https://f5-adapter.lb.svc:8443\"}\n"),
	} {
		t.Run(name, func(t *testing.T) {
			r, _ := analyzeWithCfg(t, y, noRing)
			if fs := findings(r, RuleEventRing); len(fs) > 0 {
				t.Fatalf("want no ZD311, got:%s", dump(r))
			}
		})
	}
}

// Scenario: the frontends in front of the binding's backend, with and
// without option idle-close-on-response. Expect: ZD312 (warning) exactly
// for an HTTP frontend or listen section that routes to the backend and
// lacks the option, at its header (or at the line that turned the option
// off); for a backend no frontend of the file routes to, at the backend
// when its defaults lack the option.
func TestIdleCloseOnResponse(t *testing.T) {
	rec := recommendedCfg
	noOpt := edit(t, rec, "    option idle-close-on-response\n", "")
	cases := []struct {
		name   string
		cfg    string
		at     string
		object string
		says   []string
	}{
		{name: "recommended", cfg: rec},
		{name: "defaults without the option",
			cfg: noOpt, at: "frontend fe_web", object: "frontend fe_web",
			says: []string{"HAProxy frontend fe_web (mode http) routes to be_web (line 17; used by Deployment shop/web) without `option idle-close-on-response` (neither it nor its defaults section sets it)",
				"closes its idle client keep-alive connections", "POSTs fail", "14 and 27", "defaults\n    option idle-close-on-response   # HAProxy 2.6 and later"}},
		{name: "option in the frontend only", cfg: edit(t, noOpt, "    bind :80\n", "    bind :80\n    option idle-close-on-response\n")},
		{name: "turned off in the frontend",
			cfg: edit(t, rec, "    bind :80\n", "    bind :80\n    no option idle-close-on-response\n"),
			at:  "no option idle-close-on-response", object: "frontend fe_web",
			says: []string{"(`no option idle-close-on-response` at line 18)", "Remove `no option idle-close-on-response` from frontend fe_web (line 18)."}},
		{name: "routed by use_backend",
			cfg: edit(t, noOpt, "    default_backend be_web\n", "    use_backend be_web if { path_beg /shop }\n    default_backend be_other\n", "\nbackend be_web", "\nbackend be_other\n    server o 10.0.0.9:80 check\n\nbackend be_web"),
			at:  "frontend fe_web", object: "frontend fe_web",
			says: []string{"routes to be_web (line 17;"}},
		{name: "routed by a use_backend built at run time",
			cfg: edit(t, noOpt, "    default_backend be_web\n", "    use_backend be_%[req.hdr(host),lower,word(1,.)]\n"),
			at:  "frontend fe_web", object: "frontend fe_web",
			says: []string{"use_backend be_%[req.hdr(host),lower,word(1,.)] at line 17 may pick it"}},
		{name: "an HTTP frontend of other backends",
			cfg: edit(t, rec, "frontend fe_web", "frontend fe_admin\n    bind :81\n    no option idle-close-on-response\n    default_backend be_other\n\nbackend be_other\n    server o 10.0.0.9:80 check\n\nfrontend fe_web")},
		{name: "a TCP frontend",
			cfg: edit(t, noOpt, "    mode http\n", "    mode tcp\n", "    option httpchk GET /ready\n", "")},
		{name: "a listen section",
			cfg: edit(t, noOpt, "frontend fe_web\n    bind :80\n    default_backend be_web\n\nbackend be_web", "listen be_web\n    bind :80"),
			at:  "listen be_web", object: "listen be_web",
			says: []string{"HAProxy listen be_web (mode http) routes to be_web (line 15;"}},
		{name: "no frontend in the file, defaults without the option",
			cfg: edit(t, noOpt, "frontend fe_web\n    bind :80\n    default_backend be_web\n\n", ""),
			at:  "backend be_web", object: "backend be_web",
			says: []string{"HAProxy backend be_web (used by Deployment shop/web): no frontend or listen section of", "the frontend that serves it needs it"}},
		{name: "no frontend in the file, defaults with the option",
			cfg: edit(t, rec, "frontend fe_web\n    bind :80\n    default_backend be_web\n\n", "")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := soleFinding(t, bindingSet(gatesOn, slowChecks, goodGate, goodDrain, grace45, "http"), c.cfg, RuleIdleClose, c.at, c.says)
			if f == nil {
				return
			}
			if f.Severity != SeverityWarning || f.Object.String() != c.object || f.Field != "option idle-close-on-response" {
				t.Errorf("finding %s %s field %q, want warning, %s", f.Severity, f.Object, f.Field, c.object)
			}
		})
	}
}

// FuzzHAProxyRules checks arbitrary haproxy.cfg text with the binding set
// (pool be_web) and, through the annotation, a static front on backend
// be_api: Analyze must not panic, and every finding on the file must name
// it and a line it has (ZD306, ZD311, ZD312 point at the line to change).
func FuzzHAProxyRules(f *testing.F) {
	f.Add(recommendedCfg)
	f.Add(strings.Replace(recommendedCfg, "    format timed\n", "", 1))
	f.Add("global\n log ring@zerodrop local0 warning\nring zerodrop\n format rfc3164\nfrontend fe\n mode http\n use_backend be_%[var(txn.x)]\nbackend be_web\n log global\nbackend be_api\n mode http\n server a 10.0.0.1:80\n")
	f.Add("defaults\n mode http\nlisten be_web\n bind :80\n no option idle-close-on-response\n no log\n")
	objs := decodeYAML(f, "test/binding.yaml", []byte(bindingSet(gatesOn, slowChecks, goodGate, goodDrain, grace45, "http")+
		"---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop, annotations: {zerodrop.dev/haproxy-backend: be_api}}\nspec: {selector: {app: web}, ports: [{port: 81}]}\n"))
	f.Fuzz(func(t *testing.T, data string) {
		cfg, err := haproxycfg.Parse(strings.NewReader(data), "fuzz.cfg")
		if err != nil {
			return
		}
		lines := strings.Count(data, "\n") + 1
		r := Analyze(objs, Options{haproxy: cfg})
		for _, fd := range r.Findings {
			if fd.Object.APIVersion != "haproxy" {
				continue
			}
			if fd.Source.File != "fuzz.cfg" || fd.Source.Line < 1 || fd.Source.Line > lines {
				t.Fatalf("%s %s at %s:%d: not a line of fuzz.cfg (%d lines)", fd.RuleID, fd.Object, fd.Source.File, fd.Source.Line, lines)
			}
			if fd.Message == "" || fd.Consequence == "" || fd.Fix == "" || fd.Field == "" {
				t.Fatalf("%s: incomplete finding %+v", fd.RuleID, fd)
			}
		}
	})
}

// soleFinding analyzes objs with the HAProxy configuration cfg and asserts
// that rule is the only rule reporting: nothing when at is "", else one
// finding at cfg's line holding at, whose text says every one of says.
// It returns that finding (nil when at is "") for the caller's checks.
func soleFinding(t *testing.T, objs, cfg, rule, at string, says []string) *Finding {
	t.Helper()
	r, path := analyzeWithCfg(t, objs, cfg)
	fs := findings(r, rule)
	if others := slices.DeleteFunc(ids(r), func(id string) bool { return id == rule }); len(others) > 0 {
		logFindings(t, r)
		t.Errorf("other rules %v: want %s alone", others, rule)
	}
	if at == "" {
		if len(fs) > 0 {
			t.Fatalf("want no %s, got:%s", rule, dump(r))
		}
		return nil
	}
	if len(fs) != 1 {
		t.Fatalf("want one %s, got:%s", rule, dump(r))
	}
	f := fs[0]
	if want := lineOf(t, cfg, at); f.Source.File != path || f.Source.Line != want {
		t.Errorf("source %s:%d, want %s:%d (%q)", f.Source.File, f.Source.Line, path, want, at)
	}
	all := f.Message + " | " + f.Consequence + " | " + f.Fix
	for _, s := range says {
		if !strings.Contains(all, s) {
			t.Errorf("finding lacks %q:\n%s", s, all)
		}
	}
	return &f
}
