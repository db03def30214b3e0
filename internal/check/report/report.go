// Package report renders the result of zerodrop check: text for people (with
// colour on a terminal), versioned JSON for scripts, and SARIF 2.1.0 for code
// scanning services. All three render the same Input, in the same order.
package report

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"zerodrop.dev/zerodrop/internal/check"
)

// Input is everything a reporter renders.
type Input struct {
	// Report is the analysis result; its Errors include the loader's.
	Report *check.Report
	// Warnings are input problems that did not stop an object from being
	// checked (unknown fields, duplicate keys).
	Warnings []check.InputError
	// Ignored are files met in directory walks that hold no Kubernetes
	// object (load.Result.Ignored).
	Ignored []string
	// Rules are the rules the check ran (check.Rules()).
	Rules []check.Rule
	// FailOn is the least severity that fails the check (--fail-on).
	FailOn check.Severity
	// Explain includes the workloads' timelines (Report.Explanations) in
	// JSON output (--explain).
	Explain bool
	// Version is zerodrop's version, for the tool fields of JSON and SARIF.
	Version string
}

// Format names an output format.
type Format string

// The output formats.
const (
	FormatText  Format = "text"
	FormatJSON  Format = "json"
	FormatSARIF Format = "sarif"
	// FormatCompact is one line per finding, merged fixes and a summary
	// table.
	FormatCompact Format = "compact"
)

// ParseFormat parses the value of -o.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatText, FormatJSON, FormatSARIF, FormatCompact:
		return Format(s), nil
	}
	return "", fmt.Errorf("unknown output format %q (want text, compact, json or sarif)", s)
}

// Write renders in to w in format f. color applies to text only.
func Write(w io.Writer, f Format, in Input, color bool) error {
	switch f {
	case FormatJSON:
		return WriteJSON(w, in)
	case FormatSARIF:
		return WriteSARIF(w, in)
	case FormatCompact:
		return WriteCompact(w, in)
	}
	return WriteText(w, in, color)
}

// Counts sums findings by severity.
type Counts struct {
	Error, Warning, Info int
}

// CountFindings counts findings by severity.
func CountFindings(fs []check.Finding) Counts {
	var c Counts
	for _, f := range fs {
		switch f.Severity {
		case check.SeverityError:
			c.Error++
		case check.SeverityWarning:
			c.Warning++
		default:
			c.Info++
		}
	}
	return c
}

// Failed reports whether any finding is at or above failOn.
func Failed(fs []check.Finding, failOn check.Severity) bool {
	for _, f := range fs {
		if f.Severity >= failOn {
			return true
		}
	}
	return false
}

// Ordered returns the findings grouped by object, objects in order of file
// and first line, and within an object by line, severity (most severe first)
// and rule id: output does not depend on the order rules ran in.
func Ordered(fs []check.Finding) []check.Finding {
	type key struct {
		file string
		obj  check.ObjectRef
	}
	first := map[key]int{}
	for _, f := range fs {
		k := key{f.Source.File, f.Object}
		if l, ok := first[k]; !ok || f.Source.Line < l {
			first[k] = f.Source.Line
		}
	}
	out := slices.Clone(fs)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if c := cmp.Compare(a.Source.File, b.Source.File); c != 0 {
			return c < 0
		}
		ka, kb := key{a.Source.File, a.Object}, key{b.Source.File, b.Object}
		if ka != kb {
			if c := cmp.Compare(first[ka], first[kb]); c != 0 {
				return c < 0
			}
			return a.Object.String() < b.Object.String()
		}
		if c := cmp.Compare(a.Source.Line, b.Source.Line); c != 0 {
			return c < 0
		}
		if a.Severity != b.Severity {
			return a.Severity > b.Severity
		}
		return a.RuleID < b.RuleID
	})
	return out
}

// skippedKinds returns the skipped-kind counts sorted by key.
func skippedKinds(m map[string]int) []skipped {
	var out []skipped
	for k, n := range m {
		av, kind := k, ""
		if i := strings.LastIndexByte(k, '/'); i >= 0 {
			av, kind = k[:i], k[i+1:]
		}
		out = append(out, skipped{APIVersion: av, Kind: kind, Count: n})
	}
	slices.SortFunc(out, func(a, b skipped) int {
		return cmp.Or(cmp.Compare(a.APIVersion, b.APIVersion), cmp.Compare(a.Kind, b.Kind))
	})
	return out
}

type skipped struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Count      int    `json:"count"`
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
