// Package load reads Kubernetes manifests for zerodrop check: files,
// directories, standard input, multi-document YAML and JSON streams, List
// objects and kustomize builds. It decodes every object into its k8s.io/api
// type (client-go's scheme) and remembers where each field came from, so that
// a finding can name file and line.
//
// Nothing here stops at the first bad document: a YAML or schema error becomes
// a check.InputError naming file and line, and loading goes on with the other
// documents.
package load

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"zerodrop.dev/zerodrop/internal/check"
	"zerodrop.dev/zerodrop/internal/parallel"
)

// Stdin is the path argument that reads standard input.
const Stdin = "-"

// StdinName is the file name reported for objects read from standard input.
const StdinName = "<stdin>"

// Options says where to read from besides the path arguments.
type Options struct {
	// Stdin is read for the path "-"; os.Stdin when nil.
	Stdin io.Reader
	// Kustomize lists directories to build with kustomize (-k).
	Kustomize []string
}

// Result is everything read: the objects, and what went wrong on the way.
type Result struct {
	Objects []*check.Object
	// Errors are documents that could not be read or decoded; they are
	// left out of Objects.
	Errors []check.InputError
	// Warnings are problems that did not stop an object from being
	// decoded: unknown or duplicate fields.
	Warnings []check.InputError
	// Skipped counts objects of kinds the check does not know, by
	// "apiVersion/kind" (for example "cert-manager.io/v1/Certificate").
	Skipped map[string]int
	// Ignored lists files met in directory walks that hold no Kubernetes
	// object at all (Helm values, CI configs, zerodrop's own JSON reports):
	// not errors, since a directory holds more than manifests. A file named
	// on the command line is never ignored.
	Ignored []string

	notObjects int // documents without apiVersion and kind, or not mappings
}

func (r *Result) skip(apiVersion, kind string) {
	if r.Skipped == nil {
		r.Skipped = map[string]int{}
	}
	r.Skipped[apiVersion+"/"+kind]++
}

func (r *Result) merge(o *Result) {
	r.Objects = append(r.Objects, o.Objects...)
	r.Errors = append(r.Errors, o.Errors...)
	r.Warnings = append(r.Warnings, o.Warnings...)
	r.Ignored = append(r.Ignored, o.Ignored...)
	r.notObjects += o.notObjects
	for k, n := range o.Skipped {
		if r.Skipped == nil {
			r.Skipped = map[string]int{}
		}
		r.Skipped[k] += n
	}
}

// manifestExt reports whether a file found in a directory walk is read.
func manifestExt(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// kustomizationFile returns the kustomization file in dir, or "".
func kustomizationFile(dir string) string {
	for _, n := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
		p := filepath.Join(dir, n)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// Load reads every path (a file, a directory walked recursively, or "-" for
// standard input) and every kustomize directory of opts. Objects come back in
// input order. A directory met in a walk that holds a kustomization file is
// built with kustomize instead of being read file by file, because the files
// of a kustomization (patches, partial bases) are not the objects it deploys.
func Load(paths []string, opts Options) *Result {
	var files []input
	res := &Result{}
	var kustomizeDirs []string
	for _, p := range paths {
		if p == Stdin {
			in := opts.Stdin
			if in == nil {
				in = os.Stdin
			}
			data, err := io.ReadAll(in)
			if err != nil {
				res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: StdinName}, Err: "reading standard input: " + err.Error()})
				continue
			}
			files = append(files, input{name: StdinName, data: data})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: p}, Err: cleanPathErr(err)})
			continue
		}
		if !fi.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: p}, Err: cleanPathErr(err)})
				continue
			}
			files = append(files, input{name: p, data: data})
			continue
		}
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: path}, Err: cleanPathErr(err)})
				if d != nil && d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir // .git and friends
				}
				if kustomizationFile(path) != "" {
					kustomizeDirs = append(kustomizeDirs, path)
					return filepath.SkipDir
				}
				return nil
			}
			if !manifestExt(d.Name()) {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: path}, Err: cleanPathErr(err)})
				return nil
			}
			files = append(files, input{name: path, data: data, walked: true})
			return nil
		})
		if err != nil {
			res.Errors = append(res.Errors, check.InputError{Source: check.Source{File: p}, Err: err.Error()})
		}
	}
	res.merge(loadInputs(files))
	for _, dir := range append(kustomizeDirs, opts.Kustomize...) {
		res.merge(Kustomize(dir))
	}
	res.Warnings = append(res.Warnings, duplicates(res.Objects)...)
	return res
}

