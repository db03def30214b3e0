package timing

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Event is one change of one actor's state on a timeline.
type Event struct {
	At    float64 `json:"at"`             // seconds from T+0
	Actor string  `json:"actor"`          // "Pod", "App", "Deployment", "ALB", "kube-proxy", ...
	State string  `json:"state"`          // the actor's state from now on
	Note  string  `json:"note,omitempty"` // why, with the numbers
}

// Cause names why a window of failures opens. The values are stable: JSON
// output and rules refer to them.
type Cause string

// The causes of failure windows.
const (
	// CauseNoReadinessProbe: traffic reaches the container before the app
	// listens, because the pod is Ready as soon as it starts.
	CauseNoReadinessProbe Cause = "no-readiness-probe"
	// CauseStartupGap: the old target is gone while the LB has not yet
	// marked the new one healthy.
	CauseStartupGap Cause = "startup-gap"
	// CauseEarlyExit: the app stops listening (SIGTERM at P) while a data
	// path still sends new requests (until D).
	CauseEarlyExit Cause = "early-exit"
	// CauseSIGKILL: the app is still shutting down when the grace period
	// ends.
	CauseSIGKILL Cause = "sigkill"
	// CauseInFlightCut: requests admitted before the data path stopped
	// sending run longer than the app is given to finish them.
	CauseInFlightCut Cause = "in-flight-cut"
	// CauseDeregistrationDelay: the LB closes its connections to the target
	// (deregistration delay over) while requests on them still run.
	CauseDeregistrationDelay Cause = "deregistration-delay"
	// CauseGKEDraining: GCLB still sends on draining connections
	// (drainingTimeoutSec + drain latency) after the app stopped listening.
	CauseGKEDraining Cause = "gke-draining"
)

// Window is a span of a timeline during which requests can fail.
type Window struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	Cause Cause   `json:"cause"`
	Actor string  `json:"actor"` // the data path that sends the failing requests
	// Exposure says which requests fail: "new" = every request that
	// arrives in the window; "in-flight" = only requests still running at
	// the window's start (few when requests are short).
	Exposure string `json:"exposure"`
	Effect   string `json:"effect"` // what clients see: "502", "502/504", ...
	Why      string `json:"why"`    // the arithmetic, in words
}

// Seconds returns the window's length.
func (w Window) Seconds() float64 { return w.End - w.Start }

// Timeline is the ordered events of one pod's startup or termination and
// the predicted failure windows.
type Timeline struct {
	Events  []Event  `json:"events"`
	Windows []Window `json:"windows,omitempty"`

	bare bool // the events' notes are left empty (StartupBare, TerminationBare)
}

// Window returns the first window with the cause, if any.
func (t Timeline) Window(c Cause) (Window, bool) {
	for _, w := range t.Windows {
		if w.Cause == c {
			return w, true
		}
	}
	return Window{}, false
}

// FailureSeconds returns the summed length of all windows.
func (t Timeline) FailureSeconds() float64 {
	var s float64
	for _, w := range t.Windows {
		s += w.Seconds()
	}
	return s
}

// timelineEvents is room for the events of a typical timeline, so that
// adding them does not grow the slice step by step (check builds two
// timelines for each of thousands of workloads).
const timelineEvents = 12

func (t *Timeline) add(at float64, actor, state, note string) {
	if t.bare {
		note = ""
	}
	t.Events = append(t.Events, Event{At: at, Actor: actor, State: state, Note: note})
}

// addf is add with a note built only when the timeline keeps notes.
func (t *Timeline) addf(at float64, actor, state string, note func() string) {
	n := ""
	if !t.bare {
		n = note()
	}
	t.Events = append(t.Events, Event{At: at, Actor: actor, State: state, Note: n})
}

