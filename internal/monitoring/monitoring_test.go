package monitoring

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	_ "sigs.k8s.io/controller-runtime/pkg/controller" // registers controller_runtime_reconcile_*
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	_ "sigs.k8s.io/controller-runtime/pkg/webhook" // registers controller_runtime_webhook_*
	"sigs.k8s.io/yaml"

	"zerodrop.dev/zerodrop/internal/controller"
	"zerodrop.dev/zerodrop/internal/testenv"
)

const (
	rulesFile     = "../../config/monitoring/zerodrop.rules.yaml"
	rulesTestFile = "../../config/monitoring/zerodrop.rules_test.yaml"
	dashboardFile = "../../config/monitoring/dashboard.json"
	docsFile      = "../../docs/monitoring.md"
)

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`zerodrop_gates_stuck > 0`, []string{"zerodrop_gates_stuck"}},
		{`max by (namespace, binding) (zerodrop_gates_stuck{namespace=~"a|b"}) > 0`, []string{"zerodrop_gates_stuck"}},
		{`histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="}"}[$__rate_interval])))`, []string{"x_bucket"}},
		{`absent(up{job="x"} == 1) or on () vector(0)`, []string{"up"}},
		{`a / ignoring (b) group_left (c) d offset 5m unless bool e`, []string{"a", "d", "e"}},
		{`sum without (pod) (rate(a[5m])) * 1e3 + Inf + 0x1f`, []string{"a"}},
		{`{__name__="a"}`, nil},
		{"a # comment b\n+ c", []string{"a", "c"}},
	} {
		got, err := MetricNames(tc.expr)
		if err != nil {
			t.Errorf("MetricNames(%q): %v", tc.expr, err)
			continue
		}
		if len(got) == 0 && len(tc.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("MetricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`a{b="c}`, `rate(a[5m)`, `a{b="c"]`, `sum(a`} {
		if _, err := MetricNames(bad); err == nil {
			t.Errorf("MetricNames(%q): no error", bad)
		} else if !strings.Contains(err.Error(), "offset") {
			t.Errorf("MetricNames(%q): error %q names no offset", bad, err)
		}
	}
}

func FuzzMetricNames(f *testing.F) {
	for _, s := range []string{`sum by (a) (rate(b{c="d"}[5m]))`, `a{`, `"`, `by (`, "x # y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		names, err := MetricNames(expr)
		if err != nil {
			return
		}
		for _, n := range names {
			if n == "" || !strings.Contains(expr, n) {
				t.Fatalf("MetricNames(%q) returned %q, not in the expression", expr, n)
			}
		}
	})
}

// TestAlertRulesUnitTests: promtool accepts the rules file, and every alert
// fires on the synthetic series of zerodrop.rules_test.yaml and stays quiet
// on the others.
func TestAlertRulesUnitTests(t *testing.T) {
	promtool := testenv.RequireBinary(t, "promtool")
	runPromtool(t, promtool, "check", "rules", rulesFile)
	runPromtool(t, promtool, "test", "rules", rulesTestFile)

	// Every alert has a test that expects it to fire.
	tests, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts(t) {
		if !strings.Contains(string(tests), "alertname: "+a.Alert+"\n        exp_alerts:\n          - exp_labels") {
			t.Errorf("%s: no test in %s expects %s to fire", rulesTestFile, rulesTestFile, a.Alert)
		}
		if !strings.Contains(string(tests), "alertname: "+a.Alert+"\n        exp_alerts: []") {
			t.Errorf("%s: no test in %s expects %s to stay quiet", rulesTestFile, rulesTestFile, a.Alert)
		}
	}
}

// TestDashboardIsGenerated: config/monitoring/dashboard.json is what
// Dashboard builds.
func TestDashboardIsGenerated(t *testing.T) {
	want, err := Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatalf("%v (generate it: go run ./hack/genchart)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `go run ./hack/genchart` and commit it", dashboardFile)
	}
	if !strings.Contains(string(got), `"title": "Pod readiness vs LB health"`) {
		t.Error("the dashboard lacks the panel \"Pod readiness vs LB health\"")
	}
}

// TestDashboardQueriesParse: Prometheus parses every panel's expression
// (each checked by promtool as a recording rule, Grafana's $variables
// replaced by what Grafana would put there).
func TestDashboardQueriesParse(t *testing.T) {
	promtool := testenv.RequireBinary(t, "promtool")
	queries := dashboardQueries(t)
	if len(queries) < 8 {
		t.Fatalf("%d queries in the dashboard, want at least 8", len(queries))
	}
	var rules []map[string]string
	for i, q := range queries {
		rules = append(rules, map[string]string{"record": fmt.Sprintf("zerodrop:dashboard_query:%d", i), "expr": grafanaVariables.Replace(q)})
	}
	data, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, promtool, "check", "rules", file)
}

