package load

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// splitJSON cuts a stream of JSON values into documents, one per value.
func splitJSON(name string, data []byte) []chunk {
	var chunks []chunk
	dec := json.NewDecoder(strings.NewReader(string(data)))
	for doc := 0; ; doc++ {
		start := int(dec.InputOffset())
		for start < len(data) && strings.IndexByte(" \t\r\n", data[start]) >= 0 {
			start++
		}
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return chunks
		}
		if err != nil {
			off := start
			var se *json.SyntaxError
			if errors.As(err, &se) {
				off = int(se.Offset)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				off = len(data)
			}
			e := inputErr(name, lineAt(data, off), doc, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
			return append(chunks, chunk{file: name, doc: doc, err: &e})
		}
		chunks = append(chunks, chunk{file: name, doc: doc, line: lineAt(data, start), data: raw, json: true})
	}
}

// maxDocumentJSON bounds the JSON one document may expand to, so that YAML
// aliases cannot blow up memory ("billion laughs").
const maxDocumentJSON = 32 << 20

// maxDepth bounds nesting, so that a hostile document cannot exhaust the
// stack; real manifests nest about 20 deep.
const maxDepth = 256

// jsonEncoder turns a YAML node tree into the JSON that the Kubernetes
// decoders read, with the YAML 1.2 meaning of scalars (as yaml.v3 resolves
// them). With track set it also records where each value starts, so that a
// decoder error at a byte offset can be traced back to a line and field.
type jsonEncoder struct {
	buf      []byte
	track    bool
	marks    []mark
	path     []string
	warnings []warning
}

type mark struct {
	off  int
	line int
	path string
}

type warning struct {
	line int
	msg  string
}

func (e *jsonEncoder) markBefore(off int) (mark, bool) {
	i := sort.Search(len(e.marks), func(i int) bool { return e.marks[i].off >= off })
	if i == 0 {
		return mark{}, false
	}
	return e.marks[i-1], true
}

func (e *jsonEncoder) pathString() string {
	var b strings.Builder
	for i, p := range e.path {
		if i > 0 && p[0] != '[' {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func (e *jsonEncoder) node(n *yaml.Node, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("line %d: nested more than %d levels deep", n.Line, maxDepth)
	}
	if len(e.buf) > maxDocumentJSON {
		return fmt.Errorf("document expands to more than %d MiB (aliases repeated too often?)", maxDocumentJSON>>20)
	}
	if e.track {
		e.marks = append(e.marks, mark{off: len(e.buf), line: n.Line, path: e.pathString()})
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return fmt.Errorf("line %d: unknown alias", n.Line)
		}
		return e.node(n.Alias, depth+1)
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		return e.node(n.Content[0], depth+1)
	case yaml.SequenceNode:
		e.buf = append(e.buf, '[')
		for i, c := range n.Content {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			if e.track {
				e.path = append(e.path, "["+strconv.Itoa(i)+"]")
			}
			if err := e.node(c, depth+1); err != nil {
				return err
			}
			if e.track {
				e.path = e.path[:len(e.path)-1]
			}
		}
		e.buf = append(e.buf, ']')
		return nil
	case yaml.MappingNode:
		return e.mapping(n, depth)
	case yaml.ScalarNode:
		return e.scalar(n)
	}
	return fmt.Errorf("line %d: unexpected YAML node", n.Line)
}

func (e *jsonEncoder) mapping(n *yaml.Node, depth int) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].ShortTag() == "!!merge" {
			return e.mergedMapping(n)
		}
	}
	e.buf = append(e.buf, '{')
	// Duplicate keys: most mappings are small enough that comparing with
	// the keys before costs less than a map.
	var seen map[string]bool
	if len(n.Content) > 2*smallMapping {
		seen = make(map[string]bool, len(n.Content)/2)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: a mapping key must be a plain value, found %s", k.Line, nodeKindName(k))
		}
		key := k.Value
		dup := false
		if seen != nil {
			dup = seen[key]
			seen[key] = true
		} else {
			for j := 0; j < i && !dup; j += 2 {
				dup = keyValue(n.Content[j]) == key
			}
		}
		if dup {
			e.warnings = append(e.warnings, warning{line: k.Line, msg: fmt.Sprintf("duplicate key %q: the last value wins", key)})
		}
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendJSONString(e.buf, key)
		e.buf = append(e.buf, ':')
		if e.track {
			e.path = append(e.path, pathKey(key))
		}
		if err := e.node(v, depth+1); err != nil {
			return err
		}
		if e.track {
			e.path = e.path[:len(e.path)-1]
		}
	}
	e.buf = append(e.buf, '}')
	return nil
}

