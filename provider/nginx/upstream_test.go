package nginx

import (
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/nginxproc"
	"zerodrop.dev/zerodrop/provider"
)

func TestParseFileRoundTrip(t *testing.T) {
	in := `# hand comment
# zerodrop boot=b1
upstream app {
    least_conn;
    keepalive 16;   # pooled connections
    server 10.0.0.1:8080; # zerodrop id=ns/pod-a since=1500000000
    server [0:0::1]:80 weight=2 down; # zerodrop id=pod-b since=7
    server backend.example:80 max_fails=0;
}
upstream other {
    server 127.0.0.1:9 down; # zerodrop placeholder
}
`
	f, err := ParseFile("up.conf", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if f.Boot != "b1" || len(f.Pools) != 2 {
		t.Fatalf("file: %+v", f)
	}
	app := f.Pool("app")
	if got := strings.Join(app.Directives, "|"); got != "least_conn;|keepalive 16;" {
		t.Errorf("directives: %q", got)
	}
	want := []Server{
		{Addr: "10.0.0.1:8080", ID: "ns/pod-a", Since: 1500 * time.Millisecond},
		{Addr: "[::1]:80", Params: []string{"weight=2"}, Down: true, ID: "pod-b", Since: 7},
		{Addr: "backend.example:80", Params: []string{"max_fails=0"}},
	}
	if len(app.Servers) != len(want) {
		t.Fatalf("servers: %+v", app.Servers)
	}
	for i, w := range want {
		g := app.Servers[i]
		if g.Addr != w.Addr || g.Down != w.Down || g.ID != w.ID || g.Since != w.Since || strings.Join(g.Params, " ") != strings.Join(w.Params, " ") {
			t.Errorf("server %d: got %+v, want %+v", i, g, w)
		}
	}
	if o := f.Pool("other"); len(o.Servers) != 1 || !o.Servers[0].Placeholder || o.Server(placeholderAddr) != nil {
		t.Errorf("placeholder: %+v", o)
	}
	// Render, parse again: the same model.
	g, err := ParseFile("up.conf", f.Render())
	if err != nil {
		t.Fatalf("%v\n%s", err, f.Render())
	}
	if string(g.Render()) != string(f.Render()) {
		t.Errorf("render is not stable:\n%s\n---\n%s", f.Render(), g.Render())
	}
}

func TestParseFileErrorsNameTheLine(t *testing.T) {
	cases := map[string]string{
		"server 1.2.3.4:80;\n":                                          "up.conf:1: expected `upstream NAME {`",
		"upstream app {\n server 1.2.3.4:80\n}\n":                       "up.conf:2: upstream \"app\": expected a directive ending in ';'",
		"upstream app {\n server 1.2.3.4:80;\n":                         "up.conf:1: upstream \"app\" is not closed",
		"upstream app {\n}\nupstream app {\n}\n":                        "up.conf:3: upstream \"app\" defined twice",
		"upstream a$b {\n}\n":                                           "up.conf:1: upstream name \"a$b\"",
		"upstream app {\n location / { }\n}\n":                          "up.conf:2: upstream \"app\": expected a directive",
		"upstream app {\n server 1.2.3.4:80; # zerodrop since=x\n}\n":   "up.conf:2: upstream \"app\": server 1.2.3.4:80: since=\"x\"",
		"upstream app {\n server 1.2.3.4:80;\n server 1.2.3.4:80;\n}\n": "up.conf:3: upstream \"app\": server 1.2.3.4:80 listed twice",
		"upstream app {\n server \"x\";\n}\n":                           "up.conf:2: upstream \"app\": \"server \\\"x\\\";\": quotes",
		"upstream app {\n server 1.2.3.4:80; # zerodrop color=red\n}\n": "unknown zerodrop field \"color\"",
	}
	for in, want := range cases {
		_, err := ParseFile("up.conf", []byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", in, err, want)
		}
	}
}

// An empty pool renders a placeholder (NGINX refuses an upstream without
// servers); Render of what was parsed keeps it a placeholder, not a target.
func TestRenderEmptyPoolHasPlaceholder(t *testing.T) {
	f := &File{Pools: []Upstream{{Name: "app"}}}
	text := string(f.Render())
	if !strings.Contains(text, "server 127.0.0.1:9 down; # zerodrop placeholder") {
		t.Fatalf("no placeholder:\n%s", text)
	}
}

func FuzzParseFile(f *testing.F) {
	f.Add([]byte("upstream app {\n    server 10.0.0.1:8080; # zerodrop id=a since=5\n    server [::1]:80 down;\n    keepalive 4;\n}\n"))
	f.Add([]byte("# zerodrop boot=x\nupstream a {\n server 127.0.0.1:9 down; # zerodrop placeholder\n}\n"))
	f.Add([]byte("upstream a {\n}\n}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile("fuzz.conf", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.conf") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		// What parses renders to a file that parses to the same rendering.
		out := file.Render()
		again, err := ParseFile("fuzz.conf", out)
		if err != nil {
			t.Fatalf("rendered file does not parse: %v\n%s", err, out)
		}
		if string(again.Render()) != string(out) {
			t.Fatalf("render not stable:\n%s\n---\n%s", out, again.Render())
		}
	})
}

