package report

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"zerodrop.dev/zerodrop/internal/check"
	"zerodrop.dev/zerodrop/internal/parallel"
)

// ANSI styles used on a terminal.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

type styler struct{ on bool }

func (s styler) wrap(code, text string) string {
	if !s.on || text == "" {
		return text
	}
	return code + text + ansiReset
}

func (s styler) severity(sev check.Severity) string {
	word := sev.String()
	if n := utf8.RuneCountInString(word); n < 7 { // fmt's %-7s
		word += strings.Repeat(" ", 7-n)
	}
	switch sev {
	case check.SeverityError:
		return s.wrap(ansiBold+ansiRed, word)
	case check.SeverityWarning:
		return s.wrap(ansiYellow, word)
	}
	return s.wrap(ansiCyan, word)
}

// WriteText renders findings grouped by object, then input errors, warnings,
// skipped kinds and a summary line. With color, severities and headings are
// styled with ANSI escapes.
func WriteText(w io.Writer, in Input, color bool) error {
	bw := bufio.NewWriter(w)
	st := styler{on: color}
	r := in.Report
	fs := Ordered(r.Findings)

	// Each object's findings and merged fix are rendered on their own,
	// many objects at once (on 10,000 objects the report was a tenth of
	// the check's CPU time, on one core), and written in order.
	groups := objectGroups(fs)
	batches := make([][]byte, (len(groups)+groupsPerBatch-1)/groupsPerBatch)
	parallel.For(len(batches), func(i int) {
		var b bytes.Buffer
		for j := i * groupsPerBatch; j < min((i+1)*groupsPerBatch, len(groups)); j++ {
			if j > 0 {
				b.WriteByte('\n')
			}
			writeObject(&b, st, groups[j])
		}
		batches[i] = b.Bytes()
	})
	for _, b := range batches {
		bw.Write(b)
	}

	if len(r.Errors) > 0 {
		if len(fs) > 0 {
			bw.WriteString("\n")
		}
		fmt.Fprintf(bw, "%s\n", st.wrap(ansiBold+ansiRed, "input errors (these documents were not checked):"))
		for _, e := range r.Errors {
			fmt.Fprintf(bw, "  %s\n", oneLine(e.Error()))
		}
	}
	if len(in.Warnings) > 0 {
		if len(fs) > 0 || len(r.Errors) > 0 {
			bw.WriteString("\n")
		}
		fmt.Fprintf(bw, "%s\n", st.wrap(ansiYellow, "input warnings:"))
		for _, e := range in.Warnings {
			fmt.Fprintf(bw, "  %s\n", oneLine(e.Error()))
		}
	}
	sk := skippedKinds(r.Skipped)
	total := 0
	var parts []string
	for _, s := range sk {
		total += s.Count
		parts = append(parts, fmt.Sprintf("%s/%s (%d)", s.APIVersion, s.Kind, s.Count))
	}
	if total > 0 {
		if len(fs) > 0 || len(r.Errors) > 0 || len(in.Warnings) > 0 {
			bw.WriteString("\n")
		}
		fmt.Fprintf(bw, "skipped %s of kinds zerodrop does not check: %s\n", plural(total, "object", "objects"), strings.Join(parts, ", "))
	}

	if n := len(in.Ignored); n > 0 {
		if len(fs) > 0 || len(r.Errors) > 0 || len(in.Warnings) > 0 || total > 0 {
			bw.WriteString("\n")
		}
		names := in.Ignored
		more := ""
		if n > 3 {
			names, more = names[:3], fmt.Sprintf(" and %d more", n-3)
		}
		fmt.Fprintf(bw, "ignored %s without Kubernetes objects found in directories: %s%s\n", plural(n, "file", "files"), strings.Join(names, ", "), more)
	}

	c := CountFindings(fs)
	if len(fs) > 0 || len(r.Errors) > 0 || len(in.Warnings) > 0 || total > 0 || len(in.Ignored) > 0 {
		bw.WriteString("\n")
	}
	summary := fmt.Sprintf("%s checked: %s, %s, %s", plural(r.Objects, "object", "objects"),
		plural(c.Error, "error", "errors"), plural(c.Warning, "warning", "warnings"), plural(c.Info, "info", "info"))
	if len(r.Errors) > 0 {
		summary += "; " + plural(len(r.Errors), "input error", "input errors")
	}
	if Failed(fs, in.FailOn) {
		summary += fmt.Sprintf(" (failing: findings at or above %s)", in.FailOn)
	}
	fmt.Fprintln(bw, st.wrap(ansiBold, summary))
	return bw.Flush()
}

