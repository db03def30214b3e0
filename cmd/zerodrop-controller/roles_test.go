package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/internal/setup"
	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
)

func TestParseRole(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		role    string
		wantErr string
	}{
		{"no flag: all, today's single process", nil, RoleAll, ""},
		{"reconcile", []string{"--role=reconcile"}, RoleReconcile, ""},
		{"serve", []string{"--role", "serve"}, RoleServe, ""},
		{"unknown role: error naming the flag and the choices", []string{"--role=drain"}, "", `--role="drain": want all, reconcile or serve`},
		{"empty role: error", []string{"--role="}, "", `--role="": want all, reconcile or serve`},
		{"stray argument: error", []string{"serve"}, "", `unexpected argument "serve"`},
		{"lease shorter than the renew deadline: error", []string{"--leader-elect-lease-duration=5s", "--leader-elect-renew-deadline=10s"}, "",
			"--leader-elect-lease-duration (5s) > --leader-elect-renew-deadline (10s)"},
		{"negative orphan grace: error naming the flag", []string{"--orphan-grace=-1s"}, "", "--orphan-grace=-1s must not be negative"},
		{"orphan grace 0: never frees, accepted", []string{"--orphan-grace=0"}, RoleAll, ""},
		{"plain-HTTP metrics off loopback: error", []string{"--metrics-secure=false"}, "", "--metrics-secure=false serves plain HTTP"},
		{"plain-HTTP metrics on loopback: the lab", []string{"--metrics-secure=false", "--metrics-bind-address=127.0.0.1:8080"}, RoleAll, ""},
		{"pprof off loopback: error naming the flag", []string{"--pprof-bind-address=:6060"}, "", `--pprof-bind-address=":6060": profiles are served without authentication`},
		{"pprof on loopback: the scale bench", []string{"--pprof-bind-address=127.0.0.1:6060"}, RoleAll, ""},
		{"no held drain requests: error", []string{"--drain-max-held=0"}, "", "--drain-max-held and --drain-max-held-per-pod must be at least 1"},
		{"no API requests allowed: error naming the flags", []string{"--kube-api-qps=0"}, "", "--kube-api-qps=0 and --kube-api-burst=200: want both positive"},
		{"short leases for the lab", []string{"--leader-elect", "--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1500ms", "--leader-elect-retry-period=250ms"}, RoleAll, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := parse(c.args)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("parse(%q) error %v, want one containing %q", c.args, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", c.args, err)
			}
			if o.role != c.role {
				t.Fatalf("parse(%q) role %q, want %q", c.args, o.role, c.role)
			}
		})
	}
}

// TestRestConfigKubeconfig: --kubeconfig names the file the lab writes; a
// missing file is an error naming the flag.
func TestRestConfigKubeconfig(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: lab, user: {token: t}}]
contexts: [{name: lab, context: {cluster: lab, user: lab}}]
current-context: lab
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	o, err := parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := restConfig(kc, o.kubeAPIQPS, o.kubeAPIBurst)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || cfg.QPS != 100 || cfg.Burst != 200 {
		t.Fatalf("restConfig(%s): host %q qps %v burst %d, want https://127.0.0.1:6443, 100 and 200 (the flags' defaults)", kc, cfg.Host, cfg.QPS, cfg.Burst)
	}
	t.Setenv("KUBECONFIG", kc)
	if cfg, err := restConfig("", 7, 9); err != nil || cfg.Host != "https://127.0.0.1:6443" || cfg.QPS != 7 || cfg.Burst != 9 {
		t.Fatalf("restConfig with $KUBECONFIG: %v %v, want qps 7 and burst 9", cfg, err)
	}
	if _, err := restConfig(filepath.Join(t.TempDir(), "missing"), 1, 1); err == nil || !strings.Contains(err.Error(), "--kubeconfig=") {
		t.Fatalf("missing kubeconfig: %v, want an error naming --kubeconfig", err)
	}
}

// roleEnv is a control plane of its own, so that no reconciler of the
// shared suite (a leader) acts on it.
type roleEnv struct {
	env *envtest.Environment
	cfg *rest.Config
	c   client.Client
	wo  *envtest.WebhookInstallOptions
}

