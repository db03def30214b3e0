package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/config"
	"zerodrop.dev/zerodrop/internal/lab/proc"
	"zerodrop.dev/zerodrop/internal/webhook"
)

// ControllerNamespace is where the lab's zerodrop-controller "runs" (its
// leader-election Lease, and the namespace it never injects).
const ControllerNamespace = "zerodrop-system"

// ControllerLeaseName is the reconcile process's leader-election Lease (in
// ControllerNamespace).
const ControllerLeaseName = "zerodrop-controller.zerodrop.dev"

// LoadBalancerName is the LoadBalancer object that stands for the lab's
// HAProxy instances.
const LoadBalancerName = "lab"

// BindingName is the TargetBinding of the zerodrop scenario's Service.
const BindingName = "web"

// FindController locates the zerodrop-controller program: $ZERODROP_CONTROLLER,
// else next to the running executable (make build puts it in bin/), else on
// PATH.
func FindController() (string, error) {
	return findProgram("zerodrop-controller", "ZERODROP_CONTROLLER", "make build")
}

// findProgram finds one of this repository's programs: $env, then next to
// this executable, then on PATH; the error says how to build it.
func findProgram(name, env, build string) (string, error) {
	if p := os.Getenv(env); p != "" {
		return filepath.Abs(p)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("lab: %s program not found next to this executable, on PATH or in $%s (%s)", name, env, build)
}

// Controller is zerodrop-controller running against the lab as two
// processes, as config/ deploys it: the data path (role serve: the pod
// webhook and the drain endpoint the injected preStop hooks call) and the
// reconciler (role reconcile: registration, gates, drain, leader-elected).
// Both listen on 127.0.0.1 only, but for the drain endpoint, which listens on
// the nodes' address (the pod network's host end) when the lab has nodes:
// the node agents call it there for the injected preStop hooks, and an app
// using the graceful package reaches it from its pod, as the drain Service's
// ClusterIP serves both in a cluster. The API server calls the webhook by URL
// with a certificate for 127.0.0.1 the lab issues (the kubelet, not the pod, sends preStop
// httpGet requests).
type Controller struct {
	bin, dir string
	// kubeconfigs: each role's ServiceAccount kubeconfig (config/rbac).
	kubeconfigs   map[string]string
	log           *slog.Logger
	c             client.Client
	webhookConfig string

	serveArgs, reconcileArgs []string
	reconcileProbe           string // health-probe address of the reconcile process
	reconcileMetrics         string // metrics address of the reconcile process
	serveMetrics             string // metrics address of the serve process
	servePprof               string // --pprof-bind-address of the serve process
	reconcilePprof           string // --pprof-bind-address of the reconcile process
	serveProbe               string // readiness address of the serve process
	drainAddr                string // the drain endpoint the injected hooks call
	mu                       sync.Mutex
	serve, reconcile         *proc.Process
	adapter                  *proc.Process // zerodrop-adapter, for a LoadBalancer of provider external
	restarts                 int
	// Supervision (controller_supervise.go): processes the lab killed on
	// purpose, unexpected exits per role, and whether Stop has begun.
	killed   map[*proc.Process]bool
	crashes  map[string]int
	stopping bool
	// excused are log ranges whose "forbidden" lines a fault expected
	// (controller_supervise.go).
	excused []logRange
}

var setCtrlLogger sync.Once

// labScheme knows the types the lab writes.
func labScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextv1.AddToScheme, zv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// labClient is a controller-runtime client of the lab's API with the
// types the lab writes.
func labClient(cfg *rest.Config, log *slog.Logger) (client.Client, error) {
	// controller-runtime's client logs through its own logger, which
	// complains (with a stack trace) until one is set.
	setCtrlLogger.Do(func() { ctrllog.SetLogger(logr.FromSlogHandler(log.Handler())) })
	scheme, err := labScheme()
	if err != nil {
		return nil, err
	}
	kc, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("lab: client: %w", err)
	}
	return kc, nil
}

