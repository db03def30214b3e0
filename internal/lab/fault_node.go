package lab

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// FaultNode powers off a node that runs serving pods of the rollout, as a
// machine losing its power: its pods' network is cut and their processes
// are SIGKILLed at once (no preStop, no SIGTERM, no status, no final
// delete). The node lifecycle controller finds its Lease stale after
// NodeMonitorGracePeriod (Ready=Unknown, pods Ready=False, the
// node.kubernetes.io/unreachable taints), the taint-eviction controller
// deletes its pods PodUnreachableToleration later and the Deployment
// replaces them; their objects stay Terminating, since no kubelet confirms.
// Once every pod of the node is deleted, the node boots again (a machine
// repaired or power-cycled: the on-premises case zerodrop's LBs are for)
// and its agent finishes those deletions without starting anything.
const FaultNode Fault = "node"

// nodePower powers the lab's nodes off and on (the lab in this process; a
// lab in another process offers none).
type nodePower interface {
	PowerOffNode(name string) error
	PowerOnNode(ctx context.Context, name string) error
}

// NodeFaultReport is what the node fault measured. Durations are from the
// power-off.
type NodeFaultReport struct {
	// Node is the node powered off; DeadPods its pods of the scenario at
	// that moment ("name ip").
	Node     string   `json:"node"`
	DeadPods []string `json:"deadPods"`
	// ServingByNode counts the pods serving the rollout (Ready, not being
	// deleted) per node at the power-off: what the node was chosen from.
	ServingByNode map[string]int `json:"servingByNode"`
	// Serving counts the servers in rotation (UP, not in drain or
	// maintenance) at the power-off, on the instance where the dead pods
	// had the largest share; ServingDead of them were the dead pods', and
	// OnLBDead counts the dead pods' servers that were UP at all (in
	// rotation or in drain: serving what they had).
	Serving     int `json:"serving"`
	ServingDead int `json:"servingDead"`
	OnLBDead    int `json:"onLBDead"`
	// Down: every HAProxy instance has marked every dead pod's server DOWN
	// (its checks: fall x interval, each bounded by the check timeout),
	// or removed it. Requests sent to them before that are lost.
	Down time.Duration `json:"down"`
	// NotReady: the Node's Ready condition is no longer True (the node
	// lifecycle controller, after NodeMonitorGracePeriod).
	NotReady time.Duration `json:"notReady"`
	// Evicted: the node carries the unreachable NoExecute taint and every
	// pod bound to it is being deleted (the taint-eviction controller,
	// PodUnreachableToleration after the taint, or the rollout itself).
	Evicted time.Duration `json:"evicted"`
	// Back: the node booted again and is Ready.
	Back time.Duration `json:"back"`
	// PodsGone: the evicted pods' objects are gone (the node's agent
	// finished their deletion).
	PodsGone time.Duration `json:"podsGone"`
	// ServersRemoved: no instance holds a server for a dead pod's address
	// (zerodrop-controller deregistered them; 0: not seen).
	ServersRemoved time.Duration `json:"serversRemoved"`
	// Bound is how many requests the fault may cost (NodeLossBound).
	Bound uint64 `json:"bound"`
}

// NodeFaultPromise is the node fault's promise; a rollout's failed
// requests are judged against the bound its report computed.
var NodeFaultPromise = FaultPromise{FaultNode, false, false,
	"bounded: what the dead pods were serving and what HAProxy sends them until its checks mark them DOWN (fall × interval) is lost, with or without zerodrop: at most what arrives in that window (`NodeLossBound`); then no gate stuck for the replacement pods, no drain held for ever, the dead pods' servers removed from HAProxy, the rollout finishes",
	"no preStop runs on a dead node and nothing drains what it cannot reach: HAProxy's own checks take the dead servers out; the eviction deletes the pods, the controller drains their servers (DOWN: drained once their sessions end), deregisters them and gates the replacements as any new pod", false}

// lossBound is the number of failed requests the rollout's fault allows,
// when the fault computed one (node).
func (rec *RolloutRecord) lossBound() (uint64, bool) {
	ev := rec.FaultEvent
	switch {
	case ev == nil || ev.Cluster == nil:
		return 0, false
	case ev.Cluster.Node != nil:
		return ev.Cluster.Node.Bound, true
	case rec.Fault == FaultServe:
		return ev.Cluster.ServeBound, true
	}
	return 0, false
}

