package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"zerodrop.dev/zerodrop/internal/check"
	"zerodrop.dev/zerodrop/internal/check/config"
	"zerodrop.dev/zerodrop/internal/check/load"
	"zerodrop.dev/zerodrop/internal/check/report"
)

// Exit codes of zerodrop check (docs/check.md).
const (
	exitClean    = 0 // nothing at or above --fail-on
	exitFindings = 1 // findings at or above --fail-on
	exitInput    = 2 // input or usage errors (after printing what was found)
)

type checkFlags struct {
	output    string
	kustomize []string
	failOn    string
	minConf   string
	explain   bool
	listRules bool
	config    string
	color     string
	opts      check.Options
	// --cluster mode: read the objects from a live cluster (read-only).
	cluster    bool
	kubeconfig string
	context    string
	namespace  string
}

// clusterTransport wraps the --cluster client's transport; tests set it to
// record the HTTP verbs used.
var clusterTransport func(http.RoundTripper) http.RoundTripper

func newCheckCmd() *cobra.Command {
	f := &checkFlags{}
	cmd := &cobra.Command{
		Use:   "check [PATH ...]",
		Short: "Find zero-downtime hazards in manifests before the deploy",
		Long: `check reads Kubernetes manifests and the load balancer settings in front of
them, predicts the startup and termination timelines of a rolling update and
reports every way it can drop requests, with the numbers, the consequence and
the fix.

PATH is a file, a directory (read recursively: *.yaml, *.yml, *.json; a
directory holding a kustomization is built with kustomize) or - for standard
input. --cluster reads the objects from a live cluster instead, read-only
(get and list only). Exit status: 0 nothing at or above --fail-on, 1 findings at or above
it, 2 input or usage errors. See docs/check.md.`,
		Example: `  zerodrop check deploy/
  helm template shop ./chart | zerodrop check -
  zerodrop check -k overlays/prod -o sarif > zerodrop.sarif
  zerodrop check --explain --haproxy-config haproxy.cfg app.yaml
  zerodrop check --cluster --context prod -n shop`,
		RunE: func(cmd *cobra.Command, args []string) error { return runCheck(cmd, args, f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text, compact (one line per finding, merged fixes, summary table), json or sarif")
	fl.StringArrayVarP(&f.kustomize, "kustomize", "k", nil, "build this kustomize directory and check the result (repeatable)")
	fl.StringVar(&f.failOn, "fail-on", "error", "least severity that makes the check fail (exit 1): info, warning or error")
	fl.StringVar(&f.minConf, "min-confidence", "low", "report only findings at least this certain: low (all), medium (no finding that holds only if an assumption does) or high (none using an assumed app timing)")
	fl.BoolVar(&f.explain, "explain", false, "print each workload's startup and termination timelines and predicted failure windows")
	fl.BoolVar(&f.listRules, "list-rules", false, "list every rule (with -o json: as JSON) and exit")
	fl.StringVar(&f.config, "config", "", "configuration file (default "+config.DefaultFile+" in the working directory, if present)")
	fl.StringVar(&f.color, "color", "auto", "colour text output: auto (on a terminal), always or never")
	fl.BoolVar(&f.cluster, "cluster", false, "check the objects of a live cluster (read-only: get and list) instead of files")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file for --cluster (default $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.context, "context", "", "kubeconfig context for --cluster (default the current context)")
	fl.StringVarP(&f.namespace, "namespace", "n", "", "with --cluster: only this namespace (default all namespaces)")
	f.opts.RegisterFlags(fl)
	return cmd
}

// usageError is a mistake on the command line or in the configuration.
func usageError(cmd *cobra.Command, format string, args ...any) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "zerodrop check: "+format+"\n", args...)
	return exitError{exitInput}
}

func runCheck(cmd *cobra.Command, args []string, f *checkFlags) error {
	out := cmd.OutOrStdout()
	format, err := report.ParseFormat(f.output)
	if err != nil {
		return usageError(cmd, "%v", err)
	}
	rules := check.Rules()
	if f.listRules {
		return writeRules(out, format, rules)
	}
	color, err := useColor(f.color, out)
	if err != nil {
		return usageError(cmd, "%v", err)
	}

	cfg, err := readConfig(f.config, rules)
	if err != nil {
		return usageError(cmd, "%v", err)
	}
	fl := cmd.Flags()
	if cfg != nil {
		for k, v := range cfg.Options {
			fd := fl.Lookup(k)
			if fd == nil {
				return usageError(cmd, "%v", cfg.OptionError(k, errors.New("no such flag of zerodrop check")))
			}
			if fd.Changed {
				continue // the command line wins
			}
			if err := fl.Set(k, v); err != nil {
				return usageError(cmd, "%v", cfg.OptionError(k, err))
			}
		}
	}
	failOn, err := check.ParseSeverity(f.failOn)
	if err != nil {
		return usageError(cmd, "--fail-on: %v", err)
	}
	if s, ok := cfg.FailOnLevel(); ok && !fl.Changed("fail-on") {
		failOn = s
	}
	minConf, err := check.ParseConfidence(f.minConf)
	if err != nil {
		return usageError(cmd, "--min-confidence: %v", err)
	}
	if !f.cluster {
		for _, name := range []string{"kubeconfig", "context", "namespace"} {
			if fl.Changed(name) {
				return usageError(cmd, "--%s applies only with --cluster", name)
			}
		}
	}
	var loaded *load.Result
	small := false // gcForSmallInput raised GOGC
	if f.cluster {
		if len(args) > 0 || len(f.kustomize) > 0 {
			return usageError(cmd, "--cluster reads the cluster: give no files or -k")
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		loaded, err = load.Cluster(ctx, load.ClusterOptions{Kubeconfig: f.kubeconfig, Context: f.context, Namespace: f.namespace, WrapTransport: clusterTransport})
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "zerodrop check: %v\n", err)
			return exitError{exitInput}
		}
	} else {
		if len(args) == 0 && len(f.kustomize) == 0 {
			return usageError(cmd, "nothing to check: give files, directories, - for standard input, -k DIR, or --cluster")
		}
		// The garbage collector's target by input size (gc.go): small
		// inputs are mostly start-up, and collections are most of their
		// cost; large ones get their heap on huge pages, where a larger
		// heap costs few page faults, and a somewhat higher target.
		if len(f.kustomize) == 0 {
			small = gcForSmallInput(args)
			if !small && hugePageHeapFor(args) {
				gcForHugePageHeap()
			}
		}
		loaded = load.Load(args, load.Options{Stdin: cmd.InOrStdin(), Kustomize: f.kustomize})
	}
	f.opts.SkipExplanations = !f.explain // only --explain prints them
	rep := check.Analyze(loaded.Objects, f.opts)
	if !small {
		releaseObjects(loaded)
	}
	rep.Errors = append(loaded.Errors, rep.Errors...)
	for k, n := range loaded.Skipped {
		if rep.Skipped == nil {
			rep.Skipped = map[string]int{}
		}
		rep.Skipped[k] += n
	}
	rep.Findings = cfg.Apply(rep.Findings)
	if minConf != check.ConfidenceLow {
		kept := rep.Findings[:0]
		for _, x := range rep.Findings {
			if x.Confidence.AtLeast(minConf) {
				kept = append(kept, x)
			}
		}
		rep.Findings = kept
	}

	if f.explain && format == report.FormatText {
		if err := check.WriteExplain(out, rep); err != nil {
			return err
		}
		// A blank line between the last timeline and the first finding.
		if _, err := io.WriteString(out, "\n"); err != nil {
			return err
		}
	}
	in := report.Input{Report: rep, Warnings: loaded.Warnings, Ignored: loaded.Ignored, Rules: rules, FailOn: failOn, Explain: f.explain, Version: version}
	if err := report.Write(out, format, in, color); err != nil {
		return err
	}
	switch {
	case len(rep.Errors) > 0:
		return exitError{exitInput}
	case report.Failed(rep.Findings, failOn):
		return exitError{exitFindings}
	}
	return nil
}

