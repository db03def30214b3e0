package load

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	yaml "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	kjson "sigs.k8s.io/json"

	"zerodrop.dev/zerodrop/internal/check"
)

// KeepUnstructured reports whether an object of a kind without Go types in
// client-go's scheme is kept (as *unstructured.Unstructured) because a rule
// reads it. Every other unknown kind is counted in Result.Skipped.
func KeepUnstructured(gvk schema.GroupVersionKind) bool {
	switch gvk.Group {
	case "zerodrop.dev":
		return true // our own CRDs: LoadBalancer, TargetBinding
	case "cloud.google.com":
		return gvk.Kind == "BackendConfig"
	case "networking.istio.io":
		return gvk.Kind == "DestinationRule"
	case "elbv2.k8s.aws":
		return gvk.Kind == "TargetGroupBinding"
	case "gateway.networking.k8s.io":
		return gvk.Kind == "Gateway" || gvk.Kind == "HTTPRoute" || gvk.Kind == "GRPCRoute"
	}
	return false
}

// decodeChunk decodes one document (or a List of objects) into objects,
// turning every failure into an InputError. It never panics: a panic in a
// parser becomes an InputError too, so one bad document cannot stop a check.
func decodeChunk(c chunk) *Result { return decodeChunkVia(c, false) }

// decodeChunkVia is decodeChunk; with viaJSON every object takes the JSON
// path (tests compare the two paths).
func decodeChunkVia(c chunk, viaJSON bool) (res *Result) {
	res = &Result{}
	if c.err != nil {
		res.Errors = append(res.Errors, *c.err)
		return res
	}
	defer func() {
		if p := recover(); p != nil {
			res.Errors = append(res.Errors, inputErr(c.file, c.line, c.doc, "cannot parse document: internal error: %v", p))
		}
	}()
	if !c.json {
		p := simpleParsers.Get().(*simpleParser)
		if top, ok := p.parse(c.data); ok {
			d := &document{file: c.file, doc: c.doc, lineOffset: c.line - 1, viaJSON: viaJSON || len(c.data) > maxTypedDocument,
				top: top, text: c.data}
			d.object(top, res, 0)
			if !d.keptTree {
				// No object holds on to the tree: its nodes can be reused.
				p.reset()
				simpleParsers.Put(p)
			}
			return res
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(c.data))
	for sub := 0; ; sub++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err != nil {
			if err.Error() == "EOF" {
				return res
			}
			if c.json {
				// JSON that YAML cannot read (tab indentation): decode
				// it without positions.
				decodeJSONOnly(c, res)
				return res
			}
			_, msg := yamlErrLine(err)
			line := firstBadLine(c.data)
			res.Errors = append(res.Errors, inputErr(c.file, c.line+line-1, c.doc, "invalid YAML: %s", msg))
			return res
		}
		if len(doc.Content) == 0 {
			continue
		}
		top := doc.Content[0]
		if top.Kind == yaml.ScalarNode && top.ShortTag() == "!!null" {
			continue
		}
		d := &document{file: c.file, doc: c.doc + sub, lineOffset: c.line - 1, viaJSON: viaJSON || len(c.data) > maxTypedDocument}
		d.object(top, res, 0)
	}
}

// document is one YAML document being turned into objects.
type document struct {
	file       string
	doc        int
	lineOffset int  // added to node lines: the chunk's first line minus 1
	keptTree   bool // an object's LineOf holds on to the node tree
	viaJSON    bool // decode typed objects through JSON only (decodeTyped not tried)
	// top and text, when the fast parser read the document: its top node
	// and the text it was parsed from, which an object whose node is top
	// parses again if its LineOf is ever called (see lazyLineOf).
	top  *yaml.Node
	text []byte
}

func (d *document) src(n *yaml.Node) check.Source {
	return check.Source{File: d.file, Line: n.Line + d.lineOffset, Doc: d.doc}
}

func (d *document) errAt(n *yaml.Node, format string, args ...any) check.InputError {
	return check.InputError{Source: d.src(n), Err: fmt.Sprintf(format, args...)}
}

// jsonBuffers holds the buffers objects are encoded to JSON in (*[]byte).
var jsonBuffers sync.Pool

// maxListDepth bounds Lists nested in Lists.
const maxListDepth = 8

