package load

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the loader: whatever the input, it must
// not panic or hang, and every object it returns must carry a kind and a
// source.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("testdata/*.json")
	walk, _ := filepath.Glob("testdata/*/*/*.yaml")
	examples, _ := filepath.Glob("../../../examples/*/*.yaml")
	examples2, _ := filepath.Glob("../../../examples/*.yaml")
	for _, p := range append(append(append(append(seeds, more...), walk...), examples...), examples2...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: List, items: [{apiVersion: v1, kind: Service}]}]\n"))
	f.Add([]byte("apiVersion: apps/v1\nkind: Deployment\n<<: {metadata: {name: m}}\nspec: {replicas: 0x10}\n"))
	f.Add([]byte("[{\"apiVersion\":\"v1\"}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res := Bytes("fuzz.yaml", data)
		for _, o := range res.Objects {
			if o.Ref.Kind == "" || o.Source.File != "fuzz.yaml" || o.Typed == nil {
				t.Fatalf("object without kind, source or value: %+v", o)
			}
			o.Line("spec.template.spec.containers[0].lifecycle.preStop")
			o.Line(`metadata.annotations["a.b"][3].x`)
		}
		for _, e := range append(res.Errors, res.Warnings...) {
			if e.Source.File != "fuzz.yaml" || strings.TrimSpace(e.Err) == "" {
				t.Fatalf("error without file or text: %+v", e)
			}
		}
	})
}

// FuzzParsePath checks that any field path is read without panicking, and
// that an object's line index answers as its node tree would.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"spec.a[0].b", `m["a.b"]`, "[", "a[x", `["`, "a..b", "[-1]"} {
		f.Add(s)
	}
	doc := []byte("apiVersion: v1\nkind: Service\nmetadata: {name: a, annotations: {a.b: c}}\nspec: {ports: [{port: 1}]}\n")
	res := Bytes("x.yaml", doc)
	top, err := v3Top(doc)
	if err != nil {
		f.Fatal(err)
	}
	x, _ := newLineIndex(top)
	f.Fuzz(func(t *testing.T, p string) {
		res.Objects[0].Line(p)
		if a, b := x.lineOf(p), LineOf(top, p); a != b {
			t.Fatalf("%q: index says line %d, tree %d", p, a, b)
		}
	})
}