// duplicates warns about objects defined more than once (same kind,
// namespace and name): applied together, the later replaces the earlier, and
// the check would relate both copies to the same Services, Ingresses and
// PDBs, mixing one copy's numbers into the other's findings. Typical causes:
// two versions of a manifest in one directory, or two overlays built into
// the same namespace. The API group is left out of the key because
// extensions/v1beta1 and networking.k8s.io/v1 Ingresses are one object.
func duplicates(objs []*check.Object) []check.InputError {
	type key struct{ kind, ns, name string }
	first := make(map[key]*check.Object, len(objs))
	var out []check.InputError
	for _, o := range objs {
		k := key{o.Ref.Kind, o.Ref.Namespace, o.Ref.Name}
		f, ok := first[k]
		if !ok {
			first[k] = o
			continue
		}
		out = append(out, check.InputError{Source: o.Source,
			Err: fmt.Sprintf("%s is defined again (first at %s): applied together, one replaces the other, and the check relates both to the same Services, Ingresses and PodDisruptionBudgets", o.Ref, f.Source)})
	}
	return out
}

// Bytes reads the manifests in data as if they came from a file called name.
// The objects share data's memory: it must not be changed afterwards.
func Bytes(name string, data []byte) *Result {
	return loadInputs([]input{{name: name, data: data}})
}

// input is one file's content.
type input struct {
	name   string
	data   []byte
	walked bool // found in a directory walk, not named by the user
}

// chunk is one document of one file, with the line it starts on.
type chunk struct {
	file string
	doc  int
	line int // 1-based line of the chunk's first byte in its file
	data []byte
	json bool
	// walked marks chunks of files found in directory walks.
	walked bool
	err    *check.InputError // a whole-file error found while splitting
}

// loadInputs splits every file into documents and decodes them in parallel
// (YAML parsing dominates the cost), keeping input order.
func loadInputs(files []input) *Result {
	var chunks []chunk
	for _, f := range files {
		cs := split(f.name, f.data)
		for i := range cs {
			cs[i].walked = f.walked
		}
		if chunks == nil {
			chunks = cs // the first (often the only) file's, without a copy
		} else {
			chunks = append(chunks, cs...)
		}
	}
	return decodeChunks(chunks)
}

func decodeChunks(chunks []chunk) *Result {
	results := make([]*Result, len(chunks))
	parallel.For(len(chunks), func(i int) { results[i] = decodeChunk(chunks[i]) })
	out := &Result{}
	for i := 0; i < len(chunks); {
		// One file's documents: a walked file none of whose documents is
		// a Kubernetes object is ignored rather than reported.
		j := i
		file := &Result{}
		for ; j < len(chunks) && chunks[j].file == chunks[i].file; j++ {
			file.merge(results[j])
		}
		if chunks[i].walked && len(file.Objects) == 0 && len(file.Skipped) == 0 && len(file.Warnings) == 0 &&
			file.notObjects > 0 && file.notObjects == len(file.Errors) {
			file = &Result{Ignored: []string{chunks[i].file}}
		}
		out.merge(file)
		i = j
	}
	return out
}

// split cuts a file into documents. YAML documents are separated by lines
// starting with "---"; a file whose first non-blank byte is '{' or '[' is a
// JSON stream of values. Each document is parsed on its own so that a syntax
// error in one does not hide the others.
func split(name string, data []byte) []chunk {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return splitJSON(name, data)
	}
	// Not sized in advance: counting the markers first (bytes.Count of
	// "\n---") took longer than growing the slice.
	var chunks []chunk
	line := 1
	start, startLine := 0, 1
	doc := 0
	emit := func(end int) {
		body := data[start:end]
		if !blankYAML(body) {
			chunks = append(chunks, chunk{file: name, doc: doc, line: startLine, data: body})
			doc++
		}
	}
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		end := len(data)
		if j >= 0 {
			end = i + j + 1
		}
		l := data[i:end]
		if isDocMarker(l) && i != start {
			emit(i)
			start, startLine = i, line
		}
		i = end
		line++
	}
	if start < len(data) {
		emit(len(data))
	}
	return chunks
}

// isDocMarker reports whether a line starts a YAML document: "---" at column
// 0 followed by nothing, a space or a tab.
func isDocMarker(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	return len(l) == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\n' || l[3] == '\r'
}

// blankYAML reports whether a document holds nothing but markers, comments
// and blank lines (helm template prints many of those).
func blankYAML(b []byte) bool {
	for len(b) > 0 {
		j := bytes.IndexByte(b, '\n')
		l := b
		if j >= 0 {
			l, b = b[:j], b[j+1:]
		} else {
			b = nil
		}
		t := bytes.TrimSpace(l)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("---")) || bytes.Equal(t, []byte("...")) {
			continue
		}
		if isDocMarker(t) && bytes.HasPrefix(bytes.TrimSpace(t[3:]), []byte("#")) {
			continue
		}
		return false
	}
	return true
}

func cleanPathErr(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

func lineAt(data []byte, off int) int {
	if off > len(data) {
		off = len(data)
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

func inputErr(file string, line, doc int, format string, args ...any) check.InputError {
	return check.InputError{Source: check.Source{File: file, Line: line, Doc: doc}, Err: fmt.Sprintf(format, args...)}
}