// object decodes one object node; Lists expand to their items.
func (d *document) object(n *yaml.Node, res *Result, depth int) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		res.Errors = append(res.Errors, d.errAt(n, "expected a Kubernetes object (a mapping with apiVersion and kind), found %s", nodeKindName(n)))
		res.notObjects++
		return
	}
	apiVersion, kind := scalarField(n, "apiVersion"), scalarField(n, "kind")
	if kind == "" || apiVersion == "" {
		var missing []string
		if apiVersion == "" {
			missing = append(missing, "apiVersion")
		}
		if kind == "" {
			missing = append(missing, "kind")
		}
		res.Errors = append(res.Errors, d.errAt(n, "object has no %s", strings.Join(missing, " or ")))
		if len(missing) == 2 && depth == 0 {
			res.notObjects++
		}
		return
	}
	if items := field(n, "items"); strings.HasSuffix(kind, "List") && items != nil {
		if items.Kind == yaml.AliasNode && items.Alias != nil {
			items = items.Alias
		}
		if items.Kind != yaml.SequenceNode {
			if items.ShortTag() == "!!null" {
				return // an empty List
			}
			res.Errors = append(res.Errors, d.errAt(items, "%s: items must be a list, found %s", kind, nodeKindName(items)))
			return
		}
		if depth >= maxListDepth {
			res.Errors = append(res.Errors, d.errAt(n, "Lists nested more than %d deep", maxListDepth))
			return
		}
		for _, it := range items.Content {
			d.object(it, res, depth+1)
		}
		return
	}

	gvk := schema.FromAPIVersionAndKind(apiVersion, kind)
	known := scheme.Scheme.Recognizes(gvk)
	if !known && !KeepUnstructured(gvk) {
		res.skip(apiVersion, kind)
		return
	}
	if known && !d.viaJSON {
		if typed, err := scheme.Scheme.New(gvk); err == nil && decodeTyped(n, typed) {
			res.Objects = append(res.Objects, d.newObject(n, typed, apiVersion, kind))
			return
		}
	}
	var enc jsonEncoder
	if b := jsonBuffers.Get(); b != nil {
		enc.buf = (*b.(*[]byte))[:0]
	}
	// The decoders copy what they keep: the buffer can serve the next object.
	defer func() {
		if cap(enc.buf) <= 1<<20 {
			jsonBuffers.Put(&enc.buf)
		}
	}()
	if err := enc.node(n, 0); err != nil {
		res.Errors = append(res.Errors, d.errAt(n, "%s", err))
		return
	}
	for _, w := range enc.warnings {
		res.Warnings = append(res.Warnings, check.InputError{Source: check.Source{File: d.file, Line: w.line + d.lineOffset, Doc: d.doc}, Err: w.msg})
	}
	var obj runtime.Object
	if known {
		typed, err := scheme.Scheme.New(gvk)
		if err != nil {
			res.Errors = append(res.Errors, d.errAt(n, "%s %s: %v", apiVersion, kind, err))
			return
		}
		strictErrs, err := kjson.UnmarshalStrict(enc.buf, typed, kjson.DisallowUnknownFields)
		if err != nil {
			res.Errors = append(res.Errors, d.typeError(n, enc.buf, err, apiVersion, kind))
			return
		}
		for _, se := range strictErrs {
			res.Warnings = append(res.Warnings, d.strictWarning(n, se, kind))
		}
		obj = typed
	} else {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(enc.buf); err != nil {
			res.Errors = append(res.Errors, d.errAt(n, "%s %s: %v", apiVersion, kind, err))
			return
		}
		obj = u
	}
	res.Objects = append(res.Objects, d.newObject(n, obj, apiVersion, kind))
}

func (d *document) newObject(n *yaml.Node, obj runtime.Object, apiVersion, kind string) *check.Object {
	ref := check.ObjectRef{APIVersion: apiVersion, Kind: kind}
	if m, err := meta.Accessor(obj); err == nil {
		ref.Namespace, ref.Name = m.GetNamespace(), m.GetName()
	}
	offset := d.lineOffset
	var lineOf func(string) int
	if n == d.top && d.text != nil {
		lineOf = lazyLineOf(d.text, offset)
	} else if x, ok := newLineIndex(n); ok {
		lineOf = func(path string) int {
			if l := x.lineOf(path); l > 0 {
				return l + offset
			}
			return 0
		}
	} else {
		d.keptTree = true
		lineOf = func(path string) int {
			if l := LineOf(n, path); l > 0 {
				return l + offset
			}
			return 0
		}
	}
	return &check.Object{
		Ref:    ref,
		Source: d.src(n),
		Typed:  obj,
		LineOf: lineOf,
	}
}

