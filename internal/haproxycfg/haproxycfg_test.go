package haproxycfg

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// seed000 is the on-prem backend of seed 000 ("option 4"), with a global and
// defaults section around it as a real file has.
const seed000 = `# /etc/haproxy/haproxy.cfg
global
    log /dev/log local0
    stats socket /run/haproxy/admin.sock mode 660 level admin
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client  50s
    timeout server  50000
    option redispatch
    retries 3

frontend fe_api
    bind *:80
    timeout client 30s
    default_backend k8s_api_backend

backend k8s_api_backend
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200

    # fast health checks
    default-server inter 3s fall 2 rise 2 check

    # graceful shutdown support
    default-server on-marked-down shutdown-sessions

    server pod1 10.0.1.10:8080 check
    server pod2 10.0.1.11:8080 check
    server pod3 10.0.1.12:8080 check
`

func TestParseSeed000(t *testing.T) {
	cfg, err := Parse(strings.NewReader(seed000), "haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Backends) != 1 {
		t.Fatalf("backends = %v, want only k8s_api_backend (frontend timeouts are not a backend)", cfg.Names())
	}
	b := cfg.Backend("k8s_api_backend")
	if b == nil || b.Balance != "roundrobin" || !b.HTTPCheck {
		t.Fatalf("backend = %+v", b)
	}
	if d, ok := b.Timeout("server"); !ok || d != 50*time.Second {
		t.Errorf("timeout server = %v %v, want 50s inherited from defaults (bare number = ms)", d, ok)
	}
	if d, _ := b.Timeout("client"); d != 50*time.Second {
		t.Errorf("timeout client = %v, want the defaults' 50s (the frontend's 30s is not the backend's)", d)
	}
	if len(b.Servers) != 3 {
		t.Fatalf("servers = %d, want 3", len(b.Servers))
	}
	for _, s := range b.Servers {
		p := s.Params
		if !p.Check || p.Inter != 3*time.Second || p.Rise != 2 || p.Fall != 2 || p.FastInter != 3*time.Second || p.DownInter != 3*time.Second {
			t.Errorf("server %s params = %+v, want check inter 3s rise 2 fall 2 (fastinter/downinter = inter)", s.Name, p)
		}
	}
	if b.Servers[2].Line != 33 || b.Servers[2].Addr != "10.0.1.12:8080" {
		t.Errorf("pod3 at line %d addr %q", b.Servers[2].Line, b.Servers[2].Addr)
	}
	h := b.Health()
	if h.Inter != 3*time.Second || h.Rise != 2 || h.Fall != 2 {
		t.Errorf("Health() = %+v", h)
	}
}

func TestDefaultsInheritanceAndOverride(t *testing.T) {
	cfg, err := Parse(strings.NewReader(`
defaults base
    timeout server 30s
    default-server inter 5s rise 3
    balance leastconn

defaults other
    timeout server 1m

backend a from base
    default-server fall 4
    server s1 10.0.0.1:80 check fastinter 500ms

backend b
    server s1 10.0.0.2:80 inter 1s

listen c
    bind :8080
    no option httpchk
    timeout tunnel 1h
`), "t.cfg")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Backend("a")
	if d, _ := a.Timeout("server"); d != 30*time.Second || a.Balance != "leastconn" {
		t.Errorf("a: timeout server %v balance %s, want 30s leastconn from 'base'", d, a.Balance)
	}
	p := a.Servers[0].Params
	if p.Inter != 5*time.Second || p.Rise != 3 || p.Fall != 4 || p.FastInter != 500*time.Millisecond || p.DownInter != 5*time.Second || !p.Check {
		t.Errorf("a/s1 = %+v", p)
	}
	b := cfg.Backend("b")
	if d, _ := b.Timeout("server"); d != time.Minute || b.Balance != "roundrobin" {
		t.Errorf("b: timeout server %v balance %s, want 1m (last defaults) roundrobin", d, b.Balance)
	}
	if p := b.Servers[0].Params; p.Check || p.Inter != time.Second || p.Rise != DefaultRise || p.Fall != DefaultFall {
		t.Errorf("b/s1 = %+v, want no check, inter 1s, HAProxy default rise/fall", p)
	}
	c := cfg.Backend("c")
	if c == nil || c.Section != "listen" || len(c.Servers) != 0 {
		t.Fatalf("c = %+v", c)
	}
	if d, _ := c.Timeout("tunnel"); d != time.Hour {
		t.Errorf("c: timeout tunnel %v", d)
	}
	if h := c.Health(); h.Inter != DefaultInter || h.Rise != DefaultRise || h.Fall != DefaultFall {
		t.Errorf("c: Health() without servers = %+v, want HAProxy defaults", h)
	}
}

