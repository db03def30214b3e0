// Package timing is zerodrop's timing model: pure functions that turn a
// workload's pod timing and the load balancer (LB) in front of it into the
// startup and termination timelines of a rolling update, and into the
// windows, in seconds, during which requests can fail.
//
// It is the one place where the formulas of docs/checks.md live: the check
// rules, the controller's defaults and the documentation all call it. Times
// are float64 seconds; on a startup timeline T+0 is the new pod's creation
// (containers starting), on a termination timeline T+0 is the old pod's
// deletion.
//
// Vocabulary (as in domain.md): P = preStop duration, S = the app's graceful
// shutdown time, G = terminationGracePeriodSeconds, D = time until a data
// path stops sending new requests after the deletion, I x H = LB health-check
// interval x healthy threshold, R = LB registration latency, T_lb = LB
// request/idle timeout, T_req = the longest request the app serves.
package timing

import "math"

// Kind is the kind of data path in front of the pods.
type Kind string

// The kinds of data path the model knows.
const (
	// InCluster is kube-proxy, an in-cluster ingress controller (ingress-nginx,
	// Traefik, HAProxy Ingress) or a mesh sidecar: fed from EndpointSlices,
	// no health checks of its own, removal within D of the deletion.
	InCluster Kind = "in-cluster"
	// ALB is an AWS Application Load Balancer managed by the AWS Load
	// Balancer Controller (Ingress annotations alb.ingress.kubernetes.io/*).
	ALB Kind = "aws-alb"
	// NLB is an AWS Network Load Balancer (Service annotations
	// service.beta.kubernetes.io/aws-load-balancer-*).
	NLB Kind = "aws-nlb"
	// GCE is a Google Cloud HTTP(S) load balancer made by GKE Ingress,
	// targeting NEGs (pod IPs) or instance groups (node ports).
	GCE Kind = "gce"
	// HAProxy is an HAProxy in front of the cluster (--haproxy-config).
	HAProxy Kind = "haproxy"
	// CloudLB is any other Service of type LoadBalancer: a cloud LB that
	// targets node ports.
	CloudLB Kind = "cloud-lb"
)

// KubeletPreStopExtension is the one-off extension the kubelet grants when
// the preStop hook is still running as the grace period ends: SIGTERM is sent
// at G and SIGKILL at G + 2 s.
const KubeletPreStopExtension = 2.0

// DefaultGrace is terminationGracePeriodSeconds when unset.
const DefaultGrace = 30.0

// DefaultDeregistrationDelay is the AWS target groups' default
// deregistration_delay.timeout_seconds.
const DefaultDeregistrationDelay = 300.0

// LB is one data path in front of a workload's pods, with the settings the
// model needs. Zero values mean "does not apply" unless a field says
// otherwise; Defaults fills a kind's documented defaults.
type LB struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"` // who it is, for humans: "AWS ALB (target-type ip) of Ingress prod/api"
	// Label is the short name used as the actor on timelines ("ALB",
	// "ingress-nginx"); empty: derived from Kind.
	Label string `json:"label,omitempty"`
	// TargetsPods is true when the LB sends to pod IPs (ALB/NLB target-type
	// ip, GKE NEG, HAProxy servers that are pods); false when it sends to
	// node ports and kube-proxy forwards (then it sees nodes, not pods).
	TargetsPods bool `json:"targetsPods"`
	// HealthChecks is true when the LB marks targets healthy itself, by
	// HealthyThreshold consecutive checks Interval apart.
	HealthChecks       bool    `json:"healthChecks"`
	Interval           float64 `json:"interval,omitempty"`           // I, seconds between checks
	HealthyThreshold   int     `json:"healthyThreshold,omitempty"`   // H, passes to become healthy
	UnhealthyThreshold int     `json:"unhealthyThreshold,omitempty"` // failures to become unhealthy
	// FastInterval is HAProxy's fastinter: the interval while a server is
	// changing state (the checks that detect a dead server). 0 = Interval.
	FastInterval float64 `json:"fastInterval,omitempty"`
	// Registration is R: from the moment the target is eligible (Ready, or
	// ContainersReady with a readiness gate) until the LB starts checking it.
	Registration float64 `json:"registration"`
	// RegisterAtCreation is true when the LB checks the pod's address from
	// its creation rather than from Ready (a static pool of pod addresses;
	// seed 000 draws the ALB this way). Then the startup gap is
	// I x H + R - minReadySeconds - readiness time (domain.md's formula).
	RegisterAtCreation bool `json:"registerAtCreation,omitempty"`
	// Deregistration is the LB's part of D: seconds from the pod's deletion
	// until the LB sends it no new requests.
	Deregistration float64 `json:"deregistration"`
	// DetectOnly is true when nothing deregisters the target: the LB only
	// notices the pod is gone when UnhealthyThreshold checks fail after the
	// app stopped listening (a static HAProxy server list).
	DetectOnly bool `json:"detectOnly,omitempty"`
	// DeregistrationDelay is the AWS target group's
	// deregistration_delay.timeout_seconds: how long the LB lets in-flight
	// requests run after deregistration before closing the connections.
	DeregistrationDelay float64 `json:"deregistrationDelay,omitempty"`
	// DeregistrationDelayDefault is true when DeregistrationDelay is the
	// 300 s default because the manifests do not set it.
	DeregistrationDelayDefault bool `json:"deregistrationDelayDefault,omitempty"`
	// DrainingTimeout is GKE's BackendConfig
	// connectionDraining.drainingTimeoutSec (0 = no connection draining).
	DrainingTimeout float64 `json:"drainingTimeout,omitempty"`
	// Timeout is T_lb: the LB's request (or idle) timeout; 0 = unknown.
	Timeout float64 `json:"timeout,omitempty"`
	// GateCondition is the readiness-gate condition type whose controller
	// sets it from this LB's verdict ("" when there is none).
	GateCondition string `json:"gateCondition,omitempty"`
}