// StartController installs the CRDs, starts both controller processes,
// installs the webhook configuration and the LoadBalancer lb (named
// LoadBalancerName: labLoadBalancer for the lab's HAProxy instances,
// nginxLoadBalancer for its NGINX instances behind the adapter), and returns
// when the webhook serves. Stop removes all of it again.
func StartController(ctx context.Context, t Target, lb *zv1.LoadBalancer, log *slog.Logger) (c *Controller, err error) {
	return startController(ctx, t, lb, log, false, 0)
}

// startController is StartController; viaAdapter also starts
// zerodrop-adapter in front of the HAProxy instances and makes lb one of
// provider external pointing at it.
// lease is the reconcile process's leader lease (leaseArgs; 0: the lab's
// short one); reconcileArgs are more flags of that process, after the
// harness's own.
func startController(ctx context.Context, t Target, lb *zv1.LoadBalancer, log *slog.Logger, viaAdapter bool, lease time.Duration, reconcileArgs ...string) (c *Controller, err error) {
	if t.Kubeconfig == "" {
		return nil, errors.New("lab: controller: the target has no kubeconfig file")
	}
	bin, err := FindController()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	kc, err := labClient(t.Config, log)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "zerodrop-controller-")
	if err != nil {
		return nil, fmt.Errorf("lab: controller: %w", err)
	}
	c = &Controller{bin: bin, dir: dir, kubeconfigs: map[string]string{}, log: log, c: kc, webhookConfig: "zerodrop-lab"}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	if err := installCRDs(ctx, kc); err != nil {
		return c, err
	}
	if err := kc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ControllerNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return c, fmt.Errorf("lab: controller namespace: %w", err)
	}
	// Each process runs as its role's ServiceAccount under config/rbac,
	// applied unchanged: what the ClusterRoles lack fails here (Forbidden).
	if err := applyRBAC(ctx, kc); err != nil {
		return c, err
	}
	for role, sa := range map[string]string{"serve": ServeServiceAccount, "reconcile": ReconcileServiceAccount} {
		f, err := serviceAccountKubeconfig(ctx, t.Config, dir, sa)
		if err != nil {
			return c, err
		}
		c.kubeconfigs[role] = f
	}
	if err := applyAdminTLSSecret(ctx, kc, t); err != nil {
		return c, err
	}
	caPEM, err := issueLoopbackCert(filepath.Join(dir, "certs"))
	if err != nil {
		return c, err
	}
	ports, err := proc.FreePorts(8)
	if err != nil {
		return c, err
	}
	webhookPort, drainPort := ports[0], ports[1]
	loop := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	common := []string{
		"--namespace=" + ControllerNamespace,
		"--webhook-cert-mode=external",
		"--webhook-cert-dir=" + filepath.Join(dir, "certs"),
		"--log-level=info",
		// Loopback only: plain HTTP metrics, no TokenReview round trips.
		"--metrics-secure=false",
	}
	drainHost := nodeAddress(ctx, kc)
	drainAddr := net.JoinHostPort(drainHost, strconv.Itoa(drainPort))
	c.serveArgs = append([]string{
		"--role=serve",
		"--webhook-bind-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(webhookPort),
		"--drain-bind-address=" + drainAddr,
		"--drain-hook-host=" + drainHost,
		"--drain-hook-port=" + strconv.Itoa(drainPort),
		"--metrics-bind-address=" + loop(ports[2]),
		"--health-probe-bind-address=" + loop(ports[3]),
		"--pprof-bind-address=" + loop(ports[6]),
	}, common...)
	c.serveMetrics = loop(ports[2])
	c.reconcileProbe = loop(ports[5])
	c.reconcileMetrics = loop(ports[4])
	c.serveProbe = loop(ports[3])
	c.servePprof, c.reconcilePprof = loop(ports[6]), loop(ports[7])
	c.drainAddr = drainAddr
	c.reconcileArgs = slices.Concat([]string{"--role=reconcile", "--leader-elect"}, leaseArgs(lease), []string{
		"--metrics-bind-address=" + loop(ports[4]),
		"--health-probe-bind-address=" + c.reconcileProbe,
		"--pprof-bind-address=" + loop(ports[7]),
	}, common, reconcileArgs)

	if err := c.startRole(ctx, roleServe); err != nil {
		return c, err
	}
	if err := c.StartReconciler(ctx); err != nil {
		return c, err
	}
	if err := installWebhook(ctx, kc, c.webhookConfig, "https://"+loop(webhookPort), caPEM); err != nil {
		return c, err
	}
	if viaAdapter {
		url, err := c.startAdapter(ctx, t)
		if err != nil {
			return c, err
		}
		lb = adapterLoadBalancer(lb, url)
	}
	if err := putLoadBalancer(ctx, kc, lb); err != nil {
		return c, err
	}
	log.Info("zerodrop-controller started", "serve", c.serve.PID(), "reconcile", c.reconcile.PID(), "dir", dir)
	return c, nil
}

