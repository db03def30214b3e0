package load

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
	kjson "sigs.k8s.io/json"
)

// decodeTyped decodes the node tree of one object straight into obj, a
// pointer to a fresh k8s.io/api value, without the JSON round trip: the
// round trip (encode the tree, scan and decode the JSON) was about half of
// zerodrop check's time on large inputs. It gives obj exactly the value that
// kjson.UnmarshalStrict gives it from the JSON that jsonEncoder writes for
// the tree, or declines (ok=false, obj partly written) wherever the JSON
// path would report something or where matching it exactly would take code
// that the manifests met in practice do not need: unknown and duplicate
// fields, values of the wrong type, aliases, merge keys, nulls read by
// custom decoders, numbers that are not plain decimal integers. The caller
// then decodes a fresh value the JSON way, which says what is wrong.
// FuzzTypedMatchesJSON holds the two paths to the same result.
func decodeTyped(n *yaml.Node, obj any) (ok bool) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return false
	}
	var d typedDecoder
	return d.value(n, v.Elem(), planFor(v.Elem().Type()), 0)
}

// maxTypedDocument bounds the size of a document decoded straight into
// types: beyond it the JSON path decides whether the document expands past
// maxDocumentJSON (JSON is at most a few times larger than the YAML it comes
// from).
const maxTypedDocument = maxDocumentJSON / 8

type typedDecoder struct {
	enc jsonEncoder // for the rare values decoded through JSON (genericPlan)
}

// planKind says how values of a Go type are decoded from a node.
type planKind uint8

const (
	genericPlan     planKind = iota // through JSON: floats, []byte, interfaces, text unmarshalers
	unmarshalerPlan                 // the type's own UnmarshalJSON, on the node's JSON
	pointerPlan
	structPlan
	mapPlan
	slicePlan
	stringPlan
	intPlan
	uintPlan
	boolPlan
)

// typePlan is what decoding a Go type needs, computed once per type.
type typePlan struct {
	kind planKind
	// nullIsNoop: JSON null leaves a value of this type as it is (strings,
	// numbers, bools, structs without custom decoders).
	nullIsNoop bool
	// nullIsZero: JSON null sets the value to its zero value.
	nullIsZero bool
	fields     map[string]*fieldPlan // structPlan: by JSON name
	numFields  int
	elem       *typePlan // pointerPlan, mapPlan, slicePlan
	elemType   reflect.Type
}

// fieldPlan is one JSON-visible field of a struct.
type fieldPlan struct {
	index   []int // through embedded structs (values, never pointers)
	ordinal int   // 0..numFields-1, for duplicate detection
	typ     reflect.Type
	plan    *typePlan
}

var (
	typePlans           sync.Map // reflect.Type -> *typePlan
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// planFor returns the plan of t, building it (and its element types') on
// first use.
func planFor(t reflect.Type) *typePlan {
	if p, ok := typePlans.Load(t); ok {
		return p.(*typePlan)
	}
	planMu.Lock()
	defer planMu.Unlock()
	building = map[reflect.Type]*typePlan{}
	p := planLocked(t)
	// Published together once complete: a plan may point to plans (of
	// recursive types) that were still being filled in.
	for t, bp := range building {
		typePlans.Store(t, bp)
	}
	building = nil
	return p
}

var (
	planMu   sync.Mutex
	building map[reflect.Type]*typePlan // under planMu: plans of this build
)

// planLocked returns t's plan, building it under planMu.
func planLocked(t reflect.Type) *typePlan {
	if p, ok := typePlans.Load(t); ok {
		return p.(*typePlan)
	}
	if p, ok := building[t]; ok {
		return p
	}
	p := &typePlan{}
	building[t] = p
	*p = *buildPlan(t)
	return p
}

// buildPlan computes t's plan; element plans come from planLocked.
func buildPlan(t reflect.Type) *typePlan {
	custom := t.Kind() != reflect.Pointer && t.Name() != "" &&
		(reflect.PointerTo(t).Implements(jsonUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType))
	if custom {
		if reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
			return &typePlan{kind: unmarshalerPlan}
		}
		return &typePlan{kind: genericPlan}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return &typePlan{kind: pointerPlan, nullIsZero: true, elemType: t.Elem(), elem: planLocked(t.Elem())}
	case reflect.Struct:
		return structPlanFor(t)
	case reflect.Map:
		kt := t.Key()
		if kt.Kind() != reflect.String || reflect.PointerTo(kt).Implements(textUnmarshalerType) {
			return &typePlan{kind: genericPlan, nullIsZero: true}
		}
		return &typePlan{kind: mapPlan, nullIsZero: true, elemType: t.Elem(), elem: planLocked(t.Elem())}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return &typePlan{kind: genericPlan, nullIsZero: true} // base64
		}
		return &typePlan{kind: slicePlan, nullIsZero: true, elemType: t.Elem(), elem: planLocked(t.Elem())}
	case reflect.String:
		return &typePlan{kind: stringPlan, nullIsNoop: true}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &typePlan{kind: intPlan, nullIsNoop: true}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &typePlan{kind: uintPlan, nullIsNoop: true}
	case reflect.Bool:
		return &typePlan{kind: boolPlan, nullIsNoop: true}
	case reflect.Interface:
		return &typePlan{kind: genericPlan, nullIsZero: true}
	}
	return &typePlan{kind: genericPlan} // floats, arrays: null left to JSON too
}

