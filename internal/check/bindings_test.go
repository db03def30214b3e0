package check

import (
	"slices"
	"strings"
	"testing"
)

// bindingSet is a namespace, a LoadBalancer, a TargetBinding, a Deployment
// and its Service, with the parts the scenarios change as parameters.
func bindingSet(nsLabels, lbHealth, gate, drain, grace, svcPort string) string {
	return `apiVersion: v1
kind: Namespace
metadata:
  name: shop
` + nsLabels + `
---
apiVersion: zerodrop.dev/v1alpha1
kind: LoadBalancer
metadata:
  name: edge
spec:
  instances:
  - {name: a, address: "10.0.0.1:9999"}
` + lbHealth + `
---
apiVersion: zerodrop.dev/v1alpha1
kind: TargetBinding
metadata:
  name: web
  namespace: shop
spec:
  serviceRef: {name: web, port: ` + svcPort + `}
  loadBalancerRef: {name: edge}
  pool: be_web
` + gate + drain + `
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  annotations: {zerodrop.dev/shutdown-seconds: "10"}
spec:
  replicas: 3
  strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
` + grace + `
      containers:
      - name: web
        image: example/web:1
        ports: [{name: http, containerPort: 8080}]
        lifecycle: {preStop: {sleep: {seconds: 5}}}
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: shop}
spec: {maxUnavailable: 1, selector: {matchLabels: {app: web}}}
`
}

const (
	gatesOn     = "  labels: {zerodrop.dev/gates: enabled}"
	slowChecks  = "  poolDefaults: {healthCheck: {interval: 5s, rise: 3}}"
	grace45     = "      terminationGracePeriodSeconds: 45"
	goodGate    = "  gate: {timeout: 2m}\n"
	goodDrain   = "  drain: {timeout: 20s}\n"
	shortOpen   = "  gate: {timeout: 10s, onTimeout: FailOpen}\n"
	shortClosed = "  gate: {timeout: 10s, onTimeout: FailClosed}\n"
)

func analyzeText(t *testing.T, yaml string) *Report {
	t.Helper()
	r := Analyze(decodeYAML(t, "test/binding.yaml", []byte(yaml)), Options{})
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %v", r.Errors)
	}
	return r
}

func logFindings(t *testing.T, r *Report) {
	t.Helper()
	for _, f := range r.Findings {
		t.Logf("%s %s %s: %s", f.RuleID, f.Source, f.Field, f.Message)
	}
}

// Scenario: a binding in a labelled namespace with a generous gate timeout
// and a drain timeout inside the grace period. Expect: nothing, in
// particular no startup gap (ZD103) although HAProxy needs 1 + 5 x 3 s: the
// gate closes it, as the AWS gate does for an ALB.
func TestBindingRightConfiguration(t *testing.T) {
	r := analyzeText(t, bindingSet(gatesOn, slowChecks, goodGate, goodDrain, grace45, "http"))
	if got := ids(r); len(got) != 0 {
		logFindings(t, r)
		t.Fatalf("rules = %v, want none", got)
	}
	var gate string
	for _, e := range r.Explanations {
		for _, f := range e.Frontends {
			if strings.HasPrefix(f.Via, "TargetBinding shop/web") {
				gate = f.Gate
				if f.LB.Interval != 5 || f.LB.HealthyThreshold != 3 {
					t.Errorf("binding front health check = %vs x %d, want the LoadBalancer's 5s x 3", f.LB.Interval, f.LB.HealthyThreshold)
				}
			}
		}
	}
	if gate != "target-health.zerodrop.dev/web" {
		t.Errorf("binding front gate = %q, want target-health.zerodrop.dev/web", gate)
	}
}

// Scenario: each wrong setting alone. Expect its rule (and for a gate that
// does not tie Ready to HAProxy, the startup gap ZD103 as well).
func TestBindingWrongConfigurations(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"namespace not labelled", bindingSet("", slowChecks, goodGate, goodDrain, grace45, "http"), []string{"ZD103", "ZD307"}},
		{"gate timeout below time to healthy, FailOpen", bindingSet(gatesOn, slowChecks, shortOpen, goodDrain, grace45, "http"), []string{"ZD103", "ZD308"}},
		{"gate timeout below time to healthy, FailClosed", bindingSet(gatesOn, slowChecks, shortClosed, goodDrain, grace45, "http"), []string{"ZD308"}},
		{"drain timeout default 30s with grace 30s", bindingSet(gatesOn, slowChecks, goodGate, "", "", "http"), []string{"ZD309"}},
		{"drain hook httpGet 60s", bindingSet(gatesOn, slowChecks, goodGate, "  drain: {timeout: 60s, preStop: HTTPGet}\n", grace45, "http"), []string{"ZD309"}},
		{"drain disabled", bindingSet(gatesOn, slowChecks, goodGate, "  drain: {enabled: false, timeout: 60s}\n", grace45, "http"), nil},
		{"missing port", bindingSet(gatesOn, slowChecks, goodGate, goodDrain, grace45, "9090"), []string{"ZD310"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := analyzeText(t, c.yaml)
			if got := ids(r); !slices.Equal(got, c.want) {
				logFindings(t, r)
				t.Errorf("rules = %v, want %v", got, c.want)
			}
			for _, f := range r.Findings {
				checkFixYAML(t, f)
			}
		})
	}
}