// LabLeaderLease is the lab's leader lease: short, so that a killed
// leader's successor takes over in seconds, not the controller's default
// 15 s.
const LabLeaderLease = 4 * time.Second

// leaseArgs are the reconcile process's leader-election flags for a lease
// of d (0: LabLeaderLease, renewed within 3 s, retried every 500 ms);
// longer leases keep the controller's default proportions (15 s: renewed
// within 10 s, retried every 2 s). controller-runtime gives each renewal
// request half the renew deadline.
func leaseArgs(d time.Duration) []string {
	renew, retry := 3*time.Second, 500*time.Millisecond
	if d <= 0 {
		d = LabLeaderLease
	} else {
		renew, retry = d*2/3, d*2/15
	}
	return []string{
		"--leader-elect-lease-duration=" + d.String(),
		"--leader-elect-renew-deadline=" + renew.String(),
		"--leader-elect-retry-period=" + retry.String(),
	}
}

func (c *Controller) start(role string, args []string) (*proc.Process, error) {
	c.mu.Lock()
	n := c.restarts
	c.mu.Unlock()
	return proc.Start(proc.Spec{
		Name: "zerodrop-controller-" + role,
		Path: c.bin,
		Args: args,
		Env:  []string{"KUBECONFIG=" + c.kubeconfigs[role]},
		Log:  filepath.Join(c.dir, fmt.Sprintf("%s-%d.log", role, n)),
	})
}

// StartReconciler starts the reconcile process (again, after KillReconciler)
// and waits until it answers its health probe.
func (c *Controller) StartReconciler(ctx context.Context) error {
	return c.startRole(ctx, roleReconcile)
}

// KillReconciler kills the reconcile process with SIGKILL, as an OOM kill or
// a node failure would, and waits until it is gone. It stays down until
// StartReconciler.
func (c *Controller) KillReconciler() error {
	return c.kill(roleReconcile)
}

// Stop removes the webhook configurations and the LoadBalancer, stops both
// processes and removes the run directory (logs included). The CRDs stay.
func (c *Controller) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.c != nil {
		_ = client.IgnoreNotFound(c.c.Delete(ctx, &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: c.webhookConfig}}))
		_ = client.IgnoreNotFound(c.c.Delete(ctx, &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: c.webhookConfig}}))
		// The LoadBalancer's finalizer is removed by the reconciler: wait
		// (bounded) until it is gone before stopping it, so the next run
		// does not meet a terminating LoadBalancer.
		if err := c.c.Delete(ctx, &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: LoadBalancerName}}); err == nil {
			wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
			_ = pollUntil(wctx, 100*time.Millisecond, func() bool {
				return apierrors.IsNotFound(c.c.Get(wctx, types.NamespacedName{Name: LoadBalancerName}, &zv1.LoadBalancer{}))
			})
			wcancel()
		}
	}
	c.stopProcesses()
}

