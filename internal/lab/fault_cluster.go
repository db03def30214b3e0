package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
	"zerodrop.dev/zerodrop/internal/lab/cluster"
	"zerodrop.dev/zerodrop/internal/lab/proc"
)

// Cluster-side faults: the parts of Kubernetes and of zerodrop-controller
// that a rollout leans on fail in its middle, and undo themselves. Their
// promises and measured results are in docs/faults.md.
const (
	// FaultServe kills the controller's serve process (pod webhook and
	// drain endpoint) with SIGKILL while it holds a drain hook, and starts
	// it again after RunOptions.RestartDelay.
	FaultServe Fault = "serve"
	// FaultAPIServer stops kube-apiserver (SIGTERM, as a rolling upgrade
	// does) and starts it again after RestartDelay on the same port,
	// certificates and etcd.
	FaultAPIServer Fault = "apiserver"
	// FaultEtcd kills etcd (SIGKILL) and starts it again after
	// RestartDelay on the same data directory.
	FaultEtcd Fault = "etcd"
	// FaultWebhook makes the pod webhook unreachable (its configuration
	// points at a closed port, as when its Service has no endpoints) until
	// the rollout has created all its new pods: failurePolicy Ignore admits
	// them without readiness gate and drain hook.
	FaultWebhook Fault = "webhook"
)

// forbiddenSettle is how long after an API server restart the controller's
// refused requests are put down to the API server (its RBAC informers
// syncing) rather than to config/rbac.
const forbiddenSettle = 5 * time.Second

// clusterFaults are the faults of this file (and fault_node.go's and
// fault_clock.go's), in Faults' order.
var clusterFaults = []Fault{FaultServe, FaultAPIServer, FaultEtcd, FaultWebhook, FaultNode, FaultClock}

// ClusterFaultPromises are the cluster-side faults' promises the lab
// judges per rollout (a campaign's table) and
// TestClusterFaultsKeepTheirPromises asserts; docs/faults.md's rows state
// them word for word.
var ClusterFaultPromises = []FaultPromise{
	{Fault: FaultServe,
		Promise: "the held hook ends with an error (the node agent, like the kubelet, records `FailedPreStopHook` and sends SIGTERM at once). **Zero** when the app waits itself (the graceful package: `zerodrop-graceful`): it asks the drain endpoint on SIGTERM and retries until the restarted serve process answers. **Bounded** when the hook is the only wait and the app exits at once (`zerodrop`): the requests that pod is serving at that moment fail (the controller had already put it in drain, so no new ones): at most one pod's in-flight requests (the bound, `ServeLossBound`: twice that, 95 at 1,000 req/s). Pods created while serve is down are admitted without gate (as `webhook`)",
		Why:     "the drain hook is one request held open to the serve process: killed, it ends with an error and the kubelet sends SIGTERM at once, so only an app that waits itself (the graceful package retries the drain endpoint) covers the cut; the pod is already in drain, so what it drops is what it was serving"},
	{Fault: FaultAPIServer, ZeroFailed: true,
		Promise: "**zero** failed requests; no gate stuck; the reconciler loses its lease after its renew deadline (3 s in the lab), exits (controller-runtime), and is restarted by its Deployment (the lab: after 1 s, crash-looping until the API answers); gates and drain verdicts wait for it. For a few seconds the restarted API server refuses requests (`forbidden`: its RBAC informers are not synced yet); the controller retries",
		Why:     "every gate and drain verdict needs the reconciler's reading of the API and of every instance, and a missing reading never opens a gate nor releases a drain: while the API is away new pods wait (their gate stays False), held preStop hooks stay held, the old pods keep serving through HAProxy, which needs no API; the reconciler resumes from the API's state"},
	{Fault: FaultEtcd, ZeroFailed: true,
		Promise: "**zero**, as `apiserver`",
		Why:     "every gate and drain verdict needs the reconciler's reading of the API and of every instance, and a missing reading never opens a gate nor releases a drain: while the API is away new pods wait (their gate stays False), held preStop hooks stay held, the old pods keep serving through HAProxy, which needs no API; the reconciler resumes from the API's state"},
	{Fault: FaultWebhook, ZeroFailed: true,
		Promise: "the pods are admitted **without readiness gate and drain hook**; the controller still registers them (the rollout ends with every pod UP in every instance) and reports each with a `GateMissing` Warning event and `zerodrop_pods_ungated`; their Ready does not wait for the LB (the startup race of the seeds: at most rise × interval per pod without a healthy target, which 3 replicas and maxSurge 1 hid here); when they are deleted later nothing holds them: an app that exits at once drops what it serves then, so recreate them (`kubectl rollout restart`) once the webhook is back",
		Why:     "`failurePolicy: Ignore` admits the pods without gates, and the reconciler registers every pod of a bound Service, gated or not, reporting the ungated ones (`GateMissing`): HAProxy still sends only to pods its own checks mark UP"},
	NodeFaultPromise,
	ClockFaultPromise,
}

