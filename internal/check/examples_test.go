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
			if os.Getenv("ZD_EXPLAIN") != "" {
				var b strings.Builder
				_ = WriteExplain(&b, r)
				t.Log("\n" + b.String())
			}
		})
	}
}
