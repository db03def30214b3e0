package config

import (
	"strings"
	"testing"

	"zerodrop.dev/zerodrop/internal/check"
)

var ids = []string{"ZD101", "ZD205", "ZD300"}

func finding(id string, sev check.Severity, kind, ns, name string) check.Finding {
	return check.Finding{RuleID: id, Severity: sev, Object: check.ObjectRef{Kind: kind, Namespace: ns, Name: name}}
}

func TestApply_DisableIgnoreAndSeverity(t *testing.T) {
	f, err := Parse(".zerodrop.yaml", []byte(`
disable: [ZD300]
ignore:
  - rules: [ZD101]
    kind: Deployment
    namespace: legacy-*
    reason: retired next quarter
  - rules: ["*"]
    name: batch-?
severity:
  ZD205: info
failOn: warning
options:
  shutdown-seconds: "20"
`), ids)
	if err != nil {
		t.Fatal(err)
	}
	in := []check.Finding{
		finding("ZD300", check.SeverityError, "Deployment", "a", "web"),        // disabled
		finding("ZD101", check.SeverityError, "Deployment", "legacy-eu", "x"),  // ignored by glob
		finding("ZD101", check.SeverityError, "StatefulSet", "legacy-eu", "x"), // other kind: kept
		finding("ZD101", check.SeverityError, "Deployment", "shop", "web"),     // other namespace: kept
		finding("ZD205", check.SeverityWarning, "Deployment", "shop", "web"),   // kept as info
		finding("ZD205", check.SeverityWarning, "Deployment", "shop", "batch-1"),
	}
	out := f.Apply(in)
	var got []string
	for _, x := range out {
		got = append(got, x.RuleID+"/"+x.Object.Kind+"/"+x.Object.Namespace+"/"+x.Severity.String())
	}
	want := "ZD101/StatefulSet/legacy-eu/error ZD101/Deployment/shop/error ZD205/Deployment/shop/info"
	if strings.Join(got, " ") != want {
		t.Errorf("kept %v\nwant %s", got, want)
	}
	if s, ok := f.FailOnLevel(); !ok || s != check.SeverityWarning {
		t.Errorf("failOn = %v %v, want warning", s, ok)
	}
	if f.Options["shutdown-seconds"] != "20" {
		t.Errorf("options = %v", f.Options)
	}
}

func TestParse_ErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown rule", "disable:\n  - ZD101\n  - ZD999\n", "cfg.yaml:3: unknown rule id \"ZD999\""},
		{"unknown field", "disable: [ZD101]\nignores: []\n", "cfg.yaml:2: field ignores not found"},
		{"bad severity", "severity:\n  ZD101: fatal\n", "cfg.yaml:2: unknown severity \"fatal\""},
		{"bad yaml", "disable: [ZD101\nfoo: 1\n", "cfg.yaml:"},
		{"wrong type", "disable: ZD101\n", "cfg.yaml:1: cannot unmarshal"},
		{"ignore without rules", "ignore:\n  - kind: Deployment\n", "cfg.yaml:2: an ignore entry needs \"rules\""},
		{"bad glob", "ignore:\n  - rules: [ZD101]\n    name: \"[\"\n", "cfg.yaml:3: name: bad glob"},
		{"bad failOn", "failOn: never\n", "cfg.yaml:1: failOn: unknown severity"},
	} {
		_, err := Parse("cfg.yaml", []byte(tc.body), ids)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestParse_EmptyFileAndNilFile(t *testing.T) {
	f, err := Parse("e.yaml", nil, ids)
	if err != nil {
		t.Fatal(err)
	}
	fs := []check.Finding{finding("ZD101", check.SeverityError, "Deployment", "", "x")}
	if len(f.Apply(fs)) != 1 || len((*File)(nil).Apply(fs)) != 1 {
		t.Error("an empty or absent configuration removed findings")
	}
}

func TestReadFile_Missing(t *testing.T) {
	if _, err := ReadFile("testdata/none.yaml", nil); err == nil || !strings.HasPrefix(err.Error(), "testdata/none.yaml: cannot read") {
		t.Errorf("error = %v", err)
	}
}
