package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/lab/node"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// The scale harness (issue 12): thousands of pods without thousands of
// processes. Bulk pods are pod objects bound to a light node (node.Light):
// no process, no namespace of their own, an address from BulkNet's range,
// which one listener answers for all of them, so that HAProxy's real health
// checks pass or fail for real. Everything else is the lab's: the real API
// server and etcd, the real HAProxy instances (one backend per binding,
// with server-template slots sized for the run), and zerodrop-controller as
// the lab runs it (two processes, its own RBAC, the webhook injecting the
// gates and the drain hook).

// ScaleNamespace is the namespace of the scale harness's pods.
const ScaleNamespace = "zd-scale"

// LightNodeName is the scale harness's light node.
const LightNodeName = "lab-light-0"

// LightTaint keeps the scheduler's pods off the light node: only pods the
// harness binds to it directly run there.
var LightTaint = corev1.Taint{Key: "zerodrop.dev/light-node", Value: "true", Effect: corev1.TaintEffectNoSchedule}

// ScaleOptions configure StartScale. Zero fields take the defaults noted.
type ScaleOptions struct {
	// Lab configures the lab under the harness (run directory, bridge,
	// binaries, health check, logger, start timeout); StartScale sets its
	// Nodes (one real node: the drain endpoint listens on the nodes'
	// address), Pools and ControllerManagerArgs, and HAProxyInstances
	// defaults to 2.
	Lab Options
	// Pods is the most pods the run holds at once; HAProxy's slots are
	// sized for it. Required.
	Pods int
	// Bindings is how many TargetBindings (each its own Service and
	// HAProxy backend) the pods are spread over; default 1.
	Bindings int
	// Prefix is the light pods' address range; default DefaultBulkPrefix.
	Prefix netip.Prefix
	// LeaderLease is the reconcile process's leader lease (renewed within
	// two thirds of it); default ScaleLeaderLease. The lab's 4 s lease
	// (renewals bounded by 1.5 s) was lost 9 times in 7 minutes at 5,000
	// pods / 1,000 bindings on 2 shared cores: each new leader lost it
	// again while its caches filled, and registered nothing.
	LeaderLease time.Duration
	// ReconcileArgs are more flags of the reconcile process (e.g.
	// --workers=16), after the harness's own, so they override them.
	ReconcileArgs []string
}

// ScaleLeaderLease is the scale harness's default leader lease: the
// controller's own default (15 s, renewed within 10 s, every 2 s).
const ScaleLeaderLease = 15 * time.Second

// Scale is a running scale harness. Close removes everything.
type Scale struct {
	Lab        *Lab
	Net        *BulkNet
	Controller *Controller
	// Client is an admin client with a high request rate, for the
	// harness's own bulk writes.
	Client   kubernetes.Interface
	Bindings int

	log *slog.Logger
	mu  sync.Mutex
	seq int
}

// scaleContentType is the encoding of the harness's bulk client.
const scaleContentType = "application/vnd.kubernetes.protobuf"

// PoolName is the HAProxy backend of binding i.
func PoolName(i int) string { return "p-" + strconv.Itoa(i) }

// ScaleBindingName is TargetBinding i (and its Service).
func ScaleBindingName(i int) string { return "b-" + strconv.Itoa(i) }

// scaleBindingLabel on a pod names its binding (the Service selects it).
const scaleBindingLabel = "zerodrop.dev/scale-binding"

// slotsPerPool sizes each backend: its share of pods, a third more for
// the surge of a rollout (new pods register while old ones drain), and two.
func slotsPerPool(pods, bindings int) int {
	per := (pods + bindings - 1) / bindings
	return per + per/3 + 2
}

