package report

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"zerodrop.dev/zerodrop/internal/check"
)

var web = check.ObjectRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"}
var api = check.ObjectRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "api"}

// sample is a report with findings of every severity on two objects, given
// out of order, plus input errors, warnings and skipped kinds.
func sample() Input {
	return Input{
		Report: &check.Report{
			Objects: 4,
			Findings: []check.Finding{
				{RuleID: "ZD900", Severity: check.SeverityInfo, Object: api, Source: check.Source{File: "b.yaml", Line: 30}, Field: "spec", Message: "an info"},
				{RuleID: "ZD101", Severity: check.SeverityError, Object: web, Source: check.Source{File: "a.yaml", Line: 21},
					Field:       "spec.template.spec.terminationGracePeriodSeconds",
					Message:     "preStop 35 s + shutdown 15 s + buffer 10 s = 60 s > grace 45 s",
					Consequence: "SIGKILL at 45 s while shutdown may need 60 s: in-flight requests are cut, clients see 502/504",
					Fix:         "spec:\n  template:\n    spec:\n      terminationGracePeriodSeconds: 60\n"},
				{RuleID: "ZD205", Severity: check.SeverityWarning, Object: web, Source: check.Source{File: "a.yaml", Line: 12}, Field: "spec.strategy.rollingUpdate.maxUnavailable",
					Message: "maxUnavailable is 25%", Consequence: "old pods go before new ones serve", Fix: "maxUnavailable: 0", Confidence: check.ConfidenceMedium},
			},
			Errors:  []check.InputError{{Source: check.Source{File: "bad.yaml", Line: 9}, Err: "invalid YAML: did not find expected key"}},
			Skipped: map[string]int{"cert-manager.io/v1/Certificate": 2, "v1/ConfigMap": 1},
		},
		Warnings: []check.InputError{{Source: check.Source{File: "a.yaml", Line: 40}, Err: "spec.foo: unknown field"}},
		Rules: []check.Rule{
			{ID: "ZD101", Title: "preStop + shutdown + buffer exceeds the grace period", Severity: check.SeverityError, Rationale: "SIGKILL cuts requests.", Formula: "P + S + buffer <= G", Fix: "terminationGracePeriodSeconds: P + S + buffer"},
			{ID: "ZD205", Title: "maxUnavailable is not 0", Severity: check.SeverityWarning, Rationale: "Old pods leave first.", Fix: "maxUnavailable: 0"},
		},
		FailOn:  check.SeverityError,
		Version: "test",
	}
}

func TestOrdered_GroupsByObjectThenLine(t *testing.T) {
	got := Ordered(sample().Report.Findings)
	var ids []string
	for _, f := range got {
		ids = append(ids, f.RuleID)
	}
	if strings.Join(ids, " ") != "ZD205 ZD101 ZD900" {
		t.Errorf("order = %v, want a.yaml's web (line 12, then 21) before b.yaml's api", ids)
	}
}

func TestWriteText_ShowsEverythingAUserActsOn(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, sample(), false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Deployment shop/web  a.yaml\n",
		"  error   ZD101  a.yaml:21  spec.template.spec.terminationGracePeriodSeconds\n",
		"    preStop 35 s + shutdown 15 s + buffer 10 s = 60 s > grace 45 s\n",
		"    consequence: SIGKILL at 45 s",
		"    fix:\n      spec:\n        template:\n          spec:\n            terminationGracePeriodSeconds: 60\n",
		"    fix: maxUnavailable: 0\n",
		"  warning ZD205  a.yaml:12  spec.strategy.rollingUpdate.maxUnavailable  (confidence medium)\n",
		"  bad.yaml:9: invalid YAML: did not find expected key\n",
		"  a.yaml:40: spec.foo: unknown field\n",
		"skipped 3 objects of kinds zerodrop does not check: cert-manager.io/v1/Certificate (2), v1/ConfigMap (1)\n",
		"4 objects checked: 1 error, 1 warning, 1 info; 1 input error (failing: findings at or above error)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour escapes without colour:\n%q", out)
	}
	if strings.Index(out, "ZD205") > strings.Index(out, "ZD101") {
		t.Errorf("findings of one object are not in line order:\n%s", out)
	}
}

func TestWriteText_ColorOnlyWhenAsked(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, sample(), true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), ansiRed) || !strings.Contains(b.String(), ansiReset) {
		t.Errorf("no colour with color=true:\n%q", b.String())
	}
}

func TestWriteText_NothingFound(t *testing.T) {
	var b bytes.Buffer
	in := Input{Report: &check.Report{Objects: 2}, FailOn: check.SeverityError}
	if err := WriteText(&b, in, false); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "2 objects checked: 0 errors, 0 warnings, 0 info\n" {
		t.Errorf("output = %q", got)
	}
}

