package report

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"zerodrop.dev/zerodrop/internal/check"
)

// threeGraceFixes is issue 14's Deployment that got three different
// grace-period fixes: ZD201 proposes 60 in YAML, ZD203 raises it to 32 in
// prose beside its preStop YAML, ZD205 asks for 90. Two objects share
// ZD401's prose fix word for word.
func threeGraceFixes() Input {
	web := check.ObjectRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"}
	api := check.ObjectRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "api"}
	grace := "spec.template.spec.terminationGracePeriodSeconds"
	return Input{
		Report: &check.Report{Objects: 2, Findings: []check.Finding{
			{RuleID: "ZD201", Severity: check.SeverityError, Object: web, Source: check.Source{File: "a.yaml", Line: 20}, Field: grace,
				Message: "preStop 35s + shutdown 15s = 50s > terminationGracePeriodSeconds 45s",
				Fix:     "```yaml\nspec:\n  template:\n    spec:\n      terminationGracePeriodSeconds: 60  # preStop 35s + shutdown 15s + buffer 10s\n```"},
			{RuleID: "ZD203", Severity: check.SeverityError, Object: web, Source: check.Source{File: "a.yaml", Line: 30}, Field: "spec.template.spec.containers[0].lifecycle.preStop", Container: "web",
				Message: "no preStop, so SIGTERM comes at T+0s while the ALB sends new requests until T+10s",
				Fix:     "```yaml\nlifecycle:\n  preStop:\n    sleep:\n      seconds: 12   # > D 10s\n```\nand raise `terminationGracePeriodSeconds: 32` (preStop 12s + shutdown 10s + buffer 10s = 32s)."},
			{RuleID: "ZD205", Severity: check.SeverityWarning, Object: web, Source: check.Source{File: "a.yaml", Line: 20}, Field: grace, Confidence: check.ConfidenceMedium,
				Message: "requests admitted until T+10s may run 60s",
				Fix:     "Make the app finish in-flight requests on SIGTERM for at least 60s, then record it with `zerodrop.dev/shutdown-seconds: \"60\"` and set `terminationGracePeriodSeconds: 90`."},
			{RuleID: "ZD401", Severity: check.SeverityInfo, Object: web, Source: check.Source{File: "a.yaml", Line: 2}, Message: "no PDB", Fix: "Add a PodDisruptionBudget with maxUnavailable 1."},
			{RuleID: "ZD401", Severity: check.SeverityInfo, Object: api, Source: check.Source{File: "b.yaml", Line: 2}, Message: "no PDB", Fix: "Add a PodDisruptionBudget with maxUnavailable 1."},
		}},
		FailOn: check.SeverityError,
	}
}

func TestWriteCompact_OneLinePerFindingOneFixPerObjectAndASummary(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCompact(&b, threeGraceFixes()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "a.yaml:") || strings.HasPrefix(l, "b.yaml:") {
			lines++
		}
	}
	if lines != 5 {
		t.Errorf("%d finding lines, want one per finding (5):\n%s", lines, out)
	}
	for _, want := range []string{
		"a.yaml:20  error    ZD201  Deployment shop/web  preStop 35s + shutdown 15s = 50s > terminationGracePeriodSeconds 45s\n",
		"a.yaml:20  warning  ZD205  Deployment shop/web  requests admitted until T+10s may run 60s (confidence medium)\n",
		// The three grace periods become one: the largest is safe for all.
		"        terminationGracePeriodSeconds: 90  # largest of ZD201 60, ZD205 90, ZD203 32\n",
		// Containers are named, so the patch merges strategically as is.
		"        containers:\n        - name: web\n          lifecycle:\n            preStop:\n              sleep:\n                seconds: 12\n",
		// Identical prose fixes are printed once, naming every object.
		"ZD401  Deployment shop/web, Deployment shop/api: Add a PodDisruptionBudget with maxUnavailable 1.\n",
		"rule    error  warning  info\n",
		"ZD201       1        0     0\n",
		"ZD401       0        0     2\n",
		"total       2        1     2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("compact output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "terminationGracePeriodSeconds: "); n != 1 {
		t.Errorf("%d grace-period fixes for one Deployment, want one merged:\n%s", n, out)
	}
	if strings.Count(out, "Add a PodDisruptionBudget") != 1 {
		t.Errorf("the shared fix is repeated:\n%s", out)
	}
}

func TestMergeFixes_SameFieldTakesTheLargerSafeValue(t *testing.T) {
	p := newPatch()
	p.add("ZD103", "```yaml\nspec:\n  minReadySeconds: 63\n```", "", "")
	p.add("ZD105", "```yaml\nspec:\n  minReadySeconds: 20\n  template:\n    spec:\n      terminationGracePeriodSeconds: 40\n```", "", "")
	got := p.yaml()
	if !strings.Contains(got, "minReadySeconds: 63  # largest of ZD103 63, ZD105 20") || strings.Contains(got, "minReadySeconds: 20") {
		t.Errorf("merged patch:\n%s\nwant minReadySeconds 63, the larger", got)
	}
	p.add("ZD101", "```yaml\nreadinessProbe:\n  tcpSocket:\n    port: 8080\n```", "spec.template.spec.containers[1]", "")
	if !strings.Contains(p.yaml(), "- name: <containers[1]>  # the container's name\n") {
		t.Errorf("a container fix without the container's name lacks the marked placeholder:\n%s", p.yaml())
	}
	if !strings.Contains(got, "terminationGracePeriodSeconds: 40\n") {
		t.Errorf("merged patch lost a field set by one rule only:\n%s", got)
	}
}

func TestParseFormat_Compact(t *testing.T) {
	if f, err := ParseFormat("compact"); err != nil || f != FormatCompact {
		t.Errorf("ParseFormat(compact) = %q, %v", f, err)
	}
}

func TestWriteText_ContradictoryFixesGetOneMergedPatch(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, threeGraceFixes(), false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	want := "  one fix for Deployment shop/web (rules propose different values; the larger is safe for all):\n" +
		"    spec:\n      template:\n        spec:\n"
	if !strings.Contains(out, want) || !strings.Contains(out, "terminationGracePeriodSeconds: 90  # largest of ZD201 60, ZD205 90, ZD203 32\n") {
		t.Errorf("text output lacks the merged patch %q:\n%s", want, out)
	}
	if strings.Count(out, "one fix for") != 1 {
		t.Errorf("objects whose fixes agree get a merged patch too:\n%s", out)
	}
}

var yamlBlockRE = regexp.MustCompile("(?s)```yaml\\n(.*?)```")

// replaceYAMLBlocks must do what the regular expression it replaced did.
func FuzzReplaceYAMLBlocks_MatchesTheRegexp(f *testing.F) {
	for _, s := range []string{
		"",
		"no block",
		"Set:\n```yaml\nspec:\n  a: 1\n```\nthen\n```yaml\nb: 2\n```",
		"```yaml\nunclosed",
		"```yaml\n```",
		"```sh\nkubectl x\n``` and ```yaml\na: 1\n```",
		"``````yaml\n````",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		repl := func(block, body string) string { return "<" + body + "|" + block + ">" }
		want := yamlBlockRE.ReplaceAllStringFunc(s, func(block string) string {
			return repl(block, yamlBlockRE.FindStringSubmatch(block)[1])
		})
		if got := replaceYAMLBlocks(s, repl); got != want {
			t.Fatalf("%q: got %q, the regexp gives %q", s, got, want)
		}
	})
}