// structPlanFor finds the fields encoding/json decodes into, by its rules:
// exported fields under their tag name (or Go name), fields of embedded
// structs without a name promoted, the shallowest (then the tagged) of
// fields sharing a name winning, ties dropped. Anything unusual (",string"
// options, embedded pointers, embedded non-structs) makes the whole struct
// generic.
func structPlanFor(t reflect.Type) *typePlan {
	type cand struct {
		name   string
		depth  int
		tagged bool
		index  []int
		typ    reflect.Type
	}
	var cands []cand
	generic := false
	var walk func(st reflect.Type, index []int, depth int)
	walk = func(st reflect.Type, index []int, depth int) {
		if depth > 8 {
			generic = true
			return
		}
		for i := 0; i < st.NumField(); i++ {
			f := st.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if opts != "" {
				for _, o := range strings.Split(opts, ",") {
					if o == "string" {
						generic = true
					}
				}
			}
			if !validTagName(name) {
				name = ""
			}
			idx := append(append([]int(nil), index...), i)
			if f.Anonymous {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					if name == "" && ft.Elem().Kind() == reflect.Struct {
						generic = true // embedded pointer: left to JSON
						continue
					}
				} else if name == "" && ft.Kind() == reflect.Struct {
					walk(ft, idx, depth+1)
					continue
				}
				if !f.IsExported() {
					continue
				}
				if name == "" {
					generic = true // an embedded non-struct
					continue
				}
			} else if !f.IsExported() {
				continue
			}
			tagged := name != ""
			if !tagged {
				name = f.Name
			}
			cands = append(cands, cand{name: name, depth: depth, tagged: tagged, index: idx, typ: f.Type})
		}
	}
	walk(t, nil, 0)
	if generic {
		return &typePlan{kind: genericPlan}
	}
	p := &typePlan{kind: structPlan, nullIsNoop: true, fields: map[string]*fieldPlan{}}
	byName := map[string][]cand{}
	var order []string
	for _, c := range cands {
		if _, ok := byName[c.name]; !ok {
			order = append(order, c.name)
		}
		byName[c.name] = append(byName[c.name], c)
	}
	for _, name := range order {
		cs := byName[name]
		minDepth := cs[0].depth
		for _, c := range cs {
			minDepth = min(minDepth, c.depth)
		}
		var top []cand
		for _, c := range cs {
			if c.depth == minDepth {
				top = append(top, c)
			}
		}
		if len(top) > 1 {
			var tagged []cand
			for _, c := range top {
				if c.tagged {
					tagged = append(tagged, c)
				}
			}
			if len(tagged) != 1 {
				continue // ambiguous: encoding/json ignores the name
			}
			top = tagged
		}
		p.fields[name] = &fieldPlan{index: top[0].index, ordinal: p.numFields, typ: top[0].typ}
		p.numFields++
	}
	for _, f := range p.fields {
		f.plan = planLocked(f.typ)
	}
	return p
}

// validTagName is encoding/json's isValidTag.
func validTagName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c > utf8.RuneSelf):
			return false
		}
	}
	return true
}

func isNullNode(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// value decodes n into v (addressable), whose type's plan is p.
func (d *typedDecoder) value(n *yaml.Node, v reflect.Value, p *typePlan, depth int) bool {
	if depth > maxDepth || n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode {
		return false
	}
	if isNullNode(n) {
		switch {
		case p.nullIsZero:
			v.SetZero()
			return true
		case p.nullIsNoop:
			return true
		case p.kind == unmarshalerPlan:
			// As encoding/json does for a value (not a pointer):
			// metav1.Time reads "creationTimestamp: null".
			return v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON([]byte("null")) == nil
		}
		return false
	}
	switch p.kind {
	case pointerPlan:
		if v.IsNil() {
			v.Set(reflect.New(p.elemType))
		}
		return d.value(n, v.Elem(), p.elem, depth+1)
	case structPlan:
		return d.structValue(n, v, p, depth)
	case mapPlan:
		return d.mapValue(n, v, p, depth)
	case slicePlan:
		if n.Kind != yaml.SequenceNode {
			return false
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, it := range n.Content {
			if !d.value(it, s.Index(i), p.elem, depth+1) {
				return false
			}
		}
		v.Set(s)
		return true
	case stringPlan:
		if n.Kind != yaml.ScalarNode || !isStringTag(n.ShortTag()) || !utf8.ValidString(n.Value) {
			return false
		}
		v.SetString(n.Value)
		return true
	case intPlan:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return false
		}
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || v.OverflowInt(i) {
			return false
		}
		v.SetInt(i)
		return true
	case uintPlan:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return false
		}
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || i < 0 || v.OverflowUint(uint64(i)) {
			return false
		}
		v.SetUint(uint64(i))
		return true
	case boolPlan:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return false
		}
		switch n.Value {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			return false
		}
		return true
	case unmarshalerPlan:
		buf, ok := d.json(n)
		if !ok {
			return false
		}
		return v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(buf) == nil
	}
	// genericPlan: through JSON, as the whole object would go.
	buf, ok := d.json(n)
	if !ok {
		return false
	}
	strict, err := kjson.UnmarshalStrict(buf, v.Addr().Interface(), kjson.DisallowUnknownFields)
	return err == nil && len(strict) == 0
}