// NodeLossBound is the node fault's promise in numbers: the requests a lost
// node costs with or without zerodrop, with a margin of 2. What HAProxy
// sends to the dead pods' servers in rotation before its checks mark them
// DOWN (a share dead/serving of every stream for the window down) and what
// the dead pods were serving at the power-off (the slow requests of their
// share, slowLatency each, and the fast ones, appLatency each).
func NodeLossBound(o RunOptions, appLatency time.Duration, servingDead, onLBDead, serving int, down time.Duration) uint64 {
	if serving <= 0 {
		return 0
	}
	fast := max(0, o.Rate) + max(0, o.PostRate)
	slow := max(0, o.SlowRate)
	inWindow := (fast + slow) * float64(servingDead) / float64(serving) * down.Seconds()
	inFlight := (slow*o.SlowLatency.Seconds() + fast*appLatency.Seconds()) * float64(max(onLBDead, servingDead)) / float64(serving)
	return uint64(math.Ceil(2 * (inWindow + inFlight)))
}

// nodeFaultSlack is how long the node fault waits for each step beyond the
// lab's own timings before it gives up (and still powers the node on).
const nodeFaultSlack = time.Minute

// injectNodeFault strikes the node fault and undoes it (the node boots
// again once its pods are evicted); rep.Node holds what it measured.
func injectNodeFault(ctx context.Context, t Target, d *Deployed, o RunOptions, rep *ClusterFaultReport) error {
	if t.nodes == nil {
		return errors.New("fault node: needs the lab in this process (`zerodrop lab run` without --dir of a running lab)")
	}
	if d.LB != LBHAProxy {
		return fmt.Errorf("fault node: measured through HAProxy, not %s", d.LB)
	}
	cs := t.Client
	pods, err := cs.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return fmt.Errorf("fault node: %w", err)
	}
	victim, err := nodeToLose(pods.Items)
	if err != nil {
		return err
	}
	nr := &NodeFaultReport{Node: victim, ServingByNode: servingByNode(pods.Items)}
	rep.Node = nr
	dead := map[string]bool{}
	for _, p := range pods.Items {
		if p.Spec.NodeName == victim {
			nr.DeadPods = append(nr.DeadPods, p.Name+" "+p.Status.PodIP)
			if p.Status.PodIP != "" {
				dead[p.Status.PodIP] = true
			}
		}
	}
	sort.Strings(nr.DeadPods)
	nr.Serving, nr.ServingDead, nr.OnLBDead = servingShare(ctx, t.HAProxy, dead)

	rctx := context.WithoutCancel(ctx) // the fault undoes itself, also when the rollout's time is up
	off := time.Now()
	watch := watchDeadServers(rctx, t.HAProxy, dead, off)
	defer watch.stop()
	if err := t.nodes.PowerOffNode(victim); err != nil {
		return fmt.Errorf("fault node: %w", err)
	}
	since := func() time.Duration { return time.Since(off) }

	wctx, cancel := context.WithTimeout(rctx, NodeMonitorGracePeriod+PodUnreachableToleration+nodeFaultSlack)
	var waitErr error
	var evicted map[types.UID]bool // the node's pods, all being deleted
	onNode := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", victim).String()}
	if err := pollUntil(wctx, 100*time.Millisecond, func() bool {
		n, err := cs.CoreV1().Nodes().Get(wctx, victim, metav1.GetOptions{})
		if err != nil {
			return false
		}
		if nr.NotReady == 0 && !nodeReady(n) {
			nr.NotReady = since()
		}
		if !slices.ContainsFunc(n.Spec.Taints, func(x corev1.Taint) bool {
			return x.Key == corev1.TaintNodeUnreachable && x.Effect == corev1.TaintEffectNoExecute
		}) {
			return false
		}
		on, err := cs.CoreV1().Pods(d.Namespace).List(wctx, onNode)
		if err != nil {
			return false
		}
		evicted = map[types.UID]bool{}
		for _, p := range on.Items {
			if p.DeletionTimestamp == nil {
				return false
			}
			evicted[p.UID] = true
		}
		nr.Evicted = since()
		return true
	}); err != nil {
		waitErr = fmt.Errorf("fault node: node %s not found lost and its pods not evicted within %s (NotReady after %s): %w",
			victim, NodeMonitorGracePeriod+PodUnreachableToleration+nodeFaultSlack, nr.NotReady.Round(time.Millisecond), err)
	}
	cancel()

	bctx, cancel := context.WithTimeout(rctx, nodeFaultSlack)
	defer cancel()
	if err := t.nodes.PowerOnNode(bctx, victim); err != nil {
		return errors.Join(waitErr, fmt.Errorf("fault node: boot %s again: %w", victim, err))
	}
	nr.Back = since()
	rep.Undone = nr.Back
	// The node takes new pods again once Ready: wait for the evicted ones.
	if err := pollUntil(bctx, 100*time.Millisecond, func() bool {
		on, err := cs.CoreV1().Pods(d.Namespace).List(bctx, onNode)
		if err != nil {
			return false
		}
		for _, p := range on.Items {
			if evicted[p.UID] {
				return false
			}
		}
		return true
	}); err != nil {
		return errors.Join(waitErr, fmt.Errorf("fault node: the evicted pods of %s not gone %s after it came back: %w", victim, nodeFaultSlack, err))
	}
	nr.PodsGone = since()
	// The servers of the dead pods leave HAProxy once drained: they are
	// DOWN and their sessions end with their clients' timeouts, within
	// drain.timeout of the deletion at most.
	_ = watch.waitRemoved(bctx)
	nr.Down, nr.ServersRemoved = watch.result()
	nr.Bound = NodeLossBound(o, baseApp.Latency, nr.ServingDead, nr.OnLBDead, nr.Serving, nr.Down)
	return waitErr
}