// groupsPerBatch is how many objects' findings one goroutine renders at a
// time: enough to make the hand-off cheap, few enough to share the work.
const groupsPerBatch = 64

// objectGroups cuts ordered findings into runs of one object in one file.
func objectGroups(fs []check.Finding) [][]check.Finding {
	var groups [][]check.Finding
	for i := 0; i < len(fs); {
		j := i + 1
		for j < len(fs) && fs[j].Source.File == fs[i].Source.File && fs[j].Object == fs[i].Object {
			j++
		}
		groups = append(groups, fs[i:j])
		i = j
	}
	return groups
}

// textWriter is what the text report writes to: a bufio.Writer, or the
// buffer an object's findings are rendered in.
type textWriter interface {
	io.Writer
	io.StringWriter
	io.ByteWriter
}

// writeObject renders one object's findings (fs, all of one object in one
// file): a heading, each finding, and, when rules propose different values
// for one field, the fixes merged into one patch that follows the object.
func writeObject(w textWriter, st styler, fs []check.Finding) {
	f := fs[0]
	head := f.Object.String()
	if f.Object.Kind == "" && f.Object.Name == "" {
		head = f.Source.File
	}
	fmt.Fprintf(w, "%s  %s\n", st.wrap(ansiBold, head), st.wrap(ansiDim, f.Source.File))
	objPatch := newPatch()
	for _, f := range fs {
		for _, s := range [...]string{"  ", st.severity(f.Severity), " ", st.wrap(ansiBold, f.RuleID), "  ", f.Source.String()} {
			w.WriteString(s)
		}
		if f.Field != "" {
			w.WriteString("  ")
			w.WriteString(f.Field)
		}
		if f.Confidence != check.ConfidenceHigh {
			w.WriteString("  ")
			w.WriteString(st.wrap(ansiDim, "(confidence "+f.Confidence.String()+")"))
		}
		w.WriteString("\n")
		writeIndented(w, "    ", f.Message)
		if f.Consequence != "" {
			writeLabelled(w, st, "consequence: ", f.Consequence)
		}
		if f.Fix != "" {
			writeLabelled(w, st, "fix: ", f.Fix)
			objPatch.add(f.RuleID, f.Fix, f.Field, f.Container)
		}
	}
	if objPatch.conflicts() {
		fmt.Fprintf(w, "  %s\n", st.wrap(ansiDim, "one fix for "+f.Object.String()+" (rules propose different values; the larger is safe for all):"))
		writeIndented(w, "    ", strings.TrimRight(objPatch.yaml(), "\n"))
	}
}

// writeIndented writes text indented. Markdown code fences (rules write
// fixes as Markdown for docs and SARIF) are dropped: the indentation already
// sets the code apart on a terminal.
func writeIndented(w textWriter, indent, text string) {
	// Line by line into the buffer: no slice of lines, no joined strings.
	rest := strings.TrimRight(text, "\n")
	for more := true; more; {
		var l string
		l, rest, more = strings.Cut(rest, "\n")
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			continue
		}
		if l != "" {
			w.WriteString(indent)
			w.WriteString(l)
		}
		w.WriteByte('\n')
	}
}

// writeLabelled prints "consequence: text" on one line when the text is one
// line, else the label followed by the text indented (YAML fixes).
func writeLabelled(w textWriter, st styler, label, text string) {
	text = strings.TrimRight(text, "\n")
	if !strings.Contains(text, "\n") {
		w.WriteString("    ")
		w.WriteString(st.wrap(ansiDim, label))
		w.WriteString(text)
		w.WriteByte('\n')
		return
	}
	w.WriteString("    " + st.wrap(ansiDim, strings.TrimSpace(label)) + "\n")
	writeIndented(w, "      ", text)
}

func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
}
