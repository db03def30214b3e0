package load

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	yaml "go.yaml.in/yaml/v3"
)

// parseSimple is a fast path for the YAML that manifests are made of: block
// mappings and sequences, plain and one-line quoted scalars, flow
// collections (on one line or several), comments. It builds the same yaml.Node tree that yaml.v3
// would (kinds, values, styles, lines), several times faster, because YAML
// parsing dominates the cost of checking large inputs. Anything else
// (anchors, aliases, tags, block scalars, multi-line scalars, complex keys,
// tabs) returns ok=false and the caller parses the document
// with yaml.v3. FuzzSimpleMatchesYAMLv3 holds the two parsers to the same
// result wherever the fast one answers.
func parseSimple(data []byte) (top *yaml.Node, ok bool) {
	var p simpleParser
	return p.parse(data)
}

// simpleParsers keeps parsers, with their line and node buffers, for reuse
// once the trees they built are no longer referenced.
var simpleParsers = sync.Pool{New: func() any { return new(simpleParser) }}

// reset readies p for another document. The trees it built before must no
// longer be in use: their nodes are overwritten.
func (p *simpleParser) reset() {
	p.ls, p.i, p.stack = p.ls[:0], 0, p.stack[:0]
	if cap(p.slab) > 1<<16 {
		p.slab = nil // keep the pool small after an unusually large document
	}
	p.slab = p.slab[:0]
	if cap(p.content) > 1<<17 {
		p.content = nil
	}
	clear(p.content)
	p.content = p.content[:0]
}

func (p *simpleParser) parse(data []byte) (top *yaml.Node, ok bool) {
	if !p.lines(data) || len(p.ls) == 0 {
		return nil, false
	}
	if t := p.ls[0].text; t[0] == '{' || t[0] == '[' {
		// A document that is one flow collection, JSON-like.
		p.i = 1
		top, ok = p.inlineValue(t, p.ls[0].num, -1)
	} else {
		top, ok = p.block(p.ls[0].indent)
	}
	if !ok || p.i != len(p.ls) {
		return nil, false
	}
	return top, true
}

type sline struct {
	indent int
	text   string // after the indentation
	num    int    // 1-based
}

type simpleParser struct {
	ls   []sline
	i    int
	slab []yaml.Node // nodes are allocated in blocks: fewer, larger allocations
	// Children of the collections being parsed are gathered on stack, then
	// copied to content (allocated in blocks) at their final size, instead
	// of every Content slice growing step by step.
	stack   []*yaml.Node
	content []*yaml.Node
}

// children moves the stack's entries from start on into a Content slice.
func (p *simpleParser) children(start int) []*yaml.Node {
	c := p.stack[start:]
	p.stack = p.stack[:start]
	if len(c) == 0 {
		return nil
	}
	if cap(p.content)-len(p.content) < len(c) {
		size := 4*(len(p.ls)-p.i) + len(c)
		if size < 512 {
			size = 512
		}
		p.content = make([]*yaml.Node, 0, size)
	}
	n := len(p.content)
	p.content = append(p.content, c...)
	clear(c)
	return p.content[n : n+len(c) : n+len(c)]
}

// node copies n into the parser's slab and returns its address.
func (p *simpleParser) node(n yaml.Node) *yaml.Node {
	if len(p.slab) == cap(p.slab) {
		size := 2*(len(p.ls)-p.i) + 16
		if size < 256 {
			size = 256
		}
		p.slab = make([]yaml.Node, 0, size)
	}
	p.slab = append(p.slab, n)
	return &p.slab[len(p.slab)-1]
}

// lines splits data into non-blank, non-comment lines.
func (p *simpleParser) lines(data []byte) bool {
	if !printable(data) {
		return false
	}
	// Values are substrings of data, shared without a copy: the loader
	// never changes file contents once read (see Bytes).
	s := unsafe.String(unsafe.SliceData(data), len(data))
	num := 0
	for len(s) > 0 {
		num++
		var l string
		if j := strings.IndexByte(s, '\n'); j >= 0 {
			l, s = s[:j], s[j+1:]
		} else {
			l, s = s, ""
		}
		l = strings.TrimSuffix(l, "\r")
		if strings.IndexByte(l, '\r') >= 0 {
			return false
		}
		ind := 0
		for ind < len(l) && l[ind] == ' ' {
			ind++
		}
		t := strings.TrimRight(l[ind:], " ")
		if t == "" || t[0] == '#' {
			continue
		}
		if ind == 0 && strings.HasPrefix(t, "---") {
			if len(p.ls) == 0 && (t == "---" || strings.HasPrefix(t, "--- #")) {
				continue // the document's start marker
			}
			return false
		}
		if ind == 0 && strings.HasPrefix(t, "...") {
			return false
		}
		if t[0] == '%' {
			return false // directives
		}
		p.ls = append(p.ls, sline{indent: ind, text: t, num: num})
	}
	return true
}

