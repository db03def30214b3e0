package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/provider"
)

// world is an in-memory set of load balancer instances, keyed by how they
// are reached (name@socket-or-address), so that a LoadBalancer edit that
// removes or readdresses an instance leaves the old one with its servers,
// as a real HAProxy would be left. The provider built for a LoadBalancer
// (world.factory) drives the instances its spec names.
type world struct {
	mu      sync.Mutex
	servers map[string]map[string]map[provider.TargetID]*worldServer // instance -> pool -> id
	down    map[string]bool
	calls   []string
	// epochs and started are each instance's process: bumped and set by
	// reload (a zero started: the LB does not report its start).
	epochs  map[string]int
	started map[string]time.Time
	// capacity limits each pool's servers per instance (0: no limit).
	capacity int
}

// reload restarts an instance's process at `at`: its runtime state is
// lost; with reportStart its Status says when it started.
func (w *world) reload(instance string, at time.Time, reportStart bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.epochs == nil {
		w.epochs, w.started = map[string]int{}, map[string]time.Time{}
	}
	w.epochs[instance]++
	delete(w.servers, instance)
	w.started[instance] = time.Time{}
	if reportStart {
		w.started[instance] = at
	}
}

type worldServer struct {
	addr     string
	health   provider.Health
	sessions int64
}

func newWorld() *world {
	return &world{servers: map[string]map[string]map[provider.TargetID]*worldServer{}, down: map[string]bool{}}
}

func instanceKey(in zv1.LoadBalancerInstance) string { return in.Name + "@" + in.Socket + in.Address }

func (w *world) factory(lb *zv1.LoadBalancer) (provider.Provider, error) {
	p := &worldLB{w: w}
	for _, in := range lb.Spec.Instances {
		p.instances = append(p.instances, instanceKey(in))
	}
	return p, nil
}

// put places a server on one instance (by key) directly, as if registered.
func (w *world) put(instance, pool string, id provider.TargetID, addr string, h provider.Health, sessions int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.poolLocked(instance, pool)[id] = &worldServer{addr: addr, health: h, sessions: sessions}
}

func (w *world) poolLocked(instance, pool string) map[provider.TargetID]*worldServer {
	if w.servers[instance] == nil {
		w.servers[instance] = map[string]map[provider.TargetID]*worldServer{}
	}
	if w.servers[instance][pool] == nil {
		w.servers[instance][pool] = map[provider.TargetID]*worldServer{}
	}
	return w.servers[instance][pool]
}

func (w *world) get(instance, pool string, id provider.TargetID) *worldServer {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.servers[instance][pool][id]
	if s == nil {
		return nil
	}
	c := *s
	return &c
}

func (w *world) setSessions(pool string, id provider.TargetID, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, pools := range w.servers {
		if s := pools[pool][id]; s != nil {
			s.sessions = n
			if n == 0 && s.health == provider.HealthDraining {
				s.health = provider.HealthDrained
			}
		}
	}
}

func (w *world) callsOf(op string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, c := range w.calls {
		if strings.HasPrefix(c, op+" ") {
			out = append(out, c)
		}
	}
	return out
}

type worldLB struct {
	haproxyLike
	w         *world
	instances []string
}