func startRoleEnv(t *testing.T) *roleEnv {
	t.Helper()
	requireSuite(t)
	root, _ := filepath.Abs("../..")
	env := &envtest.Environment{
		BinaryAssetsDirectory: suite.assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}},
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start a second envtest control plane: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: testScheme()})
	if err != nil {
		t.Fatal(err)
	}
	return &roleEnv{env: env, cfg: cfg, c: c, wo: &env.WebhookInstallOptions}
}

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = zv1.AddToScheme(s)
	return s
}

// startRole runs one zerodrop-controller role as main wires it, with lb as
// every LoadBalancer's provider, until the test ends.
func (e *roleEnv) startRole(t *testing.T, lb *fakeLB, webhookPort int, args ...string) setup.Wired {
	t.Helper()
	o, err := parse(append([]string{"--namespace=" + controllerNS, "--webhook-cert-mode=external",
		"--drain-hook-host=" + drainHost, "--provider-poll-interval=50ms", "--resync-interval=1s"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	o.metricsRegistry = prometheus.NewRegistry()
	mgr, err := ctrl.NewManager(e.cfg, ctrl.Options{
		Scheme:                 testScheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cacheOptions(), // main's: trimmed pods
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host: e.wo.LocalServingHost, Port: webhookPort, CertDir: e.wo.LocalServingCertDir}),
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("ZERODROP_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("role", o.role)
	}
	factories := map[zv1.ProviderType]controller.ProviderFactory{
		zv1.ProviderHAProxy: func(*zv1.LoadBalancer) (provider.Provider, error) { return lb, nil },
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Wire(ctx, mgr, o, log, factories)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s manager: %v", o.role, err)
		}
	})
	return w
}

// cyclesPass waits until the fake LB has answered n more pool reads: n
// more reconcile cycles ran, so whatever they would do is done.
func cyclesPass(t *testing.T, lb *fakeLB, n int) {
	t.Helper()
	start := lb.statusReads()
	eventually(t, fmt.Sprintf("%d more reconcile cycles", n), func() (bool, string) {
		got := lb.statusReads() - start
		return got >= n, fmt.Sprintf("%d cycles", got)
	})
}

func getDrain(base, path string) (int, drain.Answer, error) {
	resp, err := http.Get(base + path)
	if err != nil {
		return 0, drain.Answer{}, err
	}
	defer resp.Body.Close()
	var a drain.Answer
	err = json.NewDecoder(resp.Body).Decode(&a)
	return resp.StatusCode, a, err
}

// TestServeRoleDrainsWithoutLeader: a serve replica alone (no reconcile
// role, no leader) injects gates and hooks, sets a deleted pod's target to
// drain and answers its preStop hook from its own look at the load balancer
// — 503 while sessions remain, 200 when none — and never does the leader's
// work: no registration, no deregistration, no gate condition, no binding
// status or finalizer, no Event. When a reconcile role starts, it finishes
// that work.
func TestServeRoleDrainsWithoutLeader(t *testing.T) {
	e := startRoleEnv(t)
	ctx := context.Background()
	lb := newFakeLB("lb-a", "lb-b")
	drainAddr := freeAddr()
	e.startRole(t, lb, e.wo.LocalServingPort, "--role=serve", "--drain-bind-address="+drainAddr)
	drainURL := "http://" + drainAddr

	ns := "shop"
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{zv1.GatesNamespaceLabel: zv1.GatesEnabled}}},
		&zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: zv1.LoadBalancerSpec{
			Provider:  zv1.ProviderHAProxy,
			Instances: []zv1.LoadBalancerInstance{{Name: "lb-a", Socket: "/run/a.sock"}, {Name: "lb-b", Address: "10.0.0.2:9999"}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}},
		&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-edge"}, Spec: zv1.TargetBindingSpec{
			ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromString("http")}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"},
			Pool: pool, Drain: zv1.DrainSpec{PreStop: zv1.PreStopHTTPGet}}},
	} {
		if err := e.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the serve role's webhook injects the gate", func() (bool, string) {
		p := newPod(ns, "probe", map[string]string{"app": "web"})
		if err := e.c.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		return len(p.Spec.ReadinessGates) > 0, fmt.Sprint(p.Spec.ReadinessGates)
	})

	// web-1 was registered by a leader that is gone now; web-2 is new.
	p1 := startPodIn(t, e.c, ns, "web-1", "web", "10.1.0.71")
	id1 := controller.TargetID(ns, "web-edge", "web-1")
	id2 := controller.TargetID(ns, "web-edge", "web-2")
	if err := lb.Register(ctx, provider.Pool{Name: pool}, provider.Target{ID: id1, IP: "10.1.0.71", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	lb.setHealth(pool, id1, "", provider.HealthHealthy)
	lb.setSessions(pool, id1, 2)
	startPodIn(t, e.c, ns, "web-2", "web", "10.1.0.72")

	hook := p1.Spec.Containers[0].Lifecycle.PreStop.HTTPGet
	token := p1.Annotations[webhook.DrainTokenAnnotation]
	if hook == nil || hook.Host != drainHost || hook.Path != webhook.TokenPath(ns, token, 30*time.Second) {
		t.Fatalf("serve role injected preStop hook %+v (token %q)", hook, token)
	}
	cyclesPass(t, lb, 5)
	if code, a, err := getDrain(drainURL, "/drain/v1/namespaces/"+ns+"/pods/web-1?wait=0s"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("live pod: drain endpoint answered %d %+v %v, want 503", code, a, err)
	}

	deleted := time.Now()
	if err := e.c.Delete(ctx, p1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SetDraining by the serve role", func() (bool, string) { return lb.called("drain", pool, id1), fmt.Sprint(lb.callsOf("drain")) })
	type result struct {
		code int
		a    drain.Answer
		err  error
	}
	answered := make(chan result, 1)
	go func() {
		code, a, err := getDrain(drainURL, hook.Path[:strings.Index(hook.Path, "?")]+"?wait=20s")
		answered <- result{code, a, err}
	}()
	cyclesPass(t, lb, 3)
	select {
	case r := <-answered:
		t.Fatalf("drain endpoint answered %d %+v while 2 sessions were open", r.code, r.a)
	default:
	}
	lb.setSessions(pool, id1, 0)
	select {
	case r := <-answered:
		// Sooner than drain.timeout (30 s): drained by the LB, not timed out.
		if r.err != nil || r.code != http.StatusOK || !r.a.Drained || time.Since(deleted) >= 30*time.Second {
			t.Fatalf("drained pod: answer %d %+v %v %s after the deletion, want 200 before drain.timeout", r.code, r.a, r.err, time.Since(deleted))
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("drain endpoint did not answer after the sessions ended")
	}

	// Some more cycles: a leader would have deregistered web-1 (no
	// deregistration delay), registered web-2 and set its gate by now.
	cyclesPass(t, lb, 5)
	if got := lb.callsOf("register"); len(got) != 1 || got[0] != "register "+pool+"/"+string(id1) {
		t.Errorf("provider register calls %v, want only the test's own registration of web-1", got)
	}
	if got := lb.callsOf("deregister"); len(got) != 0 {
		t.Errorf("serve role deregistered: %v", got)
	}
	if lb.has(pool, id2) {
		t.Errorf("serve role registered web-2")
	}
	for _, name := range []string{"web-1", "web-2"} {
		var p corev1.Pod
		if err := e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Status.Conditions {
			if strings.HasPrefix(string(c.Type), zv1.GateConditionPrefix) {
				t.Errorf("serve role set %s on %s: %s %s", c.Type, name, c.Status, c.Reason)
			}
		}
	}
	var b zv1.TargetBinding
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-edge"}, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Finalizers) != 0 || b.Status.ObservedGeneration != 0 || len(b.Status.Conditions) != 0 {
		t.Errorf("serve role wrote the binding: finalizers %v, status %+v", b.Finalizers, b.Status)
	}
	var evs eventsv1.EventList
	if err := e.c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs.Items {
		// The API server reports its own repairs here too; ours name the
		// controller as reporter.
		if strings.Contains(ev.ReportingController, "zerodrop") || strings.Contains(ev.DeprecatedSource.Component, "zerodrop") ||
			ev.Regarding.Kind == "Pod" || ev.Regarding.Kind == "TargetBinding" {
			t.Errorf("serve role emitted an Event: %s %s on %s %s", ev.Reason, ev.Note, ev.Regarding.Kind, ev.Regarding.Name)
		}
	}

	// The reconcile role comes up: it finishes the leader's work, and opens
	// neither a webhook port nor a drain endpoint.
	reconcileDrain, reconcileWebhook := freeAddr(), freeAddr()
	_, port, _ := net.SplitHostPort(reconcileWebhook)
	var webhookPort int
	fmt.Sscanf(port, "%d", &webhookPort)
	w := e.startRole(t, lb, webhookPort, "--role=reconcile", "--drain-bind-address="+reconcileDrain)
	if w.Drain != nil || w.Reconciler.DrainOnly {
		t.Fatalf("reconcile role wired a drain endpoint (%v) or a drain-only reconciler", w.Drain != nil)
	}
	eventually(t, "the reconcile role deregisters web-1 and registers web-2", func() (bool, string) {
		return !lb.has(pool, id1) && lb.has(pool, id2), fmt.Sprint(lb.callsOf("register"), lb.callsOf("deregister"))
	})
	eventually(t, "the reconcile role writes the binding's status", func() (bool, string) {
		var b zv1.TargetBinding
		if err := e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-edge"}, &b); err != nil {
			return false, err.Error()
		}
		return b.Status.ObservedGeneration == b.Generation && len(b.Finalizers) == 1, fmt.Sprintf("%+v %v", b.Status, b.Finalizers)
	})
	for _, addr := range []string{reconcileDrain, reconcileWebhook} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("reconcile role listens on %s", addr)
		}
	}
}

