package check

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"zerodrop.dev/zerodrop/internal/haproxycfg"
	"zerodrop.dev/zerodrop/internal/parallel"
	"zerodrop.dev/zerodrop/internal/timing"
)

// Options tunes an analysis: assumptions that manifests cannot say (set
// globally by flag, per object by annotation) and LB settings read from files.
//
// The zero Options is valid: Analyze then uses timing.DefaultAssumptions().
type Options struct {
	// Assumptions are the global defaults (flags); annotations override
	// them per workload. All zero means "not set": the documented defaults.
	Assumptions timing.Assumptions
	// Registration overrides every LB's registration latency R when >= 0.
	Registration float64
	// HAProxyConfig is the path of an HAProxy configuration file whose
	// backends front the workloads (--haproxy-config).
	HAProxyConfig string
	// HAProxyBackend names the backend that fronts workloads not linked by
	// the zerodrop.dev/haproxy-backend annotation (--haproxy-backend).
	HAProxyBackend string
	// SkipExplanations leaves Report.Explanations empty, for callers that
	// print no timelines (zerodrop check without --explain): on 10,000
	// objects they were some 10 MB kept until the report was written.
	SkipExplanations bool

	haproxy *haproxycfg.Config
	flagsOn bool // RegisterFlags set the defaults
}

// RegisterFlags adds the analysis flags (assumptions, --haproxy-config, ...)
// to a command's flag set.
func (o *Options) RegisterFlags(fs *pflag.FlagSet) {
	d := timing.DefaultAssumptions()
	o.flagsOn = true
	a := &o.Assumptions
	fs.Float64Var(&a.Shutdown, "shutdown-seconds", d.Shutdown, "S: the app's longest graceful shutdown after SIGTERM (annotation "+AnnotationShutdown+")")
	fs.Float64Var(&a.Propagation, "propagation-seconds", d.Propagation, "D for in-cluster data paths: deletion until kube-proxy and ingress controllers stop sending (annotation "+AnnotationPropagation+" sets D for every data path)")
	fs.Float64Var(&a.LongestRequest, "longest-request-seconds", d.LongestRequest, "T_req: the longest request the app serves (annotation "+AnnotationLongestRequest+")")
	fs.Float64Var(&a.Buffer, "buffer-seconds", d.Buffer, "safety margin wanted between preStop + shutdown and the grace period (annotation "+AnnotationBuffer+")")
	fs.Float64Var(&a.Startup, "startup-seconds", d.Startup, "time from container start until the app answers (annotation "+AnnotationStartup+")")
	fs.Float64Var(&a.ConnectionDrain, "connection-drain-seconds", d.ConnectionDrain, "time long-lived connections need to move after SIGTERM (annotation "+AnnotationConnectionDrain+")")
	fs.Float64Var(&a.DrainLatency, "drain-latency-seconds", d.DrainLatency, "GKE NEG detach latency (annotation "+AnnotationDrainLatency+")")
	fs.Float64Var(&a.ALBDrainStart, "alb-drain-start-seconds", d.ALBDrainStart, "AWS ALB with pod targets: deletion until the ALB stops sending new requests (annotation "+AnnotationALBDrainStart+")")
	fs.Float64Var(&o.Registration, "registration-seconds", -1, "R: LB registration latency for every LB; negative = each LB's default (annotation "+AnnotationRegistration+")")
	fs.StringVar(&o.HAProxyConfig, "haproxy-config", "", "HAProxy configuration file whose backends front the workloads")
	fs.StringVar(&o.HAProxyBackend, "haproxy-backend", "", "backend of --haproxy-config fronting workloads without the "+AnnotationHAProxyBackend+" annotation")
}

// Report is the result of one analysis.
type Report struct {
	Findings []Finding      `json:"findings"`
	Errors   []InputError   `json:"errors,omitempty"`
	Objects  int            `json:"objects"`           // objects analysed
	Skipped  map[string]int `json:"skipped,omitempty"` // unknown kinds skipped, by apiVersion/kind
	// Explanations hold, per served workload, the timelines behind the
	// findings (--explain, and the "explanations" of -o json); none with
	// Options.SkipExplanations.
	Explanations []Explanation `json:"explanations,omitempty"`
}

