package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

func TestBadAnnotationValues(t *testing.T) {
	cases := []struct {
		name, key, value, wantField, wantMsg string
		onTemplate                           bool
	}{
		{"word", AnnotationShutdown, "slow", `metadata.annotations["zerodrop.dev/shutdown-seconds"]`, `"slow" is not seconds`, false},
		{"negative", AnnotationLongestRequest, "-5", `metadata.annotations["zerodrop.dev/longest-request-seconds"]`, "out of range", false},
		{"NaN", AnnotationBuffer, "NaN", `spec.template.metadata.annotations["zerodrop.dev/buffer-seconds"]`, "out of range", true},
		{"not a bool", AnnotationLongLived, "maybe", `metadata.annotations["zerodrop.dev/long-lived"]`, "not true or false", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs := baseline(func(d *appsv1.Deployment) {
				if c.onTemplate {
					d.Spec.Template.Annotations = map[string]string{c.key: c.value}
				} else {
					d.Annotations = map[string]string{c.key: c.value}
				}
			})
			r := analyze(t, objs, Options{})
			fs := findings(r, RuleBadAnnotation)
			if len(fs) != 1 {
				t.Fatalf("want one ZD001, got:%s", dump(r))
			}
			f := fs[0]
			if f.Field != c.wantField || !strings.Contains(f.Message, c.wantMsg) || !strings.Contains(f.Message, "Deployment prod/web") || f.Severity != SeverityError {
				t.Errorf("finding = %+v", f)
			}
		})
	}
	// Durations are accepted.
	r := analyze(t, baseline(func(d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationShutdown: "1m30s"} }), Options{})
	if len(findings(r, RuleBadAnnotation)) != 0 || r.Explanations[0].Assumptions.Shutdown != 90 {
		t.Errorf("1m30s: findings %s, shutdown %v", dump(r), r.Explanations[0].Assumptions.Shutdown)
	}
}

func TestBadLBAnnotation(t *testing.T) {
	objs := append(baseline(nil), ingress("web", "web", "alb", map[string]string{
		"alb.ingress.kubernetes.io/target-type":                  "ip",
		"alb.ingress.kubernetes.io/healthcheck-interval-seconds": "fifteen",
		"alb.ingress.kubernetes.io/target-group-attributes":      "deregistration_delay.timeout_seconds=soon",
	}))
	r := analyze(t, objs, Options{})
	fs := findings(r, RuleBadAnnotation)
	if len(fs) != 2 {
		t.Fatalf("want two ZD001, got:%s", dump(r))
	}
	for _, f := range fs {
		if f.Object.Kind != "Ingress" || !strings.Contains(f.Field, "alb.ingress.kubernetes.io/") {
			t.Errorf("finding on %s %s, want the Ingress's annotation", f.Object, f.Field)
		}
	}
}

func TestIgnoreAnnotation(t *testing.T) {
	wrong := func(d *appsv1.Deployment) {
		container(d).Lifecycle = nil                                           // ZD203
		container(d).ReadinessProbe = nil                                      // ZD101
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](12) // ZD202
	}
	r := analyze(t, baseline(wrong), Options{})
	for _, id := range []string{RuleEarlyExit, RuleNoReadinessProbe, RuleGraceBuffer} {
		if len(findings(r, id)) == 0 {
			t.Fatalf("setup: want %s, got:%s", id, dump(r))
		}
	}
	r = analyze(t, baseline(func(d *appsv1.Deployment) {
		wrong(d)
		d.Annotations = map[string]string{AnnotationIgnore: "ZD203, zd101"}
		d.Spec.Template.Annotations = map[string]string{AnnotationIgnore: "ZD202"}
	}), Options{})
	if len(r.Findings) != 0 {
		t.Errorf("silenced on the object and its template: still got:%s", dump(r))
	}
	// A misspelt id silences nothing and says so; the valid ones still work.
	r = analyze(t, baseline(func(d *appsv1.Deployment) {
		wrong(d)
		d.Annotations = map[string]string{AnnotationIgnore: "ZD203,ZD101,ZD202"}
		d.Spec.Template.Annotations = map[string]string{AnnotationIgnore: "ZD2O1"}
	}), Options{})
	bad := findings(r, RuleBadAnnotation)
	if len(r.Findings) != 1 || len(bad) != 1 || bad[0].Field != `spec.template.metadata.annotations["zerodrop.dev/ignore"]` ||
		!strings.Contains(bad[0].Message, "unknown rule id ZD2O1") {
		t.Errorf("misspelt id: want one ZD001 on the template annotation, got:%s", dump(r))
	}
	// Silencing on the Ingress silences its own findings only.
	objs := append(baseline(nil), ingress("web", "web", "alb", map[string]string{
		"alb.ingress.kubernetes.io/target-type": "ip", AnnotationIgnore: "ZD302"}))
	r = analyze(t, objs, Options{})
	if len(findings(r, RuleDeregistrationDefault)) != 0 || len(findings(r, RuleStartupGap)) == 0 {
		t.Errorf("Ingress silencing: got:%s", dump(r))
	}
}