// TestCertRotatorConcurrentEnsure: several replicas Ensure the self-managed
// certificate at once against a real API server (every replica runs a
// rotator): all succeed and all serve the one certificate the Secret holds;
// a serve replica's reader then serves it too.
func TestCertRotatorConcurrentEnsure(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	secret := types.NamespacedName{Namespace: controllerNS, Name: fmt.Sprintf("certs-%d", os.Getpid())}
	t.Cleanup(func() {
		_ = suite.c.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secret.Namespace, Name: secret.Name}})
	})
	names := []string{"zerodrop-webhook.zerodrop-system.svc"}
	const replicas = 4
	dirs := make([]string, replicas+1)
	errs := make(chan error, replicas)
	for i := 0; i < replicas; i++ {
		dirs[i] = t.TempDir()
		// No WebhookConfiguration: the suite's own must keep its caBundle.
		r := &webhook.CertRotator{Client: suite.c, Secret: secret, CertDir: dirs[i], DNSNames: names}
		go func() { errs <- r.Ensure(ctx) }()
	}
	for i := 0; i < replicas; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Ensure: %v", err)
		}
	}
	dirs[replicas] = t.TempDir()
	reader := &webhook.CertRotator{Client: suite.c, Secret: secret, CertDir: dirs[replicas], DNSNames: names, ReadOnly: true}
	if err := reader.Ensure(ctx); err != nil {
		t.Fatalf("reader Ensure: %v", err)
	}
	var s corev1.Secret
	if err := suite.c.Get(ctx, secret, &s); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		got, err := os.ReadFile(filepath.Join(d, "tls.crt"))
		if err != nil || string(got) != string(s.Data["tls.crt"]) {
			t.Fatalf("%s/tls.crt differs from the Secret's certificate (%v): replicas would serve different certificates", d, err)
		}
	}
}