// stopProcesses stops the controller's processes and removes the run
// directory, leaving its objects in the API (a lab about to be removed
// whole: the scale harness).
func (c *Controller) stopProcesses() {
	c.mu.Lock()
	c.stopping = true
	procs := []*proc.Process{c.reconcile, c.serve, c.adapter}
	c.mu.Unlock()
	for _, p := range procs {
		if p != nil {
			p.Stop(10 * time.Second)
		}
	}
	if os.Getenv("ZERODROP_KEEP_LOGS") == "" {
		_ = os.RemoveAll(c.dir)
	}
}

// Forbidden fails when a controller process logged a request RBAC refused
// (config/rbac lacks a rule the controller needs), naming the lines.
func (c *Controller) Forbidden() error {
	lines := forbiddenLines(c.dir, c.isExcused)
	if len(lines) == 0 {
		return nil
	}
	if len(lines) > 5 {
		lines = append(lines[:5], fmt.Sprintf("... and %d more", len(lines)-5))
	}
	return fmt.Errorf("lab: zerodrop-controller was refused by RBAC (config/rbac):\n%s", strings.Join(lines, "\n"))
}

// Logs returns the tails of the controller's logs, for error messages.
func (c *Controller) Logs() string {
	var out string
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".log" {
			out += "--- " + e.Name() + "\n" + proc.TailFile(filepath.Join(c.dir, e.Name()), 3000) + "\n"
		}
	}
	return out
}

// nodeAddress is the InternalIP of the lab's first Node (every lab node
// shares the pod network's host address), or 127.0.0.1 when there is none.
func nodeAddress(ctx context.Context, kc client.Client) string {
	var nodes corev1.NodeList
	if err := kc.List(ctx, &nodes); err == nil {
		for _, n := range nodes.Items {
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP && a.Address != "" {
					return a.Address
				}
			}
		}
	}
	return "127.0.0.1"
}