// ServeLossBound is the serve fault's promise in numbers: nothing when the
// app waits itself (it asks the drain endpoint again until the restarted
// serve process answers); else what the pod whose hook was cut is serving
// when its app exits at once, one replica's share of the requests in
// flight (the slow stream's, SlowLatency each, and the others', the app's
// latency each), with a margin of 2. The pod is in drain already: no new
// requests reach it.
func ServeLossBound(o RunOptions, app App) uint64 {
	if app.Drain || o.Replicas <= 0 {
		return 0
	}
	fast := max(0, o.Rate) + max(0, o.PostRate)
	slow := max(0, o.SlowRate)
	inFlight := (slow*o.SlowLatency.Seconds() + fast*app.Latency.Seconds()) / float64(o.Replicas)
	return uint64(math.Ceil(2 * inFlight))
}

// ClusterFaultReport is what a cluster-side fault left behind, measured
// once the rollout it struck is complete.
type ClusterFaultReport struct {
	// Undone is how long after striking the fault was undone (the part
	// serves again, the webhook is reachable again); FaultEvent.Took also
	// counts the wait for the rollout before measuring.
	Undone time.Duration `json:"undone"`
	// HookHeld: a drain hook was held at the moment the serve process was
	// killed (a connection to the drain endpoint was open).
	HookHeld bool `json:"hookHeld,omitempty"`
	// ServeBound is how many requests the serve fault may cost
	// (ServeLossBound): 0 when the app waits itself.
	ServeBound uint64 `json:"serveBound,omitempty"`
	// FailedPreStopHooks counts FailedPreStopHook events in the scenario's
	// namespace: hooks that ended with an error (connection cut or
	// refused), after which the node sent SIGTERM at once.
	FailedPreStopHooks int `json:"failedPreStopHooks"`
	// UngatedPods are the rollout's new pods that carry no readiness gate;
	// GateMissingEvents counts the controller's GateMissing warnings about
	// them (its report that they were not gated).
	UngatedPods       []string `json:"ungatedPods,omitempty"`
	GateMissingEvents int      `json:"gateMissingEvents"`
	// ExcusedForbidden counts the controller's log lines of refused
	// requests while a restarted API server's authorizer was filling its
	// caches (up to forbiddenSettle after the restart): expected, so the
	// run's RBAC check does not count them.
	ExcusedForbidden int `json:"excusedForbidden,omitempty"`
	// ControllerCrashes counts controller processes that exited by
	// themselves during the run (and were started again), by role.
	ControllerCrashes map[string]int `json:"controllerCrashes,omitempty"`
	// Node is what the node fault measured (fault_node.go).
	Node *NodeFaultReport `json:"node,omitempty"`
	// ClockStep is how far the clock fault stepped the wall clock (and
	// back); ClockError is how far the wall clock was off the monotonic
	// one's progress once stepped back (the steps' own cost).
	ClockStep  time.Duration `json:"clockStep,omitempty"`
	ClockError time.Duration `json:"clockError,omitempty"`
	// StepAt and StepBackAt are when the clock was stepped forward and
	// back, from the rollout's start (like FaultEvent.At).
	StepAt     time.Duration `json:"stepAt,omitempty"`
	StepBackAt time.Duration `json:"stepBackAt,omitempty"`
	// DrainTimeouts counts the controller's DrainTimeout Warning events
	// from the strike to the rollout's end: drain gates released by the
	// timeout, not because the load balancer had drained the pod.
	// GateTimeouts counts its gate events for a gate timeout
	// (GateTimeoutFailClosed, GateTimeoutFailOpen) in that time.
	DrainTimeouts int `json:"drainTimeouts"`
	GateTimeouts  int `json:"gateTimeouts"`
	// HooksReleasedByTimeout counts the serve processes' logged drain
	// verdicts that turned DrainTimeout from the strike to the rollout's
	// end (controller.DrainTimedOutLog): the verdicts the drain endpoint
	// answers held hooks from. The leader's Event may say Drained instead,
	// when the pod's sessions ended because the serve process let it go.
	HooksReleasedByTimeout int `json:"hooksReleasedByTimeout"`
}