// isStringTag reports whether jsonEncoder writes a scalar of this tag as a
// JSON string.
func isStringTag(tag string) bool {
	switch tag {
	case "!!null", "!!bool", "!!int", "!!float":
		return false
	}
	return true
}

// json encodes n as jsonEncoder does for the JSON path; ok=false when that
// path would report a problem (errors, duplicate keys).
func (d *typedDecoder) json(n *yaml.Node) ([]byte, bool) {
	d.enc.buf, d.enc.warnings = d.enc.buf[:0], d.enc.warnings[:0]
	if err := d.enc.node(n, 0); err != nil || len(d.enc.warnings) > 0 {
		return nil, false
	}
	// The decoders may keep what they are given (RawExtension does).
	return append([]byte(nil), d.enc.buf...), true
}

// mappingKey returns the JSON key of a mapping entry's key node; ok=false
// for keys the JSON path reports or treats specially (non-scalars, aliases,
// merge keys).
func mappingKey(k *yaml.Node) (string, bool) {
	if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" || !utf8.ValidString(k.Value) {
		return "", false
	}
	return k.Value, true
}

func (d *typedDecoder) structValue(n *yaml.Node, v reflect.Value, p *typePlan, depth int) bool {
	if n.Kind != yaml.MappingNode {
		return false
	}
	var seen uint64
	var seenMore []bool
	if p.numFields > 64 {
		seenMore = make([]bool, p.numFields)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, ok := mappingKey(n.Content[i])
		if !ok {
			return false
		}
		f := p.fields[key]
		if f == nil {
			return false // unknown field: the JSON path warns
		}
		if seenMore != nil {
			if seenMore[f.ordinal] {
				return false
			}
			seenMore[f.ordinal] = true
		} else {
			if seen&(1<<f.ordinal) != 0 {
				return false // duplicate: the JSON path warns and merges
			}
			seen |= 1 << f.ordinal
		}
		fv := v
		if len(f.index) == 1 {
			fv = v.Field(f.index[0])
		} else {
			for _, i := range f.index {
				fv = fv.Field(i)
			}
		}
		if !d.value(n.Content[i+1], fv, f.plan, depth+1) {
			return false
		}
	}
	return true
}

func (d *typedDecoder) mapValue(n *yaml.Node, v reflect.Value, p *typePlan, depth int) bool {
	if n.Kind != yaml.MappingNode {
		return false
	}
	t := v.Type()
	if t == stringMapType {
		return d.stringMap(n, v)
	}
	m := reflect.MakeMapWithSize(t, len(n.Content)/2)
	kt := t.Key()
	// One element value serves every entry: SetMapIndex copies it.
	e := reflect.New(p.elemType).Elem()
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, ok := mappingKey(n.Content[i])
		if !ok {
			return false
		}
		e.SetZero()
		if !d.value(n.Content[i+1], e, p.elem, depth+1) {
			return false
		}
		k := reflect.ValueOf(key)
		if kt != k.Type() {
			k = k.Convert(kt)
		}
		before := m.Len()
		m.SetMapIndex(k, e)
		if m.Len() == before {
			return false // duplicate key
		}
	}
	v.Set(m)
	return true
}

var stringMapType = reflect.TypeFor[map[string]string]()

// stringMap is mapValue for map[string]string (labels, annotations,
// selectors: most maps in manifests), without reflection per entry.
func (d *typedDecoder) stringMap(n *yaml.Node, v reflect.Value) bool {
	m := make(map[string]string, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, ok := mappingKey(n.Content[i])
		if !ok {
			return false
		}
		e, ok := stringValue(n.Content[i+1])
		if !ok {
			return false
		}
		if _, dup := m[key]; dup {
			return false // duplicate key
		}
		m[key] = e
	}
	v.Set(reflect.ValueOf(m))
	return true
}

// stringValue is value's stringPlan for a string that is not yet set: null
// leaves it empty.
func stringValue(n *yaml.Node) (string, bool) {
	switch {
	case isNullNode(n):
		return "", true
	case n.Kind != yaml.ScalarNode || !isStringTag(n.ShortTag()) || !utf8.ValidString(n.Value):
		return "", false
	}
	return n.Value, true
}
