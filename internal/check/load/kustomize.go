package load

import (
	"os"
	"path/filepath"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"zerodrop.dev/zerodrop/internal/check"
)

// originAnnotation is where kustomize records which file a resource came
// from (when asked to with buildMetadata: [originAnnotations]).
const originAnnotation = "config.kubernetes.io/origin"

// Kustomize builds dir with kustomize's own Go API (what `kustomize build
// dir` and `kubectl kustomize dir` print) and decodes the result. Each object
// is reported at the file and line it was written in before kustomize
// transformed it, found through kustomize's origin annotations; objects that
// kustomize generated are reported at the kustomization file.
func Kustomize(dir string) *Result {
	res := &Result{}
	kfile := kustomizationFile(dir)
	if kfile == "" {
		res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: dir}, Err: "not a kustomize directory: no kustomization.yaml, kustomization.yml or Kustomization in it"})
		return res
	}
	abs, err := filepath.Abs(kfile)
	if err != nil {
		res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: kfile}, Err: err.Error()})
		return res
	}
	fs := originFS{FileSystem: filesys.MakeFsOnDisk(), root: abs}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(fs, dir)
	if err != nil {
		res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: kfile}, Err: "kustomize build: " + err.Error()})
		return res
	}
	originals := map[string]*originalFile{}
	for i, r := range m.Resources() {
		origin, _ := r.GetOrigin()
		_ = r.SetOrigin(nil)
		if annos := r.GetAnnotations(); len(annos) == 0 {
			// kustomize leaves an empty annotations map behind.
			_ = r.SetAnnotations(nil)
		}
		data, err := r.AsYAML()
		if err != nil {
			res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: kfile}, Err: "kustomize build: " + err.Error()})
			continue
		}
		out := decodeChunk(chunk{file: kfile, doc: i, line: 1, data: data})
		for _, o := range out.Objects {
			placeObject(o, dir, kfile, origin, originals)
		}
		for j := range out.Errors {
			out.Errors[j].Source = check.Source{File: kfile}
			out.Errors[j].Err = r.CurId().String() + ": " + out.Errors[j].Err
		}
		for j := range out.Warnings {
			out.Warnings[j].Source = check.Source{File: kfile}
			out.Warnings[j].Err = r.CurId().String() + ": " + out.Warnings[j].Err
		}
		res.merge(out)
	}
	return res
}

// placeObject points a built object back at its source file: the document of
// the same kind whose name the built name contains (namePrefix and
// nameSuffix change names). Field lines then come from that document; a field
// a patch added resolves to its closest ancestor there.
func placeObject(o *check.Object, dir, kfile string, origin *resource.Origin, originals map[string]*originalFile) {
	o.Source = check.Source{File: kfile}
	o.LineOf = nil
	if origin == nil || origin.Path == "" || origin.Repo != "" {
		return
	}
	path := filepath.Join(dir, origin.Path)
	of, ok := originals[path]
	if !ok {
		of = readOriginal(path)
		originals[path] = of
	}
	if of == nil {
		return
	}
	var best *originalDoc
	for i := range of.docs {
		d := &of.docs[i]
		if d.kind != o.Ref.Kind || !strings.Contains(o.Ref.Name, d.name) {
			continue
		}
		if best == nil || len(d.name) > len(best.name) {
			best = d
		}
	}
	if best == nil {
		o.Source.File = path
		return
	}
	n, offset := best.node, best.lineOffset
	o.Source = check.Source{File: path, Line: n.Line + offset, Doc: best.doc}
	o.LineOf = func(p string) int {
		if l := LineOf(n, p); l > 0 {
			return l + offset
		}
		return 0
	}
}

type originalFile struct{ docs []originalDoc }

type originalDoc struct {
	kind, name string
	doc        int
	node       *yaml.Node
	lineOffset int
}

func readOriginal(path string) *originalFile {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	of := &originalFile{}
	for _, c := range split(path, data) {
		if c.err != nil {
			continue
		}
		var doc yaml.Node
		if yaml.Unmarshal(c.data, &doc) != nil || len(doc.Content) == 0 {
			continue
		}
		top := doc.Content[0]
		of.docs = append(of.docs, originalDoc{
			kind:       scalarField(top, "kind"),
			name:       scalarField(field(top, "metadata"), "name"),
			doc:        c.doc,
			node:       top,
			lineOffset: c.line - 1,
		})
	}
	return of
}

// originFS reads the root kustomization with "originAnnotations" added to its
// buildMetadata, so that kustomize tells which file every resource came from.
// Everything else is read from disk unchanged.
type originFS struct {
	filesys.FileSystem
	root string // absolute path of the root kustomization file
}

// ReadFile implements filesys.FileSystem.
func (f originFS) ReadFile(path string) ([]byte, error) {
	data, err := f.FileSystem.ReadFile(path)
	if err != nil {
		return data, err
	}
	if abs, aerr := filepath.Abs(path); aerr != nil || abs != f.root {
		return data, nil
	}
	var k map[string]any
	if yaml.Unmarshal(data, &k) != nil || k == nil {
		return data, nil // let kustomize report it
	}
	var meta []any
	switch bm := k["buildMetadata"].(type) {
	case nil:
	case []any:
		meta = bm
	default:
		return data, nil
	}
	for _, v := range meta {
		if v == "originAnnotations" {
			return data, nil
		}
	}
	k["buildMetadata"] = append(meta, "originAnnotations")
	out, err := yaml.Marshal(k)
	if err != nil {
		return data, nil
	}
	return out, nil
}