// StartScale starts a lab with one real node (the drain endpoint listens on
// the nodes' address) and the light node, the bulk network, the controller,
// and the bindings; it returns when the controller serves.
func StartScale(ctx context.Context, o ScaleOptions) (s *Scale, err error) {
	if o.Pods <= 0 {
		return nil, errors.New("lab: scale: Pods must be > 0")
	}
	if o.Bindings <= 0 {
		o.Bindings = 1
	}
	if o.Bindings > o.Pods {
		return nil, fmt.Errorf("lab: scale: %d bindings for %d pods: want at most one binding per pod", o.Bindings, o.Pods)
	}
	if o.Lab.HAProxyInstances <= 0 {
		o.Lab.HAProxyInstances = 2
	}
	if !o.Prefix.IsValid() {
		o.Prefix = DefaultBulkPrefix
	}
	if 1<<(32-o.Prefix.Bits()) < 2*o.Pods+4 {
		return nil, fmt.Errorf("lab: scale: range %s is too small for %d pods (and a rollout's as many again)", o.Prefix, o.Pods)
	}
	if o.Lab.Logger == nil {
		o.Lab.Logger = slog.Default()
	}
	if o.Lab.StartTimeout <= 0 {
		o.Lab.StartTimeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Lab.StartTimeout)
	defer cancel()
	slots := slotsPerPool(o.Pods, o.Bindings)
	o.Lab.Pools = nil
	for i := range o.Bindings {
		o.Lab.Pools = append(o.Lab.Pools, Pool{Name: PoolName(i), Slots: slots})
	}
	o.Lab.Nodes = 1
	// kube-controller-manager's default 20 requests/s would make the
	// EndpointSlice controller the bottleneck of thousands of pods.
	o.Lab.ControllerManagerArgs = []string{"--kube-api-qps=500", "--kube-api-burst=1000", "--concurrent-service-endpoint-syncs=20"}
	l, err := Up(ctx, o.Lab)
	if err != nil {
		return nil, err
	}
	s = &Scale{Lab: l, Bindings: o.Bindings, log: o.Lab.Logger}
	defer func() {
		if err != nil {
			_ = s.Close()
			s = nil
		}
	}()
	cfg := rest.CopyConfig(l.Cluster.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	// Protobuf, not client-go's default JSON: this client's two pod
	// watches (the light node's, RecordTimes') decode every pod event of
	// the run in the harness's process, and at 5,000 pods the API server
	// closed the light node's watch 112-156 times in 7 minutes as too slow
	// to read ("Forcing pods watcher close due to unresponsiveness"), each
	// close a new list of every pod.
	cfg.ContentType = scaleContentType
	cfg.AcceptContentTypes = scaleContentType + ",application/json"
	if s.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return s, fmt.Errorf("lab: scale client: %w", err)
	}
	if s.Net, err = StartBulkNet(l.Network, o.Prefix); err != nil {
		return s, err
	}
	light := &node.Light{Addresses: o.Prefix}
	l.startAgent(LightNodeName, func(a *node.Agent) {
		a.Client = s.Client
		a.Light = light
		a.Taints = []corev1.Taint{LightTaint}
		a.Capacity = corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(int64(4*o.Pods), resource.DecimalSI)}
	})
	l.updateState(func(st *State) { st.Nodes = append(st.Nodes, LightNodeName) })
	if err := waitNodesReady(ctx, l.Client, []string{LightNodeName}); err != nil {
		return s, err
	}
	t := l.Target()
	lb := labLoadBalancer(t)
	// No grants listed: every pool is its oldest binding's namespace's
	// (from: Same), and all the harness's bindings are in one namespace.
	// (A listed grant per pool would stop at the CRD's 256.)
	lb.Spec.Pools = nil
	if o.LeaderLease <= 0 {
		o.LeaderLease = ScaleLeaderLease
	}
	if s.Controller, err = startController(ctx, t, lb, o.Lab.Logger, false, o.LeaderLease, o.ReconcileArgs...); err != nil {
		return s, err
	}
	if err := s.createBindings(ctx); err != nil {
		return s, err
	}
	return s, nil
}

