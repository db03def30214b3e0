package load

import (
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// segment is one step of a field path: a mapping key or a list index.
type segment struct {
	key   string
	index int
	isIdx bool
}

// parsePath reads a field path such as
//
//	spec.template.spec.containers[0].lifecycle.preStop
//	metadata.annotations["alb.ingress.kubernetes.io/target-type"]
//
// Keys are separated by dots; [N] indexes a list; ["..."] or ['...'] quotes a
// key that holds dots. A malformed tail is dropped: LineOf then answers for
// the part it could read.
func parsePath(p string) []segment {
	var segs []segment
	for i := 0; i < len(p); {
		switch p[i] {
		case '.':
			i++
		case '[':
			end := -1
			if i+1 < len(p) && (p[i+1] == '"' || p[i+1] == '\'') {
				q := p[i+1]
				var b strings.Builder
				j := i + 2
				for ; j < len(p); j++ {
					if p[j] == '\\' && j+1 < len(p) {
						j++
						b.WriteByte(p[j])
						continue
					}
					if p[j] == q {
						break
					}
					b.WriteByte(p[j])
				}
				if j+1 < len(p) && p[j+1] == ']' {
					segs = append(segs, segment{key: b.String()})
					i = j + 2
					continue
				}
				return segs
			}
			end = strings.IndexByte(p[i:], ']')
			if end < 0 {
				return segs
			}
			n, err := strconv.Atoi(p[i+1 : i+end])
			if err != nil {
				// [name] without quotes: a key.
				segs = append(segs, segment{key: p[i+1 : i+end]})
			} else {
				segs = append(segs, segment{index: n, isIdx: true})
			}
			i += end + 1
		default:
			j := i
			for j < len(p) && p[j] != '.' && p[j] != '[' {
				j++
			}
			segs = append(segs, segment{key: p[i:j]})
			i = j
		}
	}
	return segs
}

// LineOf returns the 1-based line (relative to the node's own document) of
// the field at path below n, or of the closest ancestor that exists. For a
// mapping entry it is the key's line. An unquoted key that holds dots
// ("metadata.annotations.alb.ingress.kubernetes.io/scheme") is found too: when
// a key is missing, longer dotted joins of the following segments are tried.
func LineOf(n *yaml.Node, path string) int {
	if n == nil {
		return 0
	}
	line := n.Line
	segs := parsePath(path)
	for i := 0; i < len(segs); i++ {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		s := segs[i]
		switch {
		case s.isIdx && n.Kind == yaml.SequenceNode:
			if s.index < 0 || s.index >= len(n.Content) {
				return line
			}
			n = n.Content[s.index]
			line = n.Line
		case !s.isIdx && n.Kind == yaml.MappingNode:
			k, v := mapEntry(n, s.key)
			if k == nil {
				// Try "a.b.c" as one key for segments a, b, c.
				key := s.key
				for j := i + 1; j < len(segs) && !segs[j].isIdx; j++ {
					key += "." + segs[j].key
					if k, v = mapEntry(n, key); k != nil {
						i = j
						break
					}
				}
			}
			if k == nil {
				return line
			}
			line, n = k.Line, v
		default:
			return line
		}
	}
	return line
}

func mapEntry(n *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}