// open adds the window [start, end) unless it is empty; why is called only
// then (most windows of a sound workload are empty, and their words cost
// more than their arithmetic).
func (t *Timeline) open(start, end float64, c Cause, actor, effect string, why func() string) {
	if end-start <= 1e-9 {
		return
	}
	exp := "new"
	switch c {
	case CauseSIGKILL, CauseInFlightCut, CauseDeregistrationDelay:
		exp = "in-flight"
	}
	t.Windows = append(t.Windows, Window{Start: start, End: end, Cause: c, Actor: actor, Exposure: exp, Effect: effect, Why: why()})
}

// sort orders events by time; events at the same time keep the order in
// which the model added them (cause before effect).
func (t *Timeline) sort() {
	// slices' stable sort, unlike sort.SliceStable, allocates nothing.
	slices.SortStableFunc(t.Events, func(a, b Event) int { return cmpFloat(a.At, b.At) })
	slices.SortStableFunc(t.Windows, func(a, b Window) int { return cmpFloat(a.Start, b.Start) })
}

// cmpFloat orders as the < of the former sort.SliceStable: NaN is neither
// less nor greater than anything (cmp.Compare would order it first).
func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case b < a:
		return 1
	}
	return 0
}

// Actor returns the short name of the data path used on timelines.
func (lb LB) Actor() string {
	if lb.Label != "" {
		return lb.Label
	}
	switch lb.Kind {
	case ALB:
		return "ALB"
	case NLB:
		return "NLB"
	case GCE:
		return "GCLB"
	case HAProxy:
		return "HAProxy"
	case CloudLB:
		return "cloud LB"
	}
	return "kube-proxy"
}

// Sec formats seconds the way timelines print them: "12s", "7.5s". It
// writes what fmt's %.0f (whole seconds) or %.1f does, with strconv: check
// formats the numbers of every workload's timelines, and fmt's reflection
// was a tenth of its analysis time on 10,000 objects.
func Sec(v float64) string {
	prec := 1
	if v == math.Trunc(v) {
		prec = 0
	}
	var buf [24]byte
	return string(append(strconv.AppendFloat(buf[:0], v, 'f', prec, 64), 's'))
}

// HealthyAt returns when the LB marks a target healthy: it checks every I
// seconds from registration at reg; checks before the app answers (up) fail;
// H consecutive passes make it healthy.
func (lb LB) HealthyAt(reg, up float64) float64 {
	if !lb.HealthChecks {
		return reg
	}
	k := 1.0
	if up > reg && lb.Interval > 0 {
		k = math.Max(1, math.Ceil((up-reg)/lb.Interval))
	}
	return reg + (k+float64(max(lb.HealthyThreshold, 1))-1)*lb.Interval
}

// GateWorks reports whether a readiness gate can tie the pod's Ready to this
// LB's verdict: the LB must target pods and have a gate controller.
func (lb LB) GateWorks() bool { return lb.TargetsPods && lb.GateCondition != "" }

// Startup returns the startup timeline of one new pod replacing an old one
// in a rolling update with maxSurge >= 1 and maxUnavailable 0, behind lb.
//
// Without a working gate the LB registers the pod R seconds after it is
// Ready (or R seconds after creation when RegisterAtCreation) and marks it
// healthy I x H later, while the Deployment deletes an old pod
// minReadySeconds after Ready: the startup gap is
//
//	max(0, registration + I x H - (Ready + minReadySeconds))
//
// which is domain.md's I x H + R - minReadySeconds - readiness time when the
// LB checks the pod from creation, and I x H + R - minReadySeconds when it
// registers Ready pods (the AWS Load Balancer Controller, NEG, HAProxy
// syncers). With a gate (p.Gated and lb.GateWorks()) the pod is registered
// at ContainersReady and is Ready only when the LB says healthy: no gap,
// slower rollouts.
func Startup(p Pod, lb LB, a Assumptions) Timeline { return startup(p, lb, a, false) }

// StartupBare is Startup without the events' notes (Event.Note is empty):
// the same times, states and windows, for callers that print no events.
func StartupBare(p Pod, lb LB, a Assumptions) Timeline { return startup(p, lb, a, true) }