// createBindings creates the namespace (opted in to gates), and per
// binding a Service and a TargetBinding with the injected drain hook.
func (s *Scale) createBindings(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ScaleNamespace, Labels: map[string]string{zv1.GatesNamespaceLabel: "enabled"}}}
	if _, err := s.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("lab: scale namespace: %w", err)
	}
	kc := s.Controller.c
	return parallel(ctx, s.Bindings, 16, func(i int) error {
		name := ScaleBindingName(i)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ScaleNamespace},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{scaleBindingLabel: name},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
			},
		}
		if _, err := s.Client.CoreV1().Services(ScaleNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("lab: scale Service %s: %w", name, err)
		}
		tb := labBinding(ScaleNamespace)
		tb.Name = name
		tb.Spec.ServiceRef.Name = name
		tb.Spec.Pool = PoolName(i)
		if err := kc.Create(ctx, tb); err != nil {
			return fmt.Errorf("lab: scale TargetBinding %s: %w", name, err)
		}
		return nil
	})
}

// parallel runs f(0..n-1) with at most width at once and returns the
// first error.
func parallel(ctx context.Context, n, width int, f func(i int) error) error {
	sem := make(chan struct{}, width)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// CreatePods creates n light pods, spread round-robin over the bindings,
// bound to the light node, and returns their names. Their gates and drain
// hook come from the webhook, as for any pod of an opted-in namespace.
func (s *Scale) CreatePods(ctx context.Context, n int) ([]string, error) {
	s.mu.Lock()
	first := s.seq
	s.seq += n
	s.mu.Unlock()
	names := make([]string, n)
	err := parallel(ctx, n, 32, func(i int) error {
		k := first + i
		binding := ScaleBindingName(k % s.Bindings)
		pod := lightPod(fmt.Sprintf("%s-%d", binding, k), binding)
		names[i] = pod.Name
		// An API server busy with thousands of writes may refuse one
		// (429, timeouts): try again until the run's deadline, but not
		// a request it judged wrong.
		var err error
		_ = pollUntil(ctx, 200*time.Millisecond, func() bool {
			_, err = s.Client.CoreV1().Pods(ScaleNamespace).Create(ctx, pod, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				err = nil
			}
			return err == nil || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err)
		})
		return err
	})
	if err != nil {
		return names, fmt.Errorf("lab: scale: create pods: %w", err)
	}
	return names, nil
}

func lightPod(name, binding string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ScaleNamespace, Labels: map[string]string{scaleBindingLabel: binding}},
		Spec: corev1.PodSpec{
			NodeName:    LightNodeName,
			Tolerations: []corev1.Toleration{{Key: LightTaint.Key, Operator: corev1.TolerationOpExists, Effect: LightTaint.Effect}},
			// drain.timeout (30 s) and 10 s for an app's shutdown, as
			// the webhook asks (it warns at every creation otherwise).
			TerminationGracePeriodSeconds: ptr.To(int64(45)),
			Containers: []corev1.Container{{
				Name: "app", Image: AppImage + ":light",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: BulkPort}},
			}},
		},
	}
}

// DeletePods deletes the named pods and returns, by name, when each
// deletion was requested (the delete call began) and when it was recorded
// (the call returned: the API server had written the deletion, and only
// then can a watch tell anyone).
func (s *Scale) DeletePods(ctx context.Context, names []string) (requested, recorded map[string]time.Time, err error) {
	var mu sync.Mutex
	requested, recorded = map[string]time.Time{}, map[string]time.Time{}
	err = parallel(ctx, len(names), 32, func(i int) error {
		t := time.Now()
		err := s.Client.CoreV1().Pods(ScaleNamespace).Delete(ctx, names[i], metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("lab: scale: delete pod %s: %w", names[i], err)
		}
		done := time.Now()
		mu.Lock()
		requested[names[i]], recorded[names[i]] = t, done
		mu.Unlock()
		return nil
	})
	return requested, recorded, err
}

// Replacement is what Replace did: the pods deleted (when, at which
// address) and the pods created in their place.
type Replacement struct {
	Deleted map[string]time.Time // the delete call began
	// Recorded is when each delete call returned (the deletion written).
	Recorded map[string]time.Time
	Addrs    map[string]netip.Addr
	Old      []string
	Gone     []netip.Addr
	New      []string
}

