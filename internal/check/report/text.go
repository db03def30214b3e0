package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"zerodrop.dev/zerodrop/internal/check"
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

	var cur struct {
		file string
		obj  check.ObjectRef
		set  bool
	}
	// Fixes of one object are merged as they come; when rules propose
	// different values for one field, the merged patch follows the object.
	objPatch := newPatch()
	flushPatch := func() {
		if objPatch.conflicts() {
			fmt.Fprintf(bw, "  %s\n", st.wrap(ansiDim, "one fix for "+cur.obj.String()+" (rules propose different values; the larger is safe for all):"))
			writeIndented(bw, "    ", strings.TrimRight(objPatch.yaml(), "\n"))
		}
		objPatch = newPatch()
	}
	for _, f := range fs {
		if !cur.set || cur.file != f.Source.File || cur.obj != f.Object {
			if cur.set {
				flushPatch()
				bw.WriteString("\n")
			}
			cur.file, cur.obj, cur.set = f.Source.File, f.Object, true
			head := f.Object.String()
			if f.Object.Kind == "" && f.Object.Name == "" {
				head = f.Source.File
			}
			fmt.Fprintf(bw, "%s  %s\n", st.wrap(ansiBold, head), st.wrap(ansiDim, f.Source.File))
		}
		for _, s := range [...]string{"  ", st.severity(f.Severity), " ", st.wrap(ansiBold, f.RuleID), "  ", f.Source.String()} {
			bw.WriteString(s)
		}
		if f.Field != "" {
			bw.WriteString("  ")
			bw.WriteString(f.Field)
		}
		if f.Confidence != check.ConfidenceHigh {
			bw.WriteString("  ")
			bw.WriteString(st.wrap(ansiDim, "(confidence "+f.Confidence.String()+")"))
		}
		bw.WriteString("\n")
		writeIndented(bw, "    ", f.Message)
		if f.Consequence != "" {
			writeLabelled(bw, st, "consequence: ", f.Consequence)
		}
		if f.Fix != "" {
			writeLabelled(bw, st, "fix: ", f.Fix)
			objPatch.add(f.RuleID, f.Fix, f.Field, f.Container)
		}
	}
	if cur.set {
		flushPatch()
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

// writeIndented writes text indented. Markdown code fences (rules write
// fixes as Markdown for docs and SARIF) are dropped: the indentation already
// sets the code apart on a terminal.
func writeIndented(w *bufio.Writer, indent, text string) {
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
func writeLabelled(w *bufio.Writer, st styler, label, text string) {
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
