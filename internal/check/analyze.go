package check

// PLACEHOLDER: the rules helper replaces this file. The signatures below are
// the contract the CLI and reporters code against.

import (
	"io"

	"github.com/spf13/pflag"
)

// Options tunes an analysis: assumptions that manifests cannot say (set
// globally by flag, per object by annotation) and LB settings read from files.
type Options struct{}

// RegisterFlags adds the analysis flags (assumptions, --haproxy-config, ...)
// to a command's flag set.
func (o *Options) RegisterFlags(fs *pflag.FlagSet) {}

// Rule describes one check: stable id, default severity, why, the formula and
// the fix. --list-rules and docs/checks.md are generated from Rules().
type Rule struct {
	ID        string   `json:"id"`
	Title     string   `json:"title"`
	Severity  Severity `json:"-"`
	Rationale string   `json:"rationale"`
	Formula   string   `json:"formula,omitempty"`
	Fix       string   `json:"fix"`
}

// Rules returns every rule, ordered by id.
func Rules() []Rule { return nil }

// Report is the result of one analysis.
type Report struct {
	Findings []Finding      `json:"findings"`
	Errors   []InputError   `json:"errors,omitempty"`
	Objects  int            `json:"objects"`           // objects analysed
	Skipped  map[string]int `json:"skipped,omitempty"` // unknown kinds skipped, by apiVersion/kind
}

// Analyze runs every rule over the objects.
func Analyze(objs []*Object, opts Options) *Report { return &Report{} }

// WriteExplain prints, for each served workload, the startup and termination
// timelines and the predicted failure windows (--explain).
func WriteExplain(w io.Writer, r *Report) error { return nil }