// controlPlane restarts control-plane processes (the lab in this process;
// a lab in another process offers none).
type controlPlane interface {
	Restart(ctx context.Context, name string, kill bool, down time.Duration) error
}

// labControlPlane restarts a process of l's cluster and records its new pid
// in the state file (for `zerodrop lab down`).
type labControlPlane struct{ l *Lab }

func (p labControlPlane) Restart(ctx context.Context, name string, kill bool, down time.Duration) error {
	err := p.l.Cluster.Restart(ctx, name, kill, down)
	procs := p.l.Cluster.Processes()
	p.l.updateState(func(s *State) {
		for i := range s.Processes {
			for _, cp := range procs {
				if s.Processes[i].Name == cp.Name {
					s.Processes[i].PID = cp.PID
				}
			}
		}
	})
	return err
}

// checkCluster reports whether the scenario can suffer a cluster-side fault.
func (f Fault) checkCluster(in Integration) error {
	switch f {
	case FaultServe, FaultWebhook, FaultClock:
		if in.Controller == nil {
			return fmt.Errorf("fault %s: the scenario runs no zerodrop-controller", f)
		}
	}
	if f == FaultClock {
		return canStepClock()
	}
	return nil
}

// injectClusterFault strikes f (the rollout has just deleted its first old
// pod) and undoes it; the report is filled once the rollout is complete.
func injectClusterFault(ctx context.Context, t Target, d *Deployed, o RunOptions, ev *FaultEvent, start time.Time) error {
	rep := &ClusterFaultReport{}
	ev.Cluster = rep
	ctl := d.Integration.Controller
	// Timeout events are counted from here (their own times are wall
	// times, which the clock fault steps).
	events0 := countEvents(context.WithoutCancel(ctx), t, d.Namespace)
	var logsAtStrike map[string]int64
	if ctl != nil {
		logsAtStrike = ctl.logSizes()
	}
	struck := time.Now()
	var err error
	var excuseFrom map[string]int64 // controller log sizes before an API server restart
	switch o.Fault {
	case FaultServe:
		// Strike while the serve process holds a drain hook: the node
		// agent calls it as soon as it sees the deletion.
		hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_ = pollUntil(hctx, 10*time.Millisecond, func() bool {
			rep.HookHeld = establishedTo(ctl.drainAddr) > 0
			return rep.HookHeld
		})
		cancel()
		rep.ServeBound = ServeLossBound(o, d.App)
		if err = ctl.KillServe(); err != nil {
			break
		}
		sleepCtx(ctx, o.RestartDelay)
		err = ctl.StartServe(context.WithoutCancel(ctx))
	case FaultAPIServer, FaultEtcd:
		if t.controlPlane == nil {
			return fmt.Errorf("fault %s: needs the lab in this process (`zerodrop lab run` without --dir of a running lab)", o.Fault)
		}
		name, kill := cluster.KubeAPIServer, false
		if o.Fault == FaultEtcd {
			name, kill = cluster.Etcd, true
		}
		if ctl != nil {
			excuseFrom = ctl.logSizes()
		}
		err = t.controlPlane.Restart(ctx, name, kill, o.RestartDelay)
	case FaultWebhook:
		var restore func() error
		restore, err = ctl.breakWebhook(ctx)
		if err != nil {
			break
		}
		// Down until every new pod of the rollout exists.
		werr := pollUntil(ctx, 50*time.Millisecond, func() bool {
			dep, err := t.Client.AppsV1().Deployments(d.Namespace).Get(ctx, "web", metav1.GetOptions{})
			return err == nil && dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas >= d.Replicas
		})
		err = errors.Join(werr, restore())
	case FaultNode:
		err = injectNodeFault(ctx, t, d, o, rep)
	case FaultClock:
		err = injectClockFault(ctx, t, d, o.FaultHold, rep, start)
	default:
		return fmt.Errorf("fault %s: not a cluster-side fault", o.Fault)
	}
	if rep.Undone == 0 {
		rep.Undone = time.Since(struck)
	}
	if err != nil {
		return err
	}
	if excuseFrom != nil {
		sleepCtx(context.WithoutCancel(ctx), forbiddenSettle)
		rep.ExcusedForbidden = ctl.excuseForbidden(excuseFrom, ctl.logSizes())
	}
	// The rest is measured once the rollout is complete (or its time is
	// up: then the counts are what they are).
	_ = waitRolledOut(ctx, t.Client, d.Namespace, "web")
	rctx := context.WithoutCancel(ctx)
	gate := corev1.PodConditionType(zv1.GateConditionType(BindingName))
	if pods, err := t.Client.CoreV1().Pods(d.Namespace).List(rctx, metav1.ListOptions{LabelSelector: "app=web"}); err == nil {
		for _, p := range pods.Items {
			gated := false
			for _, g := range p.Spec.ReadinessGates {
				gated = gated || g.ConditionType == gate
			}
			if !gated && p.DeletionTimestamp == nil {
				rep.UngatedPods = append(rep.UngatedPods, p.Name)
			}
		}
	}
	// A campaign rolls one namespace many times: only the events since
	// the strike are this fault's.
	evs := countEvents(rctx, t, d.Namespace).since(events0)
	rep.FailedPreStopHooks, rep.GateMissingEvents = evs.failedPreStopHooks, evs.gateMissing
	rep.DrainTimeouts, rep.GateTimeouts = evs.drainTimeouts, evs.gateTimeouts
	if ctl != nil {
		rep.ControllerCrashes = ctl.Crashes()
		rep.HooksReleasedByTimeout = len(logLinesSince(ctl.dir, "serve-", logsAtStrike, controller.DrainTimedOutLog))
	}
	return nil
}