// Scenario: a binding alone, or with a Service of another name, or naming a
// LoadBalancer the input lacks. Expect: ZD310 only where the input holds
// objects of the missing kind.
func TestBindingDanglingOnlyWhenTheKindIsInTheInput(t *testing.T) {
	tb := `apiVersion: zerodrop.dev/v1alpha1
kind: TargetBinding
metadata: {name: web, namespace: shop}
spec: {serviceRef: {name: web, port: http}, loadBalancerRef: {name: edge}, pool: be}
`
	other := "---\napiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: shop}\nspec: {ports: [{port: 80}]}\n"
	lb := "---\napiVersion: zerodrop.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {name: other}\nspec: {instances: [{name: a, socket: /run/h.sock}]}\n"
	for _, c := range []struct {
		name, yaml string
		fields     []string
	}{
		{"binding alone", tb, nil},
		{"other Service", tb + other, []string{"spec.serviceRef.name"}},
		{"other LoadBalancer", tb + lb, []string{"spec.loadBalancerRef.name"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := analyzeText(t, c.yaml)
			var got []string
			for _, f := range r.Findings {
				if f.RuleID == RuleBindingDangling {
					got = append(got, f.Field)
				}
			}
			if !slices.Equal(got, c.fields) {
				logFindings(t, r)
				t.Errorf("ZD310 fields = %v, want %v", got, c.fields)
			}
		})
	}
}

// Scenario: CRD fields of the wrong type. Expect: an InputError naming the
// object and the field, no panic, and the rest of the input still checked.
func TestBindingBadFieldIsAnInputError(t *testing.T) {
	for _, c := range []struct{ name, yaml, field string }{
		{"rise as a word", "apiVersion: zerodrop.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {name: edge}\nspec: {poolDefaults: {healthCheck: {rise: two}}}\n", "rise"},
		{"timeout as a word", "apiVersion: zerodrop.dev/v1alpha1\nkind: TargetBinding\nmetadata: {name: web, namespace: shop}\nspec: {gate: {timeout: soon}}\n", "soon"},
		{"serviceRef a list", "apiVersion: zerodrop.dev/v1alpha1\nkind: TargetBinding\nmetadata: {name: web, namespace: shop}\nspec: {serviceRef: [a]}\n", "serviceRef"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Analyze(decodeYAML(t, "test/bad.yaml", []byte(c.yaml+"---\n"+bindingSet(gatesOn, "", goodGate, goodDrain, grace45, "http"))), Options{})
			if len(r.Errors) != 1 {
				t.Fatalf("errors = %v, want one", r.Errors)
			}
			msg := r.Errors[0].Err
			if !strings.Contains(msg, "/") || !strings.Contains(msg, c.field) {
				t.Errorf("error %q does not name the object and %q", msg, c.field)
			}
			if r.Objects < 5 {
				t.Errorf("objects = %d: the rest of the input was not checked", r.Objects)
			}
		})
	}
}

// Scenario: the binding's LoadBalancer is driven through an adapter
// (provider external), not HAProxy. Expect: the gate-timeout finding names
// the adapter's load balancer, not HAProxy.
func TestBindingFindingsNameAnExternalLoadBalancer(t *testing.T) {
	y := strings.Replace(bindingSet(gatesOn, slowChecks, shortOpen, goodDrain, grace45, "http"),
		"spec:\n  instances:\n  - {name: a, address: \"10.0.0.1:9999\"}\n",
		"spec:\n  provider: external\n  external: {url: \"https://f5-adapter.lb.svc:8443\"}\n", 1)
	if !strings.Contains(y, "provider: external") {
		t.Fatal("fixture not rewritten")
	}
	r := analyzeText(t, y)
	var found bool
	for _, f := range r.Findings {
		if f.RuleID == "ZD308" {
			found = true
			if strings.Contains(f.Message, "HAProxy") || !strings.Contains(f.Message, "adapter https://f5-adapter.lb.svc:8443") {
				t.Errorf("ZD308 message %q: want the adapter's load balancer named, not HAProxy", f.Message)
			}
		}
	}
	if !found {
		logFindings(t, r)
		t.Fatal("no ZD308")
	}
}