// printable reports whether data is UTF-8 made of characters YAML allows,
// without tabs, byte order marks and the rarer characters yaml.v3 treats
// specially (left to yaml.v3).
func printable(data []byte) bool {
	for i := 0; i < len(data); {
		c := data[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 && c != '\n' && c != '\r') || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError || r < 0xa0 || r == 0x2028 || r == 0x2029 || r == 0xfeff || r >= 0xfffe && r <= 0xffff {
			return false
		}
		i += size
	}
	return true
}

func (p *simpleParser) block(indent int) (*yaml.Node, bool) {
	if p.i >= len(p.ls) || p.ls[p.i].indent != indent {
		return nil, false
	}
	if isSeqItem(p.ls[p.i].text) {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

func isSeqItem(t string) bool { return t == "-" || strings.HasPrefix(t, "- ") }

func (p *simpleParser) mapping(indent int) (*yaml.Node, bool) {
	m := p.node(yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: p.ls[p.i].num})
	start := len(p.stack)
	for p.i < len(p.ls) {
		l := p.ls[p.i]
		if l.indent < indent {
			break
		}
		if l.indent > indent || isSeqItem(l.text) {
			return nil, false
		}
		keyNode, rest, ok := splitKey(l.text)
		if !ok {
			return nil, false
		}
		keyNode.Line = l.num
		key := p.node(keyNode)
		p.i++
		var val *yaml.Node
		if rest == "" {
			// The value is a nested block, a sequence at the key's own
			// indentation, or empty (null).
			switch {
			case p.i < len(p.ls) && p.ls[p.i].indent > indent:
				val, ok = p.block(p.ls[p.i].indent)
			case p.i < len(p.ls) && p.ls[p.i].indent == indent && isSeqItem(p.ls[p.i].text):
				val, ok = p.sequence(indent)
			default:
				val, ok = p.node(yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: l.num}), true
			}
		} else {
			val, ok = p.inlineValue(rest, l.num, indent)
			if ok && p.i < len(p.ls) && p.ls[p.i].indent > indent {
				ok = false // a multi-line scalar continues here
			}
		}
		if !ok {
			return nil, false
		}
		p.stack = append(p.stack, key, val)
	}
	m.Content = p.children(start)
	return m, true
}

func (p *simpleParser) sequence(indent int) (*yaml.Node, bool) {
	s := p.node(yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: p.ls[p.i].num})
	start := len(p.stack)
	for p.i < len(p.ls) {
		l := p.ls[p.i]
		if l.indent < indent || (l.indent == indent && !isSeqItem(l.text)) {
			break
		}
		if l.indent > indent {
			return nil, false
		}
		if l.text == "-" {
			p.i++
			var item *yaml.Node
			ok := true
			if p.i < len(p.ls) && p.ls[p.i].indent > indent {
				item, ok = p.block(p.ls[p.i].indent)
			} else {
				item = p.node(yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: l.num})
			}
			if !ok {
				return nil, false
			}
			p.stack = append(p.stack, item)
			continue
		}
		body := l.text[2:]
		off := 2
		for len(body) > 0 && body[0] == ' ' {
			body, off = body[1:], off+1
		}
		if body == "" || isSeqItem(body) {
			return nil, false
		}
		if _, _, isKey := splitKey(body); isKey {
			// "- key: value": a mapping whose keys line up with "key".
			p.ls[p.i] = sline{indent: indent + off, text: body, num: l.num}
			item, ok := p.mapping(indent + off)
			if !ok {
				return nil, false
			}
			p.stack = append(p.stack, item)
			continue
		}
		p.i++
		item, ok := p.inlineValue(body, l.num, indent)
		if !ok || (p.i < len(p.ls) && p.ls[p.i].indent > indent) {
			return nil, false
		}
		p.stack = append(p.stack, item)
	}
	s.Content = p.children(start)
	return s, true
}