// logLinesSince returns the lines containing s that the logs in dir whose
// name starts with prefix gained since from (their sizes then; a log new
// since counts from its start).
func logLinesSince(dir, prefix string, from map[string]int64, s string) []string {
	var out []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".log" || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || int64(len(data)) < from[e.Name()] {
			continue
		}
		for _, line := range strings.Split(string(data[from[e.Name()]:]), "\n") {
			if strings.Contains(line, s) {
				out = append(out, e.Name()+": "+line)
			}
		}
	}
	return out
}

// eventCounts counts the events of a namespace the cluster faults judge;
// an event repeated counts its repetitions.
type eventCounts struct {
	// drainTimeouts: the controller's events for a drain released by its
	// timeout (reason DrainTimeout); gateTimeouts: its gate events naming
	// GateTimeoutFailClosed or GateTimeoutFailOpen.
	drainTimeouts, gateTimeouts int
	// failedPreStopHooks: the node agents' FailedPreStopHook events;
	// gateMissing: the controller's GateMissing events (a pod admitted
	// without its gate).
	failedPreStopHooks, gateMissing int
}

// since is what c counted beyond before (never below zero: events expire,
// after an hour by default, and a long campaign outlives them).
func (c eventCounts) since(before eventCounts) eventCounts {
	return eventCounts{
		drainTimeouts:      max(0, c.drainTimeouts-before.drainTimeouts),
		gateTimeouts:       max(0, c.gateTimeouts-before.gateTimeouts),
		failedPreStopHooks: max(0, c.failedPreStopHooks-before.failedPreStopHooks),
		gateMissing:        max(0, c.gateMissing-before.gateMissing),
	}
}