// Explanation is one workload's predicted rollout: for each data path in
// front of it, the startup timeline of a new pod and the termination
// timeline of an old one, with the failure windows.
type Explanation struct {
	Workload    ObjectRef          `json:"workload"`
	Source      Source             `json:"source"`
	Pod         timing.Pod         `json:"pod"`
	Assumptions timing.Assumptions `json:"assumptions"`
	// Strategy is set when the workload's update strategy deletes pods
	// before their replacements are Ready (Recreate, maxUnavailable above
	// 0, StatefulSets, DaemonSets without maxSurge): the ZD104 message. The
	// timelines model the surge rollout that rule asks for, so pods go
	// away earlier than they show.
	Strategy  string             `json:"strategy,omitempty"`
	Frontends []FrontendTimeline `json:"frontends"`
}

// FrontendTimeline is one data path's view of a workload's rollout.
type FrontendTimeline struct {
	LB          timing.LB       `json:"lb"`
	Via         string          `json:"via"`            // "Ingress prod/api -> Service prod/api"
	Gate        string          `json:"gate,omitempty"` // readiness gate condition in effect
	Startup     timing.Timeline `json:"startup"`        // one new pod, T+0 = creation
	Termination timing.Timeline `json:"termination"`    // one old pod, T+0 = deletion
	// Rollout is the whole rolling update as this data path sees it (not
	// for DaemonSets), T+0 = the rollout's start.
	Rollout *timing.Rollout `json:"rollout,omitempty"`
}

// Analyze runs every rule over the objects.
func Analyze(objs []*Object, opts Options) *Report {
	r := &Report{Findings: []Finding{}}
	if opts.Assumptions == (timing.Assumptions{}) {
		opts.Assumptions = timing.DefaultAssumptions()
	}
	if !opts.flagsOn && opts.Registration == 0 {
		opts.Registration = -1 // zero Options: per-LB defaults
	}
	if opts.HAProxyConfig != "" && opts.haproxy == nil {
		cfg, err := haproxycfg.ParseFile(opts.HAProxyConfig)
		if err != nil {
			var pe *haproxycfg.Error
			if errors.As(err, &pe) {
				r.Errors = append(r.Errors, InputError{Source: Source{File: pe.File, Line: pe.Line}, Err: pe.Msg})
			} else {
				r.Errors = append(r.Errors, InputError{Source: Source{File: opts.HAProxyConfig}, Err: err.Error()})
			}
		} else {
			opts.haproxy = cfg
			if opts.HAProxyBackend != "" && cfg.Backend(opts.HAProxyBackend) == nil {
				r.Errors = append(r.Errors, InputError{Source: Source{File: opts.HAProxyConfig},
					Err: fmt.Sprintf("--haproxy-backend %q: no such backend (have %v)", opts.HAProxyBackend, cfg.Names())})
			}
		}
	}
	ix := buildIndex(objs)
	r.Errors = append(r.Errors, ix.errors...)
	r.Objects = ix.known
	if len(ix.skipped) > 0 {
		r.Skipped = ix.skipped
	}
	var fs []Finding
	// HAProxy backends the workloads' traffic goes through, by name: their
	// static fronts (used) and, in served too, their TargetBindings' pools.
	usedBackends, servedBackends := map[string][]string{}, map[string][]string{}
	for _, wr := range analyzeWorkloads(ix, &opts) {
		for _, b := range wr.backends {
			if b.used {
				usedBackends[b.name] = append(usedBackends[b.name], wr.ref)
			}
			servedBackends[b.name] = append(servedBackends[b.name], wr.ref)
		}
		fs = append(fs, wr.findings...)
		if wr.explanation != nil {
			r.Explanations = append(r.Explanations, *wr.explanation)
		}
	}
	fs = append(fs, checkWebhooks(ix)...)
	fs = append(fs, checkPDBs(ix)...)
	fs = append(fs, checkHAProxy(&opts, usedBackends)...)
	fs = append(fs, checkEventRing(&opts, ix)...)
	fs = append(fs, checkIdleClose(&opts, servedBackends)...)
	fs = append(fs, checkBindingRefs(ix)...)
	r.Findings = finalize(fs, ix)
	sort.SliceStable(r.Explanations, func(i, j int) bool {
		a, b := r.Explanations[i], r.Explanations[j]
		if a.Source.File != b.Source.File {
			return a.Source.File < b.Source.File
		}
		if a.Source.Line != b.Source.Line {
			return a.Source.Line < b.Source.Line
		}
		return a.Workload.String() < b.Workload.String()
	})
	return r
}

