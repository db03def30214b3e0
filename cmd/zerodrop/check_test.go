package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerodrop.dev/zerodrop/internal/check"
)

// runCheckCLI runs "zerodrop check ARGS" in-process.
func runCheckCLI(stdin string, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = runIO(append([]string{"check"}, args...), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

const goodService = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n"

func TestCheckCLI_UsageErrorsExit2(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing to check", nil, "nothing to check"},
		{"bad format", []string{"-o", "xml", "x.yaml"}, `unknown output format "xml"`},
		{"bad fail-on", []string{"--fail-on", "fatal", "x.yaml"}, `unknown severity "fatal"`},
		{"bad color", []string{"--color", "sometimes", "x.yaml"}, `--color "sometimes"`},
		{"missing config", []string{"--config", "no/such.yaml", "x.yaml"}, "no/such.yaml: cannot read configuration"},
		{"namespace without --cluster", []string{"-n", "shop", "x.yaml"}, "--namespace applies only with --cluster"},
		{"files with --cluster", []string{"--cluster", "x.yaml"}, "--cluster reads the cluster"},
		{"unreadable kubeconfig", []string{"--cluster", "--kubeconfig", "no/such/kubeconfig"}, "kubeconfig"},
	} {
		out, errOut, code := runCheckCLI("", tc.args...)
		if code != exitInput || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q (stdout %q); want exit 2 and %q", tc.name, code, errOut, out, tc.want)
		}
	}
}