// lazyLineOf answers LineOf for the document the fast parser read from
// text by parsing text again when asked. Only objects with findings ask
// (on the bench's 10,000 objects, fewer than one in five), so indexing every
// object's lines as it was decoded cost more (8 % of the CPU time of a
// check, and 9 MB of heap) than parsing those few twice.
func lazyLineOf(text []byte, offset int) func(string) int {
	return func(path string) int {
		if l := reparsedLineOf(text, path); l > 0 {
			return l + offset
		}
		return 0
	}
}

// reparsed keeps the trees of the documents whose lines were asked for
// last, one per slot: the findings of an object come one after another, so
// one tree serves them all, and its parser's buffers serve the next
// document. The analysis runs on several goroutines, each asking about its
// own objects: a document goes to the slot its address picks, so they
// rarely take each other's tree away or wait for each other's lock.
var reparsed [8]reparsedDoc

func reparsedLineOf(text []byte, path string) int {
	slot := uintptr(unsafe.Pointer(unsafe.SliceData(text))) / 64 % uintptr(len(reparsed))
	return reparsed[slot].lineOf(text, path)
}

type reparsedDoc struct {
	mu   sync.Mutex
	text []byte // the document's text: same address and length
	p    simpleParser
	top  *yaml.Node // nil when text did not parse (not met: it did before)
}

func (r *reparsedDoc) lineOf(text []byte, path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(text) != len(r.text) || unsafe.SliceData(text) != unsafe.SliceData(r.text) {
		r.p.reset()
		r.top, _ = r.p.parse(text)
		r.text = text
	}
	return LineOf(r.top, path)
}

var unknownFieldRE = regexp.MustCompile(`^(unknown|duplicate) field "(.*)"$`)

// strictWarning turns a strict-decoding complaint ("unknown field
// \"spec.foo\"") into a warning at the field's line.
func (d *document) strictWarning(n *yaml.Node, se error, kind string) check.InputError {
	msg := se.Error()
	line := n.Line
	if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		if l := LineOf(n, m[2]); l > 0 {
			line = l
		}
		msg = fmt.Sprintf("%s: %s field, not part of %s (a typo? the field is ignored)", m[2], m[1], kind)
	}
	return check.InputError{Source: check.Source{File: d.file, Line: line + d.lineOffset, Doc: d.doc}, Err: msg}
}

var typeErrRE = regexp.MustCompile(`cannot unmarshal (.+) into Go (?:struct field \S+|value) of type (\S+)`)

// typeError explains a value of the wrong type ("replicas: \"3\"") and finds
// its line: the JSON decoder reports the byte offset into the JSON we made
// from the YAML, and re-encoding with marks maps that offset back to the
// YAML node and its field path.
func (d *document) typeError(n *yaml.Node, js []byte, err error, apiVersion, kind string) check.InputError {
	msg := err.Error()
	line := n.Line
	path := ""
	if off, ok := errOffset(err); ok {
		enc := jsonEncoder{track: true}
		if enc.node(n, 0) == nil {
			if m, ok := enc.markBefore(off); ok {
				line, path = m.line, m.path
			}
		}
	}
	if m := typeErrRE.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("%s where %s %s expects %s", m[1], apiVersion, kind, goTypeName(m[2]))
	} else {
		msg = strings.TrimPrefix(msg, "json: ")
	}
	if path != "" {
		msg = path + ": " + msg
	}
	return check.InputError{Source: check.Source{File: d.file, Line: line + d.lineOffset, Doc: d.doc}, Err: msg}
}

// goTypeName turns a Go type into words a manifest author knows.
func goTypeName(t string) string {
	t = strings.TrimLeft(t, "*")
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	}
	if i := strings.LastIndexByte(t, '.'); i >= 0 {
		t = t[i+1:]
	}
	return "a " + t + " (mapping)"
}