// workloadResult is what the analysis of one workload adds to the report.
type workloadResult struct {
	ref      string
	findings []Finding
	// backends are the HAProxy backends (used: a static front) and
	// TargetBinding pools its fronts go through, in front order.
	backends    []backendUse
	explanation *Explanation
}

type backendUse struct {
	name string
	used bool
}

// analyzeWorkloads analyses every workload of ix, on as many goroutines as
// Go runs at once, and returns the results in the order of ix.workloads, so
// the report does not depend on the schedule. Each workload's analysis only
// reads the index; on 10,000 objects it is a third of a check's CPU time,
// and on one goroutine it left the other cores idle after the (parallel)
// decoding.
func analyzeWorkloads(ix *index, opts *Options) []workloadResult {
	out := make([]workloadResult, len(ix.workloads))
	parallel.For(len(ix.workloads), func(i int) { out[i] = analyzeWorkload(ix.workloads[i], ix, opts) })
	return out
}

func analyzeWorkload(w *workload, ix *index, opts *Options) workloadResult {
	c := newWctx(w, ix, opts)
	c.frontsFor(ix, opts)
	wr := workloadResult{ref: c.ref()}
	for _, f := range c.fronts {
		if f.hapBk != "" {
			wr.backends = append(wr.backends, backendUse{name: f.hapBk, used: true})
		}
		if f.binding != nil {
			wr.backends = append(wr.backends, backendUse{name: f.binding.tb.Spec.Pool})
		}
	}
	wf := c.check(ix)
	wr.findings = append(c.bad, wf...)
	if len(c.fronts) > 0 && !opts.SkipExplanations {
		e := c.explain()
		for _, f := range wf {
			if f.RuleID == RuleRollingUpdate {
				e.Strategy = f.Message
			}
		}
		wr.explanation = &e
	}
	return wr
}

// finalize drops silenced and duplicate findings and sorts the rest by
// file, line, rule id, object and message.
func finalize(fs []Finding, ix *index) []Finding {
	silenced := map[ObjectRef]map[string]bool{}
	// silence reads the ignore annotation of o (prefix "" for its own
	// metadata, "spec.template." for a pod template's). An id that names no
	// rule is a ZD001 finding, as in the configuration file: a typo must
	// not silently silence nothing.
	silence := func(o *Object, prefix string, anns map[string]string) {
		v, ok := anns[AnnotationIgnore]
		if !ok {
			return
		}
		s := ignoreSet(v)
		var unknown []string
		for id := range s {
			if _, known := ruleByID[id]; !known && id != "ALL" && id != "*" {
				unknown = append(unknown, id)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			fs = append(fs, newFinding(RuleBadAnnotation, o, annotationPath(prefix, AnnotationIgnore),
				fmt.Sprintf("annotation %s on %s: unknown rule id %s (zerodrop check --list-rules lists them)", AnnotationIgnore, o.Ref, strings.Join(unknown, ", ")),
				"nothing is silenced for the misspelt ids: the findings you meant to silence still report", ruleByID[RuleBadAnnotation].Fix))
		}
		if silenced[o.Ref] == nil {
			silenced[o.Ref] = map[string]bool{}
		}
		for id := range s {
			silenced[o.Ref][id] = true
		}
	}
	for _, w := range ix.workloads {
		silence(w.obj, "", w.meta.Annotations)
		silence(w.obj, "spec.template.", w.tmpl.Annotations)
	}
	for _, s := range ix.services {
		silence(s.obj, "", s.svc.Annotations)
	}
	for _, o := range ix.ingresses {
		silence(o, "", ingressOf(o).Annotations)
	}
	for _, o := range append(append(append([]*Object{}, ix.hpas...), ix.pdbs...), ix.webhooks...) {
		silence(o, "", objectAnnotations(o))
	}
	for _, o := range ix.namespaceObjs {
		silence(o, "", objectAnnotations(o))
	}
	for _, b := range ix.bindings {
		silence(b.obj, "", b.tb.Annotations)
	}
	type key struct {
		rule  string
		obj   ObjectRef
		field string
		msg   string
	}
	seen := make(map[key]bool, len(fs))
	out := make([]Finding, 0, len(fs))
	for _, f := range fs {
		s := silenced[f.Object]
		if s[f.RuleID] || s["ALL"] || s["*"] {
			continue
		}
		k := key{f.RuleID, f.Object, f.Field, f.Message}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Source.File != b.Source.File {
			return a.Source.File < b.Source.File
		}
		if a.Source.Line != b.Source.Line {
			return a.Source.Line < b.Source.Line
		}
		if a.RuleID != b.RuleID {
			return a.RuleID < b.RuleID
		}
		if a.Object.String() != b.Object.String() {
			return a.Object.String() < b.Object.String()
		}
		return a.Message < b.Message
	})
	return out
}