// Replace replaces n Ready pods the listener answers, as a rollout does:
// they are deleted (their drain hooks held until every instance drained
// them) and n new pods are created.
func (s *Scale) Replace(ctx context.Context, n int) (r Replacement, err error) {
	live, err := s.Pods(ctx)
	if err != nil {
		return r, err
	}
	r.Addrs = map[string]netip.Addr{}
	for i := range live {
		p := &live[i]
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if len(r.Old) == n || err != nil || p.DeletionTimestamp != nil || !podReady(p) || s.Net.failingAddr(ip) {
			continue
		}
		r.Old = append(r.Old, p.Name)
		r.Addrs[p.Name] = ip
		r.Gone = append(r.Gone, ip)
	}
	if len(r.Old) < n {
		return r, fmt.Errorf("lab: scale: only %d Ready pods to replace, want %d", len(r.Old), n)
	}
	if r.Deleted, r.Recorded, err = s.DeletePods(ctx, r.Old); err != nil {
		return r, err
	}
	r.New, err = s.CreatePods(ctx, n)
	return r, err
}

// WaitReplaced waits until r's old pods are gone from the API and from
// every instance, and the harness is settled.
func (s *Scale) WaitReplaced(ctx context.Context, r Replacement) (GateCheck, error) {
	if err := s.WaitGone(ctx, r.Old); err != nil {
		return GateCheck{}, err
	}
	return s.WaitSettled(ctx, r.Gone)
}