// splitKey splits "key: rest" (or "key:"), returning the key node and the
// rest after the separator. ok=false when the line is not a simple key.
func splitKey(t string) (key yaml.Node, rest string, ok bool) {
	if t == "" {
		return key, "", false
	}
	switch t[0] {
	case '"', '\'':
		v, n, ok := quoted(t)
		if !ok || n >= len(t) || t[n] != ':' || (n+1 < len(t) && t[n+1] != ' ') {
			return key, "", false
		}
		key = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Style: quoteStyle(t[0])}
		return key, strings.TrimLeft(t[n+1:], " "), true
	case '?', '-', '[', ']', '{', '}', ',', '&', '*', '!', '|', '>', '#', '@', '`', ':', '%':
		return key, "", false
	}
	i := strings.Index(t, ": ")
	if i < 0 {
		if !strings.HasSuffix(t, ":") {
			return key, "", false
		}
		i = len(t) - 1
	}
	k := t[:i]
	if k == "" || strings.ContainsAny(k, "#\"'[]{},") || strings.HasSuffix(k, " ") || strings.Contains(k, ": ") {
		return key, "", false
	}
	key = yaml.Node{Kind: yaml.ScalarNode, Value: k}
	key.Tag = plainTag(&key)
	if i+1 >= len(t) {
		return key, "", true
	}
	return key, strings.TrimLeft(t[i+2:], " "), true
}

func quoteStyle(q byte) yaml.Style {
	if q == '"' {
		return yaml.DoubleQuotedStyle
	}
	return yaml.SingleQuotedStyle
}

// inlineValue parses a value that starts on line (whose text from the value
// on is t). A scalar ends on that line; a flow collection may go on over the
// next lines (p.i, the line after line) as long as they are indented more
// than minIndent, the enclosing block's indentation.
func (p *simpleParser) inlineValue(t string, line, minIndent int) (*yaml.Node, bool) {
	switch t[0] {
	case '"', '\'':
		v, n, ok := quoted(t)
		if !ok || !onlyComment(t[n:]) {
			return nil, false
		}
		return p.node(yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Style: quoteStyle(t[0]), Line: line}), true
	case '[', '{':
		f := flowParser{p: p, s: t, line: line, minIndent: minIndent}
		n, ok := f.value()
		if !ok || !onlyComment(f.s[f.i:]) {
			return nil, false
		}
		return n, true
	case '&', '*', '!', '|', '>', '%', '@', '`', '#', ',', ']', '}', '?', ':', '-':
		if t[0] == '-' && len(t) > 1 && t[1] != ' ' {
			break // "-1", "-Xmx200m": a plain scalar
		}
		return nil, false
	}
	v := t
	if j := strings.Index(v, " #"); j >= 0 {
		v = strings.TrimRight(v[:j], " ")
	}
	if strings.Contains(v, ": ") || strings.HasSuffix(v, ":") {
		return nil, false
	}
	n := p.node(yaml.Node{Kind: yaml.ScalarNode, Value: v, Line: line})
	n.Tag = plainTag(n)
	return n, true
}

// plainTag resolves a plain scalar's tag. Most plain scalars in manifests
// start with a letter, and yaml.v3 gives those a tag other than !!str only
// for the words below; most others are decimal integers; everything else
// goes through yaml.v3's resolver.
func plainTag(n *yaml.Node) string {
	v := n.Value
	if v != "" && (v[0] >= 'a' && v[0] <= 'z' || v[0] >= 'A' && v[0] <= 'Z') {
		switch v {
		case "true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL":
		default:
			return "!!str"
		}
	}
	if decimalDigits(v) {
		return "!!int" // ports, counts, seconds: yaml.v3's resolver is slower
	}
	return n.ShortTag()
}