// putLoadBalancer creates lb, or gives an existing one lb's spec. A
// LoadBalancer that an earlier run deleted may still be terminating (its
// finalizer stays while TargetBindings of a deleted namespace are
// finalized); updating it would be lost when it goes, so wait until it is
// gone (bounded to two minutes) and create it anew.
func putLoadBalancer(ctx context.Context, kc client.Client, lb *zv1.LoadBalancer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		err := kc.Create(ctx, lb.DeepCopy())
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("lab: LoadBalancer %s: %w", lb.Name, err)
		}
		var cur zv1.LoadBalancer
		if err := kc.Get(ctx, types.NamespacedName{Name: lb.Name}, &cur); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("lab: LoadBalancer %s: %w", lb.Name, err)
		} else if err == nil && cur.DeletionTimestamp == nil {
			cur.Spec = lb.Spec
			if err := kc.Update(ctx, &cur); err != nil {
				return fmt.Errorf("lab: LoadBalancer %s: %w", lb.Name, err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: LoadBalancer %s is still being deleted (finalizer %s): %w", lb.Name, cur.Finalizers, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitHTTP polls url until it answers 200, the process exits, or ctx ends
// (bounded to one minute).
func waitHTTP(ctx context.Context, url string, p *proc.Process) error {
	return waitHTTPWith(ctx, http.DefaultClient, url, p)
}

// waitHTTPWith is waitHTTP with client hc.
func waitHTTPWith(ctx context.Context, hc *http.Client, url string, p *proc.Process) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited: %s", p.Name, p.Tail(2000))
		case <-ctx.Done():
			return fmt.Errorf("%s: %w; log: %s", url, ctx.Err(), p.Tail(2000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// installCRDs creates or updates the CRDs embedded from config/crd/bases and
// waits until they are established.
func installCRDs(ctx context.Context, kc client.Client) error {
	files, err := fs.Glob(config.FS, "crd/bases/*.yaml")
	if err != nil || len(files) == 0 {
		return fmt.Errorf("lab: no CRDs embedded: %v", err)
	}
	for _, f := range files {
		raw, err := config.FS.ReadFile(f)
		if err != nil {
			return err
		}
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
			return fmt.Errorf("lab: config/%s: %w", f, err)
		}
		var cur apiextv1.CustomResourceDefinition
		switch err := kc.Get(ctx, types.NamespacedName{Name: crd.Name}, &cur); {
		case apierrors.IsNotFound(err):
			if err := kc.Create(ctx, &crd); err != nil {
				return fmt.Errorf("lab: create CRD %s: %w", crd.Name, err)
			}
		case err != nil:
			return fmt.Errorf("lab: get CRD %s: %w", crd.Name, err)
		default:
			crd.ResourceVersion = cur.ResourceVersion
			if err := kc.Update(ctx, &crd); err != nil {
				return fmt.Errorf("lab: update CRD %s: %w", crd.Name, err)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = pollUntil(wctx, 100*time.Millisecond, func() bool {
			if kc.Get(wctx, types.NamespacedName{Name: crd.Name}, &cur) != nil {
				return false
			}
			for _, cond := range cur.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return true
				}
			}
			return false
		})
		cancel()
		if err != nil {
			return fmt.Errorf("lab: CRD %s not established: %w", crd.Name, err)
		}
	}
	return nil
}

// installWebhook creates the webhook configurations embedded from
// config/webhook (the pod mutator and the TargetBinding validator), pointed
// at url with the lab's CA instead of the Service.
func installWebhook(ctx context.Context, kc client.Client, name, url string, caPEM []byte) error {
	toURL := func(cc *admissionv1.WebhookClientConfig) {
		path := "/"
		if cc.Service != nil && cc.Service.Path != nil {
			path = *cc.Service.Path
		}
		cc.Service = nil
		cc.URL = ptr.To(url + path)
		cc.CABundle = caPEM
	}
	var mwc admissionv1.MutatingWebhookConfiguration
	if err := readConfig("webhook/manifests.yaml", &mwc); err != nil {
		return err
	}
	mwc.Name = name
	for i := range mwc.Webhooks {
		toURL(&mwc.Webhooks[i].ClientConfig)
	}
	var vwc admissionv1.ValidatingWebhookConfiguration
	if err := readConfig("webhook/validating.yaml", &vwc); err != nil {
		return err
	}
	vwc.Name = name
	for i := range vwc.Webhooks {
		toURL(&vwc.Webhooks[i].ClientConfig)
	}
	for _, wh := range []client.Object{&mwc, &vwc} {
		old := wh.DeepCopyObject().(client.Object)
		_ = client.IgnoreNotFound(kc.Delete(ctx, old))
		if err := kc.Create(ctx, wh); err != nil {
			return fmt.Errorf("lab: webhook configuration %s: %w", name, err)
		}
	}
	return nil
}

// readConfig decodes one embedded file of config/ into obj.
func readConfig(path string, obj any) error {
	raw, err := config.FS.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		return fmt.Errorf("lab: config/%s: %w", path, err)
	}
	return nil
}

// labLoadBalancer is the LoadBalancer for the lab's HAProxy instances, with
// the lab's health check. It grants the lab's backend to every namespace
// explicitly: each run binds it from a namespace of its own, and the lab's
// cluster has one tenant.
func labLoadBalancer(t Target) *zv1.LoadBalancer {
	lb := &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: LoadBalancerName}}
	lb.Spec.Provider = zv1.ProviderHAProxy
	// The lab's HAProxy ends an old worker at hard-stop-after.
	lb.Spec.ReloadGrace = &metav1.Duration{Duration: HardStopAfter}
	lb.Spec.Pools = []zv1.PoolGrant{{Name: BackendName, AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromAll}}}
	for _, h := range t.HAProxy {
		in := zv1.LoadBalancerInstance{Name: h.Name, Socket: h.Socket}
		if h.AdminTLS != "" {
			in = zv1.LoadBalancerInstance{Name: h.Name, Address: h.AdminTLS,
				TLS: &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: AdminTLSSecret, Namespace: ControllerNamespace}}}
		}
		lb.Spec.Instances = append(lb.Spec.Instances, in)
	}
	lb.Spec.PoolDefaults.HealthCheck = zv1.HealthCheck{
		Interval: &metav1.Duration{Duration: t.Check.Interval},
		Rise:     ptr.To(int32(t.Check.Rise)),
		Fall:     ptr.To(int32(t.Check.Fall)),
	}
	return lb
}

