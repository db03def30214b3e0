package load

import yaml "go.yaml.in/yaml/v3"

// lineIndex keeps what LineOf reads from a document's node tree (mapping
// keys, sequence items, their lines and nesting) in one flat slice, so that
// an object can answer LineOf for its findings without keeping the whole
// tree: on 10,000 objects the trees were most of zerodrop check's memory.
type lineIndex struct {
	entries []lineEntry
}

// lineEntry is a mapping entry (key and the key's line) or a sequence item
// (its line), with the kind of its value. The value's own entries follow it,
// up to end.
type lineEntry struct {
	key    string
	line   int32
	end    int32 // index of the entry after this one's subtree
	kind   yaml.Kind
	strKey bool // key is a scalar: only those match a path segment
}

// maxIndexedEntries bounds an index; a document with more entries keeps its
// tree instead (as does one with aliases, which a flat index would expand).
const maxIndexedEntries = 1 << 20

// newLineIndex indexes the tree under n; ok=false when it cannot (aliases,
// or too large).
func newLineIndex(n *yaml.Node) (x *lineIndex, ok bool) {
	x = &lineIndex{entries: make([]lineEntry, 0, countEntries(n)+1)}
	if !x.add(n, "", n.Line, false) {
		return nil, false
	}
	return x, true
}

// countEntries counts the entries of n's subtree, to size the index.
func countEntries(n *yaml.Node) int {
	c := 0
	switch n.Kind {
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			c += 1 + countEntries(n.Content[i])
		}
	case yaml.SequenceNode:
		for _, it := range n.Content {
			c += 1 + countEntries(it)
		}
	}
	return c
}

func (x *lineIndex) add(v *yaml.Node, key string, line int, strKey bool) bool {
	if v.Kind == yaml.AliasNode || len(x.entries) >= maxIndexedEntries {
		return false
	}
	at := len(x.entries)
	x.entries = append(x.entries, lineEntry{key: key, line: int32(line), kind: v.Kind, strKey: strKey})
	switch v.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			k := v.Content[i]
			if !x.add(v.Content[i+1], k.Value, k.Line, k.Kind == yaml.ScalarNode) {
				return false
			}
		}
	case yaml.SequenceNode:
		for _, it := range v.Content {
			if !x.add(it, "", it.Line, false) {
				return false
			}
		}
	}
	x.entries[at].end = int32(len(x.entries))
	return true
}

// child returns the index of the first entry below e whose key is key, or -1.
func (x *lineIndex) child(e int, key string) int {
	for c := e + 1; c < int(x.entries[e].end); c = int(x.entries[c].end) {
		if x.entries[c].strKey && x.entries[c].key == key {
			return c
		}
	}
	return -1
}

// lineOf answers LineOf(tree, path) for the indexed tree.
func (x *lineIndex) lineOf(path string) int {
	e := 0
	line := int(x.entries[0].line)
	segs := parsePath(path)
	for i := 0; i < len(segs); i++ {
		s := segs[i]
		switch kind := x.entries[e].kind; {
		case s.isIdx && kind == yaml.SequenceNode:
			c, k := e+1, 0
			for ; c < int(x.entries[e].end) && k < s.index; c = int(x.entries[c].end) {
				k++
			}
			if s.index < 0 || c >= int(x.entries[e].end) {
				return line
			}
			e = c
		case !s.isIdx && kind == yaml.MappingNode:
			c := x.child(e, s.key)
			if c < 0 {
				// Try "a.b.c" as one key for segments a, b, c.
				key := s.key
				for j := i + 1; j < len(segs) && !segs[j].isIdx; j++ {
					key += "." + segs[j].key
					if c = x.child(e, key); c >= 0 {
						i = j
						break
					}
				}
			}
			if c < 0 {
				return line
			}
			e = c
		default:
			return line
		}
		line = int(x.entries[e].line)
	}
	return line
}