// nodeToLose picks the node the node fault powers off: one that runs pods
// serving the rollout (Ready, not being deleted) and leaves at least two
// serving pods on other nodes, as a Service spread over its nodes should
// (with one left, a single failed check of that pod under the shifted load
// is an outage of the Service the fault did not cause); failing that, one
// that leaves one. Of those, the one with the most serving pods, then by
// name.
func nodeToLose(pods []corev1.Pod) (string, error) {
	serving := servingByNode(pods)
	total := 0
	for _, c := range serving {
		total += c
	}
	for _, left := range []int{2, 1} {
		best, most := "", 0
		for n, c := range serving {
			if total-c >= left && (c > most || c == most && n < best) {
				best, most = n, c
			}
		}
		if best != "" {
			return best, nil
		}
	}
	return "", fmt.Errorf("fault node: no node to lose that leaves a serving pod elsewhere (serving pods by node: %v)", serving)
}

// servingByNode counts the pods serving the rollout (Ready, not being
// deleted) per node.
func servingByNode(pods []corev1.Pod) map[string]int {
	serving := map[string]int{}
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Spec.NodeName != "" && podReady(&p) {
			serving[p.Spec.NodeName]++
		}
	}
	return serving
}

// inRotation reports whether HAProxy balances new requests to s.
func inRotation(s hapi.ServerState) bool {
	return s.Up() && !s.Admin.Maint() && !s.Admin.Drain() && s.UserWeight > 0
}

// servingShare reads every instance once: the servers in rotation, those
// of them whose address is in dead, and the dead addresses' servers that
// are UP at all; from the instance where the dead share in rotation is
// largest.
func servingShare(ctx context.Context, instances []HAProxyState, dead map[string]bool) (serving, servingDead, onLBDead int) {
	best := -1.0
	for _, h := range instances {
		states, err := readServers(ctx, h)
		if err != nil {
			continue
		}
		var s, sd, od int
		for _, st := range states {
			if st.Up() && dead[st.Addr] && !st.Admin.Maint() {
				od++
			}
			if inRotation(st) {
				s++
				if dead[st.Addr] {
					sd++
				}
			}
		}
		if s == 0 {
			continue
		}
		if share := float64(sd) / float64(s); share > best {
			best, serving, servingDead, onLBDead = share, s, sd, od
		}
	}
	return serving, servingDead, onLBDead
}

func readServers(ctx context.Context, h HAProxyState) ([]hapi.ServerState, error) {
	c, err := hapi.NewClient(h.Socket)
	if err != nil {
		return nil, err
	}
	c.Timeout = 2 * time.Second
	return c.ShowServersState(ctx, h.Backend)
}

// deadServerWatch follows, every 100 ms, the servers the HAProxy instances
// hold for the dead pods' addresses: when every one is DOWN (or gone)
// everywhere, and when none is left.
type deadServerWatch struct {
	mu            sync.Mutex
	down, removed time.Duration
	removedCh     chan struct{}
	cancel        context.CancelFunc
	done          chan struct{}
}

func watchDeadServers(ctx context.Context, instances []HAProxyState, dead map[string]bool, from time.Time) *deadServerWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &deadServerWatch{removedCh: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			allDown, none, read := true, true, 0
			for _, h := range instances {
				states, err := readServers(ctx, h)
				if err != nil {
					continue
				}
				read++
				for _, s := range states {
					if !dead[s.Addr] || hapi.IsSlot(s.Name) && hapi.SlotFree(s) {
						continue
					}
					none = false
					if s.Up() && !s.Admin.Maint() {
						allDown = false
					}
				}
			}
			at := time.Since(from)
			w.mu.Lock()
			if read == len(instances) {
				if allDown && w.down == 0 {
					w.down = at
				}
				if none && w.removed == 0 {
					w.removed = at
					close(w.removedCh)
				}
			}
			w.mu.Unlock()
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return
			}
		}
	}()
	return w
}

// waitRemoved waits until no instance holds a dead pod's server, or ctx
// ends.
func (w *deadServerWatch) waitRemoved(ctx context.Context) error {
	select {
	case <-w.removedCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *deadServerWatch) result() (down, removed time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.down, w.removed
}

func (w *deadServerWatch) stop() {
	w.cancel()
	<-w.done
}
