package main

// Integration tests against a real kube-apiserver and etcd (controller-runtime
// envtest): the manager is wired exactly as main wires it (Wire), with a fake
// load balancer in place of HAProxy. envtest runs no kubelet and no
// controllers, so the tests play them: they set pod status and write
// EndpointSlices.

import (
	"context"

	"encoding/json"
	"flag"
	"fmt"
	"github.com/go-logr/logr"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/internal/lab/k8sbin"
	"zerodrop.dev/zerodrop/internal/setup"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
)

const (
	controllerNS = "zerodrop-system"
	pool         = "be_web"
	drainHost    = "10.96.0.99"
)

var suite struct {
	err error // why the suite could not start
	c   client.Client
	lb  *fakeLB
	// pushLB is LoadBalancer edge-push's: it pushes verdicts.
	pushLB   *pushingFakeLB
	drainURL string
	webhook  *admissionv1.MutatingWebhookConfiguration
	// validating is the TargetBinding validator's configuration.
	validating *admissionv1.ValidatingWebhookConfiguration
	env        *envtest.Environment
	assets     string
	nsSeq      atomic.Int64
	// apiClock samples the manager's API responses, as main's does.
	apiClock *controller.APIClock
}

// assetsDir finds kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else the
// lab's build cache (internal/lab/k8sbin; `make deps` builds it).
func assetsDir() (string, error) {
	for _, d := range []string{os.Getenv("KUBEBUILDER_ASSETS"), k8sbin.EnvtestAssets()} {
		if d == "" {
			continue
		}
		_, e1 := os.Stat(filepath.Join(d, "kube-apiserver"))
		_, e2 := os.Stat(filepath.Join(d, "etcd"))
		if e1 == nil && e2 == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("kube-apiserver and etcd not found in $KUBEBUILDER_ASSETS or %q (run `make deps`)", k8sbin.EnvtestAssets())
}

func TestMain(m *testing.M) {
	if addr := os.Getenv(podAppEnv); addr != "" {
		servePodApp(addr) // this binary re-executed as a pod's app (alerts_test.go)
		return
	}
	flag.Parse()
	code := runSuite(m)
	if binary.path != "" {
		// The controller binary controllerBinary built for this run.
		os.RemoveAll(filepath.Dir(binary.path))
	}
	os.Exit(code)
}

func runSuite(m *testing.M) int {
	assets, err := assetsDir()
	if err != nil {
		suite.err = err
		return m.Run()
	}
	root, _ := filepath.Abs("../..")
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{
			filepath.Join(root, "config", "webhook", "manifests.yaml"),
			filepath.Join(root, "config", "webhook", "validating.yaml"),
		}},
	}
	cfg, err := env.Start()
	if err != nil {
		suite.err = fmt.Errorf("start envtest: %w", err)
		return m.Run()
	}
	defer env.Stop()
	suite.env, suite.assets = env, assets

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = zv1.AddToScheme(scheme)
	wo := &env.WebhookInstallOptions
	// The manager's clients sample the API server's clock, as main's do.
	mcfg := rest.CopyConfig(cfg)
	suite.apiClock = setup.WatchAPIClock(mcfg)
	mgr, err := ctrl.NewManager(mcfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cacheOptions(), // main's: trimmed pods
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir}),
	})
	if err != nil {
		suite.err = err
		return m.Run()
	}
	drainAddr := freeAddr()
	o, err := parse([]string{"--namespace=" + controllerNS, "--webhook-cert-mode=external",
		"--drain-bind-address=" + drainAddr, "--drain-hook-host=" + drainHost,
		"--provider-poll-interval=50ms", "--resync-interval=1s", "--pushed-poll-interval=30s"})
	if err != nil {
		suite.err = err
		return m.Run()
	}
	o.apiClock = suite.apiClock
	suite.lb = newFakeLB("lb-a", "lb-b")
	suite.pushLB = &pushingFakeLB{fakeLB: newFakeLB("lb-a", "lb-b"), events: make(chan provider.Event, 16)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("ZERODROP_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	factories := map[zv1.ProviderType]controller.ProviderFactory{
		zv1.ProviderHAProxy: func(lb *zv1.LoadBalancer) (provider.Provider, error) {
			if lb.Name == "edge-push" {
				return suite.pushLB, nil
			}
			return suite.lb, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := Wire(ctx, mgr, o, log, factories); err != nil {
		suite.err = err
		return m.Run()
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() { cancel(); <-done }()

	suite.c, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		suite.err = err
		return m.Run()
	}
	suite.drainURL = "http://" + drainAddr
	suite.webhook = wo.MutatingWebhooks[0]
	suite.validating = wo.ValidatingWebhooks[0]
	bg := context.Background()
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNS, Labels: map[string]string{zv1.GatesNamespaceLabel: zv1.GatesEnabled}}},
		// Every test binds be_web from a namespace of its own: granted to
		// all explicitly (without spec.pools only the first namespace
		// would hold it).
		&zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: zv1.LoadBalancerSpec{
			Provider:  zv1.ProviderHAProxy,
			Instances: []zv1.LoadBalancerInstance{{Name: "lb-a", Socket: "/run/a.sock"}, {Name: "lb-b", Address: "10.0.0.2:9999"}},
			Pools:     []zv1.PoolGrant{{Name: pool, AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromAll}}}}},
		&zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "edge-push"}, Spec: zv1.LoadBalancerSpec{
			Provider:  zv1.ProviderHAProxy,
			Instances: []zv1.LoadBalancerInstance{{Name: "lb-a", Socket: "/run/a.sock"}, {Name: "lb-b", Address: "10.0.0.2:9999"}},
			Pools:     []zv1.PoolGrant{{Name: pool, AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromAll}}}}},
	} {
		if err := suite.c.Create(bg, obj); err != nil {
			suite.err = err
			return m.Run()
		}
	}
	// Wait until the webhook serves and the cache syncs: a probe pod in an
	// opted-in namespace comes back with its gate.
	if err := waitForWebhook(bg); err != nil {
		suite.err = err
	}
	return m.Run()
}

