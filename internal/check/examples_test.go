package check

import (
	"os"
	"sort"
	"strings"
	"testing"
)

// ids returns the sorted, distinct rule ids of a report's findings.
func ids(r *Report) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range r.Findings {
		if !seen[f.RuleID] {
			seen[f.RuleID] = true
			out = append(out, f.RuleID)
		}
	}
	sort.Strings(out)
	return out
}

func TestExamples(t *testing.T) {
	cases := []struct {
		file    string
		haproxy string
		want    []string // exactly these rule ids
	}{
		{"seed000-eks-alb-wrong.yaml", "", []string{"ZD103", "ZD201", "ZD302", "ZD304", "ZD401"}},
		{"seed000-eks-alb-right.yaml", "", nil},
		{"seed000-onprem-haproxy-wrong.yaml", "seed000-onprem-haproxy.cfg", []string{"ZD203", "ZD312"}},
		{"seed000-onprem-haproxy-right.yaml", "seed000-onprem-haproxy-nodeport.cfg", nil},
		{"seed001-stage1-readiness-only.yaml", "", []string{"ZD203", "ZD401"}},
		{"seed001-stage2-prestop40.yaml", "", []string{"ZD201", "ZD401"}},
		{"seed001-stage3-grace50.yaml", "", []string{"ZD202", "ZD401"}},
		{"seed002-gke-neg-wrong.yaml", "", []string{"ZD203", "ZD207"}},
		{"seed002-gke-neg-right.yaml", "", nil},
		{"seed003-spring-wrong.yaml", "", []string{"ZD104", "ZD203", "ZD205", "ZD401"}},
		{"seed003-spring-right.yaml", "", nil},
		{"distroless-exec-sleep-wrong.yaml", "", []string{"ZD203", "ZD204"}},
		{"distroless-exec-sleep-right.yaml", "", nil},
		{"grpc-long-lived-wrong.yaml", "", []string{"ZD206"}},
		{"grpc-long-lived-right.yaml", "", nil},
		{"aws-gate-pitfalls-wrong.yaml", "", []string{"ZD105", "ZD303", "ZD305"}},
		{"structural-wrong.yaml", "", []string{"ZD002", "ZD102", "ZD104", "ZD402"}},
		{"zerodrop-binding-wrong.yaml", "", []string{"ZD103", "ZD307", "ZD308", "ZD309", "ZD310"}},
		{"zerodrop-binding-right.yaml", "", nil},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			opts := Options{}
			if c.haproxy != "" {
				opts.HAProxyConfig = "../../examples/" + c.haproxy
			}
			r := Analyze(loadExample(t, c.file), opts)
			if len(r.Errors) > 0 {
				t.Fatalf("errors: %v", r.Errors)
			}
			if got := ids(r); strings.Join(got, ",") != strings.Join(c.want, ",") {
				for _, f := range r.Findings {
					t.Logf("%s %s %s: %s | %s", f.RuleID, f.Source, f.Field, f.Message, f.Consequence)
				}
				t.Errorf("rules = %v, want %v", got, c.want)
			}
			for _, f := range r.Findings {
				checkFixYAML(t, f)
			}
			if os.Getenv("ZD_EXPLAIN") != "" {
				var b strings.Builder
				_ = WriteExplain(&b, r)
				t.Log("\n" + b.String())
			}
		})
	}
}