// newFinding builds a finding of rule on object o at field, with the rule's
// default severity.
func newFinding(rule string, o *Object, field, msg, consequence, fix string) Finding {
	return Finding{
		RuleID:      rule,
		Severity:    ruleByID[rule].Severity,
		Object:      o.Ref,
		Source:      Source{File: o.Source.File, Line: o.Line(field), Doc: o.Source.Doc},
		Field:       field,
		Message:     msg,
		Consequence: consequence,
		Fix:         fix,
		Container:   containerAt(o, field),
	}
}

var containerIndex = regexp.MustCompile(`^spec\.template\.spec\.containers\[(\d+)\]`)

// containerAt names the container a field path points into, "" when none.
func containerAt(o *Object, field string) string {
	m := containerIndex.FindStringSubmatch(field)
	if m == nil {
		return ""
	}
	var spec *corev1.PodSpec
	switch t := o.Typed.(type) {
	case *appsv1.Deployment:
		spec = &t.Spec.Template.Spec
	case *appsv1.StatefulSet:
		spec = &t.Spec.Template.Spec
	case *appsv1.DaemonSet:
		spec = &t.Spec.Template.Spec
	default:
		return ""
	}
	i, _ := strconv.Atoi(m[1])
	if i >= len(spec.Containers) {
		return ""
	}
	return spec.Containers[i].Name
}

func ingressOf(o *Object) *networkingv1.Ingress { return o.Typed.(*networkingv1.Ingress) }

func unstructuredOf(o *Object) *unstructured.Unstructured {
	return o.Typed.(*unstructured.Unstructured)
}

// nestedNumber reads an int or float field of an unstructured object.
func nestedNumber(u *unstructured.Unstructured, path ...string) (float64, bool, error) {
	v, ok, err := unstructured.NestedFieldNoCopy(u.Object, path...)
	if !ok || err != nil {
		return 0, false, err
	}
	switch n := v.(type) {
	case int64:
		return float64(n), true, nil
	case int:
		return float64(n), true, nil
	case float64:
		return n, true, nil
	case int32:
		return float64(n), true, nil
	}
	return 0, false, fmt.Errorf("%v: not a number", path)
}

func parseHAProxyTime(v string) (float64, error) {
	d, err := haproxycfg.ParseTime(v)
	if err != nil {
		return 0, err
	}
	return d.Seconds(), nil
}

// explain builds the workload's Explanation.
func (c *wctx) explain() Explanation {
	e := Explanation{Workload: c.w.obj.Ref, Source: c.w.obj.Source, Assumptions: c.a}
	for _, f := range c.fronts {
		ft := FrontendTimeline{LB: f.lb, Via: f.via, Startup: f.startup, Termination: f.termination, Rollout: f.rollout}
		if f.gated {
			ft.Gate = f.gate
		}
		e.Frontends = append(e.Frontends, ft)
	}
	e.Pod = c.pod
	return e
}