// labBinding binds the scenario's Service "web" (port "http") to the lab's
// HAProxy backend, with the drain gate as an injected preStop httpGet hook.
func labBinding(ns string) *zv1.TargetBinding {
	return &zv1.TargetBinding{
		ObjectMeta: metav1.ObjectMeta{Name: BindingName, Namespace: ns},
		Spec: zv1.TargetBindingSpec{
			ServiceRef:      zv1.ServiceReference{Name: "web", Port: intstr.FromString("http")},
			LoadBalancerRef: zv1.LoadBalancerReference{Name: LoadBalancerName},
			Pool:            BackendName,
			Drain:           zv1.DrainSpec{PreStop: zv1.PreStopHTTPGet},
		},
	}
}

// issueLoopbackCert writes a CA-signed serving certificate for 127.0.0.1
// (tls.crt, tls.key) into dir and returns the CA in PEM, for the webhook's
// caBundle.
func issueLoopbackCert(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caPEM, certPEM, keyPEM, err := webhook.IssueServingCertificate(time.Now(), 7*24*time.Hour, []string{"127.0.0.1"})
	if err != nil {
		return nil, fmt.Errorf("lab: webhook certificate: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	return caPEM, nil
}

func pollUntil(ctx context.Context, every time.Duration, ok func() bool) error {
	for !ok() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}

// applyAdminTLSSecret creates or updates the client certificate Secret of
// the lab's mutual-TLS Runtime API (a lab from before it has none: the
// LoadBalancer then names the unix sockets).
func applyAdminTLSSecret(ctx context.Context, kc client.Client, t Target) error {
	if len(t.HAProxy) == 0 || t.HAProxy[0].AdminTLSDir == "" {
		return nil
	}
	want, err := adminTLSSecret(t.HAProxy[0].AdminTLSDir)
	if err != nil {
		return err
	}
	var cur corev1.Secret
	err = kc.Get(ctx, client.ObjectKeyFromObject(want), &cur)
	switch {
	case apierrors.IsNotFound(err):
		err = kc.Create(ctx, want)
	case err == nil:
		cur.Data, cur.Type = want.Data, want.Type
		err = kc.Update(ctx, &cur)
	}
	if err != nil {
		return fmt.Errorf("lab: Secret %s/%s: %w", ControllerNamespace, AdminTLSSecret, err)
	}
	return nil
}

// MetricsAddrs are both processes' Prometheus endpoints (host:port,
// plain HTTP /metrics): serve, then reconcile.
func (c *Controller) MetricsAddrs() []string { return []string{c.serveMetrics, c.reconcileMetrics} }

// ReconcileMetricsURL is the reconcile process's Prometheus endpoint.
func (c *Controller) ReconcileMetricsURL() string { return "http://" + c.reconcileMetrics + "/metrics" }

// PprofURLs are the /debug/pprof/ bases of the serve and reconcile
// processes (--pprof-bind-address, loopback).
func (c *Controller) PprofURLs() (serve, reconcile string) {
	return "http://" + c.servePprof + "/debug/pprof/", "http://" + c.reconcilePprof + "/debug/pprof/"
}

// PIDs are the pids of the serve and reconcile processes started last (0
// for one never started).
func (c *Controller) PIDs() (serve, reconcile int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.serve != nil {
		serve = c.serve.PID()
	}
	if c.reconcile != nil {
		reconcile = c.reconcile.PID()
	}
	return serve, reconcile
}