// HealthyAfter returns I x H: seconds from registration until the LB marks a
// passing target healthy (0 for data paths without health checks).
func (lb LB) HealthyAfter() float64 {
	if !lb.HealthChecks {
		return 0
	}
	return lb.Interval * float64(max(lb.HealthyThreshold, 1))
}

// DownAfter returns the seconds from a target's death until the LB marks it
// down by its own checks: unhealthy threshold x fast interval.
func (lb LB) DownAfter() float64 {
	if !lb.HealthChecks {
		return 0
	}
	iv := lb.FastInterval
	if iv <= 0 {
		iv = lb.Interval
	}
	return iv * float64(max(lb.UnhealthyThreshold, 1))
}

// Assumptions are what manifests cannot say. Each has a documented default
// (DefaultAssumptions) and can be set globally by flag and per object by
// annotation.
type Assumptions struct {
	// Shutdown is S: the app's longest graceful shutdown after SIGTERM
	// (finishing in-flight requests, closing pools).
	Shutdown float64 `json:"shutdown"`
	// Propagation is D for in-cluster data paths: from the deletion until
	// kube-proxy and ingress controllers stop sending (domain.md: 1-3 s).
	Propagation float64 `json:"propagation"`
	// LongestRequest is T_req: the longest request the app serves.
	LongestRequest float64 `json:"longestRequest"`
	// Buffer is the safety margin wanted between P + S and G.
	Buffer float64 `json:"buffer"`
	// Startup is the time from container start until the app answers
	// requests (used when there is no readinessProbe, and to time the first
	// successful probe).
	Startup float64 `json:"startup"`
	// ConnectionDrain is the time long-lived connections (WebSocket, gRPC
	// streams) need to be closed and re-established elsewhere after SIGTERM.
	ConnectionDrain float64 `json:"connectionDrain"`
	// DrainLatency is GKE's NEG detach latency (domain.md: 5-15 s).
	DrainLatency float64 `json:"drainLatency"`
	// ALBDrainStart is D for an AWS ALB with pod targets: from the
	// deletion until the ALB stops sending new requests to the pod (the AWS
	// Load Balancer Controller's deregistration call plus its propagation
	// to the ELB data plane; domain.md: 2-3 s to start). It is the ALB's
	// own assumption, not kube-proxy's D: the LBC's maintainers say the
	// propagation takes time without a figure (aws-load-balancer-controller
	// #1719, #2366), and users report more under load (~10 s, #1719).
	ALBDrainStart float64 `json:"albDrainStart"`
}

// DefaultAssumptions returns the documented defaults: S 10 s (seed 000's
// "most web apps"), D 3 s in-cluster (domain.md 1-3 s), T_req 10 s, buffer
// 10 s (seeds 10-20 s), startup 5 s, connection drain 30 s, GKE drain latency
// 10 s (5-15 s), ALB drain start 3 s (2-3 s).
func DefaultAssumptions() Assumptions {
	return Assumptions{
		Shutdown:        10,
		Propagation:     3,
		LongestRequest:  10,
		Buffer:          10,
		Startup:         5,
		ConnectionDrain: 30,
		DrainLatency:    10,
		ALBDrainStart:   3,
	}
}