func (p *worldLB) each(op, pool string, id provider.TargetID, fn func(in string, s map[provider.TargetID]*worldServer) error) error {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	var errs []string
	for _, in := range p.instances {
		if p.w.down[in] {
			errs = append(errs, in+": unreachable")
			continue
		}
		p.w.calls = append(p.w.calls, fmt.Sprintf("%s %s %s/%s", op, in, pool, id))
		if err := fn(in, p.w.poolLocked(in, pool)); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (p *worldLB) Register(ctx context.Context, pl provider.Pool, t provider.Target) error {
	if err := ctx.Err(); err != nil {
		return err // as a real load balancer's client: nothing is sent
	}
	pool := pl.Name
	return p.each("register", pool, t.ID, func(in string, s map[provider.TargetID]*worldServer) error {
		if s[t.ID] == nil {
			if p.w.capacity > 0 && len(s) >= p.w.capacity {
				return provider.Errorf(provider.CodePoolFull, in, "pool %s holds %d servers, its capacity", pool, len(s))
			}
			s[t.ID] = &worldServer{addr: t.Addr(), health: provider.HealthInitial}
		}
		return nil
	})
}

func (p *worldLB) SetDraining(ctx context.Context, pl provider.Pool, t provider.Target) error {
	if err := ctx.Err(); err != nil {
		return err // as a real load balancer's client: nothing is sent
	}
	pool := pl.Name
	return p.each("drain", pool, t.ID, func(_ string, s map[provider.TargetID]*worldServer) error {
		if ws := s[t.ID]; ws != nil {
			ws.health = provider.HealthDraining
			if ws.sessions == 0 {
				ws.health = provider.HealthDrained
			}
		}
		return nil
	})
}

func (p *worldLB) Deregister(ctx context.Context, pl provider.Pool, t provider.Target) error {
	if err := ctx.Err(); err != nil {
		return err // as a real load balancer's client: nothing is sent
	}
	pool := pl.Name
	return p.each("deregister", pool, t.ID, func(in string, s map[provider.TargetID]*worldServer) error {
		if ws := s[t.ID]; ws != nil {
			ws.health = provider.HealthDrained
			if ws.sessions > 0 {
				return fmt.Errorf("%s: %s: %w", in, t.ID, provider.ErrTargetBusy)
			}
			delete(s, t.ID)
		}
		return nil
	})
}

func (p *worldLB) Status(_ context.Context, pl provider.Pool) (provider.PoolStatus, error) {
	pool := pl.Name
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	st := provider.PoolStatus{Pool: pool}
	var errs []string
	for _, in := range p.instances {
		name, _, _ := strings.Cut(in, "@")
		is := provider.InstanceStatus{Instance: name, Epoch: fmt.Sprint(1 + p.w.epochs[in]), StartedAt: p.w.started[in]}
		if p.w.down[in] {
			is.Err = fmt.Errorf("%s unreachable", in)
			errs = append(errs, is.Err.Error())
			st.Instances = append(st.Instances, is)
			continue
		}
		is.Targets = map[provider.TargetID]provider.TargetStatus{}
		for id, s := range p.w.servers[in][pool] {
			reason := map[provider.Health]string{provider.HealthHealthy: "L7OK", provider.HealthInitial: "INI",
				provider.HealthDraining: "DRAIN", provider.HealthDrained: "DRAIN"}[s.health]
			is.Targets[id] = provider.TargetStatus{Health: s.health, Reason: reason, Addr: s.addr, Sessions: s.sessions}
		}
		st.Instances = append(st.Instances, is)
	}
	if len(errs) > 0 {
		return st, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return st, nil
}

// harness is a TargetBinding reconciler and a LoadBalancer reconciler over
// a fake API server and a world of LB instances, with a clock the test
// moves.
type harness struct {
	t        testing.TB
	c        client.Client
	w        *world
	r        *TargetBindingReconciler
	lbr      *LoadBalancerReconciler
	events   *events.FakeRecorder
	registry *prometheus.Registry
	now      time.Time
}

const (
	hNS      = "shop"
	hBinding = "web-edge"
	hPool    = "be_web"
	hLB      = "edge"
	hookHost = "10.96.0.99"
)

var (
	instA = zv1.LoadBalancerInstance{Name: "lb-a", Socket: "/run/a.sock"}
	instB = zv1.LoadBalancerInstance{Name: "lb-b", Address: "10.0.0.2:9999"}
	keyA  = instanceKey(instA)
	keyB  = instanceKey(instB)
)

func hScheme(t testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := zv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// newHarness starts with an opted-in namespace, Service web (port http),
// LoadBalancer edge (lb-a, lb-b) and binding web-edge (pool be_web, drain
// timeout 10 s, deregistration delay 0) with its finalizer, plus objs.
func newHarness(t testing.TB, hook zv1.PreStopHook, objs ...client.Object) *harness {
	t.Helper()
	b := &zv1.TargetBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: hNS, Name: hBinding, Finalizers: []string{Finalizer}, Generation: 1},
		Spec: zv1.TargetBindingSpec{
			ServiceRef:      zv1.ServiceReference{Name: "web", Port: intstr.FromString("http")},
			LoadBalancerRef: zv1.LoadBalancerReference{Name: hLB},
			Pool:            hPool,
			Drain: zv1.DrainSpec{PreStop: hook, Timeout: &metav1.Duration{Duration: 10 * time.Second},
				DeregistrationDelay: &metav1.Duration{}},
		},
	}
	base := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hNS, Labels: map[string]string{zv1.GatesNamespaceLabel: zv1.GatesEnabled}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: hNS, Name: "web"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
		&zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: hLB, Generation: 1, UID: "lb-uid"}, Spec: zv1.LoadBalancerSpec{
			Provider: zv1.ProviderHAProxy, Instances: []zv1.LoadBalancerInstance{instA, instB}}},
		b,
	}
	c := fake.NewClientBuilder().WithScheme(hScheme(t)).
		WithObjects(append(base, objs...)...).
		WithIndex(&corev1.Pod{}, gateIndex, gateIndexValues).
		WithStatusSubresource(&corev1.Pod{}, &zv1.TargetBinding{}, &zv1.LoadBalancer{}).
		Build()
	h := &harness{t: t, c: c, w: newWorld(), events: events.NewFakeRecorder(1000), registry: prometheus.NewRegistry(),
		now: time.Now().Truncate(time.Second)}
	m, err := NewMetrics(h.registry)
	if err != nil {
		t.Fatal(err)
	}
	providers := &Providers{Factories: map[zv1.ProviderType]ProviderFactory{zv1.ProviderHAProxy: h.w.factory}}
	h.r = &TargetBindingReconciler{
		Client: c, Recorder: h.events, Providers: providers, Drains: drain.NewRegistry(), Metrics: m,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return h.now },
		DrainHookHost: func(context.Context) (string, error) { return hookHost, nil },
	}
	h.lbr = &LoadBalancerReconciler{Client: c, Instances: &InstanceTracker{}, Providers: providers, Recorder: h.events}
	return h
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