// serverStatus, table-driven: which workers loaded a line.
func TestServerStatus(t *testing.T) {
	const margin = 100 * time.Millisecond
	since := 10 * time.Second
	after := since + margin + nginxproc.Tick
	before := since - time.Second
	w := func(pid int, started time.Duration, shutting bool) nginxproc.Worker {
		return nginxproc.Worker{PID: pid, Started: started, ShuttingDown: shutting}
	}
	cases := []struct {
		name    string
		down    bool
		workers []nginxproc.Worker
		want    provider.Health
		reason  string
	}{
		{"up, reload pending", false, []nginxproc.Worker{w(1, before, false), w(2, before, false)}, provider.HealthInitial, "ReloadPending"},
		{"up, reloaded, old workers finishing", false, []nginxproc.Worker{w(1, before, true), w(3, after, false)}, provider.HealthHealthy, "Loaded"},
		{"up, no worker", false, nil, provider.HealthInitial, "NoWorkers"},
		{"up, started inside the margin", false, []nginxproc.Worker{w(3, since+margin/2, false)}, provider.HealthInitial, "ReloadPending"},
		{"down, reload pending: still in rotation", true, []nginxproc.Worker{w(1, before, false)}, provider.HealthHealthy, "DrainPending"},
		{"down, old worker alive", true, []nginxproc.Worker{w(1, before, true), w(3, after, false)}, provider.HealthDraining, "OldWorkers"},
		{"down, old workers gone", true, []nginxproc.Worker{w(3, after, false)}, provider.HealthDrained, "Down"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := serverStatus(Server{Addr: "10.0.0.1:80", Down: c.down, Since: since}, nginxproc.Master{PID: 9, Workers: c.workers}, margin)
			if got.Health != c.want || got.Reason != c.reason {
				t.Fatalf("got %s/%s (%s), want %s/%s", got.Health, got.Reason, got.Message, c.want, c.reason)
			}
		})
	}
	// A line zerodrop did not write (static): loaded long ago.
	if got := serverStatus(Server{Addr: "10.0.0.1:80"}, nginxproc.Master{Workers: []nginxproc.Worker{w(1, time.Second, false)}}, margin); got.Health != provider.HealthHealthy {
		t.Fatalf("static server: %+v", got)
	}
}

// The provider satisfies the controller's interface, and declares no
// active health check.
var _ provider.Provider = (*Provider)(nil)

func TestCapabilitiesAreHonest(t *testing.T) {
	c := (&Provider{}).Capabilities()
	if c.ActiveHealthChecks || c.HealthCheckScope != provider.HealthCheckNone || c.Identity != provider.IdentityAddress ||
		c.DrainSignal != provider.DrainStateOnly || c.VolatileRuntimeState || c.Promotion != provider.PromotionSelf {
		t.Fatalf("capabilities: %+v", c)
	}
}