// Defaults returns the model of a kind of LB with its documented defaults.
// targetsPods selects ip/NEG (true) or instance/node-port (false) targets.
//
//   - ALB (AWS Load Balancer Controller): checks every 15 s, 2 to become
//     healthy, 2 to become unhealthy; registration 3 s after eligibility;
//     deregistration starts Assumptions.ALBDrainStart (3 s) after the deletion; deregistration delay
//     300 s; idle timeout 60 s; gate target-health.elbv2.k8s.aws.
//   - NLB: checks every 10 s, 3 and 3; registration 3 s; NLBs keep sending
//     new connections to a deregistering target for about 2 min (domain.md),
//     so D = 120 s; deregistration delay 300 s; TCP idle timeout 350 s.
//   - GCE: checks every 15 s, 1 to become healthy, 2 to become unhealthy
//     (ingress-gce's NEG health-check defaults); registration 5 s; D = the NEG drain latency; backend
//     timeout 30 s; gate cloud.google.com/load-balancer-neg-ready.
//   - HAProxy: inter 2 s, rise 2, fall 3 (HAProxy's defaults); a static
//     server list: nothing deregisters a pod, checks detect it.
//   - InCluster and CloudLB: D = the in-cluster propagation delay.
//
// Targets on node ports (instance mode) behave like the in-cluster path for
// pod changes: the LB checks nodes, kube-proxy picks pods, and no readiness
// gate of the LB can work.
func Defaults(kind Kind, targetsPods bool, a Assumptions) LB {
	lb := LB{Kind: kind, TargetsPods: targetsPods}
	switch kind {
	case ALB:
		lb.HealthChecks, lb.Interval, lb.HealthyThreshold, lb.UnhealthyThreshold = true, 15, 2, 2
		lb.Registration, lb.Deregistration = 3, a.ALBDrainStart
		lb.DeregistrationDelay, lb.DeregistrationDelayDefault = DefaultDeregistrationDelay, true
		lb.Timeout = 60
		if targetsPods {
			lb.GateCondition = "target-health.elbv2.k8s.aws"
		}
	case NLB:
		lb.HealthChecks, lb.Interval, lb.HealthyThreshold, lb.UnhealthyThreshold = true, 10, 3, 3
		lb.Registration, lb.Deregistration = 3, 120
		lb.DeregistrationDelay, lb.DeregistrationDelayDefault = DefaultDeregistrationDelay, true
		lb.Timeout = 350
		if targetsPods {
			lb.GateCondition = "target-health.elbv2.k8s.aws"
		}
	case GCE:
		lb.HealthChecks, lb.Interval, lb.HealthyThreshold, lb.UnhealthyThreshold = true, 15, 1, 2
		lb.Registration, lb.Deregistration = 5, a.DrainLatency
		lb.Timeout = 30
		if targetsPods {
			lb.GateCondition = "cloud.google.com/load-balancer-neg-ready"
		}
	case HAProxy:
		lb.HealthChecks, lb.Interval, lb.HealthyThreshold, lb.UnhealthyThreshold = true, 2, 2, 3
		lb.Registration = 1
		lb.DetectOnly = targetsPods
	default:
		lb.Registration, lb.Deregistration = a.Propagation, a.Propagation
	}
	if !targetsPods && kind != InCluster {
		// Node targets: the LB's own checks see nodes, which stay healthy
		// through a rollout; pod changes travel through kube-proxy.
		lb.HealthChecks = false
		lb.Registration, lb.Deregistration = a.Propagation, a.Propagation
		lb.DetectOnly = false
	}
	return lb
}

// Pod is the timing of one pod of a workload, read from its template.
type Pod struct {
	// HasReadinessProbe is false when no container has a readinessProbe:
	// the pod is Ready as soon as its containers start.
	HasReadinessProbe bool `json:"hasReadinessProbe"`
	// ContainersReady is the seconds from creation until every readiness
	// probe has passed (see ReadinessTime).
	ContainersReady float64 `json:"containersReady"`
	// MinReadySeconds is the Deployment's minReadySeconds.
	MinReadySeconds float64 `json:"minReadySeconds"`
	// PreStop is P; 0 without a preStop hook.
	PreStop float64 `json:"preStop"`
	// Grace is G (terminationGracePeriodSeconds, default 30).
	Grace float64 `json:"grace"`
	// Gated is true when a readiness gate waits for the LB's verdict, so
	// Ready = ContainersReady and the LB says healthy.
	Gated bool `json:"gated"`
}

// ReadinessTime returns the seconds from container start until a readiness
// probe first succeeds successThreshold times, for an app that answers after
// startup seconds: the kubelet probes at initialDelay, then every period.
// Defaults as in the kubelet: period 10 s, threshold 1.
func ReadinessTime(startup, initialDelay, period float64, successThreshold int) float64 {
	if period <= 0 {
		period = 10
	}
	if successThreshold < 1 {
		successThreshold = 1
	}
	t := initialDelay
	if startup > t {
		t += math.Ceil((startup-t)/period) * period
	}
	return t + float64(successThreshold-1)*period
}