// decimalDigits reports whether v is a decimal integer without sign or
// leading zero, short enough for int64.
func decimalDigits(v string) bool {
	if v == "" || len(v) > 18 || (v[0] == '0' && len(v) > 1) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// onlyComment reports whether what follows a value is nothing or a comment
// (which YAML requires to be separated by a space).
func onlyComment(s string) bool {
	t := strings.TrimLeft(s, " ")
	return t == "" || (t[0] == '#' && len(t) < len(s))
}

// quoted reads a quoted scalar at the start of t, returning its value and
// the index after the closing quote.
func quoted(t string) (string, int, bool) {
	q := t[0]
	var b strings.Builder
	for i := 1; i < len(t); i++ {
		c := t[i]
		if q == '\'' {
			if c == '\'' {
				if i+1 < len(t) && t[i+1] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				return b.String(), i + 1, true
			}
			b.WriteByte(c)
			continue
		}
		switch c {
		case '"':
			return b.String(), i + 1, true
		case '\\':
			if i+1 >= len(t) {
				return "", 0, false
			}
			i++
			switch t[i] {
			case '"', '\\', '/':
				b.WriteByte(t[i])
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'u':
				if i+4 >= len(t) {
					return "", 0, false
				}
				r, err := strconv.ParseUint(t[i+1:i+5], 16, 32)
				if err != nil || (r >= 0xd800 && r < 0xe000) {
					return "", 0, false
				}
				b.WriteRune(rune(r))
				i += 4
			default:
				return "", 0, false // rarer escapes: leave them to yaml.v3
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}

// flowParser reads a flow collection: [a, "b"], {k: v, k2: [1]}. Inside a
// collection, line breaks and comments are white space: the collection goes
// on over the next lines of the parser, which must be indented more than
// minIndent. Scalars, and a key with its ':', stay on one line.
type flowParser struct {
	p         *simpleParser
	s         string // the current line's text
	i         int    // in s
	line      int    // the current line's number
	minIndent int
	depth     int
}

// space skips spaces, and inside a collection comments and line breaks.
func (f *flowParser) space() {
	for {
		f.spaceInLine()
		if f.depth == 0 {
			return
		}
		if f.i < len(f.s) && !(f.s[f.i] == '#' && f.i > 0 && f.s[f.i-1] == ' ') {
			return
		}
		// The end of the line, or a comment to it: go on with the next line.
		p := f.p
		if p.i >= len(p.ls) || p.ls[p.i].indent <= f.minIndent {
			f.i = len(f.s)
			return
		}
		f.s, f.line, f.i = p.ls[p.i].text, p.ls[p.i].num, 0
		p.i++
	}
}

func (f *flowParser) spaceInLine() {
	for f.i < len(f.s) && f.s[f.i] == ' ' {
		f.i++
	}
}

func (f *flowParser) value() (*yaml.Node, bool) {
	f.space()
	if f.i >= len(f.s) {
		return nil, false
	}
	switch c := f.s[f.i]; c {
	case '[', '{':
		f.depth++
		if f.depth > 32 {
			return nil, false
		}
		defer func() { f.depth-- }()
		if c == '[' {
			return f.seq()
		}
		return f.mapping()
	case '"', '\'':
		v, n, ok := quoted(f.s[f.i:])
		if !ok {
			return nil, false
		}
		f.i += n
		return f.p.node(yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Style: quoteStyle(c), Line: f.line}), true
	}
	start := f.i
	for f.i < len(f.s) {
		c := f.s[f.i]
		// yaml.v3 ends a plain scalar in a flow at '?' too.
		if c == ',' || c == ']' || c == '}' || c == '[' || c == '{' || c == '#' || c == '"' || c == '\'' || c == '?' ||
			(c == ':' && (f.i+1 == len(f.s) || strings.IndexByte(" ,]}", f.s[f.i+1]) >= 0)) {
			break
		}
		f.i++
	}
	v := strings.TrimRight(f.s[start:f.i], " ")
	if v == "" || strings.IndexByte("&*!|>%@`?-:", v[0]) >= 0 && !(v[0] == '-' && len(v) > 1 && v[1] != ' ') {
		return nil, false
	}
	n := f.p.node(yaml.Node{Kind: yaml.ScalarNode, Value: v, Line: f.line})
	n.Tag = plainTag(n)
	return n, true
}

func (f *flowParser) seq() (*yaml.Node, bool) {
	return f.collection(yaml.SequenceNode, "!!seq", ']', func() bool {
		v, ok := f.value()
		if !ok {
			return false
		}
		f.p.stack = append(f.p.stack, v)
		return true
	})
}

func (f *flowParser) mapping() (*yaml.Node, bool) {
	return f.collection(yaml.MappingNode, "!!map", '}', func() bool {
		k, ok := f.value()
		if !ok || k.Kind != yaml.ScalarNode {
			return false
		}
		// A key and its ':' share a line; the value may start on the next.
		f.spaceInLine()
		if f.i >= len(f.s) || f.s[f.i] != ':' || (f.i+1 < len(f.s) && f.s[f.i+1] != ' ') {
			return false
		}
		f.i++
		v, ok := f.value()
		if !ok {
			return false
		}
		f.p.stack = append(f.p.stack, k, v)
		return true
	})
}

// collection parses a flow sequence or mapping from its opening bracket to
// closing: item parses one entry onto the parser's stack. It declines (false) anything but
// entries separated by commas, such as a trailing comma, to leave it to
// yaml.v3.
func (f *flowParser) collection(kind yaml.Kind, tag string, closing byte, item func() bool) (*yaml.Node, bool) {
	n := f.p.node(yaml.Node{Kind: kind, Tag: tag, Style: yaml.FlowStyle, Line: f.line})
	start := len(f.p.stack)
	f.i++ // [ or {
	f.space()
	if f.i < len(f.s) && f.s[f.i] == closing {
		f.i++
		return n, true
	}
	for {
		if !item() {
			return nil, false
		}
		f.space()
		if f.i >= len(f.s) {
			return nil, false
		}
		switch f.s[f.i] {
		case ',':
			f.i++
			f.space()
			if f.i < len(f.s) && f.s[f.i] == closing {
				return nil, false // trailing comma: leave it to yaml.v3
			}
		case closing:
			f.i++
			n.Content = f.p.children(start)
			return n, true
		default:
			return nil, false
		}
	}
}