func startup(p Pod, lb LB, a Assumptions, bare bool) Timeline {
	t := Timeline{Events: make([]Event, 0, timelineEvents), bare: bare}
	actor := lb.Actor()
	up := a.Startup // the app answers requests from here on
	cr := p.ContainersReady
	if !p.HasReadinessProbe {
		cr = 0
	}
	t.add(0, "Pod", "created", "containers starting")
	gated := p.Gated && lb.GateWorks() && lb.HealthChecks
	var ready, reg float64
	if p.HasReadinessProbe {
		t.addf(up, "App", "listening", func() string { return "app start " + Sec(up) + " (assumption)" })
		if gated {
			t.add(cr, "Pod", "ContainersReady", "readinessProbe passed; readiness gate still False")
		} else {
			t.add(cr, "Pod", "Ready", "readinessProbe passed")
		}
	} else {
		t.add(0, "Pod", "Ready", "no readinessProbe: Ready as soon as containers start")
		t.addf(up, "App", "listening", func() string { return "app start " + Sec(up) + " (assumption)" })
	}
	if gated {
		reg = cr + lb.Registration
		if lb.RegisterAtCreation {
			reg = lb.Registration
		}
		t.addf(reg, actor, "initial", func() string { return "target registered at ContainersReady + R " + Sec(lb.Registration) })
		healthy := lb.HealthyAt(reg, up)
		t.addf(healthy, actor, "healthy", func() string { return strconv.Itoa(max(lb.HealthyThreshold, 1)) + " checks x " + Sec(lb.Interval) })
		ready = math.Max(cr, healthy)
		t.add(ready, "Pod", "Ready", "readiness gate True: the LB says healthy")
	} else {
		ready = cr
	}
	avail := ready + p.MinReadySeconds
	if p.MinReadySeconds > 0 {
		t.addf(ready, "Deployment", "waiting", func() string { return "minReadySeconds " + Sec(p.MinReadySeconds) })
	}
	t.add(avail, "Deployment", "old pod deleted", "new pod available")
	if gated {
		t.sort()
		return t
	}
	reg = ready + lb.Registration
	if lb.RegisterAtCreation {
		reg = lb.Registration
	}
	if !lb.HealthChecks {
		t.addf(reg, actor, "sending to new pod", func() string { return "endpoint added " + Sec(lb.Registration) + " after Ready" })
		if !p.HasReadinessProbe {
			t.open(reg, up, CauseNoReadinessProbe, actor, "502 (connection refused)",
				func() string {
					return fmt.Sprintf("%s sends to the pod from T+%s but the app listens only at T+%s", actor, Sec(reg), Sec(up))
				})
		}
		t.sort()
		return t
	}
	t.addf(reg, actor, "initial", func() string {
		if lb.RegisterAtCreation {
			return "target checked from the pod's creation (+" + Sec(lb.Registration) + ")"
		}
		return "target registered " + Sec(lb.Registration) + " after Ready"
	})
	healthy := lb.HealthyAt(reg, up)
	t.addf(healthy, actor, "healthy", func() string { return strconv.Itoa(max(lb.HealthyThreshold, 1)) + " checks x " + Sec(lb.Interval) })
	t.open(avail, healthy, CauseStartupGap, actor, "502/503",
		func() string {
			return fmt.Sprintf("old pod deleted at T+%s (Ready %s + minReadySeconds %s) but %s marks the new target healthy only at T+%s (registration T+%s + %d x %s)",
				Sec(avail), Sec(ready), Sec(p.MinReadySeconds), actor, Sec(healthy), Sec(reg), max(lb.HealthyThreshold, 1), Sec(lb.Interval))
		})
	t.sort()
	return t
}

// StopSending returns D for this LB: the seconds from the pod's deletion
// until it sends no new requests to the pod. For DetectOnly LBs that is only
// after the app stopped listening at sigterm and UnhealthyThreshold checks
// failed.
func (lb LB) StopSending(sigterm float64) float64 {
	if lb.DetectOnly {
		return sigterm + lb.DownAfter()
	}
	return lb.Deregistration
}