func requireSuite(t *testing.T) {
	t.Helper()
	if suite.err != nil {
		testenv.Unavailable(t, "envtest: %v", suite.err)
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// mastersKubeconfig writes, into dir, a kubeconfig for a new user of env in
// the group system:masters (the controller binary's credentials) and returns
// its path.
func mastersKubeconfig(t *testing.T, env *envtest.Environment, name, dir string) string {
	t.Helper()
	user, err := env.AddUser(envtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(file, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// eventually polls cond every 20 ms; the deadline only guards against a hang.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	eventuallyWithin(t, what, 30*time.Second, 20*time.Millisecond, cond)
}

// eventuallyWithin polls cond every interval until it holds, for at most
// timeout.
func eventuallyWithin(t *testing.T, what string, timeout, interval time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(interval)
	}
	t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
}

// newNamespace creates a uniquely named namespace, opted in or not.
func newNamespace(t *testing.T, optIn bool) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", os.Getpid()%10000, suite.nsSeq.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if optIn {
		ns.Labels = map[string]string{zv1.GatesNamespaceLabel: zv1.GatesEnabled}
	}
	if err := suite.c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return name
}

func createApp(t *testing.T, ns, app string, hook zv1.PreStopHook) *zv1.TargetBinding {
	t.Helper()
	return createAppOn(t, ns, app, "edge", hook)
}

// createAppOn is createApp with the binding on LoadBalancer lb.
func createAppOn(t *testing.T, ns, app, lb string, hook zv1.PreStopHook) *zv1.TargetBinding {
	t.Helper()
	ctx := context.Background()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	b := &zv1.TargetBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app + "-edge"},
		Spec: zv1.TargetBindingSpec{
			ServiceRef:      zv1.ServiceReference{Name: app, Port: intstr.FromString("http")},
			LoadBalancerRef: zv1.LoadBalancerReference{Name: lb},
			Pool:            pool,
			Drain:           zv1.DrainSpec{PreStop: hook},
		},
	}
	for _, o := range []client.Object{svc, b} {
		if err := suite.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// The webhook reads bindings through the cache: wait until a probe pod
	// gets the gate, so that the test's pods do not race the cache.
	eventually(t, "webhook sees binding "+b.Name, func() (bool, string) {
		p := newPod(ns, "probe", map[string]string{"app": app})
		if err := suite.c.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		return len(p.Spec.ReadinessGates) > 0, fmt.Sprint(p.Spec.ReadinessGates)
	})
	return b
}

