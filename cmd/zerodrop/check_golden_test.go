package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite examples/golden/*.golden from the current output")

// goldenCase is one example and the command line that checks it.
type goldenCase struct {
	name string   // golden file name without extension
	args []string // after "zerodrop check"
}

// exampleCases lists every example: each manifest file in examples/ and each
// kustomization under examples/kustomize/. An example whose leading comment
// says how to run it ("zerodrop check --haproxy-config x.cfg examples/y.yaml")
// is checked with exactly that command line.
func exampleCases(t *testing.T) []goldenCase {
	t.Helper()
	var cases []goldenCase
	entries, err := os.ReadDir("examples")
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading examples/: %v", err)
	}
	for _, e := range entries {
		p := filepath.Join("examples", e.Name())
		switch {
		case e.IsDir() && e.Name() == "kustomize":
			dirs, _ := os.ReadDir(p)
			for _, d := range dirs {
				if d.IsDir() {
					cases = append(cases, goldenCase{name: "kustomize-" + d.Name(), args: []string{"-k", filepath.Join(p, d.Name())}})
				}
			}
		case e.IsDir():
			continue // golden/ and other material
		case strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml") || strings.HasSuffix(e.Name(), ".json"):
			name := strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))
			cases = append(cases, goldenCase{name: name, args: commandOf(t, p)})
		}
	}
	return cases
}

// commandOf reads "zerodrop check ARGS" from the comment lines at the top of
// an example; without one the example is checked on its own.
func commandOf(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "#") {
			break
		}
		if i := strings.Index(l, "zerodrop check "); i >= 0 {
			args := strings.Fields(l[i+len("zerodrop check "):])
			for _, a := range args {
				if a == path {
					return args
				}
			}
		}
	}
	return []string{path}
}

func checkOutput(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runIO(append([]string{"check"}, args...), strings.NewReader(""), &out, &errOut)
	if errOut.Len() > 0 {
		t.Errorf("zerodrop check %s wrote to stderr: %s", strings.Join(args, " "), errOut.String())
	}
	return out.String(), code
}

func TestCheckExamples_Golden(t *testing.T) {
	t.Chdir("../..")
	cases := exampleCases(t)
	if len(cases) == 0 {
		t.Skip("examples/ holds no examples yet")
	}
	schema := sarifSchema(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, textCode := checkOutput(t, append([]string{"--color", "never"}, c.args...)...)
			js, jsonCode := checkOutput(t, append([]string{"-o", "json"}, c.args...)...)
			if textCode != jsonCode {
				t.Errorf("exit code text %d, json %d", textCode, jsonCode)
			}
			var doc struct {
				Summary struct {
					Failed      bool
					InputErrors int
				}
			}
			if err := json.Unmarshal([]byte(js), &doc); err != nil {
				t.Fatalf("json output does not parse: %v", err)
			}
			want := exitClean
			if doc.Summary.InputErrors > 0 {
				want = exitInput
			} else if doc.Summary.Failed {
				want = exitFindings
			}
			if textCode != want {
				t.Errorf("exit code %d, want %d for summary %+v", textCode, want, doc.Summary)
			}
			sarif, sarifCode := checkOutput(t, append([]string{"-o", "sarif"}, c.args...)...)
			if sarifCode != textCode {
				t.Errorf("exit code sarif %d, text %d", sarifCode, textCode)
			}
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(sarif))
			if err != nil {
				t.Fatalf("sarif output does not parse: %v", err)
			}
			if err := schema.Validate(inst); err != nil {
				t.Errorf("sarif output is not valid SARIF 2.1.0: %v", err)
			}
			compareGolden(t, filepath.Join("examples", "golden", c.name+".txt.golden"), text)
			compareGolden(t, filepath.Join("examples", "golden", c.name+".json.golden"), js)
		})
	}
}

// sarifSchema compiles the SARIF 2.1.0 schema that the report package's
// tests use too.
func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	const path = "internal/check/report/testdata/sarif-schema-2.1.0.json"
	f, err := os.Open(path)
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
	if err := c.AddResource(path, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/zerodrop -run Golden -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("output differs from %s (go test ./cmd/zerodrop -run Golden -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}