// Termination returns the termination timeline of one old pod behind lb.
//
// The kubelet runs preStop (P), then sends SIGTERM, and SIGKILL when the
// grace period G (counted from the deletion, preStop included) is over; if
// preStop outlives G, SIGTERM comes at G and SIGKILL 2 s later. At the same
// time the data path stops sending new requests after D. The app stops
// accepting at SIGTERM and needs up to S to finish. Requests last up to
// T_q = min(T_req, T_lb).
//
// Windows: early exit [SIGTERM, D); SIGKILL [kill, SIGTERM + S); in-flight
// cut [min(SIGTERM + S, kill), min(SIGTERM, D) + T_q); the LB's
// deregistration delay closing connections before their requests end; GKE
// connection draining past SIGTERM.
func Termination(p Pod, lb LB, a Assumptions) Timeline { return termination(p, lb, a, false) }

// TerminationBare is Termination without the events' notes (Event.Note is
// empty): the same times, states and windows, for callers that print no
// events.
func TerminationBare(p Pod, lb LB, a Assumptions) Timeline { return termination(p, lb, a, true) }

func termination(p Pod, lb LB, a Assumptions, bare bool) Timeline {
	t := Timeline{Events: make([]Event, 0, timelineEvents), bare: bare}
	actor := lb.Actor()
	P, G, shutdown := p.PreStop, p.Grace, a.Shutdown
	sigterm, kill := P, G
	if P > G {
		sigterm, kill = G, G+KubeletPreStopExtension
	}
	exit := sigterm + shutdown
	killed := exit > kill
	D := lb.StopSending(sigterm)

	if P > 0 {
		t.addf(0, "Pod", "Terminating", func() string { return "preStop running (" + Sec(P) + ")" })
	} else {
		t.add(0, "Pod", "Terminating", "no preStop: SIGTERM at once")
	}
	t.add(0, "Endpoints", "terminating", "EndpointSlice marks the endpoint not ready")
	switch {
	case lb.DetectOnly:
		t.addf(D, actor, "DOWN", func() string {
			return fmt.Sprintf("nothing deregisters the pod: %d failed checks x %s after the app stopped listening at T+%s",
				max(lb.UnhealthyThreshold, 1), Sec(lb.DownAfter()/float64(max(lb.UnhealthyThreshold, 1))), Sec(sigterm))
		})
	case lb.Kind == ALB || lb.Kind == NLB:
		t.add(D, actor, "draining", "target deregistered: no new requests")
	case lb.Kind == GCE:
		t.addf(D, actor, "draining", func() string { return "endpoint detached from the NEG (drain latency " + Sec(D) + ")" })
	default:
		t.addf(D, actor, "stopped sending", func() string { return "endpoint removal propagated (" + Sec(D) + ")" })
	}
	if P > G {
		t.addf(G, "Pod", "grace over in preStop", func() string {
			return fmt.Sprintf("preStop %s > grace %s: SIGTERM now, SIGKILL in %s", Sec(P), Sec(G), Sec(KubeletPreStopExtension))
		})
	} else if P > 0 {
		t.add(P, "Pod", "preStop done", "SIGTERM sent")
	}
	t.addf(sigterm, "App", "shutting down", func() string {
		return "SIGTERM: stops accepting, finishes in-flight requests (up to " + Sec(shutdown) + ", assumption)"
	})
	if killed {
		t.addf(kill, "App", "SIGKILLed", func() string { return "grace period " + Sec(G) + " over while shutdown needs until T+" + Sec(exit) })
	} else {
		t.add(exit, "App", "exited", "graceful shutdown done")
	}
	if lb.DeregistrationDelay > 0 {
		t.addf(lb.Deregistration+lb.DeregistrationDelay, actor, "deregistered", func() string {
			return "deregistration delay " + Sec(lb.DeregistrationDelay) + " over: remaining connections closed"
		})
	}
	if lb.Kind == GCE && lb.DrainingTimeout > 0 {
		t.addf(D+lb.DrainingTimeout, actor, "drained", func() string { return "drainingTimeoutSec " + Sec(lb.DrainingTimeout) + " over" })
	}

	// Windows.
	t.open(sigterm, D, CauseEarlyExit, actor, "502 (connection refused)",
		func() string {
			return fmt.Sprintf("the app stops listening at SIGTERM T+%s but %s sends new requests until T+%s", Sec(sigterm), actor, Sec(D))
		})
	if killed {
		t.open(kill, exit, CauseSIGKILL, "App", "502/504 (requests cut)",
			func() string {
				return fmt.Sprintf("SIGKILL at T+%s while preStop %s + shutdown %s needs until T+%s", Sec(kill), Sec(math.Min(P, G)), Sec(shutdown), Sec(exit))
			})
	}
	tq := RequestBound(a, lb)
	admitted := math.Min(sigterm, D)
	finish := math.Min(exit, kill)
	if need := admitted + tq; need > finish && (!killed || need > exit) {
		t.open(finish, need, CauseInFlightCut, "App", "502/504 (requests cut)",
			func() string {
				return fmt.Sprintf("a request admitted at T+%s may run %s (until T+%s) but the app is gone at T+%s", Sec(admitted), Sec(tq), Sec(need), Sec(finish))
			})
	}
	if lb.DeregistrationDelay > 0 {
		closeAt := lb.Deregistration + lb.DeregistrationDelay
		last := math.Min(math.Min(lb.Deregistration, sigterm)+tq, finish)
		t.open(closeAt, last, CauseDeregistrationDelay, actor, "502/504 (connections closed)",
			func() string {
				return fmt.Sprintf("%s closes connections at T+%s (deregistration %s + delay %s) while requests may run until T+%s",
					actor, Sec(closeAt), Sec(lb.Deregistration), Sec(lb.DeregistrationDelay), Sec(last))
			})
	}
	if lb.Kind == GCE && lb.DrainingTimeout > 0 {
		t.open(math.Max(sigterm, D), D+lb.DrainingTimeout, CauseGKEDraining, actor, "502",
			func() string {
				return fmt.Sprintf("GCLB may use draining connections until T+%s (drain latency %s + drainingTimeoutSec %s) but the app stops listening at T+%s",
					Sec(D+lb.DrainingTimeout), Sec(D), Sec(lb.DrainingTimeout), Sec(sigterm))
			})
	}
	t.sort()
	return t
}