var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*")

// TestQueriesNameExportedMetrics: every series an alert or a dashboard panel
// selects is one zerodrop-controller registers: its own (internal/controller
// NewMetrics) or controller-runtime's (reconcile, webhook, leader election).
func TestQueriesNameExportedMetrics(t *testing.T) {
	reg := controllerRegistry(t)
	check := func(where, expr string) {
		names, err := MetricNames(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		if len(names) == 0 {
			t.Errorf("%s: selects no metric: %s", where, expr)
		}
		for _, n := range names {
			if !exported(reg, n) {
				t.Errorf("%s: %s is not a metric zerodrop-controller exports (expression %s)", where, n, expr)
			}
		}
	}
	for _, a := range alerts(t) {
		check(rulesFile+": alert "+a.Alert, a.Expr)
	}
	for i, q := range dashboardQueries(t) {
		check(fmt.Sprintf("%s: query %d", dashboardFile, i), q)
	}
	// The check can fail: a name nobody registers is caught.
	if exported(reg, "zerodrop_gate_latency_seconds_typo") || exported(reg, "kube_pod_status_ready") {
		t.Error("exported accepts a metric nobody registers")
	}
}

// TestEveryAlertHasARunbook: each alert points at its section of
// docs/monitoring.md, and the section exists.
func TestEveryAlertHasARunbook(t *testing.T) {
	doc, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts(t) {
		want := "docs/monitoring.md#" + strings.ToLower(a.Alert)
		if a.Annotations["runbook"] != want {
			t.Errorf("alert %s: runbook annotation %q, want %q", a.Alert, a.Annotations["runbook"], want)
		}
		if !strings.Contains(string(doc), "\n### "+a.Alert+"\n") {
			t.Errorf("alert %s: docs/monitoring.md has no section \"### %s\"", a.Alert, a.Alert)
		}
		if a.Labels["severity"] == "" {
			t.Errorf("alert %s: no severity label", a.Alert)
		}
	}
}

// TestDocsListEveryMetric: docs/monitoring.md describes every zerodrop_*
// metric the controller registers.
func TestDocsListEveryMetric(t *testing.T) {
	doc, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range zerodropMetricNames(t) {
		if !strings.Contains(string(doc), "| `"+n+"` |") {
			t.Errorf("docs/monitoring.md: the metrics table lacks %s", n)
		}
	}
}

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alerts(t *testing.T) []alertRule {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
	return out
}

func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	q, err := DashboardQueries(data)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func runPromtool(t *testing.T, promtool string, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

var registerOnce sync.Once

// controllerRegistry returns controller-runtime's registry with
// zerodrop-controller's own metrics registered, as the controller's main
// does.
func controllerRegistry(t *testing.T) prometheus.Registerer {
	t.Helper()
	var err error
	registerOnce.Do(func() { _, err = controller.NewMetrics(nil) })
	if err != nil {
		t.Fatal(err)
	}
	return ctrlmetrics.Registry
}

// exported reports whether a collector on reg already describes the metric
// name (a histogram's or summary's _bucket, _count and _sum series count as
// its own): registering a probe of that name fails then.
func exported(reg prometheus.Registerer, name string) bool {
	candidates := []string{name}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			candidates = append(candidates, base)
		}
	}
	for _, n := range candidates {
		probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: n, Help: "probe"})
		if err := reg.Register(probe); err != nil {
			return true
		}
		reg.Unregister(probe)
	}
	return false
}

// zerodropMetricNames lists the metrics internal/controller registers.
func zerodropMetricNames(t *testing.T) []string {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := controller.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		ch := make(chan *prometheus.Desc, 1)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String() // Desc{fqName: "name", ...}
			if _, rest, ok := strings.Cut(s, `fqName: "`); ok {
				name, _, _ := strings.Cut(rest, `"`)
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no metrics found in controller.Metrics")
	}
	return names
}
