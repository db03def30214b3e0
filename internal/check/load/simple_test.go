package load

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// v3Top parses data with yaml.v3 and returns the first document's top node.
func v3Top(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// sameTree compares what the loader uses from a node tree: the JSON it
// encodes to, and the lines of keys and sequence items.
func sameTree(t *testing.T, data []byte, fast, slow *yaml.Node) {
	t.Helper()
	var a, b jsonEncoder
	errA, errB := a.node(fast, 0), b.node(slow, 0)
	if (errA == nil) != (errB == nil) {
		t.Fatalf("encoding differs: fast %v, yaml.v3 %v\ninput:\n%s", errA, errB, data)
	}
	if !bytes.Equal(a.buf, b.buf) {
		t.Fatalf("JSON differs:\nfast    %s\nyaml.v3 %s\ninput:\n%q", a.buf, b.buf, data)
	}
	var walk func(x, y *yaml.Node, path string)
	walk = func(x, y *yaml.Node, path string) {
		if x.Kind != y.Kind || len(x.Content) != len(y.Content) {
			t.Fatalf("%s: node kind/size differs (%v/%d vs %v/%d)\ninput:\n%q", path, x.Kind, len(x.Content), y.Kind, len(y.Content), data)
		}
		for i := range x.Content {
			cx, cy := x.Content[i], y.Content[i]
			keyOrItem := x.Kind == yaml.SequenceNode || i%2 == 0
			if keyOrItem && cx.Line != cy.Line && !(cy.Kind == yaml.ScalarNode && cy.ShortTag() == "!!null") {
				t.Fatalf("%s[%d]: line %d, yaml.v3 says %d\ninput:\n%q", path, i, cx.Line, cy.Line, data)
			}
			walk(cx, cy, path+"/"+cx.Value)
		}
	}
	walk(fast, slow, "")
}

func checkSimple(t *testing.T, data []byte) (accepted bool) {
	fast, ok := parseSimple(data)
	if !ok {
		return false
	}
	slow, err := v3Top(data)
	if err != nil {
		t.Fatalf("fast parser accepted what yaml.v3 rejects (%v):\n%q", err, data)
	}
	if slow == nil {
		t.Fatalf("fast parser found a document where yaml.v3 found none:\n%q", data)
	}
	sameTree(t, data, fast, slow)
	return true
}

func TestParseSimple_MatchesYAMLv3OnManifests(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("../../../examples/*.yaml")
	accepted := 0
	total := 0
	for _, f := range append(files, more...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range split(f, data) {
			total++
			if checkSimple(t, c.data) {
				accepted++
			}
		}
	}
	// The fast path is only worth having if it takes most real documents.
	if accepted*10 < total*8 {
		t.Errorf("fast parser took %d of %d documents, want at least 80%%", accepted, total)
	}
}

func TestParseSimple_DeclinesWhatItDoesNotKnow(t *testing.T) {
	for _, in := range []string{
		"a: &x 1\nb: *x\n",
		"a: |\n  text\n",
		"a: >-\n  text\n",
		"a: !!str 1\n",
		"a: b\n  c\n",
		"a: \"multi\n  line\"\n",
		"? complex\n: key\n",
		"- - nested\n",
		"a: [x\n  y]\n",          // a plain scalar over two lines
		"a: ['x\n  y']\n",        // a quoted one
		"a: {b\n  : c}\n",        // a key and its ':' on different lines
		"a: [1,\n2]\n",           // a continuation line not indented
		"- a: [1,\n  2]\n",       // ... not indented past the key
		"a: [1, 2\n",             // unclosed
		"a: [1,\n  2]\n  b: 3\n", // a block continuing after the flow
		"{0: {0?: 0}}\n",         // '?' inside a plain scalar in a flow (yaml.v3 rejects it)
		"\ta: 1\n",
		"a: 1\n...\n",
		"just a scalar\n",
		"a: \"\\x41\"\n",
	} {
		if _, ok := parseSimple([]byte(in)); ok {
			t.Errorf("fast parser accepted %q", in)
		}
	}
}

func TestParseSimple_Scalars(t *testing.T) {
	in := strings.Join([]string{
		"s: plain text # comment",
		"q: \"double \\\"q\\\" \\u00e9\"",
		"sq: 'it''s'",
		"i: 42",
		"neg: -3",
		"o: 0o17",
		"f: 1.5",
		"b: true",
		"B: False",
		"n: ~",
		"e:",
		"tag: a#b",
		"url: http://x:80/y",
		"flow: {a: 1, b: [x, 'y', \"z\"], c: {}}",
		"empty: []",
		"opts: -Xmx200m",
		"list:",
		"- a",
		"- k: v",
		"  k2: v2",
		"-",
		"  deep: 1",
		"last: end",
	}, "\n") + "\n"
	if !checkSimple(t, []byte(in)) {
		t.Fatalf("fast parser declined:\n%s", in)
	}
}

// flowCases are flow-style documents, on one line and over several, as
// hand-written manifests and bench/check's -style flow have them.
var flowCases = []string{
	"a: [1,\n  2]\n",
	"metadata: {name: web, namespace: shop,\n    labels: {app: web}}\nspec: {replicas: 2}\n",
	"spec: {template: {\n    spec: {containers: [\n        {name: app, ports: [{containerPort: 8080}],\n          env: [{name: A, value: \"1\"}, {name: B, value: 'x'}]}]}}}\n",
	"a: [1, # one\n  2 # two\n  ]\nb: c\n",
	"a: {b:\n    c, d: [\n\n    ]}\n",
	"- {name: a, value: b,\n   x: y}\n- [1,\n   2]\n",
	"- a: {x: 1,\n    y: 2}\n  b: 3\n",
	"{apiVersion: v1, kind: Service,\n  metadata: {name: web}}\n",
	"{apiVersion: v1,\nkind: Service}\n",
	"[1,\n2]\n",
	"a: {b: 1\n  , c: 2}\n",
	"a: {b: {c: {d: [e,\n        f]}}, g: h}\n",
	"a: {\"k\": 'v',\n  'q': \"w\"}\n",
}

func TestParseSimple_FlowStyle(t *testing.T) {
	for _, in := range flowCases {
		if !checkSimple(t, []byte(in)) {
			t.Errorf("fast parser declined:\n%s", in)
		}
	}
}

// FuzzSimpleMatchesYAMLv3 holds the fast parser to yaml.v3: whatever it
// accepts, yaml.v3 must accept with the same JSON and the same lines.
func FuzzSimpleMatchesYAMLv3(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("../../../examples/*.yaml")
	for _, p := range append(files, more...) {
		if data, err := os.ReadFile(p); err == nil {
			for _, c := range split(p, data) {
				f.Add(c.data)
			}
		}
	}
	f.Add([]byte("a: {b: [1, 'x', \"y\"]}\n- c\n"))
	f.Add([]byte("- name: a\n  v: 1\n-\n  x: y\n"))
	for _, in := range flowCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSimple(t, data)
	})
}

func TestParseSimple_TakesEveryFlowStyleDocument(t *testing.T) {
	data, err := os.ReadFile("testdata/flow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs := split("flow.yaml", data)
	if len(cs) != 20 {
		t.Fatalf("%d documents, want 20", len(cs))
	}
	for _, c := range cs {
		if !checkSimple(t, c.data) {
			t.Errorf("fast parser declined the document at line %d:\n%s", c.line, c.data)
		}
	}
}