// RequestBound returns T_q = min(T_req, T_lb): the longest a request can
// run, since the LB gives up after its timeout.
func RequestBound(a Assumptions, lb LB) float64 {
	if lb.Timeout > 0 && lb.Timeout < a.LongestRequest {
		return lb.Timeout
	}
	return a.LongestRequest
}

// GraceNeeded returns P + S + buffer: the terminationGracePeriodSeconds that
// lets the app finish its shutdown with the wanted margin.
func GraceNeeded(preStop float64, a Assumptions) float64 {
	return preStop + a.Shutdown + a.Buffer
}

// MinReadyNeeded returns the minReadySeconds that covers the LB's health
// checks without a gate: I x H + R (domain.md; conservative, it does not
// count on the old target's deregistration latency).
func MinReadyNeeded(lb LB) float64 {
	if !lb.HealthChecks {
		return 0
	}
	return lb.HealthyAfter() + lb.Registration
}

// GKEPreStopNeeded returns drainingTimeoutSec + drain latency: the preStop
// that keeps the pod listening while GCLB drains it (seed 002).
func GKEPreStopNeeded(lb LB) float64 { return lb.DrainingTimeout + lb.Deregistration }

// LongLivedGraceNeeded returns P + S + connection drain: the grace period
// that lets long-lived connections (WebSocket, gRPC streams) be closed and
// re-established elsewhere before SIGKILL.
func LongLivedGraceNeeded(preStop float64, a Assumptions) float64 {
	return preStop + a.Shutdown + a.ConnectionDrain
}