// smallMapping is the number of keys up to which duplicates are found by
// comparing keys, not with a map.
const smallMapping = 16

// keyValue is a mapping key's value (through an alias), as mapping reads it.
func keyValue(k *yaml.Node) string {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	return k.Value
}

// pathKey writes a key as a path segment, quoting keys with dots
// (annotations) the way LineOf reads them.
func pathKey(k string) string {
	if k == "" || strings.ContainsAny(k, ".[]\"") {
		return `["` + strings.ReplaceAll(k, `"`, `\"`) + `"]`
	}
	return k
}

// mergedMapping handles "<<" merge keys through yaml.v3's own decoder, which
// knows their precedence rules; such mappings are rare in manifests.
func (e *jsonEncoder) mergedMapping(n *yaml.Node) error {
	var v any
	if err := n.Decode(&v); err != nil {
		_, msg := yamlErrLine(err)
		return fmt.Errorf("line %d: %s", n.Line, msg)
	}
	v, err := jsonable(v)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	e.buf = append(e.buf, b...)
	return nil
}

// jsonable converts what yaml.v3 decodes into values encoding/json accepts.
func jsonable(v any) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			c, err := jsonable(x)
			if err != nil {
				return nil, err
			}
			t[k] = c
		}
		return t, nil
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			c, err := jsonable(x)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = c
		}
		return m, nil
	case []any:
		for i, x := range t {
			c, err := jsonable(x)
			if err != nil {
				return nil, err
			}
			t[i] = c
		}
		return t, nil
	case float64:
		if math.IsInf(t, 0) || math.IsNaN(t) {
			return nil, fmt.Errorf("%v cannot be represented in JSON", t)
		}
	}
	return v, nil
}

func (e *jsonEncoder) scalar(n *yaml.Node) error {
	switch n.ShortTag() {
	case "!!null":
		e.buf = append(e.buf, "null"...)
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return fmt.Errorf("line %d: %q is not a boolean", n.Line, n.Value)
		}
		e.buf = strconv.AppendBool(e.buf, b)
	case "!!int":
		if i, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
			e.buf = strconv.AppendInt(e.buf, i, 10)
			return nil
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: %q is not an integer", n.Line, n.Value)
		}
		switch i := v.(type) {
		case int:
			e.buf = strconv.AppendInt(e.buf, int64(i), 10)
		case int64:
			e.buf = strconv.AppendInt(e.buf, i, 10)
		case uint64:
			e.buf = strconv.AppendUint(e.buf, i, 10)
		case float64:
			e.buf = strconv.AppendFloat(e.buf, i, 'g', -1, 64)
		default:
			e.buf = appendJSONString(e.buf, n.Value)
		}
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return fmt.Errorf("line %d: %q is not a number", n.Line, n.Value)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("line %d: %s cannot be represented in JSON", n.Line, n.Value)
		}
		e.buf = strconv.AppendFloat(e.buf, f, 'g', -1, 64)
	default:
		// !!str, !!timestamp, !!binary and custom tags: the text as
		// written, which is what Kubernetes stores for them.
		e.buf = appendJSONString(e.buf, n.Value)
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
