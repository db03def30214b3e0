package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"zerodrop.dev/zerodrop/internal/lab/node"
)

// The lab's node lifecycle timings, Kubernetes' defaults scaled down so that
// a node that stops answering (the node fault) is found and its pods are
// evicted in seconds rather than minutes. Flags checked against the
// Kubernetes release the lab builds (k8sbin.KubernetesVersion).
const (
	// NodeLeaseDuration is the node agents' Lease duration; they renew it
	// every quarter of it, every second (the kubelet: 40 s, every 10 s).
	NodeLeaseDuration = 4 * time.Second
	// NodeMonitorGracePeriod is kube-controller-manager's
	// --node-monitor-grace-period (default 50 s in v1.37): a node whose
	// Lease has not been renewed for this long turns Ready=Unknown, its
	// pods Ready=False, and it is tainted node.kubernetes.io/unreachable.
	// It must be longer than any outage of the API that the other faults
	// cause, with room for the agents to renew after it: the apiserver
	// fault leaves the lab without an API for 16 to 21 s, and a live node
	// whose renewal the controller has not seen within the grace period is
	// taken for lost (and its pods evicted 2 s later). 30 renewals.
	NodeMonitorGracePeriod = 30 * time.Second
	// NodeMonitorPeriod is --node-monitor-period (default 5 s): how often
	// the node lifecycle controller looks.
	NodeMonitorPeriod = time.Second
	// PodUnreachableToleration is kube-apiserver's
	// --default-unreachable-toleration-seconds and
	// --default-not-ready-toleration-seconds (default 300 s): the
	// DefaultTolerationSeconds admission plugin gives every pod these
	// tolerations of the NoExecute taints, so the taint-eviction
	// controller deletes a lost node's pods this long after the taint.
	PodUnreachableToleration = 2 * time.Second
)

// nodeLifecycleArgs are kube-controller-manager's flags for the timings
// above.
var nodeLifecycleArgs = []string{
	"--node-monitor-grace-period=" + NodeMonitorGracePeriod.String(),
	"--node-monitor-period=" + NodeMonitorPeriod.String(),
}

// podTolerationArgs are kube-apiserver's flags for the timings above.
var podTolerationArgs = []string{
	"--default-unreachable-toleration-seconds=" + strconv.Itoa(int(PodUnreachableToleration/time.Second)),
	"--default-not-ready-toleration-seconds=" + strconv.Itoa(int(PodUnreachableToleration/time.Second)),
}

// nodeAgent is one run of a node agent: each has its own context (in
// Agent.Run), so one node can lose its power while the others go on.
type nodeAgent struct {
	agent *node.Agent
	done  chan struct{} // closed when Run has returned
}

// startAgent starts a node agent for node name; it runs until PowerOffNode
// or Close.
func (l *Lab) startAgent(name string, tune ...func(*node.Agent)) *nodeAgent {
	a := &node.Agent{
		Client: l.Client, NodeName: name, Network: l.Network, Images: l.images,
		Log: l.log, StateDir: filepath.Join(l.Dir, "nodes", name),
		// Restarted containers come back quickly in the lab.
		RestartBackoff: 2 * time.Second,
		LeaseDuration:  NodeLeaseDuration,
	}
	for _, f := range tune {
		f(a)
	}
	na := &nodeAgent{agent: a, done: make(chan struct{})}
	l.nodesMu.Lock()
	if l.nodes == nil {
		l.nodes = map[string]*nodeAgent{}
	}
	l.nodes[name] = na
	l.nodesMu.Unlock()
	l.agents.Add(1)
	go func() {
		defer l.agents.Done()
		defer close(na.done)
		if err := a.Run(l.runCtx); err != nil {
			l.log.Error("node agent stopped", "node", name, "err", err)
		}
	}()
	return na
}

// PowerOffNode stops node name as a machine losing its power: its pods'
// network cut, their processes SIGKILLed, no preStop, no status, no final
// delete (node.Agent.PowerOff). It returns once the agent and its pods are
// gone; the Node and the pods stay in the API.
func (l *Lab) PowerOffNode(name string) error {
	l.nodesMu.Lock()
	na := l.nodes[name]
	l.nodesMu.Unlock()
	if na == nil {
		return fmt.Errorf("lab: no node %q", name)
	}
	na.agent.PowerOff()
	select {
	case <-na.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("lab: node %s: agent still running 30 s after the power-off", name)
	}
}

// PowerOnNode starts node name's agent again after PowerOffNode, as a
// machine that boots again: it takes its Node over, reports it Ready, and
// finishes the deletion of the pods deleted meanwhile (without starting
// them). It returns once the Node is Ready.
func (l *Lab) PowerOnNode(ctx context.Context, name string) error {
	l.nodesMu.Lock()
	na := l.nodes[name]
	l.nodesMu.Unlock()
	if na == nil {
		return fmt.Errorf("lab: no node %q", name)
	}
	select {
	case <-na.done:
	default:
		return fmt.Errorf("lab: node %s is running", name)
	}
	if l.runCtx.Err() != nil {
		return fmt.Errorf("lab: node %s: the lab is stopping", name)
	}
	l.startAgent(name)
	return waitNodesReady(ctx, l.Client, []string{name})
}