func TestFlagsSetAssumptions(t *testing.T) {
	var o Options
	fs := pflag.NewFlagSet("check", pflag.ContinueOnError)
	o.RegisterFlags(fs)
	if err := fs.Parse([]string{"--shutdown-seconds=25", "--propagation-seconds=5", "--buffer-seconds=0"}); err != nil {
		t.Fatal(err)
	}
	r := analyze(t, baseline(nil), o)
	a := r.Explanations[0].Assumptions
	if a.Shutdown != 25 || a.Propagation != 5 || a.Buffer != 0 || a.LongestRequest != 10 {
		t.Errorf("assumptions = %+v", a)
	}
	// preStop 5 s now equals D 5 s: no early exit; 5 + 25 = 30 <= 30.
	if len(r.Findings) != 0 {
		t.Errorf("findings:%s", dump(r))
	}
	// Per-object annotations win over flags.
	r = analyze(t, baseline(func(d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationShutdown: "40"} }), o)
	if len(findings(r, RuleSIGKILL)) != 1 {
		t.Errorf("annotation 40 over flag 25: want ZD201, got:%s", dump(r))
	}
	// --registration-seconds and --haproxy-* are registered.
	for _, name := range []string{"registration-seconds", "haproxy-config", "haproxy-backend", "longest-request-seconds", "startup-seconds", "connection-drain-seconds", "drain-latency-seconds", "alb-drain-start-seconds"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s not registered", name)
		}
	}
}

func TestHAProxyLinking(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte("backend api\n  default-server check inter 2s rise 3 fall 2\n  server p1 10.0.0.1:8080\nbackend admin\n  server a1 10.0.0.9:8080 check\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Two backends: without a link, no HAProxy front.
	r := analyze(t, baseline(nil), Options{HAProxyConfig: cfg})
	if n := len(r.Explanations[0].Frontends); n != 1 {
		t.Fatalf("unlinked: %d frontends, want only in-cluster", n)
	}
	// Linked by annotation on the Service.
	objs := baseline(nil)
	objs[1].(*corev1.Service).Annotations = map[string]string{AnnotationHAProxyBackend: "api"}
	r = analyze(t, objs, Options{HAProxyConfig: cfg})
	fr := r.Explanations[0].Frontends
	if len(fr) != 2 || fr[1].LB.Interval != 2 || fr[1].LB.HealthyThreshold != 3 || fr[1].LB.UnhealthyThreshold != 2 || !fr[1].LB.DetectOnly {
		t.Fatalf("linked: %+v", fr)
	}
	// By --haproxy-backend.
	r = analyze(t, baseline(nil), Options{HAProxyConfig: cfg, HAProxyBackend: "admin"})
	if fr := r.Explanations[0].Frontends; len(fr) != 2 || fr[1].Via != "HAProxy backend admin" {
		t.Fatalf("--haproxy-backend: %+v", fr)
	}
	// A backend name that does not exist is an input error.
	r = Analyze(wrapAll(baseline(nil)...), Options{HAProxyConfig: cfg, HAProxyBackend: "nope"})
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Err, `--haproxy-backend "nope"`) {
		t.Errorf("errors = %v", r.Errors)
	}
}

func TestHAProxyConfigErrorNamesFileAndLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.cfg")
	if err := os.WriteFile(cfg, []byte("backend api\n  server p1 10.0.0.1:8080 check inter fast\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Analyze(wrapAll(baseline(nil)...), Options{HAProxyConfig: cfg})
	if len(r.Errors) != 1 || r.Errors[0].Source.File != cfg || r.Errors[0].Source.Line != 2 || !strings.Contains(r.Errors[0].Err, "inter") {
		t.Fatalf("errors = %+v", r.Errors)
	}
	if len(r.Explanations) != 1 {
		t.Error("the manifests must still be analysed")
	}
	r = Analyze(nil, Options{HAProxyConfig: filepath.Join(t.TempDir(), "missing.cfg")})
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Err, "missing.cfg") {
		t.Errorf("missing file: %+v", r.Errors)
	}
}

func TestSkippedAndCounted(t *testing.T) {
	cm := &corev1.ConfigMap{TypeMeta: tm("ConfigMap", "v1")}
	cm.Name, cm.Namespace = "settings", "prod"
	objs := append(baseline(nil), runtime.Object(cm))
	r := analyze(t, objs, Options{})
	if r.Objects != 3 || r.Skipped["v1/ConfigMap"] != 1 {
		t.Errorf("objects %d skipped %v", r.Objects, r.Skipped)
	}
}

func TestNilAndEmptyInput(t *testing.T) {
	r := Analyze([]*Object{nil, {Ref: ObjectRef{Kind: "Deployment"}}}, Options{})
	if r == nil || len(r.Findings) != 0 {
		t.Errorf("report = %+v", r)
	}
}

func TestFindingsSortedDeterministically(t *testing.T) {
	mk := func() []*Object {
		var objs []runtime.Object
		for _, n := range []string{"b", "a", "c"} {
			d := goodDeployment(n)
			container(d).Lifecycle = nil
			container(d).ReadinessProbe = nil
			objs = append(objs, d, svcObj(n))
		}
		return wrapAll(objs...)
	}
	first := Analyze(mk(), Options{})
	for i := 0; i < 5; i++ {
		again := Analyze(mk(), Options{})
		if dump(again) != dump(first) {
			t.Fatalf("run %d differs:%s\nvs%s", i, dump(again), dump(first))
		}
	}
	for i := 1; i < len(first.Findings); i++ {
		a, b := first.Findings[i-1], first.Findings[i]
		if a.Source.File > b.Source.File || a.Source.File == b.Source.File && a.Source.Line > b.Source.Line {
			t.Errorf("not sorted: %v before %v", a.Source, b.Source)
		}
	}
}
