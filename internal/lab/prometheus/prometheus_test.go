package prometheus

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/testenv"
)

// Scenario: Prometheus scrapes a port where nothing listens and loads a
// rules file with an alert that is always true and one that never is.
// Expectation: the API reads back the failed scrape (up == 0), the true
// alert firing with its labels, the other rule inactive and healthy; Stop
// leaves no process and no directory.
func TestPrometheusScrapesAndEvaluatesRules(t *testing.T) {
	testenv.RequireBinary(t, "prometheus")
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	err := os.WriteFile(rules, []byte(`groups:
  - name: test
    rules:
      - alert: AlwaysTrue
        expr: vector(1)
        labels: {severity: info}
      - alert: NeverTrue
        expr: up{job="absent"} == 2
        for: 1m
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A target where nothing listens: Prometheus records up == 0 for it.
	in, err := Start(ctx, Config{RuleFiles: []string{rules}, ScrapeInterval: 200 * time.Millisecond, EvaluationInterval: 200 * time.Millisecond,
		Jobs: []Job{{Name: "absent", Targets: []string{closedAddr(t)}}}})
	if err != nil {
		t.Fatal(err)
	}
	dir, pid := in.Dir(), in.PID()
	t.Cleanup(func() { in.Stop() })
	if !strings.HasPrefix(in.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %s, want loopback", in.URL())
	}

	var alerts []Alert
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		alerts, err = in.Alerts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(alerts) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(alerts) != 1 || alerts[0].Labels["alertname"] != "AlwaysTrue" || alerts[0].State != "firing" || alerts[0].Labels["severity"] != "info" {
		t.Fatalf("alerts %+v, want AlwaysTrue firing alone", alerts)
	}
	rs, err := in.AlertingRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[1].Name != "NeverTrue" || rs[1].State != "inactive" || rs[1].Health != "ok" || rs[1].Duration != 60 {
		t.Fatalf("rules %+v, want NeverTrue second, inactive, healthy, for 60 s", rs)
	}
	var up []Sample
	for deadline := time.Now().Add(20 * time.Second); len(up) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if up, err = in.Query(ctx, `up{job="absent"}`); err != nil {
			t.Fatal(err)
		}
	}
	if len(up) != 1 || up[0].Value != 0 {
		t.Fatalf("up of a closed port: %+v, want one series at 0", up)
	}
	if _, err := in.Query(ctx, `up{`); err == nil || !strings.Contains(err.Error(), "up{") {
		t.Fatalf("bad query: %v, want an error naming it", err)
	}

	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		t.Errorf("prometheus pid %d still running after Stop", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s left after Stop: %v", dir, err)
	}
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestRenderRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"job without targets", Config{Jobs: []Job{{Name: "x"}}}, `job 0 ("x")`},
		{"target without port", Config{Jobs: []Job{{Name: "x", Targets: []string{"127.0.0.1"}}}}, `job "x": target "127.0.0.1"`},
		{"missing rule file", Config{RuleFiles: []string{"/nonexistent/rules.yaml"}}, "/nonexistent/rules.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Render(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	raw, err := Render(Config{ScrapeInterval: 250 * time.Millisecond, Jobs: []Job{{Name: "c", Targets: []string{"127.0.0.1:1"}, HonorLabels: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"scrape_interval: 250ms", "evaluation_interval: 1s", "job_name: c", "honor_labels: true", "- 127.0.0.1:1"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("prometheus.yml lacks %q:\n%s", want, raw)
		}
	}
}