// TestDrainServerQuiesce: a serve replica that is told to stop answers the
// preStop requests it holds (they end with their verdict, not with a reset
// connection) and only then returns; new connections are refused once the
// delay is over.
func TestDrainServerQuiesce(t *testing.T) {
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/held", func(w http.ResponseWriter, r *http.Request) {
		held <- struct{}{}
		<-release
		w.WriteHeader(http.StatusOK)
	})
	addr := freeAddr()
	d := &drain.Endpoint{Addr: addr, Handler: mux, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = d.Start(ctx) }()
	eventually(t, "drain server listening", func() (bool, string) { return d.Listening(nil) == nil, "" })

	answer := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/held")
		if err != nil {
			answer <- -1
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	<-held
	stopped := make(chan struct{})
	go func() { d.Quiesce(0, 20*time.Second); close(stopped) }()
	eventually(t, "new connections refused", func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil, "still accepting"
	})
	select {
	case <-stopped:
		t.Fatalf("quiesce returned while a request was held")
	case code := <-answer:
		t.Fatalf("held request ended (%d) before its verdict", code)
	default:
	}
	close(release)
	if code := <-answer; code != http.StatusOK {
		t.Fatalf("held request got %d, want its 200", code)
	}
	<-stopped
}

// TestRoleProcesses runs zerodrop-controller itself, one process per role,
// as the lab does: KUBECONFIG in the environment, every port on 127.0.0.1,
// external certificates, short leases. The reconcile process takes the
// Lease; the serve process serves /readyz and the drain endpoint; both stop
// cleanly on SIGTERM.
func TestRoleProcesses(t *testing.T) {
	e := startRoleEnv(t)
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "zerodrop-controller")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	kcFile := mastersKubeconfig(t, e.env, "lab", t.TempDir())
	if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNS}}); err != nil {
		t.Fatal(err)
	}
	start := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kcFile)
		logFile, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
			if t.Failed() {
				out, _ := os.ReadFile(logFile.Name())
				t.Logf("%s log:\n%s", name, out)
			}
		})
		return cmd
	}
	ready := func(what, addr string) {
		eventually(t, what+" /readyz", func() (bool, string) {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, resp.Status
		})
	}
	stop := func(what string, cmd *exec.Cmd) {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s after SIGTERM: %v", what, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop on SIGTERM", what)
		}
	}

	probes := []string{freeAddr(), freeAddr()}
	reconcile := start("reconcile", "--role=reconcile", "--namespace="+controllerNS, "--webhook-cert-mode=external",
		"--leader-elect", "--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1500ms", "--leader-elect-retry-period=250ms",
		"--metrics-bind-address="+freeAddr(), "--health-probe-bind-address="+probes[0])
	drainAddr := freeAddr()
	_, drainPort, _ := net.SplitHostPort(drainAddr)
	_, webhookPort, _ := net.SplitHostPort(freeAddr())
	serve := start("serve", "--role=serve", "--namespace="+controllerNS, "--webhook-cert-mode=external",
		"--webhook-cert-dir="+e.wo.LocalServingCertDir, "--webhook-bind-host=127.0.0.1", "--webhook-port="+webhookPort,
		"--drain-hook-host=127.0.0.1", "--drain-hook-port="+drainPort, "--drain-bind-address="+drainAddr,
		"--drain-shutdown-delay=0s", "--leader-elect",
		"--metrics-bind-address="+freeAddr(), "--health-probe-bind-address="+probes[1])
	ready("reconcile", probes[0])
	ready("serve", probes[1])
	eventually(t, "the reconcile process holds the Lease", func() (bool, string) {
		var l coordinationv1.Lease
		err := e.c.Get(ctx, types.NamespacedName{Namespace: controllerNS, Name: "zerodrop-controller.zerodrop.dev"}, &l)
		if err != nil {
			return false, err.Error()
		}
		return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", fmt.Sprint(l.Spec.HolderIdentity)
	})
	if code, _, err := getDrain("http://"+drainAddr, "/drain/v1/namespaces/shop/pods/nobody?wait=0s"); err != nil || code != http.StatusNotFound {
		t.Fatalf("serve process drain endpoint: %d %v, want 404 for an unbound pod", code, err)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+webhookPort, time.Second); err != nil {
		t.Fatalf("serve process webhook port: %v", err)
	} else {
		c.Close()
	}
	stop("serve", serve)
	stop("reconcile", reconcile)
}