// reconcile runs one binding cycle.
func (h *harness) reconcile() reconcile.Result {
	h.t.Helper()
	res, err := h.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: hNS, Name: hBinding}})
	if err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	return res
}

func (h *harness) reconcileLB() reconcile.Result {
	h.t.Helper()
	res, err := h.lbr.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Name: hLB}})
	if err != nil {
		h.t.Fatalf("reconcile LoadBalancer: %v", err)
	}
	return res
}

// hPod is a running pod of app web with the binding's gate (when gated),
// its drain hook to host (when host is set), ContainersReady, and an
// EndpointSlice entry; gate is its gate condition (nil: none yet).
func hPod(name, ip string, gated bool, host string, gate *corev1.PodCondition) []client.Object {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: hNS, Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, Conditions: []corev1.PodCondition{
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}}},
	}
	if gated {
		p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: corev1.PodConditionType(zv1.GateConditionType(hBinding))}}
	}
	if host != "" {
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
			Host: host, Port: intstr.FromInt32(8082), Path: "/drain/v1/namespaces/shop/tokens/t-" + name + "?wait=10s"}}}
	}
	if gate != nil {
		g := *gate
		g.Type = corev1.PodConditionType(zv1.GateConditionType(hBinding))
		p.Status.Conditions = append(p.Status.Conditions, g)
	}
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: hNS, Name: "web-" + name, Labels: map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: EndpointSliceControllerName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: hNS, Name: name, UID: p.UID}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}},
	}
	return []client.Object{p, s}
}

var (
	gateHealthy = &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy, Message: "healthy on 2 instance(s)"}
	gateINI     = &corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "INI", Message: "lb-a: Initial"}
)

func objs(groups ...[]client.Object) []client.Object {
	var out []client.Object
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// hid is the TargetID of a pod of the harness's binding.
func hid(pod string) provider.TargetID { return TargetID(hNS, hBinding, pod) }

// deletePod marks a pod deleted (a finalizer keeps it, as a kubelet's
// graceful termination would) and its endpoint terminating.
func (h *harness) deletePod(name string) {
	h.t.Helper()
	ctx := context.Background()
	var p corev1.Pod
	if err := h.c.Get(ctx, types.NamespacedName{Namespace: hNS, Name: name}, &p); err != nil {
		h.t.Fatal(err)
	}
	p.Finalizers = append(p.Finalizers, "test/kubelet")
	if err := h.c.Update(ctx, &p); err != nil {
		h.t.Fatal(err)
	}
	if err := h.c.Delete(ctx, &p); err != nil {
		h.t.Fatal(err)
	}
	var s discoveryv1.EndpointSlice
	if err := h.c.Get(ctx, types.NamespacedName{Namespace: hNS, Name: "web-" + name}, &s); err != nil {
		h.t.Fatal(err)
	}
	s.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	if err := h.c.Update(ctx, &s); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) deleteBinding() {
	h.t.Helper()
	b := &zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: hNS, Name: hBinding}}
	if err := h.c.Delete(context.Background(), b); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) binding() (*zv1.TargetBinding, bool) {
	var b zv1.TargetBinding
	err := h.c.Get(context.Background(), types.NamespacedName{Namespace: hNS, Name: hBinding}, &b)
	return &b, err == nil
}

func (h *harness) gate(pod string) *corev1.PodCondition {
	h.t.Helper()
	var p corev1.Pod
	if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: hNS, Name: pod}, &p); err != nil {
		h.t.Fatal(err)
	}
	return podCondition(&p, corev1.PodConditionType(zv1.GateConditionType(hBinding)))
}

func (h *harness) verdict(pod string) (drain.State, bool) {
	return h.r.Drains.Lookup(types.NamespacedName{Namespace: hNS, Name: pod}, hBinding)
}

// eventsSeen drains the recorder: one string per Event, "Type Reason note".
func (h *harness) eventsSeen() []string {
	var out []string
	for {
		select {
		case e := <-h.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func hasEvent(evs []string, kind, reason, contains string) bool {
	for _, e := range evs {
		if strings.HasPrefix(e, kind+" "+reason+" ") && strings.Contains(e, contains) {
			return true
		}
	}
	return false
}

// series counts the series of one metric family in the harness's registry.
func (h *harness) series(name string) map[string]float64 {
	h.t.Helper()
	mfs, err := h.registry.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue()
			if c := m.GetCounter(); c != nil {
				v = c.GetValue()
			}
			out[strings.Join(labels, ",")] = v
		}
	}
	return out
}

// haproxyLike declares HAProxy's capabilities for the fakes of these
// tests: they stand in for it.
type haproxyLike struct{}

func (haproxyLike) Capabilities() provider.Capabilities {
	return provider.Capabilities{Identity: provider.IdentityName, Promotion: provider.PromotionSelf, HealthCheckScope: provider.HealthCheckPerTarget,
		DrainSignal: provider.DrainSessions, Topology: provider.TopologyInstances, VolatileRuntimeState: true, ActiveHealthChecks: true}
}

func (haproxyLike) Enable(context.Context, provider.Pool, provider.Target) error { return nil }
