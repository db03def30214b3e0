package verify

import (
	"strings"
	"time"
)

// EventKind says where an Event comes from.
type EventKind string

// Event kinds.
const (
	// EventPod is a change of a watched pod.
	EventPod EventKind = "pod"
	// EventEndpoint is a change of a pod's endpoint in an EndpointSlice.
	EventEndpoint EventKind = "endpoint"
	// EventKube is a Kubernetes Event about a watched object.
	EventKube EventKind = "kube_event"
	// EventRollout is a step of the rollout verify drives or watches.
	EventRollout EventKind = "rollout"
	// EventLoad marks the load's start and end.
	EventLoad EventKind = "load"
)

// Event types (Event.Type) for pods, endpoints and the rollout.
const (
	PodPresent      = "present"   // the pod existed when watching began
	PodCreated      = "created"   // the pod object was created
	PodCondition    = "condition" // a pod condition changed: Detail "Ready=True"
	PodGate         = "gate"      // a readiness-gate condition changed: Detail "<type>=True"
	PodDeleting     = "deleting"  // deletionTimestamp set: preStop, then SIGTERM, begin now
	PodContainer    = "container" // a container started or terminated
	PodGone         = "gone"      // the pod object was removed
	EndpointAdded   = "added"     // the pod's endpoint appeared in an EndpointSlice
	EndpointMoved   = "changed"   // its ready/serving/terminating conditions changed
	EndpointGone    = "removed"   // it left every EndpointSlice
	RolloutStart    = "started"   // verify patched the Deployment
	RolloutStep     = "progress"  // the Deployment's replica counts changed
	RolloutDone     = "complete"  // the rollout is complete (as kubectl rollout status says)
	RolloutClean    = "old_gone"  // no pod of the rollout is terminating any more
	RolloutFailed   = "failed"    // the rollout failed (progress deadline exceeded)
	RolloutFault    = "fault"     // a fault injected into the rollout strikes (the lab's campaigns)
	RolloutFaultEnd = "fault_end" // that fault is undone
	LoadStart       = "start"     // the first request was due
	LoadEnd         = "end"       // no further request was sent
)

// PodTerminating is the word the Detail of a PodPresent or PodCreated event
// holds when the pod was already being deleted then.
const PodTerminating = "terminating"

// Event is one thing that happened outside the load: a pod condition, an
// endpoint change, a Kubernetes Event, a rollout step. Time is when verify
// observed it (watch latency included), which is what lines up with the
// requests; API timestamps have one-second resolution.
type Event struct {
	// Time is when the event was observed.
	Time time.Time `json:"time"`
	// AtMS is Time in milliseconds since the report's start.
	AtMS float64 `json:"at_ms"`
	// Kind says where the event comes from.
	Kind EventKind `json:"kind"`
	// Object names what changed: "pod/web-6d9f-abcde", "deployment/web".
	Object string `json:"object"`
	// Type is what happened (PodDeleting, EndpointMoved, a Kubernetes
	// Event's reason, ...).
	Type string `json:"type"`
	// Detail is the new state: "Ready=False", "ready=false serving=true
	// terminating=true", "grace 30s".
	Detail string `json:"detail,omitempty"`
	// Message is free text: a condition's reason and message, an Event's
	// message.
	Message string `json:"message,omitempty"`
}

// String renders the event on one line.
func (e Event) String() string {
	s := e.Object + " " + e.Type
	if e.Object != string(e.Kind) && !strings.HasPrefix(e.Object, string(e.Kind)+"/") {
		s = string(e.Kind) + " " + s
	}
	if e.Detail != "" {
		s += " " + e.Detail
	}
	if e.Message != "" {
		s += " (" + e.Message + ")"
	}
	return s
}
