package checkbench

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// flowWidth is where GenerateFlow wraps a flow collection onto the next line,
// as people do by hand.
const flowWidth = 80

// GenerateFlow writes the same objects as Generate in flow style, the way
// hand-written manifests often are: top-level keys in block style, every
// value below them a flow mapping ({...}) or flow sequence ([...]), long
// ones wrapped over several lines at about 80 columns with the continuation
// lines indented. Loading either output gives the same objects.
func GenerateFlow(w io.Writer, n int) error {
	var block bytes.Buffer
	if err := Generate(&block, n); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&block)
	var out bytes.Buffer
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		top := doc.Content[0]
		out.WriteString("---\n")
		for i := 0; i+1 < len(top.Content); i += 2 {
			k, v := top.Content[i], top.Content[i+1]
			line := k.Value + ": "
			f := flowWriter{buf: &out, col: len(line), indent: 2}
			out.WriteString(line)
			f.node(v)
			out.WriteByte('\n')
		}
		if out.Len() > 1<<16 {
			if _, err := w.Write(out.Bytes()); err != nil {
				return err
			}
			out.Reset()
		}
	}
	_, err := w.Write(out.Bytes())
	return err
}

// flowWriter writes one node in flow style, breaking the line before an
// entry that would cross flowWidth.
type flowWriter struct {
	buf    *bytes.Buffer
	col    int
	indent int
}

func (f *flowWriter) write(s string) {
	f.buf.WriteString(s)
	f.col += len(s)
}

// entry starts a collection entry of width n (an estimate): after a space,
// or on a new line when it would not fit. first is true for a collection's
// first entry, which follows its bracket.
func (f *flowWriter) entry(n int, first bool) {
	if f.col+n+1 > flowWidth && f.col > f.indent+1 {
		f.buf.WriteByte('\n')
		f.buf.WriteString(strings.Repeat(" ", f.indent))
		f.col = f.indent
		return
	}
	if !first {
		f.write(" ")
	}
}

func (f *flowWriter) node(n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		f.write("{")
		f.indent += 2
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				f.write(",")
			}
			k, v := n.Content[i], n.Content[i+1]
			f.entry(len(scalar(k))+2+width(v), i == 0)
			f.write(scalar(k) + ": ")
			f.node(v)
		}
		f.indent -= 2
		f.write("}")
	case yaml.SequenceNode:
		f.write("[")
		f.indent += 2
		for i, v := range n.Content {
			if i > 0 {
				f.write(",")
			}
			f.entry(width(v), i == 0)
			f.node(v)
		}
		f.indent -= 2
		f.write("]")
	default:
		f.write(scalar(n))
	}
}

// width estimates a node's width on one line.
func width(n *yaml.Node) int {
	if n.Kind == yaml.ScalarNode {
		return len(scalar(n))
	}
	w := 2
	for _, c := range n.Content {
		w += width(c) + 2
	}
	return w
}

// scalar writes a scalar as the block-style input had it: plain, single or
// double quoted. Plain scalars holding flow indicators are double quoted.
func scalar(n *yaml.Node) string {
	switch {
	case n.Style&yaml.SingleQuotedStyle != 0:
		return "'" + strings.ReplaceAll(n.Value, "'", "''") + "'"
	case n.Style&yaml.DoubleQuotedStyle != 0, strings.ContainsAny(n.Value, ",[]{}#"):
		return fmt.Sprintf("%q", n.Value)
	}
	return n.Value
}