func TestDynamicBackendUsesDefaultServer(t *testing.T) {
	// A backend filled at runtime (zerodrop's controller adds servers over
	// the Runtime API): default-server decides the checks.
	cfg, err := Parse(strings.NewReader("backend web\n  balance roundrobin\n  default-server check inter 1s fastinter 250ms rise 3 fall 2\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Backend("web").Health()
	if !h.Check || h.Inter != time.Second || h.FastInter != 250*time.Millisecond || h.Rise != 3 || h.Fall != 2 {
		t.Errorf("Health() = %+v", h)
	}
}

func TestErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ name, cfg, want string }{
		{"bad inter", "backend b\n  server s 1.2.3.4:80 check inter 3x\n", "f.cfg:2: server s: inter: bad time \"3x\""},
		{"bad rise", "backend b\n\n  default-server rise zero\n", "f.cfg:3: default-server: rise \"zero\""},
		{"bad timeout", "defaults\n  timeout server soon\n", "f.cfg:2: timeout server: bad time \"soon\""},
		{"missing from", "backend b from nothere\n", "f.cfg:1: backend b: defaults section \"nothere\" not found"},
		{"unnamed backend", "backend\n", "f.cfg:1: backend section without a name"},
		{"quote", "backend b\n  option httpchk GET \"/health\n", "f.cfg:2: unterminated \" quote"},
		{"duplicate", "backend b\nlisten b\n", "f.cfg:2: listen b: a backend or listen section with this name already exists at line 1"},
		{"server in defaults", "defaults\n  server s 1.1.1.1:80\n", "f.cfg:2: server is not allowed in a defaults section"},
		{"zero inter", "backend b\n  server s 1.1.1.1:80 inter 0\n", "must be greater than 0"},
		{"unnamed frontend", "\nfrontend\n", "f.cfg:2: frontend section without a name"},
		{"unnamed ring", "ring\n", "f.cfg:1: ring section without a name"},
		{"empty ring name", "ring \\\n", "f.cfg:1: ring section without a name"},
		{"empty log target", "global\ndefaults\n  log \"\"\n", "f.cfg:3: log: missing target"},
		{"ring format", "ring r\n  format\n", "f.cfg:2: ring r: format: missing format"},
		{"server in frontend", "frontend fe\n  server s 1.1.1.1:80\n", "f.cfg:2: server is not allowed in a frontend section"},
		{"frontend timeout", "frontend fe\n  timeout client soon\n", "f.cfg:2: timeout client: bad time \"soon\""},
		{"log without target", "defaults\n  log\n", "f.cfg:2: log: missing target"},
		{"use_backend without name", "frontend fe\n  use_backend\n", "f.cfg:2: use_backend: missing backend name"},
	}
	for _, c := range cases {
		_, err := Parse(strings.NewReader(c.cfg), "f.cfg")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
		var pe *Error
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("%s: error %T is not *Error", c.name, err)
		}
	}
}

// zerodropCfg is the shape docs/haproxy.md recommends for a backend that a
// TargetBinding drives, with a TCP frontend beside it (the lab's Runtime
// API over TLS) and a second defaults section without the recommendations.
const zerodropCfg = `global
    log /dev/log local0
    log ring@zerodrop local0 notice
    stats socket /run/haproxy/admin.sock mode 600 level admin

defaults web
    mode http
    log global
    option idle-close-on-response
    option log-health-checks
    default_backend be_web
    timeout client 30s

ring zerodrop
    format timed
    size 1048576

ring audit
    size 65536

frontend fe_web from web
    bind :80
    use_backend be_api if { path_beg /api }
    use_backend be_%[req.hdr(host),lower]

frontend runtime_api_tls from web
    mode tcp
    no option idle-close-on-response
    default_backend runtime_api

listen stats from web
    bind :9000
    no log
    log ring@audit local0 warning

backend be_web from web
    log ring@zerodrop len 1024 format timed local0 info
    server-template zd-slot 1-4 0.0.0.0:80 disabled

backend be_api from web
    no log
    no option log-health-checks

defaults
    timeout server 5s

backend runtime_api
    balance static-rr
    server admin unix@/run/haproxy/admin.sock
`