// countEvents counts ns's events (zero when they cannot be listed).
func countEvents(ctx context.Context, t Target, ns string) eventCounts {
	var c eventCounts
	evs, err := t.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return c
	}
	for _, e := range evs.Items {
		n := max(1, int(e.Count))
		if e.Series != nil {
			n = max(n, int(e.Series.Count))
		}
		switch {
		case e.Reason == "DrainTimeout":
			c.drainTimeouts += n
		case strings.HasPrefix(e.Reason, "Gate") && strings.Contains(e.Message, "GateTimeoutFail"):
			c.gateTimeouts += n
		}
		switch e.Reason {
		case "FailedPreStopHook":
			c.failedPreStopHooks += n
		case "GateMissing":
			c.gateMissing += n
		}
	}
	return c
}

// breakWebhook points the pod webhook of the controller's configuration at
// a closed port on loopback; restore puts the URL back (also when ctx has
// ended).
func (c *Controller) breakWebhook(ctx context.Context) (restore func() error, err error) {
	var mwc admissionv1.MutatingWebhookConfiguration
	if err := c.c.Get(ctx, types.NamespacedName{Name: c.webhookConfig}, &mwc); err != nil {
		return nil, fmt.Errorf("lab: webhook configuration %s: %w", c.webhookConfig, err)
	}
	orig := mwc.DeepCopy()
	closed, err := closedPort()
	if err != nil {
		return nil, err
	}
	for i := range mwc.Webhooks {
		u := ptr.Deref(mwc.Webhooks[i].ClientConfig.URL, "")
		if rest, ok := strings.CutPrefix(u, "https://"); ok {
			_, path, _ := strings.Cut(rest, "/")
			mwc.Webhooks[i].ClientConfig.URL = ptr.To("https://127.0.0.1:" + strconv.Itoa(closed) + "/" + path)
		}
	}
	if err := c.c.Update(ctx, &mwc); err != nil {
		return nil, fmt.Errorf("lab: break webhook %s: %w", c.webhookConfig, err)
	}
	c.log.Info("pod webhook unreachable", "port", closed)
	return func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		var cur admissionv1.MutatingWebhookConfiguration
		if err := c.c.Get(rctx, types.NamespacedName{Name: c.webhookConfig}, &cur); err != nil {
			return fmt.Errorf("lab: restore webhook %s: %w", c.webhookConfig, err)
		}
		cur.Webhooks = orig.Webhooks
		if err := c.c.Update(rctx, &cur); err != nil {
			return fmt.Errorf("lab: restore webhook %s: %w", c.webhookConfig, err)
		}
		c.log.Info("pod webhook reachable again")
		return nil
	}, nil
}

// closedPort returns a loopback port nothing listens on (picked free and
// released: connections to it are refused).
func closedPort() (int, error) {
	ports, err := proc.FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// establishedTo counts the established TCP connections whose server side
// is addr (host:port on loopback), from /proc/net/tcp of this network
// namespace.
func establishedTo(addr string) int {
	_, port, ok := strings.Cut(addr, ":")
	if !ok {
		return 0
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", p)
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local_address rem_address st ...; st 01 is ESTABLISHED.
		if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == "01" {
			n++
		}
	}
	return n
}