// readConfig reads --config, or .zerodrop.yaml when present; nil when there
// is none.
func readConfig(name string, rules []check.Rule) (*config.File, error) {
	if name == "" {
		if _, err := os.Stat(config.DefaultFile); err != nil {
			return nil, nil
		}
		name = config.DefaultFile
	}
	ids := make([]string, len(rules))
	for i, r := range rules {
		ids[i] = r.ID
	}
	return config.ReadFile(name, ids)
}

// useColor decides on colour: "auto" means stdout is a terminal and NO_COLOR
// is unset.
func useColor(mode string, w io.Writer) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		if os.Getenv("NO_COLOR") != "" {
			return false, nil
		}
		if f, ok := w.(*os.File); ok {
			return term.IsTerminal(int(f.Fd())), nil
		}
		return false, nil
	}
	return false, fmt.Errorf("--color %q: want auto, always or never", mode)
}

// jsonRule is one rule in --list-rules -o json.
type jsonRule struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	Severity  string `json:"severity"`
	Rationale string `json:"rationale"`
	Formula   string `json:"formula,omitempty"`
	Fix       string `json:"fix"`
}

func writeRules(w io.Writer, format report.Format, rules []check.Rule) error {
	if format != report.FormatText {
		out := []jsonRule{}
		for _, r := range rules {
			out = append(out, jsonRule{ID: r.ID, Title: r.Title, Severity: r.Severity.String(), Rationale: r.Rationale, Formula: r.Formula, Fix: r.Fix})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSEVERITY\tTITLE")
	for _, r := range rules {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, r.Severity, r.Title)
	}
	return tw.Flush()
}