func newPod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   "node-1", // bound to a node: deletion is graceful, as with a kubelet
			Containers: []corev1.Container{{Name: "app", Image: "app:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
		},
	}
}

func waitForWebhook(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var cfg admissionv1.MutatingWebhookConfiguration
		if err := suite.c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &cfg); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhook configuration not installed")
}

// startPod plays the kubelet and the EndpointSlice controller: the pod runs
// with an IP, ContainersReady True, and appears in the Service's slice.
func startPod(t *testing.T, ns, name, app, ip string) *corev1.Pod {
	t.Helper()
	return startPodIn(t, suite.c, ns, name, app, ip)
}

// startPodIn is startPod against the API server behind c.
func startPodIn(t *testing.T, c client.Client, ns, name, app, ip string) *corev1.Pod {
	t.Helper()
	p := runPodIn(t, c, ns, name, app, ip)
	writeSliceIn(t, c, ns, app, p, false)
	return p
}

// runPodIn plays the kubelet alone: the pod runs with an IP and
// ContainersReady True, and no EndpointSlice names it yet.
func runPodIn(t *testing.T, c client.Client, ns, name, app, ip string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p := newPod(ns, name, map[string]string{"app": app})
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	// A strategic merge patch, like the kubelet's: the controller may have
	// set the gate condition already, and conditions merge by type.
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{
		"phase": corev1.PodRunning, "podIP": ip, "podIPs": []corev1.PodIP{{IP: ip}},
		"conditions": []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}},
	}})
	if err := c.Status().Patch(ctx, p, client.RawPatch(types.StrategicMergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeSlice(t *testing.T, ns, app string, p *corev1.Pod, terminating bool) {
	t.Helper()
	writeSliceIn(t, suite.c, ns, app, p, terminating)
}

func writeSliceIn(t *testing.T, c client.Client, ns, app string, p *corev1.Pod, terminating bool) {
	t.Helper()
	ctx := context.Background()
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app + "-" + p.Name,
			Labels: map[string]string{discoveryv1.LabelServiceName: app, discoveryv1.LabelManagedBy: controller.EndpointSliceControllerName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(!terminating), Terminating: ptr.To(terminating)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p.Name, UID: p.UID},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	var old discoveryv1.EndpointSlice
	err := c.Get(ctx, client.ObjectKeyFromObject(s), &old)
	switch {
	case apierrors.IsNotFound(err):
		err = c.Create(ctx, s)
	case err == nil:
		s.ResourceVersion = old.ResourceVersion
		err = c.Update(ctx, s)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func gate(t *testing.T, ns, name, binding string) *corev1.PodCondition {
	t.Helper()
	return gateIn(t, suite.c, ns, name, binding)
}

// gateIn is the pod's condition of the binding's gate (nil when absent),
// read from the API server behind c.
func gateIn(t *testing.T, c client.Client, ns, pod, binding string) *corev1.PodCondition {
	t.Helper()
	var p corev1.Pod
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: pod}, &p); err != nil {
		t.Fatal(err)
	}
	for i := range p.Status.Conditions {
		if string(p.Status.Conditions[i].Type) == zv1.GateConditionType(binding) {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func waitGate(t *testing.T, ns, pod, binding string, status corev1.ConditionStatus, reason string) {
	t.Helper()
	eventually(t, fmt.Sprintf("gate of %s %s/%s", pod, status, reason), func() (bool, string) {
		c := gate(t, ns, pod, binding)
		if c == nil {
			return false, "no condition"
		}
		return c.Status == status && c.Reason == reason, fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
	})
}

func TestInjection(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	in := newNamespace(t, true)
	out := newNamespace(t, false)
	// Bindings in the other namespaces first: createApp then waits until
	// the webhook's cache has the later one, and so these too.
	for _, ns := range []string{out, controllerNS} {
		for _, o := range []client.Object{
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
			&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-edge"}, Spec: zv1.TargetBindingSpec{
				ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromString("http")}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"}, Pool: pool}},
		} {
			if err := suite.c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	createApp(t, in, "web", zv1.PreStopNone)
	cases := []struct {
		name   string
		ns     string
		labels map[string]string
		want   []string
	}{
		{"opted-in namespace, pod selected by the binding's Service: one gate", in, map[string]string{"app": "web"},
			[]string{zv1.GateConditionType("web-edge")}},
		{"opted-in namespace, pod no binding selects: no gate", in, map[string]string{"app": "batch"}, nil},
		{"namespace without zerodrop.dev/gates=enabled: no gate", out, map[string]string{"app": "web"}, nil},
		{"pod labelled zerodrop.dev/gates=disabled: no gate", in, map[string]string{"app": "web", webhook.SkipLabel: webhook.SkipValue}, nil},
		{"the controller's namespace: no gate", controllerNS, map[string]string{"app": "web"}, nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPod(c.ns, fmt.Sprintf("p%d", i), c.labels)
			if err := suite.c.Create(ctx, p); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, g := range p.Spec.ReadinessGates {
				got = append(got, string(g.ConditionType))
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("readiness gates %v, want %v", got, c.want)
			}
		})
	}
}

func TestGateFlips(t *testing.T) {
	requireSuite(t)
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopNone)
	id := controller.TargetID(ns, b.Name, "web-1")
	startPod(t, ns, "web-1", "web", "10.1.0.11")

	eventually(t, "registration at ContainersReady", func() (bool, string) {
		return suite.lb.called("register", pool, id), "not registered"
	})
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionFalse, "INI")

	suite.lb.setHealth(pool, id, "lb-a", provider.HealthHealthy)
	// lb-b still initial: the gate stays False and names lb-b.
	eventually(t, "gate False naming lb-b", func() (bool, string) {
		c := gate(t, ns, "web-1", b.Name)
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == "INI" && strings.HasPrefix(c.Message, "lb-b:"), fmt.Sprintf("%+v", c)
	})

	suite.lb.setHealth(pool, id, "lb-b", provider.HealthHealthy)
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)

	// A failing check after Ready: lb-a takes the target out of its rotation
	// by itself; the gate stays True (one-way), the binding counts it
	// registering.
	suite.lb.setHealth(pool, id, "lb-a", provider.HealthUnhealthy)

	eventually(t, "binding status counts", func() (bool, string) {
		var got zv1.TargetBinding
		if err := suite.c.Get(context.Background(), client.ObjectKeyFromObject(b), &got); err != nil {
			return false, err.Error()
		}
		return got.Status.Targets.Total == 1 && got.Status.Targets.Registering == 1 && got.Status.ObservedGeneration == got.Generation,
			fmt.Sprintf("%+v gen %d/%d", got.Status.Targets, got.Status.ObservedGeneration, got.Generation)
	})
	if c := gate(t, ns, "web-1", b.Name); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("gate after a failing check on lb-a: %+v; want it kept True", c)
	}
	eventually(t, "LoadBalancer status: both instances reachable", func() (bool, string) {
		var lb zv1.LoadBalancer
		if err := suite.c.Get(context.Background(), types.NamespacedName{Name: "edge"}, &lb); err != nil {
			return false, err.Error()
		}
		return lb.Status.ReachableInstances == 2 && len(lb.Status.Conditions) == 1 && lb.Status.Conditions[0].Status == metav1.ConditionTrue,
			fmt.Sprintf("%+v", lb.Status)
	})
}

func drainGet(t *testing.T, path string) (int, drain.Answer) {
	t.Helper()
	code, a, err := drainRequest(path)
	if err != nil {
		t.Fatal(err)
	}
	return code, a
}

func drainRequest(path string) (int, drain.Answer, error) {
	return getDrain(suite.drainURL, path)
}

func TestDrain(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopHTTPGet)
	id := controller.TargetID(ns, b.Name, "web-1")
	p := startPod(t, ns, "web-1", "web", "10.1.0.21")

	hook := p.Spec.Containers[0].Lifecycle.PreStop.HTTPGet
	token := p.Annotations[webhook.DrainTokenAnnotation]
	if hook == nil || hook.Host != drainHost || hook.Path != webhook.TokenPath(ns, token, 30*time.Second) {
		t.Fatalf("injected preStop hook %+v (token %q)", hook, token)
	}
	eventually(t, "registration", func() (bool, string) { return suite.lb.called("register", pool, id), "" })
	suite.lb.setHealth(pool, id, "", provider.HealthHealthy)
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)
	suite.lb.setSessions(pool, id, 2)

	if code, a := drainGet(t, "/drain/v1/namespaces/"+ns+"/pods/web-1?wait=0s"); code != http.StatusServiceUnavailable {
		t.Fatalf("live pod: drain endpoint answered %d %+v, want 503", code, a)
	}
	if code, _ := drainGet(t, "/drain/v1/namespaces/"+ns+"/pods/unbound?wait=0s"); code != http.StatusNotFound {
		t.Fatalf("unknown pod: drain endpoint answered %d, want 404", code)
	}

	if err := suite.c.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SetDraining at deletion", func() (bool, string) { return suite.lb.called("drain", pool, id), "" })
	// The preStop hook's request, long-polling while sessions remain.
	type result struct {
		code int
		a    drain.Answer
		err  error
	}
	answered := make(chan result, 1)
	go func() {
		code, a, err := drainRequest(hook.Path[:strings.Index(hook.Path, "?")] + "?wait=20s")
		answered <- result{code, a, err}
	}()
	select {
	case r := <-answered:
		t.Fatalf("drain endpoint answered %d %+v while 2 sessions were open", r.code, r.a)
	case <-time.After(300 * time.Millisecond):
	}
	if suite.lb.called("deregister", pool, id) && !suite.lb.has(pool, id) {
		t.Fatalf("target removed while sessions were open")
	}
	suite.lb.setSessions(pool, id, 0)
	select {
	case r := <-answered:
		if r.err != nil || r.code != http.StatusOK || !r.a.Drained || r.a.Reason != "Drained" {
			t.Fatalf("drained pod: answer %d %+v %v", r.code, r.a, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("drain endpoint did not answer after the sessions ended")
	}
	// The answer says drained, not why: the verdict's reason (the LB
	// drained it, not drain.timeout) is told to operators by an Event.
	waitEvent(t, ns, "web-1", controller.ReasonDrained, corev1.EventTypeNormal)
	eventually(t, "Deregister after drained", func() (bool, string) { return !suite.lb.has(pool, id), "" })
	_ = suite.c.Delete(ctx, p, client.GracePeriodSeconds(0))
}

func TestBindingDeletionReleasesGates(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopNone)
	id := controller.TargetID(ns, b.Name, "web-1")
	startPod(t, ns, "web-1", "web", "10.1.0.31")
	eventually(t, "registration", func() (bool, string) { return suite.lb.called("register", pool, id), "" })
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionFalse, "INI")

	if err := suite.c.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	// Never reported healthy: released, but as unverified.
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonBindingDeletedUnverified)
	eventually(t, "binding finalized", func() (bool, string) {
		err := suite.c.Get(ctx, client.ObjectKeyFromObject(b), &zv1.TargetBinding{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	eventually(t, "Event on the pod", func() (bool, string) {
		var evs eventsv1.EventList
		if err := suite.c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == "web-1" && e.Reason == controller.ReasonBindingDeletedUnverified && e.Type == corev1.EventTypeWarning {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(evs.Items))
	})
	if suite.lb.has(pool, id) {
		t.Fatalf("target of the deleted binding left in the pool")
	}
}

func TestWebhookDownDoesNotBlockPods(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	// The shipped webhook (failurePolicy as in config/webhook), pointed at a
	// port where nothing listens.
	down := suite.webhook.DeepCopy()
	down.ObjectMeta = metav1.ObjectMeta{Name: fmt.Sprintf("zerodrop-down-%d", os.Getpid())}
	for i := range down.Webhooks {
		down.Webhooks[i].ClientConfig.URL = ptr.To("https://" + freeAddr() + webhook.Path)
		down.Webhooks[i].ClientConfig.Service = nil
		down.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zerodrop-test/down": "yes"}}
	}
	if err := suite.c.Create(ctx, down); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.c.Delete(context.Background(), down) })
	ns := newNamespace(t, false)
	var nsObj corev1.Namespace
	if err := suite.c.Get(ctx, types.NamespacedName{Name: ns}, &nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = map[string]string{"zerodrop-test/down": "yes"}
	if err := suite.c.Update(ctx, &nsObj); err != nil {
		t.Fatal(err)
	}
	if err := suite.c.Create(ctx, newPod(ns, "web-1", map[string]string{"app": "web"})); err != nil {
		t.Fatalf("pod creation with the webhook down: %v (failurePolicy must be Ignore)", err)
	}
}

// Scenario: a binding on LoadBalancer edge-push, whose provider pushes
// verdicts, with --pushed-poll-interval=30s. web-1 is registered and
// waits. Expectation: the LB marking it healthy on both instances opens
// nothing by itself (the binding resyncs only every 30 s while the
// streams are up); the verdict event opens the gate at once, through a
// fresh read of the pool.
// quiet waits (bounded to 30 s) until lb has had no Status call for d.
func quiet(t *testing.T, lb *fakeLB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last, since := lb.statusReads(), time.Now()
	for time.Since(since) < d {
		if time.Now().After(deadline) {
			t.Fatalf("the controller kept reading the pool for 30 s (%d reads)", lb.statusReads())
		}
		time.Sleep(50 * time.Millisecond)
		if n := lb.statusReads(); n != last {
			last, since = n, time.Now()
		}
	}
}

func TestGateOpensOnAPushedVerdict(t *testing.T) {
	requireSuite(t)
	ns := newNamespace(t, true)
	b := createAppOn(t, ns, "web", "edge-push", zv1.PreStopNone)
	id := controller.TargetID(ns, b.Name, "web-1")
	startPod(t, ns, "web-1", "web", "10.1.0.31")
	eventually(t, "registration at ContainersReady", func() (bool, string) {
		return suite.pushLB.called("register", pool, id), "not registered"
	})
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionFalse, "INI")
	// The gate patch and the registration wake the binding a few more
	// times; any of those reads would see the new health. Wait until the
	// controller is quiet (no Status read for a second): from then on only
	// the slow resync (30 s) or an event makes it read.
	quiet(t, suite.pushLB.fakeLB, time.Second)

	suite.pushLB.setHealth(pool, id, "", provider.HealthHealthy)
	time.Sleep(1500 * time.Millisecond)
	if c := gate(t, ns, "web-1", b.Name); c == nil || c.Status != corev1.ConditionFalse {
		t.Fatalf("gate %+v before any event, want still False (the slow resync is 30 s)", c)
	}

	start := time.Now()
	suite.pushLB.events <- provider.Event{Kind: provider.EventVerdict, Instance: "lb-b", Pool: pool, Entry: string(id), Health: provider.HealthHealthy}
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)
	took := time.Since(start)
	t.Logf("verdict event -> gate True: %s", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("gate opened %s after the event, want well within the 30 s resync", took)
	}
}