// errOffset reads the byte offset from the JSON decoder's type error. The
// error type lives in an internal package of sigs.k8s.io/json, so it is read
// by reflection; without it the error falls back to the object's line.
func errOffset(err error) (int, bool) {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0, false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0, false
	}
	f := v.FieldByName("Offset")
	if !f.IsValid() || f.Kind() != reflect.Int64 {
		return 0, false
	}
	return int(f.Int()), true
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlErrLine splits "yaml: line 3: did not find expected key" into 3 and the
// rest.
func yamlErrLine(err error) (int, string) {
	msg := err.Error()
	if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
		msg = "yaml: " + te.Errors[0]
	}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		return l, m[2]
	}
	return 0, msg
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("the scalar %q", truncate(n.Value, 40))
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// field returns the value node of key in a mapping node, or nil.
func field(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalarField(n *yaml.Node, key string) string {
	v := field(n, key)
	if v == nil {
		return ""
	}
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
		return ""
	}
	return v.Value
}

// decodeJSONOnly decodes a JSON document that YAML could not parse, without
// field positions.
func decodeJSONOnly(c chunk, res *Result) {
	var raw json.RawMessage = c.data
	decodeJSONValue(c, raw, res, 0)
}

func decodeJSONValue(c chunk, raw json.RawMessage, res *Result, depth int) {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		res.Errors = append(res.Errors, inputErr(c.file, c.line, c.doc, "invalid JSON object: %v", err))
		return
	}
	if head.APIVersion == "" || head.Kind == "" {
		res.Errors = append(res.Errors, inputErr(c.file, c.line, c.doc, "object has no apiVersion or kind"))
		if head.APIVersion == "" && head.Kind == "" && depth == 0 {
			res.notObjects++
		}
		return
	}
	if strings.HasSuffix(head.Kind, "List") && head.Items != nil {
		if depth >= maxListDepth {
			res.Errors = append(res.Errors, inputErr(c.file, c.line, c.doc, "Lists nested more than %d deep", maxListDepth))
			return
		}
		for _, it := range head.Items {
			decodeJSONValue(c, it, res, depth+1)
		}
		return
	}
	gvk := schema.FromAPIVersionAndKind(head.APIVersion, head.Kind)
	known := scheme.Scheme.Recognizes(gvk)
	if !known && !KeepUnstructured(gvk) {
		res.skip(head.APIVersion, head.Kind)
		return
	}
	var obj runtime.Object
	if known {
		typed, _ := scheme.Scheme.New(gvk)
		strictErrs, err := kjson.UnmarshalStrict(raw, typed, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
		if err != nil {
			res.Errors = append(res.Errors, inputErr(c.file, c.line, c.doc, "%s %s: %s", head.APIVersion, head.Kind, strings.TrimPrefix(err.Error(), "json: ")))
			return
		}
		for _, se := range strictErrs {
			res.Warnings = append(res.Warnings, inputErr(c.file, c.line, c.doc, "%s", se))
		}
		obj = typed
	} else {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			res.Errors = append(res.Errors, inputErr(c.file, c.line, c.doc, "%v", err))
			return
		}
		obj = u
	}
	ref := check.ObjectRef{APIVersion: head.APIVersion, Kind: head.Kind}
	if m, err := meta.Accessor(obj); err == nil {
		ref.Namespace, ref.Name = m.GetNamespace(), m.GetName()
	}
	res.Objects = append(res.Objects, &check.Object{Ref: ref, Source: check.Source{File: c.file, Line: c.line, Doc: c.doc}, Typed: obj})
}

// firstBadLine finds the line of a YAML syntax error. yaml.v3 reports the
// line where the enclosing block starts, which points users at the wrong
// place; the shortest prefix of the document that fails to parse ends on the
// line that broke it. Only called on the error path.
func firstBadLine(data []byte) int {
	var ends []int // byte offset after each line
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	parses := func(k int) bool {
		dec := yaml.NewDecoder(bytes.NewReader(data[:ends[k-1]]))
		for {
			var n yaml.Node
			if err := dec.Decode(&n); err != nil {
				return err.Error() == "EOF"
			}
		}
	}
	lo, hi := 0, len(ends) // prefix of lo lines parses, of hi lines fails
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if parses(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}
