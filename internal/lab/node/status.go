package node

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition reasons, the kubelet's own words (pkg/kubelet/status/generate.go).
const (
	reasonContainersNotReady       = "ContainersNotReady"
	reasonContainersNotInitialized = "ContainersNotInitialized"
	reasonReadinessGatesNotReady   = "ReadinessGatesNotReady"
	reasonPodCompleted             = "PodCompleted"
	reasonPodFailed                = "PodFailed"
)

// kubeletConditions are the pod condition types the kubelet owns. Every
// other condition (readiness gates, DisruptionTarget, ...) belongs to someone
// else and is never written by the agent.
var kubeletConditions = map[v1.PodConditionType]bool{
	v1.PodScheduled:              true,
	v1.PodInitialized:            true,
	v1.ContainersReady:           true,
	v1.PodReady:                  true,
	v1.PodReadyToStartContainers: true,
}

// containersReadyCondition computes ContainersReady as the kubelet does:
// True when every container has a status and is ready; a terminal phase makes
// it False with PodCompleted or PodFailed.
func containersReadyCondition(spec *v1.PodSpec, statuses []v1.ContainerStatus, phase v1.PodPhase) v1.PodCondition {
	switch phase {
	case v1.PodSucceeded:
		return v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionFalse, Reason: reasonPodCompleted}
	case v1.PodFailed:
		return v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionFalse, Reason: reasonPodFailed}
	}
	if msg := notReadyMessage(spec.Containers, statuses, "unready"); msg != "" {
		return v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionFalse,
			Reason: reasonContainersNotReady, Message: msg}
	}
	return v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionTrue}
}

// notReadyMessage names, in the kubelet's words, the containers of cs that
// have no status in statuses and those whose status is not ready (said as
// state: "unready" for containers, "incomplete" for init containers). It is
// empty when every container is ready.
func notReadyMessage(cs []v1.Container, statuses []v1.ContainerStatus, state string) string {
	var unknown, notReady []string
	for _, c := range cs {
		s, ok := findStatus(statuses, c.Name)
		switch {
		case !ok:
			unknown = append(unknown, c.Name)
		case !s.Ready:
			notReady = append(notReady, c.Name)
		}
	}
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unknown status: %v", unknown))
	}
	if len(notReady) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with %s status: %v", state, notReady))
	}
	return strings.Join(msgs, ", ")
}

// readyCondition computes the pod's Ready condition as the kubelet does:
// Ready = ContainersReady AND every readiness gate's condition is True in
// conditions. A gate whose condition is missing counts as not True.
func readyCondition(spec *v1.PodSpec, conditions []v1.PodCondition, statuses []v1.ContainerStatus, phase v1.PodPhase) v1.PodCondition {
	cr := containersReadyCondition(spec, statuses, phase)
	if cr.Status != v1.ConditionTrue {
		return v1.PodCondition{Type: v1.PodReady, Status: cr.Status, Reason: cr.Reason, Message: cr.Message}
	}
	var msgs []string
	for _, g := range spec.ReadinessGates {
		c := findCondition(conditions, g.ConditionType)
		switch {
		case c == nil:
			msgs = append(msgs, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType))
		case c.Status != v1.ConditionTrue:
			msgs = append(msgs, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", g.ConditionType, c.Status))
		}
	}
	if len(msgs) > 0 {
		return v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionFalse,
			Reason: reasonReadinessGatesNotReady, Message: strings.Join(msgs, ", ")}
	}
	return v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionTrue}
}

// initializedCondition is True once every init container has completed
// (exited 0), or once any regular container has started.
func initializedCondition(spec *v1.PodSpec, initStatuses, statuses []v1.ContainerStatus, phase v1.PodPhase) v1.PodCondition {
	if phase == v1.PodSucceeded {
		return v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionTrue, Reason: reasonPodCompleted}
	}
	for _, s := range statuses {
		if s.State.Running != nil || s.State.Terminated != nil || s.LastTerminationState.Terminated != nil {
			return v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionTrue}
		}
	}
	if msg := notReadyMessage(spec.InitContainers, initStatuses, "incomplete"); msg != "" {
		return v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionFalse,
			Reason: reasonContainersNotInitialized, Message: msg}
	}
	return v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionTrue}
}

// podPhase follows the kubelet's getPhase. initDone says every init
// container has completed. terminal says the pod is being deleted and its
// containers have stopped for good: then the phase is Succeeded when every
// container exited 0 and Failed otherwise, whatever the restart policy (what
// kubelets since 1.27 report before the final delete).
func podPhase(spec *v1.PodSpec, initDone bool, statuses []v1.ContainerStatus, terminal bool) v1.PodPhase {
	var unknown, running, waiting, stopped, succeeded int
	for _, c := range spec.Containers {
		s, ok := findStatus(statuses, c.Name)
		if !ok {
			unknown++
			continue
		}
		switch {
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			stopped++
			if s.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case s.State.Waiting != nil:
			if s.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	switch {
	case !initDone && running+stopped == 0, waiting > 0:
		return v1.PodPending
	case running > 0 && unknown == 0:
		return v1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if terminal {
			if stopped == succeeded {
				return v1.PodSucceeded
			}
			return v1.PodFailed
		}
		if spec.RestartPolicy == v1.RestartPolicyAlways || spec.RestartPolicy == "" {
			return v1.PodRunning // every container is on its way to a restart
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		if spec.RestartPolicy == v1.RestartPolicyNever {
			return v1.PodFailed
		}
		return v1.PodRunning // OnFailure, restarting the failed ones
	default:
		return v1.PodPending
	}
}

// mergeConditions returns existing with the kubelet-owned conditions
// replaced by owned (other conditions are kept as they are, in place), and
// each owned condition's LastTransitionTime kept when its status did not
// change, else set to now.
func mergeConditions(existing, owned []v1.PodCondition, now metav1.Time) []v1.PodCondition {
	out := make([]v1.PodCondition, 0, len(existing)+len(owned))
	byType := map[v1.PodConditionType]v1.PodCondition{}
	for _, c := range owned {
		old := findCondition(existing, c.Type)
		if old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
			c.LastProbeTime = old.LastProbeTime
		} else {
			c.LastTransitionTime = now
		}
		byType[c.Type] = c
	}
	for _, c := range existing {
		if n, ok := byType[c.Type]; ok {
			out = append(out, n)
			delete(byType, c.Type)
			continue
		}
		out = append(out, c)
	}
	for _, c := range owned {
		if n, ok := byType[c.Type]; ok {
			out = append(out, n)
		}
	}
	return out
}

func findCondition(conds []v1.PodCondition, t v1.PodConditionType) *v1.PodCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

func findStatus(statuses []v1.ContainerStatus, name string) (v1.ContainerStatus, bool) {
	for _, s := range statuses {
		if s.Name == name {
			return s, true
		}
	}
	return v1.ContainerStatus{}, false
}