func TestWriteJSON_SchemaV1(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, sample()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SchemaVersion string `json:"schemaVersion"`
		Summary       struct {
			Objects, Findings, Error, Warning, Info, InputErrors, InputWarnings, Skipped int
			FailOn                                                                       string
			Failed                                                                       bool
		}
		Findings []map[string]any
		Errors   []map[string]any
		Warnings []map[string]any
		Skipped  []map[string]any
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, b.String())
	}
	if doc.SchemaVersion != "zerodrop.dev/check/v1" {
		t.Errorf("schemaVersion = %q", doc.SchemaVersion)
	}
	s := doc.Summary
	if s.Objects != 4 || s.Findings != 3 || s.Error != 1 || s.Warning != 1 || s.Info != 1 || s.InputErrors != 1 || s.InputWarnings != 1 || s.Skipped != 3 || s.FailOn != "error" || !s.Failed {
		t.Errorf("summary = %+v", s)
	}
	f := doc.Findings[1]
	if f["ruleId"] != "ZD101" || f["severity"] != "error" || f["file"] != "a.yaml" || f["line"] != 21.0 ||
		f["field"] != "spec.template.spec.terminationGracePeriodSeconds" || f["object"].(map[string]any)["name"] != "web" {
		t.Errorf("finding = %v", f)
	}
	if doc.Findings[0]["confidence"] != "medium" || f["confidence"] != "high" {
		t.Errorf("confidence = %v, %v; want medium (assumed timing) and high", doc.Findings[0]["confidence"], f["confidence"])
	}
	if doc.Errors[0]["file"] != "bad.yaml" || doc.Errors[0]["line"] != 9.0 {
		t.Errorf("errors = %v", doc.Errors)
	}
	if doc.Skipped[0]["kind"] != "Certificate" || doc.Skipped[0]["count"] != 2.0 {
		t.Errorf("skipped = %v", doc.Skipped)
	}
}

func TestWriteJSON_EmptyListsAreArrays(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, Input{Report: &check.Report{}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"findings": []`, `"errors": []`, `"warnings": []`, `"skipped": []`} {
		if !strings.Contains(b.String(), k) {
			t.Errorf("output lacks %s:\n%s", k, b.String())
		}
	}
}

func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("sarif-schema-2.1.0.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatalf("compiling the SARIF schema: %v", err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, data []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("invalid JSON: %v", err)
	}
	return s.Validate(inst)
}

func TestWriteSARIF_ValidAgainstTheSARIF210Schema(t *testing.T) {
	schema := sarifSchema(t)
	for name, in := range map[string]Input{
		"findings, errors, warnings": sample(),
		"empty":                      {Report: &check.Report{}},
		"stdin and odd paths": {Report: &check.Report{Findings: []check.Finding{
			{RuleID: "ZD1", Object: web, Source: check.Source{File: "<stdin>", Line: 3}, Message: "m"},
			{RuleID: "ZD2", Source: check.Source{File: "dir with space/x#1.yaml"}, Message: "m"},
		}}},
	} {
		var b bytes.Buffer
		if err := WriteSARIF(&b, in); err != nil {
			t.Fatal(err)
		}
		if err := validate(t, schema, b.Bytes()); err != nil {
			t.Errorf("%s: SARIF output does not validate: %v\n%s", name, err, b.String())
		}
	}
}

func TestSARIFSchema_RejectsBrokenLogs(t *testing.T) {
	// Proves the validation above can fail: a level SARIF does not know and
	// a region line of 0 must both be rejected.
	schema := sarifSchema(t)
	for _, bad := range []string{
		`{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"z"}},"results":[{"level":"fatal","message":{"text":"m"}}]}]}`,
		`{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"z"}},"results":[{"message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a"},"region":{"startLine":0}}}]}]}]}`,
		`{"version":"2.0.0","runs":[]}`,
	} {
		if err := validate(t, schema, []byte(bad)); err == nil {
			t.Errorf("schema accepted a broken log: %s", bad)
		}
	}
}

func TestWriteSARIF_Content(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSARIF(&b, sample()); err != nil {
		t.Fatal(err)
	}
	var log struct {
		Runs []struct {
			Tool struct {
				Driver struct {
					Rules []struct {
						ID, Name             string
						DefaultConfiguration struct{ Level string }
						Help                 struct{ Text string }
					}
				}
			}
			Invocations []struct {
				ExecutionSuccessful        bool
				ToolExecutionNotifications []struct{ Level string }
			}
			Results []struct {
				RuleID     string
				RuleIndex  *int
				Level      string
				Properties map[string]any
				Message    struct{ Text string }
				Locations  []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine int }
					}
				}
			}
		}
	}
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	r0 := run.Tool.Driver.Rules[0]
	if r0.ID != "ZD101" || r0.Name != "PreStopShutdownBufferExceedsTheGracePeriod" || r0.DefaultConfiguration.Level != "error" || !strings.Contains(r0.Help.Text, "P + S + buffer <= G") {
		t.Errorf("rule = %+v", r0)
	}
	if len(run.Results) != 3 {
		t.Fatalf("results = %d, want 3", len(run.Results))
	}
	res := run.Results[1]
	if res.RuleID != "ZD101" || res.RuleIndex == nil || *res.RuleIndex != 0 || res.Level != "error" ||
		res.Locations[0].PhysicalLocation.ArtifactLocation.URI != "a.yaml" || res.Locations[0].PhysicalLocation.Region.StartLine != 21 ||
		!strings.Contains(res.Message.Text, "SIGKILL at 45 s") {
		t.Errorf("result = %+v", res)
	}
	if run.Results[0].Properties["confidence"] != "medium" || res.Properties["confidence"] != "high" {
		t.Errorf("confidence properties = %v, %v; want medium and high", run.Results[0].Properties, res.Properties)
	}
	if run.Results[2].Level != "note" || run.Results[2].RuleIndex != nil {
		t.Errorf("info finding without a known rule = %+v", run.Results[2])
	}
	inv := run.Invocations[0]
	if inv.ExecutionSuccessful || len(inv.ToolExecutionNotifications) != 2 {
		t.Errorf("invocation = %+v, want unsuccessful with an error and a warning notification", inv)
	}
}