func TestCheckCLI_InputErrorsExit2AfterReporting(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(bad, []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n spec: [\n"), 0o644)
	os.WriteFile(good, []byte(goodService), 0o644)
	out, errOut, code := runCheckCLI("", "--color", "never", bad, good)
	if code != exitInput {
		t.Errorf("exit %d, want 2", code)
	}
	if errOut != "" {
		t.Errorf("stderr = %q, want the report on stdout only", errOut)
	}
	if !strings.Contains(out, bad+":5: invalid YAML") {
		t.Errorf("output does not name the bad file and line:\n%s", out)
	}
	js, _, code := runCheckCLI("", "-o", "json", bad, good)
	var doc struct {
		Errors []struct {
			File string
			Line int
		}
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil || code != exitInput || len(doc.Errors) != 1 || doc.Errors[0].Line != 5 {
		t.Errorf("json: exit %d, errors %+v, err %v", code, doc.Errors, err)
	}
}

func TestCheckCLI_StdinAndSkippedKinds(t *testing.T) {
	in := goodService + "---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
	out, errOut, code := runCheckCLI(in, "--color", "never", "-")
	if code == exitInput || errOut != "" {
		t.Fatalf("exit %d stderr %q:\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "skipped 1 object of kinds zerodrop does not check: example.com/v1/Widget (1)") {
		t.Errorf("skipped kinds not reported:\n%s", out)
	}
}

func TestCheckCLI_ListRules(t *testing.T) {
	rules := check.Rules()
	out, _, code := runCheckCLI("", "--list-rules")
	if code != 0 || !strings.HasPrefix(out, "ID") || !strings.Contains(out, "SEVERITY") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	for _, r := range rules {
		if !strings.Contains(out, r.ID) {
			t.Errorf("--list-rules lacks %s", r.ID)
		}
	}
	js, _, code := runCheckCLI("", "--list-rules", "-o", "json")
	var list []struct{ ID, Title, Severity, Rationale, Fix string }
	if err := json.Unmarshal([]byte(js), &list); err != nil || code != 0 || len(list) != len(rules) {
		t.Fatalf("json list: exit %d, %d rules (want %d), err %v", code, len(list), len(rules), err)
	}
	for i, r := range list {
		if r.ID != rules[i].ID || r.Severity != rules[i].Severity.String() {
			t.Errorf("rule %d = %+v, want %s %s", i, r, rules[i].ID, rules[i].Severity)
		}
	}
}

func TestCheckCLI_ConfigOptionErrorsNameTheLine(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "z.yaml")
	os.WriteFile(cfg, []byte("options:\n  no-such-flag: \"1\"\n"), 0o644)
	svc := filepath.Join(dir, "svc.yaml")
	os.WriteFile(svc, []byte(goodService), 0o644)
	_, errOut, code := runCheckCLI("", "--config", cfg, svc)
	if code != exitInput || !strings.Contains(errOut, cfg+":2: options: no-such-flag: no such flag") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestCheckCLI_DefaultConfigFileIsRead(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".zerodrop.yaml"), []byte("failOn: bogus\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "svc.yaml"), []byte(goodService), 0o644)
	t.Chdir(dir)
	_, errOut, code := runCheckCLI("", "svc.yaml")
	if code != exitInput || !strings.Contains(errOut, ".zerodrop.yaml:1: failOn") {
		t.Errorf("exit %d, stderr %q: the .zerodrop.yaml in the working directory was not read", code, errOut)
	}
}

func TestCheckCLI_FailOnAndConfigSilencing(t *testing.T) {
	t.Chdir("../..")
	ex := "examples/seed000-eks-alb-wrong.yaml" // ZD103 ZD201 errors, ZD304 warning, ZD302 ZD401 info
	if _, _, code := runCheckCLI("", ex); code != exitFindings {
		t.Fatalf("unsilenced: exit %d, want 1", code)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noErrors := write("no-errors.yaml", "disable: [ZD201]\nignore:\n  - rules: [ZD103]\n    kind: Deploy*\n    namespace: seed000-*\n")
	out, errOut, code := runCheckCLI("", "--config", noErrors, "--color", "never", ex)
	if code != exitClean || strings.Contains(out, "ZD201  examples/") || strings.Contains(out, "ZD103  examples/") || !strings.Contains(out, "ZD304  examples/") {
		t.Errorf("errors silenced: exit %d (want 0), stderr %q, output:\n%s", code, errOut, out)
	}
	if _, _, code := runCheckCLI("", "--config", noErrors, "--fail-on", "warning", ex); code != exitFindings {
		t.Errorf("--fail-on warning with a warning left: exit %d, want 1", code)
	}
	demoted := write("demoted.yaml", "disable: [ZD201, ZD103]\nseverity:\n  ZD304: info\nfailOn: warning\n")
	out, _, code = runCheckCLI("", "--config", demoted, "-o", "json", ex)
	var doc struct {
		Summary struct{ Error, Warning, Info int }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if code != exitClean || doc.Summary.Error != 0 || doc.Summary.Warning != 0 || doc.Summary.Info != 3 {
		t.Errorf("ZD304 demoted to info with failOn warning: exit %d summary %+v, want exit 0 and 3 info", code, doc.Summary)
	}
	otherNS := write("other-ns.yaml", "ignore:\n  - rules: [\"*\"]\n    namespace: staging\n")
	if _, _, code := runCheckCLI("", "--config", otherNS, ex); code != exitFindings {
		t.Errorf("an ignore entry for another namespace silenced findings: exit %d", code)
	}
}

const preStop30Grace40 = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 40
      containers:
        - name: web
          image: example/web:1
          readinessProbe: {httpGet: {path: /ready, port: 8080}}
          lifecycle: {preStop: {sleep: {seconds: 30}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

func TestCheckCLI_ConfigOptionsSetAnalysisFlags(t *testing.T) {
	dir := t.TempDir()
	man := filepath.Join(dir, "web.yaml")
	cfg := filepath.Join(dir, "z.yaml")
	os.WriteFile(man, []byte(preStop30Grace40), 0o644)
	os.WriteFile(cfg, []byte("options:\n  shutdown-seconds: \"20\"\n"), 0o644)
	// preStop 30 + shutdown 20 > grace 40: the configuration's assumption
	// makes ZD201 fire.
	out, _, _ := runCheckCLI("", "--config", cfg, "--color", "never", man)
	if !strings.Contains(out, "ZD201") {
		t.Errorf("options.shutdown-seconds 20 did not reach the analysis:\n%s", out)
	}
	// The command line wins over the file: 30 + 1 fits in 40.
	out, _, _ = runCheckCLI("", "--config", cfg, "--shutdown-seconds", "1", "--color", "never", man)
	if strings.Contains(out, "ZD201") {
		t.Errorf("--shutdown-seconds 1 lost to the configuration:\n%s", out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("failOn: error\noptions:\n  shutdown-seconds: soon\n"), 0o644)
	_, errOut, code := runCheckCLI("", "--config", bad, man)
	if code != exitInput || !strings.Contains(errOut, bad+":3: options: shutdown-seconds:") {
		t.Errorf("a bad option value: exit %d, stderr %q", code, errOut)
	}
}

// grace5NoPreStop has a fact-based hazard (no preStop: ZD203, confidence
// high) and one that rests only on the assumed shutdown time of 10 s
// crossing the 5 s grace period (ZD201, confidence low, info).
const grace5NoPreStop = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: example/web:1
          readinessProbe: {httpGet: {path: /ready, port: 8080}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

func TestCheckCLI_MinConfidenceFilters(t *testing.T) {
	type doc struct {
		Findings []struct{ RuleID, Severity, Confidence string }
	}
	read := func(args ...string) doc {
		t.Helper()
		out, errOut, code := runCheckCLI(grace5NoPreStop, append([]string{"-o", "json"}, append(args, "-")...)...)
		if code == exitInput {
			t.Fatalf("exit 2: %s", errOut)
		}
		var d doc
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return d
	}
	byRule := func(d doc) map[string]string {
		m := map[string]string{}
		for _, f := range d.Findings {
			m[f.RuleID] = f.Severity + "/" + f.Confidence
		}
		return m
	}
	all := byRule(read())
	if all["ZD201"] != "info/low" || all["ZD203"] != "error/high" {
		t.Fatalf("default: ZD201 %q, ZD203 %q; want info/low and error/high", all["ZD201"], all["ZD203"])
	}
	sure := byRule(read("--min-confidence", "high"))
	if _, ok := sure["ZD201"]; ok || sure["ZD203"] != "error/high" {
		t.Errorf("--min-confidence high kept %v; want ZD203 only of the two", sure)
	}
	if _, errOut, code := runCheckCLI(grace5NoPreStop, "--min-confidence", "certain", "-"); code != exitInput || !strings.Contains(errOut, `unknown confidence "certain"`) {
		t.Errorf("bad --min-confidence: exit %d, stderr %q", code, errOut)
	}
}

func TestCheckCLI_CompactOutput(t *testing.T) {
	t.Chdir("../..")
	ex := "examples/seed000-eks-alb-wrong.yaml" // ZD103 ZD201 errors, ZD304 warning, ZD302 ZD401 info
	out, errOut, code := runCheckCLI("", "-o", "compact", ex)
	if code != exitFindings {
		t.Fatalf("exit %d (stderr %q), want 1", code, errOut)
	}
	findingLines := strings.Count(out, "\n"+ex+":") + strings.Count(out[:len(ex)+1], ex+":")
	if findingLines != 5 {
		t.Errorf("%d finding lines, want 5:\n%s", findingLines, out)
	}
	for _, want := range []string{
		"Deployment seed000-eks-alb-wrong/api-server  " + ex + " (ZD401, ZD103, ZD201)\n  spec:\n    minReadySeconds: 63\n",
		"ZD103  Deployment seed000-eks-alb-wrong/api-server: Best: let the ALB's verdict gate Ready: `kubectl label namespace",
		"summary:\nrule    error  warning  info\n",
		"total       2        1     2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("compact output lacks %q:\n%s", want, out)
		}
	}
}