// WaitGone waits until none of the named pods exists any more.
func (s *Scale) WaitGone(ctx context.Context, names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for {
		left := 0
		live, err := s.Pods(ctx)
		if err == nil {
			for _, p := range live {
				if want[p.Name] {
					left++
				}
			}
			if left == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: scale: %d of %d deleted pods still exist: %w", left, len(names), ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Pods lists the harness's pods.
func (s *Scale) Pods(ctx context.Context) ([]corev1.Pod, error) {
	list, err := s.Client.CoreV1().Pods(ScaleNamespace).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, fmt.Errorf("lab: scale: list pods: %w", err)
	}
	return list.Items, nil
}

// Servers reads every instance's backends: for each instance (by name),
// the servers that hold a target (free slots left out), by address.
func (s *Scale) Servers(ctx context.Context) (map[string]map[netip.Addr]hapi.ServerState, error) {
	out := map[string]map[netip.Addr]hapi.ServerState{}
	for _, h := range s.Lab.State().HAProxy {
		c, err := hapi.NewClient(h.Socket)
		if err != nil {
			return nil, fmt.Errorf("lab: haproxy %s: %w", h.Name, err)
		}
		states, err := c.ShowServersState(ctx, "")
		if err != nil {
			return nil, fmt.Errorf("lab: haproxy %s: show servers state: %w", h.Name, err)
		}
		byAddr := map[netip.Addr]hapi.ServerState{}
		for _, st := range states {
			if hapi.IsSlot(st.Name) && hapi.SlotFree(st) {
				continue
			}
			if a, err := netip.ParseAddr(st.Addr); err == nil && s.Net.Prefix.Contains(a) {
				byAddr[a] = st
			}
		}
		out[h.Name] = byAddr
	}
	return out, nil
}

// GateCheck is the verdict of CheckGates: what is wrong, by pod.
type GateCheck struct {
	// Ready, Waiting and Failing count the live pods: Ready, not Ready
	// yet, and failed by the listener (must stay not Ready).
	Ready, Waiting, Failing int
	// Wrong lists every broken promise, one line each.
	Wrong []string
}

// Settled reports whether every live pod the listener answers is Ready and
// nothing is wrong.
func (g GateCheck) Settled() bool { return g.Waiting == 0 && len(g.Wrong) == 0 }

// CheckGates compares every live pod's gate and Ready with what every
// HAProxy instance says now, and checks that no server is left for the
// addresses in gone (pods deleted and gone from the API):
//   - a pod whose gate is True has a server UP on every instance,
//   - Ready is True exactly when the gate is True (the light node follows
//     the kubelet),
//   - a pod the listener fails is not Ready,
//   - no instance holds a server for an address of gone.
func (s *Scale) CheckGates(ctx context.Context, gone []netip.Addr) (GateCheck, error) {
	pods, err := s.Pods(ctx)
	if err != nil {
		return GateCheck{}, err
	}
	servers, err := s.Servers(ctx)
	if err != nil {
		return GateCheck{}, err
	}
	var g GateCheck
	wrong := func(format string, args ...any) { g.Wrong = append(g.Wrong, fmt.Sprintf(format, args...)) }
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		addr, _ := netip.ParseAddr(p.Status.PodIP)
		gate := conditionStatus(p, corev1.PodConditionType(zv1.GateConditionType(p.Labels[scaleBindingLabel])))
		ready := podReady(p)
		failing := addr.IsValid() && s.Net.failingAddr(addr)
		if gate == corev1.ConditionTrue {
			for inst, byAddr := range servers {
				st, ok := byAddr[addr]
				if !ok || !st.Up() || st.Admin.Maint() {
					wrong("pod %s (%s): gate True but %s has %s", p.Name, addr, inst, describeServer(st, ok))
				}
			}
		}
		if ready != (gate == corev1.ConditionTrue) {
			wrong("pod %s: Ready %v but gate %s", p.Name, ready, gate)
		}
		switch {
		case failing && ready:
			wrong("pod %s (%s): failed by the listener yet Ready", p.Name, addr)
		case failing:
			g.Failing++
		case ready:
			g.Ready++
		default:
			g.Waiting++
		}
	}
	for _, a := range gone {
		for inst, byAddr := range servers {
			if st, ok := byAddr[a]; ok {
				wrong("deleted pod's address %s still on %s: %s", a, inst, describeServer(st, true))
			}
		}
	}
	slices.Sort(g.Wrong)
	return g, nil
}

func describeServer(st hapi.ServerState, ok bool) string {
	if !ok {
		return "no server"
	}
	return fmt.Sprintf("server %s/%s op %v admin %v check %v", st.Backend, st.Name, st.Oper, st.Admin, st.CheckResult)
}

// failingAddr reports whether Fail named a (and Heal did not undo it).
func (b *BulkNet) failingAddr(a netip.Addr) bool {
	_, bad := b.failing.Load(a)
	return bad
}

func conditionStatus(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// WaitSettled polls CheckGates until the harness is settled (every live pod
// the listener answers is Ready, nothing wrong) and returns the last check.
func (s *Scale) WaitSettled(ctx context.Context, gone []netip.Addr) (GateCheck, error) {
	var last GateCheck
	var lastErr error // of the last check that failed to read
	for {
		g, err := s.CheckGates(ctx, gone)
		if err == nil {
			last = g
			if g.Settled() {
				return g, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			why := ""
			if len(last.Wrong) > 0 {
				why = "; first wrong: " + last.Wrong[0]
			}
			if lastErr != nil {
				why += "; last read error: " + lastErr.Error()
			}
			return last, fmt.Errorf("lab: scale not settled (%d Ready, %d waiting, %d failing, %d wrong%s): %w", last.Ready, last.Waiting, last.Failing, len(last.Wrong), why, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// Close stops the controller, the bulk network and the lab (processes by
// pid, the namespace, the host route, the run directory).
func (s *Scale) Close() error {
	var errs []error
	if s.Controller != nil {
		// The lab goes whole: its objects need no orderly removal
		// (Controller.Stop would wait for a LoadBalancer the bindings
		// keep).
		s.Controller.stopProcesses()
	}
	if s.Net != nil {
		errs = append(errs, s.Net.Close())
	}
	if s.Lab != nil {
		errs = append(errs, s.Lab.Close())
	}
	return errors.Join(errs...)
}