func TestParseFrontendsRingsAndLogs(t *testing.T) {
	cfg, err := Parse(strings.NewReader(zerodropCfg), "z.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.GlobalLogs) != 2 || cfg.GlobalLogs[1].RingName() != "zerodrop" || cfg.GlobalLogs[1].Line != 3 || cfg.GlobalLogs[1].Level != "notice" {
		t.Errorf("global logs = %+v", cfg.GlobalLogs)
	}
	if r := cfg.Ring("zerodrop"); r == nil || r.Line != 14 || r.Format != "timed" || r.FormatLine != 15 || !r.Timestamped() {
		t.Errorf("ring zerodrop = %+v", r)
	}
	if r := cfg.Ring("audit"); r == nil || r.Format != "raw" || r.FormatLine != 0 || r.Timestamped() {
		t.Errorf("ring audit = %+v, want HAProxy's default format raw, untimed", r)
	}
	if cfg.Ring("nope") != nil {
		t.Error("Ring(nope) != nil")
	}

	var names []string
	for _, f := range cfg.Frontends {
		names = append(names, f.Section+" "+f.Name)
	}
	if strings.Join(names, ",") != "frontend fe_web,frontend runtime_api_tls,listen stats" {
		t.Fatalf("frontends = %v", names)
	}
	fe, tcp, stats := cfg.Frontends[0], cfg.Frontends[1], cfg.Frontends[2]
	if fe.Line != 21 || fe.Mode != "http" || !fe.Options["idle-close-on-response"].On || fe.Options["idle-close-on-response"].Line != 9 {
		t.Errorf("fe_web = %+v, want http and idle-close-on-response from defaults web (line 9)", fe)
	}
	if ref, ok := fe.Routes("be_web"); !ok || ref.Line != 11 || ref.Dynamic {
		t.Errorf("fe_web routes be_web: %+v %v, want the inherited default_backend at line 11", ref, ok)
	}
	if ref, ok := fe.Routes("be_api"); !ok || ref.Line != 23 {
		t.Errorf("fe_web routes be_api: %+v %v, want use_backend at line 23", ref, ok)
	}
	if ref, ok := fe.Routes("be_other"); !ok || !ref.Dynamic || ref.Line != 24 {
		t.Errorf("fe_web routes be_other: %+v %v, want the dynamic use_backend at line 24", ref, ok)
	}
	if o := tcp.Options["idle-close-on-response"]; tcp.Mode != "tcp" || o.On || o.Line != 28 {
		t.Errorf("runtime_api_tls = %+v", tcp)
	}
	if _, ok := tcp.Routes("be_web"); ok {
		t.Error("runtime_api_tls routes be_web: its own default_backend replaced the inherited one")
	}
	if ref, ok := stats.Routes("stats"); !ok || ref.Line != 31 {
		t.Errorf("listen stats routes itself: %+v %v", ref, ok)
	}
	if len(stats.Logs) != 1 || stats.Logs[0].RingName() != "audit" || stats.Logs[0].Sends("notice") || !stats.Logs[0].Sends("alert") {
		t.Errorf("stats logs = %+v, want only ring@audit at warning (no notice, alert passes)", stats.Logs)
	}

	be := cfg.Backend("be_web")
	if be.Mode != "http" || !be.Options["log-health-checks"].On {
		t.Errorf("be_web = %+v", be)
	}
	// log global (line 8) copied both global targets; the backend adds its own.
	if len(be.Logs) != 3 || be.Logs[1].RingName() != "zerodrop" || be.Logs[1].Line != 3 || be.Logs[1].Via != 8 ||
		be.Logs[2].Line != 37 || be.Logs[2].Facility != "local0" || be.Logs[2].Level != "info" {
		t.Errorf("be_web logs = %+v", be.Logs)
	}
	api := cfg.Backend("be_api")
	if len(api.Logs) != 0 || api.Options["log-health-checks"].On || api.Options["log-health-checks"].Line != 42 {
		t.Errorf("be_api = %+v, want no logs and log-health-checks off at line 42", api)
	}
	ra := cfg.Backend("runtime_api")
	if ra.Mode != "tcp" || len(ra.Logs) != 0 || ra.Options["idle-close-on-response"].On {
		t.Errorf("runtime_api = %+v, want the last defaults' tcp mode, nothing from defaults web", ra)
	}
	if len(cfg.Backends) != 4 || cfg.Backend("stats") == nil {
		t.Errorf("backends = %v, want the listen section among them", cfg.Names())
	}
}

// A repeated "log global" adds nothing HAProxy would not already send, and
// must not multiply the targets: 300 global log lines x 300 "log global"
// x 300 sections once took the parser 10 s for 13 KB (found by FuzzParse).
func TestRepeatedLogGlobalKeepsOneCopy(t *testing.T) {
	var b strings.Builder
	b.WriteString("global\n  log /dev/log local0\n  log ring@zerodrop local0\ndefaults\n")
	for range 300 {
		b.WriteString("  log global\n")
	}
	b.WriteString("  log 127.0.0.1:514 local1\n")
	for i := range 300 {
		fmt.Fprintf(&b, "backend b%d\n  log global\n", i)
	}
	cfg, err := Parse(strings.NewReader(b.String()), "x.cfg")
	if err != nil {
		t.Fatal(err)
	}
	for _, bk := range cfg.Backends {
		if len(bk.Logs) != 3 || bk.Logs[0].Via != 5 || bk.Logs[2].Target != "127.0.0.1:514" {
			t.Fatalf("backend %s logs = %+v, want the two global targets (via line 5) and the defaults' own", bk.Name, bk.Logs)
		}
	}
}

