package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Fault is something that goes wrong in the middle of a rollout.
type Fault string

const (
	// FaultNone: nothing goes wrong.
	FaultNone Fault = ""
	// FaultReload reloads every instance of the scenario's load balancer:
	// HAProxy by SIGUSR2 to the master after saving the servers' state, as
	// `systemctl reload` does with the server-state-file practice; NGINX by
	// SIGHUP to the master, as `nginx -s reload` does.
	FaultReload Fault = "reload"
	// FaultReloadAll reloads every instance at the same moment (the
	// signals are sent together, not one instance after the other): for a
	// moment no instance may answer the Runtime API, and a controller that
	// took "nothing read" for "not registered" would release every drain.
	FaultReloadAll Fault = "reloadall"
	// FaultKillController kills the scenario's controller with SIGKILL and
	// starts it again after RunOptions.RestartDelay.
	FaultKillController Fault = "kill"
)

// Faults lists the faults `--fault` accepts (the LB faults in fault_lb.go,
// the cluster's in fault_cluster.go).
var Faults = append(append([]Fault{FaultReload, FaultReloadAll, FaultKillController}, LBFaults...), clusterFaults...)

// ParseFault reads a --fault value.
func ParseFault(s string) (Fault, error) {
	if s == "" || s == "none" {
		return FaultNone, nil
	}
	for _, f := range Faults {
		if string(f) == s {
			return f, nil
		}
	}
	known := []string{"none"}
	for _, f := range Faults {
		known = append(known, string(f))
	}
	return "", fmt.Errorf("unknown fault %q (known: %s)", s, strings.Join(known, ", "))
}

// check reports whether the scenario can suffer the fault.
func (f Fault) check(in Integration) error {
	if f == FaultKillController && (in.KillController == nil || in.RestartController == nil) {
		return errors.New("fault kill: the scenario runs no controller")
	}
	return f.checkCluster(in)
}

// FaultEvent is one injected fault.
type FaultEvent struct {
	Rollout int   `json:"rollout"`
	Kind    Fault `json:"kind"`
	// At is when it struck, from the rollout's start; Took is how long
	// the part was down (kill) or the reload took.
	At   time.Duration `json:"at"`
	Took time.Duration `json:"took"`
	Err  string        `json:"error,omitempty"`
	// Cluster is what a cluster-side fault (fault_cluster.go) measured.
	Cluster *ClusterFaultReport `json:"cluster,omitempty"`
}

// injectFault waits until the rollout deletes its first old pod (or not, for
// faults that strike at the rollout's start), then strikes.
func injectFault(ctx context.Context, t Target, d *Deployed, o RunOptions, rollout int, start time.Time) FaultEvent {
	ev := FaultEvent{Rollout: rollout, Kind: o.Fault}
	err := pollUntil(ctx, 20*time.Millisecond, func() bool {
		if o.Fault.atRolloutStart() {
			return true
		}
		pods, err := t.Client.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				return true
			}
		}
		return false
	})
	if err != nil {
		ev.Err = fmt.Sprintf("no pod deleted: %v", err)
		return ev
	}
	struck := time.Now()
	ev.At = struck.Sub(start)
	switch o.Fault {
	case FaultKillController:
		if err := d.Integration.KillController(); err != nil {
			ev.Err = err.Error()
			return ev
		}
		sleepCtx(ctx, o.RestartDelay)
		if err := d.Integration.RestartController(ctx); err != nil {
			ev.Err = err.Error()
		}
	case FaultReload:
		ev.Err = t.reload(ctx, d.LB, false)
	case FaultReloadAll:
		ev.Err = t.reload(ctx, d.LB, true)
	case FaultLBDown, FaultLBFlap, FaultSlowLB, FaultPartition, FaultFull:
		ev.Err = o.lbRig.inject(ctx, t, o.Fault, o.FaultHold, rollout, start)
	default:
		if err := injectClusterFault(ctx, t, d, o, &ev, start); err != nil {
			ev.Err = err.Error()
		}
	}
	ev.Took = time.Since(struck)
	return ev
}
