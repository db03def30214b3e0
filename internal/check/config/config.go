// Package config reads .zerodrop.yaml, the check's configuration file: rules
// to disable, findings to ignore for matching objects, severity overrides,
// the --fail-on level and defaults for the analysis flags. Mistakes in the
// file name the file and line; a silencing entry that matches nothing is not
// an error (the object may be elsewhere), but an unknown rule id is.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"zerodrop.dev/zerodrop/internal/check"
	"zerodrop.dev/zerodrop/internal/check/load"
)

// DefaultFile is read from the working directory when --config is not given.
const DefaultFile = ".zerodrop.yaml"

// File is the content of a configuration file.
type File struct {
	// Disable lists rule ids that never report.
	Disable []string `yaml:"disable"`
	// Ignore silences rules for objects matching kind, namespace and name.
	Ignore []Ignore `yaml:"ignore"`
	// Severity overrides rule severities: rule id -> info|warning|error.
	Severity map[string]string `yaml:"severity"`
	// FailOn is the default of --fail-on.
	FailOn string `yaml:"failOn"`
	// Options gives defaults for analysis flags by flag name (without
	// dashes), e.g. shutdown-seconds: 20; the command line wins.
	Options map[string]string `yaml:"options"`

	path     string
	severity map[string]check.Severity
	failOn   *check.Severity
	optLine  map[string]int
}

// Ignore silences rules for the objects it matches. Kind, Namespace and Name
// are shell globs (path.Match); empty matches anything.
type Ignore struct {
	Rules     []string `yaml:"rules"` // rule ids, or "*" for all
	Kind      string   `yaml:"kind"`
	Namespace string   `yaml:"namespace"`
	Name      string   `yaml:"name"`
	Reason    string   `yaml:"reason"` // why; for the reader, not used
}

// Error is a mistake in the configuration file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// Path returns the file the configuration was read from.
func (f *File) Path() string { return f.path }

// OptionError makes an Error at the line of option key, for a value the
// command line rejects.
func (f *File) OptionError(key string, err error) error {
	return &Error{File: f.path, Line: f.optLine[key], Msg: fmt.Sprintf("options: %s: %v", key, err)}
}

// FailOnLevel returns the failOn of the file, if it sets one.
func (f *File) FailOnLevel() (check.Severity, bool) {
	if f == nil || f.failOn == nil {
		return 0, false
	}
	return *f.failOn, true
}

// ReadFile reads and validates a configuration file. ruleIDs are the ids of
// the known rules; ids not among them are errors. An empty list skips that
// check.
func ReadFile(name string, ruleIDs []string) (*File, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, &Error{File: name, Msg: "cannot read configuration: " + strings.TrimPrefix(err.Error(), "open "+name+": ")}
	}
	return Parse(name, data, ruleIDs)
}

var yamlLineRE = regexp.MustCompile(`line (\d+): (.*)`)

// Parse reads a configuration from data, naming it name in errors.
func Parse(name string, data []byte, ruleIDs []string) (*File, error) {
	f := &File{path: name}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(name, err)
	}
	if len(root.Content) == 0 {
		return f, nil // an empty file
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil {
		return nil, yamlError(name, err)
	}
	top := root.Content[0]
	at := func(p string) int { return load.LineOf(top, p) }
	known := map[string]bool{}
	for _, id := range ruleIDs {
		known[id] = true
	}
	checkRule := func(id, p string) error {
		if len(known) > 0 && !known[id] && id != "*" {
			return &Error{File: name, Line: at(p), Msg: fmt.Sprintf("unknown rule id %q (zerodrop check --list-rules lists them)", id)}
		}
		return nil
	}
	for i, id := range f.Disable {
		if err := checkRule(id, fmt.Sprintf("disable[%d]", i)); err != nil {
			return nil, err
		}
	}
	for i, ig := range f.Ignore {
		p := fmt.Sprintf("ignore[%d]", i)
		if len(ig.Rules) == 0 {
			return nil, &Error{File: name, Line: at(p), Msg: `an ignore entry needs "rules" (rule ids, or "*")`}
		}
		for j, id := range ig.Rules {
			if err := checkRule(id, fmt.Sprintf("%s.rules[%d]", p, j)); err != nil {
				return nil, err
			}
		}
		for field, g := range map[string]string{"kind": ig.Kind, "namespace": ig.Namespace, "name": ig.Name} {
			if _, err := path.Match(g, ""); err != nil {
				return nil, &Error{File: name, Line: at(p + "." + field), Msg: fmt.Sprintf("%s: bad glob %q: %v", field, g, err)}
			}
		}
	}
	f.optLine = map[string]int{}
	for k := range f.Options {
		f.optLine[k] = at(`options["` + k + `"]`)
	}
	f.severity = map[string]check.Severity{}
	for id, s := range f.Severity {
		p := `severity["` + id + `"]`
		if err := checkRule(id, p); err != nil {
			return nil, err
		}
		sev, err := check.ParseSeverity(s)
		if err != nil {
			return nil, &Error{File: name, Line: at(p), Msg: err.Error()}
		}
		f.severity[id] = sev
	}
	if f.FailOn != "" {
		sev, err := check.ParseSeverity(f.FailOn)
		if err != nil {
			return nil, &Error{File: name, Line: at("failOn"), Msg: "failOn: " + err.Error()}
		}
		f.failOn = &sev
	}
	return f, nil
}

func yamlError(name string, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: l, Msg: strings.Replace(m[2], "in type config.File", "in a zerodrop configuration", 1)}
	}
	return &Error{File: name, Msg: msg}
}

// Apply returns the findings left after the file's disable and ignore
// entries, with severities overridden. A nil File changes nothing.
func (f *File) Apply(fs []check.Finding) []check.Finding {
	if f == nil {
		return fs
	}
	disabled := map[string]bool{}
	for _, id := range f.Disable {
		disabled[id] = true
	}
	out := make([]check.Finding, 0, len(fs))
	for _, x := range fs {
		if disabled[x.RuleID] || disabled["*"] || f.ignored(x) {
			continue
		}
		if s, ok := f.severity[x.RuleID]; ok {
			x.Severity = s
		}
		out = append(out, x)
	}
	return out
}

func (f *File) ignored(x check.Finding) bool {
	for _, ig := range f.Ignore {
		hit := false
		for _, id := range ig.Rules {
			if id == x.RuleID || id == "*" {
				hit = true
				break
			}
		}
		if hit && glob(ig.Kind, x.Object.Kind) && glob(ig.Namespace, x.Object.Namespace) && glob(ig.Name, x.Object.Name) {
			return true
		}
	}
	return false
}

func glob(pattern, s string) bool {
	if pattern == "" {
		return true
	}
	ok, _ := path.Match(pattern, s)
	return ok
}