func TestLogLevels(t *testing.T) {
	for _, c := range []struct {
		level, severity string
		sends           bool
	}{
		{"", "debug", true}, {"notice", "notice", true}, {"notice", "alert", true},
		{"warning", "notice", false}, {"err", "warning", false}, {"debug", "notice", true},
	} {
		if got := (Log{Level: c.level}).Sends(c.severity); got != c.sends {
			t.Errorf("level %q sends %s = %v, want %v", c.level, c.severity, got, c.sends)
		}
	}
}

func TestParseTime(t *testing.T) {
	cases := map[string]time.Duration{
		"3000": 3 * time.Second, "3s": 3 * time.Second, "250ms": 250 * time.Millisecond,
		"2m": 2 * time.Minute, "1h": time.Hour, "1d": 24 * time.Hour, "100us": 100 * time.Microsecond,
	}
	for in, want := range cases {
		if got, err := ParseTime(in); err != nil || got != want {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "s", "3 s", "-1s", "1.5s", "3sec", "99999999999999999999", "9999999999999d"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q): want an error", bad)
		}
	}
}

func TestSplit(t *testing.T) {
	got, err := split(`  option httpchk "GET /a b" 'x y' z\ w # comment "ignored`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"option", "httpchk", "GET /a b", "x y", "z w"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("split = %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(seed000)
	f.Add("defaults d\n timeout server 1m\nbackend a from d\n server-template web 1-5 web.svc:80 check inter 2s\n")
	f.Add("listen stats\n bind :9000\n stats enable\nbackend b\n default-server check inter 1s fastinter 250ms downinter 5s rise 3 fall 2\n timeout check 2s\n")
	f.Add("backend b\n server s 'a b':80 check \\\"\n")
	f.Add(zerodropCfg)
	f.Add("global\n log ring@r local0\nring r\n format iso\nfrontend f\n mode http\n no option idle-close-on-response\n use_backend %[var(x)]\nbackend b\n log global\n no log\n")
	f.Fuzz(func(t *testing.T, data string) {
		cfg, err := Parse(strings.NewReader(data), "fuzz.cfg")
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) && (pe.Line < 1 || !strings.HasPrefix(err.Error(), "fuzz.cfg:")) {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		for _, b := range cfg.Backends {
			for _, s := range b.Servers {
				p := s.Params
				if p.Inter <= 0 || p.FastInter <= 0 || p.DownInter <= 0 || p.Rise < 1 || p.Fall < 1 {
					t.Fatalf("server %s/%s: non-positive effective params %+v", b.Name, s.Name, p)
				}
			}
			h := b.Health()
			if h.Inter <= 0 || h.Rise < 1 || h.Fall < 1 {
				t.Fatalf("backend %s: Health() = %+v", b.Name, h)
			}
			if b.Line < 1 || b.Mode == "" {
				t.Fatalf("backend %s: line %d mode %q", b.Name, b.Line, b.Mode)
			}
			checkLines(t, "backend "+b.Name, b.Options, b.Logs)
		}
		for _, f := range cfg.Frontends {
			if f.Name == "" || f.Line < 1 || f.Mode == "" {
				t.Fatalf("frontend %+v: no name, line or mode", f)
			}
			checkLines(t, "frontend "+f.Name, f.Options, f.Logs)
			for _, u := range append([]BackendRef{f.DefaultBackend}, f.UseBackends...) {
				if u.Name != "" && u.Line < 1 {
					t.Fatalf("frontend %s: %+v without a line", f.Name, u)
				}
				if u.Name != "" {
					if r, ok := f.Routes(u.Name); !ok || r.Line < 1 {
						t.Fatalf("frontend %s names %s but Routes says %+v %v", f.Name, u.Name, r, ok)
					}
				}
			}
		}
		for _, r := range cfg.Rings {
			if r.Name == "" || r.Line < 1 || r.Format == "" || r.FormatLine < 0 {
				t.Fatalf("ring %+v", r)
			}
		}
		checkLines(t, "global", nil, cfg.GlobalLogs)
	})
}

// checkLines fails when an option or a log target has no line to point at.
func checkLines(t *testing.T, where string, opts map[string]Option, logs []Log) {
	t.Helper()
	for k, o := range opts {
		if o.Line < 1 {
			t.Fatalf("%s: option %s without a line", where, k)
		}
	}
	for _, l := range logs {
		if l.Line < 1 || l.Target == "" || l.Via < 0 {
			t.Fatalf("%s: log %+v", where, l)
		}
	}
}
