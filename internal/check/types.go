// Package check finds zero-downtime hazards in Kubernetes manifests and load
// balancer settings before a deploy. It loads objects (loader.go), indexes how
// they relate (a Service selects a workload, an Ingress routes to a Service),
// turns every served workload into the startup and termination timelines of
// the timing package, and runs rules over them. Reporters render the result.
package check

import (
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/runtime"
)

// Severity orders findings; a higher value is more severe.
type Severity int

// The severities, from least to most severe.
const (
	SeverityInfo Severity = iota
	SeverityWarning
	SeverityError
)

// String returns the lower-case name used in output and flags.
func (s Severity) String() string {
	switch s {
	case SeverityInfo:
		return "info"
	case SeverityWarning:
		return "warning"
	case SeverityError:
		return "error"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// ParseSeverity parses "info", "warning" or "error".
func ParseSeverity(s string) (Severity, error) {
	switch s {
	case "info":
		return SeverityInfo, nil
	case "warning", "warn":
		return SeverityWarning, nil
	case "error":
		return SeverityError, nil
	}
	return 0, fmt.Errorf("unknown severity %q (want info, warning or error)", s)
}

// Confidence says how much of a finding rests on assumptions zerodrop makes
// because the manifests cannot say (the app's shutdown time, its longest
// request, what a port named grpc carries). The zero value is high.
type Confidence int

// The confidences, from most to least certain.
const (
	// ConfidenceHigh: the manifests and documented defaults of Kubernetes
	// and the load balancers show the hazard.
	ConfidenceHigh Confidence = iota
	// ConfidenceMedium: the hazard is shown, its numbers use an assumed app
	// timing (shutdown, longest request).
	ConfidenceMedium
	// ConfidenceLow: the hazard exists only if an assumption holds; such
	// findings are info unless the assumption is stated (an annotation).
	ConfidenceLow
)

// String returns the lower-case name used in output and flags.
func (c Confidence) String() string {
	switch c {
	case ConfidenceHigh:
		return "high"
	case ConfidenceMedium:
		return "medium"
	case ConfidenceLow:
		return "low"
	}
	return fmt.Sprintf("confidence(%d)", int(c))
}

// MarshalText writes the name, for JSON.
func (c Confidence) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// AtLeast reports whether c is as certain as min or more.
func (c Confidence) AtLeast(min Confidence) bool { return c <= min }

// ParseConfidence parses "low", "medium" or "high".
func ParseConfidence(s string) (Confidence, error) {
	switch s {
	case "high":
		return ConfidenceHigh, nil
	case "medium":
		return ConfidenceMedium, nil
	case "low":
		return ConfidenceLow, nil
	}
	return 0, fmt.Errorf("unknown confidence %q (want low, medium or high)", s)
}

// Source says where an object was read from.
type Source struct {
	File string `json:"file"`           // path as given, or "<stdin>"
	Line int    `json:"line,omitempty"` // 1-based line of the document's start
	Doc  int    `json:"doc,omitempty"`  // 0-based index of the document in the file
}

func (s Source) String() string {
	if s.Line > 0 {
		return s.File + ":" + strconv.Itoa(s.Line)
	}
	return s.File
}

// ObjectRef names an object in findings.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

func (r ObjectRef) String() string {
	// Concatenation, not fmt: findings name their objects thousands of times.
	if r.Namespace != "" {
		return r.Kind + " " + r.Namespace + "/" + r.Name
	}
	return r.Kind + " " + r.Name
}

// Object is one decoded manifest object.
//
// Typed holds the object decoded into its k8s.io/api type (for example
// *appsv1.Deployment) when the kind is known to the client-go scheme, or an
// *unstructured.Unstructured for kinds without Go types here (GKE
// BackendConfig, Istio DestinationRule, zerodrop's own CRDs).
type Object struct {
	Ref    ObjectRef
	Source Source
	Typed  runtime.Object
	// LineOf returns the 1-based line of a field path such as
	// "spec.template.spec.containers[0].lifecycle.preStop" inside the
	// object's document, or the closest existing ancestor's line; 0 when
	// unknown. Nil when the loader had no position information.
	LineOf func(fieldPath string) int
}

// Line returns the line of fieldPath, falling back to the document start.
func (o *Object) Line(fieldPath string) int {
	if o.LineOf != nil {
		if l := o.LineOf(fieldPath); l > 0 {
			return l
		}
	}
	return o.Source.Line
}

// Finding is one hazard found in one object.
type Finding struct {
	RuleID      string    `json:"ruleId"`
	Severity    Severity  `json:"-"`
	Object      ObjectRef `json:"object"`
	Source      Source    `json:"source"`      // file and the line of Field
	Field       string    `json:"field"`       // field path, e.g. spec.template.spec.terminationGracePeriodSeconds
	Message     string    `json:"message"`     // what is wrong, with the numbers used
	Consequence string    `json:"consequence"` // what users see, in plain words
	Fix         string    `json:"fix"`         // the concrete change, often YAML
	// Confidence is how much the finding rests on assumptions.
	Confidence Confidence `json:"confidence"`
	// Container names the container at Field's containers[N], "" when the
	// field is not in a container; renderers use it to merge fixes.
	Container string `json:"-"`
}

// InputError is a problem reading input: a file that cannot be read, a YAML
// or schema error. The check goes on with the other documents.
type InputError struct {
	Source Source `json:"source"`
	Err    string `json:"error"`
}

func (e InputError) Error() string { return e.Source.String() + ": " + e.Err }
