package report

import (
	"encoding/json"
	"io"

	"zerodrop.dev/zerodrop/internal/check"
)

// SchemaVersion identifies the JSON output schema (docs/check-json.md). It
// changes only when a field is removed or changes meaning; new fields may
// appear within a version.
const SchemaVersion = "zerodrop.dev/check/v1"

// JSONReport is the document written by -o json.
type JSONReport struct {
	SchemaVersion string        `json:"schemaVersion"`
	Tool          JSONTool      `json:"tool"`
	Summary       JSONSummary   `json:"summary"`
	Findings      []JSONFinding `json:"findings"`
	Errors        []JSONProblem `json:"errors"`
	Warnings      []JSONProblem `json:"warnings"`
	Skipped       []JSONSkipped `json:"skipped"`
	Ignored       []string      `json:"ignoredFiles"`
	// Explanations are present with --explain only.
	Explanations *[]check.Explanation `json:"explanations,omitempty"`
}

// JSONTool names the program that wrote the report.
type JSONTool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// JSONSummary holds the counts a CI job decides on.
type JSONSummary struct {
	Objects  int    `json:"objects"`
	Findings int    `json:"findings"`
	Error    int    `json:"error"`
	Warning  int    `json:"warning"`
	Info     int    `json:"info"`
	Errors   int    `json:"inputErrors"`
	Warnings int    `json:"inputWarnings"`
	Skipped  int    `json:"skipped"`
	Ignored  int    `json:"ignoredFiles"`
	FailOn   string `json:"failOn"`
	Failed   bool   `json:"failed"`
}

// JSONFinding is one finding.
type JSONFinding struct {
	RuleID      string          `json:"ruleId"`
	Severity    string          `json:"severity"`
	Object      check.ObjectRef `json:"object"`
	File        string          `json:"file"`
	Line        int             `json:"line,omitempty"`
	Field       string          `json:"field,omitempty"`
	Message     string          `json:"message"`
	Consequence string          `json:"consequence,omitempty"`
	Fix         string          `json:"fix,omitempty"`
	Confidence  string          `json:"confidence"`
}

// JSONProblem is one input error or warning.
type JSONProblem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// JSONSkipped counts the skipped objects of one kind.
type JSONSkipped = skipped

// BuildJSON converts in into the JSON report document.
func BuildJSON(in Input) JSONReport {
	r := in.Report
	fs := Ordered(r.Findings)
	c := CountFindings(fs)
	out := JSONReport{
		SchemaVersion: SchemaVersion,
		Tool:          JSONTool{Name: "zerodrop", Version: in.Version},
		Findings:      []JSONFinding{},
		Errors:        problems(r.Errors),
		Warnings:      problems(in.Warnings),
		Skipped:       skippedKinds(r.Skipped),
		Ignored:       append([]string{}, in.Ignored...),
	}
	if in.Explain {
		ex := r.Explanations
		if ex == nil {
			ex = []check.Explanation{}
		}
		out.Explanations = &ex
	}
	if out.Skipped == nil {
		out.Skipped = []JSONSkipped{}
	}
	for _, f := range fs {
		out.Findings = append(out.Findings, JSONFinding{
			RuleID: f.RuleID, Severity: f.Severity.String(), Object: f.Object,
			File: f.Source.File, Line: f.Source.Line, Field: f.Field,
			Message: f.Message, Consequence: f.Consequence, Fix: f.Fix, Confidence: f.Confidence.String(),
		})
	}
	skippedTotal := 0
	for _, s := range out.Skipped {
		skippedTotal += s.Count
	}
	out.Summary = JSONSummary{
		Objects: r.Objects, Findings: len(fs), Error: c.Error, Warning: c.Warning, Info: c.Info,
		Errors: len(r.Errors), Warnings: len(in.Warnings), Skipped: skippedTotal, Ignored: len(in.Ignored),
		FailOn: in.FailOn.String(), Failed: Failed(fs, in.FailOn),
	}
	return out
}

func problems(errs []check.InputError) []JSONProblem {
	out := []JSONProblem{}
	for _, e := range errs {
		out = append(out, JSONProblem{File: e.Source.File, Line: e.Source.Line, Message: e.Err})
	}
	return out
}

// WriteJSON writes the report as indented JSON (schema zerodrop.dev/check/v1).
func WriteJSON(w io.Writer, in Input) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // keep "<stdin>" and fixes readable
	return enc.Encode(BuildJSON(in))
}
