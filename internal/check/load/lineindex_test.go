package load

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// paths lists a field path for every node under n, as rules write them,
// plus paths that go one step too far or name missing keys.
func paths(n *yaml.Node, prefix string, out *[]string) {
	*out = append(*out, prefix, prefix+".missing", prefix+"[7]")
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			p := prefix + "." + k
			if strings.ContainsAny(k, ".[]\"") {
				p = fmt.Sprintf("%s[%q]", prefix, k)
			}
			paths(n.Content[i+1], strings.TrimPrefix(p, "."), out)
		}
	case yaml.SequenceNode:
		for i, it := range n.Content {
			paths(it, fmt.Sprintf("%s[%d]", prefix, i), out)
		}
	}
}

func TestLineIndex_AnswersAsTheTree(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("../../../examples/*.yaml")
	checked := 0
	for _, f := range append(files, more...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range split(f, data) {
			top, err := v3Top(c.data)
			if err != nil || top == nil {
				continue
			}
			x, ok := newLineIndex(top)
			if !ok {
				t.Fatalf("%s:%d: not indexed", f, c.line)
			}
			var ps []string
			paths(top, "", &ps)
			// Dotted keys written as segments, as rules write annotation paths.
			ps = append(ps, "metadata.annotations.alb.ingress.kubernetes.io/target-type", "spec.template.metadata.annotations.zerodrop.dev/shutdown-seconds")
			for _, p := range ps {
				if got, want := x.lineOf(p), LineOf(top, p); got != want {
					t.Errorf("%s:%d: %q: index says line %d, tree %d", f, c.line, p, got, want)
				}
				checked++
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d paths checked", checked)
	}
}

func TestLineIndex_DeclinesAliases(t *testing.T) {
	top, err := v3Top([]byte("a: &x {b: 1}\nc: *x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := newLineIndex(top); ok {
		t.Error("indexed a tree with an alias")
	}
}
