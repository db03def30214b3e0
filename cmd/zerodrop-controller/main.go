// Command zerodrop-controller runs zerodrop's readiness gates and drain
// gates: the TargetBinding reconciler, the pod webhook that injects the
// gates (and the TargetBinding webhook that checks pool grants), and the
// drain endpoint preStop hooks wait on. See docs/controller.md.
//
// --role splits the process: `reconcile` runs the leader-elected
// reconcilers, `serve` the data path that must stay up while the reconciler
// is down or replaced (webhook and drain endpoint, every replica serving),
// `all` (the default) everything in one process.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/internal/podcache"
	"zerodrop.dev/zerodrop/internal/providers"
	"zerodrop.dev/zerodrop/internal/setup"
	"zerodrop.dev/zerodrop/internal/webhook"
)

// Roles of a zerodrop-controller process (--role).
const (
	// RoleAll runs everything in one process: the reconcilers, the webhook
	// and the drain endpoint (answered from the leader's own verdicts).
	RoleAll = setup.RoleAll
	// RoleReconcile runs the leader-elected reconcilers (TargetBinding and
	// LoadBalancer) and the self-managed certificate rotation: no webhook, no
	// drain endpoint.
	RoleReconcile = setup.RoleReconcile
	// RoleServe runs the webhook and the drain endpoint on every replica (no
	// leader election); its drain endpoint answers from a DrainOnly
	// TargetBinding reconciler of its own.
	RoleServe = setup.RoleServe
)

// options are the command-line flags.
type options struct {
	role                              string
	kubeconfig                        string
	kubeAPIQPS                        float64
	kubeAPIBurst                      int
	metricsAddr, probeAddr, drainAddr string
	metricsSecure                     bool
	pprofAddr                         string
	drainMaxHeld, drainMaxHeldPerPod  int
	leaderElect                       bool
	leaderElectionNamespace           string
	leaseDuration, renewDeadline      time.Duration
	retryPeriod                       time.Duration
	webhookBindHost                   string
	drainShutdownDelay                time.Duration
	drainShutdownTimeout              time.Duration
	namespace                         string
	webhookPort                       int
	webhookCertDir, webhookCertMode   string
	webhookService, webhookConfig     string
	webhookSecret                     string
	drainHookHost, drainService       string
	drainHookPort                     int
	pollInterval, resyncInterval      time.Duration
	pushedPollInterval                time.Duration
	verdictEvents                     bool
	providerTimeout                   time.Duration
	breakerBackoff, cycleTimeout      time.Duration
	orphanGrace                       time.Duration
	workers                           int
	logLevel                          string

	// metricsRegistry, when set, replaces controller-runtime's registry
	// (tests run several managers in one process). Not a flag.
	metricsRegistry prometheus.Registerer
	// apiClock samples the API server's clock (setup.WatchAPIClock); set
	// by run, not a flag.
	apiClock *controller.APIClock
}

// reconciles reports whether the role runs the reconcilers.
func (o options) reconciles() bool { return o.role == RoleAll || o.role == RoleReconcile }

// serves reports whether the role runs the webhook and the drain endpoint.
func (o options) serves() bool { return o.role == RoleAll || o.role == RoleServe }

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "zerodrop-controller:", err)
		os.Exit(1)
	}
}

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("zerodrop-controller", flag.ContinueOnError)
	fs.StringVar(&o.role, "role", RoleAll, "all (reconcilers, webhook and drain endpoint in one process), reconcile (leader-elected reconcilers only) or serve (webhook and drain endpoint on every replica, not leader-elected)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; default $KUBECONFIG, then in-cluster, then ~/.kube/config")
	fs.Float64Var(&o.kubeAPIQPS, "kube-api-qps", 100, "requests per second to the API server the client allows itself (each gate opened or closed is one pod status patch)")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 200, "requests to the API server the client may send at once above --kube-api-qps")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true, "serve /metrics over HTTPS to callers the API server authenticates and authorizes (TokenReview, SubjectAccessReview: get on the /metrics URL); false serves plain HTTP, allowed on a loopback --metrics-bind-address only (the lab)")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", "address of Go's /debug/pprof/ profiles (CPU, heap, goroutines), plain HTTP without authentication, so loopback only (127.0.0.1:P; reach it with kubectl port-forward); empty: off")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&o.drainAddr, "drain-bind-address", ":8082", "address of the drain endpoint (/drain/v1/...)")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader so that only one replica reconciles (set in the Deployment)")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the controller's namespace)")
	fs.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long non-leaders wait after the last renewal before taking over the Lease")
	fs.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader retries renewing before it gives up leadership (and exits)")
	fs.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second, "interval between leader election attempts")
	fs.StringVar(&o.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the controller's own namespace (never injected); default $POD_NAMESPACE")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "port of the admission webhook server")
	fs.StringVar(&o.webhookBindHost, "webhook-bind-host", "", "address the webhook server binds (default: every interface)")
	fs.DurationVar(&o.drainShutdownDelay, "drain-shutdown-delay", 5*time.Second, "serve role: after SIGTERM, keep accepting drain requests this long (while the Service stops routing to this replica)")
	fs.IntVar(&o.drainMaxHeld, "drain-max-held", drain.DefaultMaxHeld, "drain requests held at once, in total; beyond it the endpoint answers 503 with Retry-After at once")
	fs.IntVar(&o.drainMaxHeldPerPod, "drain-max-held-per-pod", drain.DefaultMaxHeldPerPod, "drain requests held at once for one pod")
	fs.DurationVar(&o.drainShutdownTimeout, "drain-shutdown-timeout", 60*time.Second, "serve role: after the delay, wait this long for held drain requests to be answered before stopping")
	fs.StringVar(&o.webhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with the webhook's tls.crt and tls.key")
	fs.StringVar(&o.webhookCertMode, "webhook-cert-mode", "self-managed", "self-managed (the controller issues and rotates its certificate) or external (cert-manager or another tool fills --webhook-cert-dir and the caBundle)")
	fs.StringVar(&o.webhookService, "webhook-service", "zerodrop-webhook", "Service in front of the webhook (self-managed certificate names)")
	fs.StringVar(&o.webhookConfig, "webhook-configuration", "zerodrop-controller", "MutatingWebhookConfiguration whose caBundle the controller keeps (self-managed)")
	fs.StringVar(&o.webhookSecret, "webhook-secret", "zerodrop-webhook-certs", "Secret in the controller's namespace holding the webhook CA and certificate (self-managed)")
	fs.StringVar(&o.drainHookHost, "drain-hook-host", "", "host (IP) the kubelet calls for injected preStop hooks; default: the ClusterIP of --drain-service")
	fs.StringVar(&o.drainService, "drain-service", "zerodrop-drain", "Service in front of the drain endpoint, in the controller's namespace")
	fs.IntVar(&o.drainHookPort, "drain-hook-port", 8082, "port injected preStop hooks call (the drain Service's port)")
	fs.DurationVar(&o.pollInterval, "provider-poll-interval", 250*time.Millisecond, "cycle while a target registers or drains: one pool status read per instance per cycle")
	fs.BoolVar(&o.verdictEvents, "verdict-events", true, "listen to verdicts a load balancer pushes (HAProxy: its event ring, docs/haproxy.md) and read a pool as soon as one arrives; false: poll only")
	fs.DurationVar(&o.pushedPollInterval, "pushed-poll-interval", time.Second, "cycle of targets that wait only for the load balancer's verdict while it pushes verdicts (every instance's event stream up): a resync")
	fs.DurationVar(&o.resyncInterval, "resync-interval", 5*time.Second, "cycle when nothing is pending: re-checks healthy targets and notices reloads (6 times longer while the load balancer pushes verdicts, and on serve replicas)")
	fs.DurationVar(&o.providerTimeout, "provider-timeout", 2*time.Second, "timeout of one provider command")
	fs.DurationVar(&o.breakerBackoff, "provider-breaker-backoff", 5*time.Second, "after a provider command to an LB instance times out, skip that instance this long (its calls fail at once), then probe it; doubles per failed probe up to 1m; negative never skips")
	fs.DurationVar(&o.cycleTimeout, "cycle-timeout", 10*time.Second, "deadline of the load-balancer calls of one binding cycle (status read and every register, drain, deregister); 0: none")
	fs.DurationVar(&o.orphanGrace, "orphan-grace", 30*time.Second, "how long an orphan (a load balancer slot whose address no binding of its pool knows) must be seen before the leader drains and frees it; 0 never frees")
	fs.IntVar(&o.workers, "workers", controller.DefaultWorkers, "bindings reconciled in parallel")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	switch o.role {
	case RoleAll, RoleReconcile, RoleServe:
	default:
		return o, fmt.Errorf("--role=%q: want %s, %s or %s", o.role, RoleAll, RoleReconcile, RoleServe)
	}
	if o.namespace == "" {
		o.namespace = "zerodrop-system"
	}
	if o.webhookCertMode != "self-managed" && o.webhookCertMode != "external" {
		return o, fmt.Errorf("--webhook-cert-mode=%q: want self-managed or external", o.webhookCertMode)
	}
	if o.pollInterval <= 0 || o.resyncInterval <= 0 || o.pushedPollInterval <= 0 {
		return o, errors.New("--provider-poll-interval, --pushed-poll-interval and --resync-interval must be positive")
	}
	if o.retryPeriod <= 0 || o.renewDeadline <= o.retryPeriod*6/5 || o.leaseDuration <= o.renewDeadline {
		// client-go's leader election refuses these too (with its jitter
		// factor 1.2), but only once the manager starts; say which flags now.
		return o, fmt.Errorf("leader election: want --leader-elect-lease-duration (%s) > --leader-elect-renew-deadline (%s) > 1.2 × --leader-elect-retry-period (%s) > 0",
			o.leaseDuration, o.renewDeadline, o.retryPeriod)
	}
	if o.cycleTimeout < 0 {
		return o, fmt.Errorf("--cycle-timeout=%s must not be negative (0: no deadline)", o.cycleTimeout)
	}
	if o.orphanGrace < 0 {
		return o, fmt.Errorf("--orphan-grace=%s must not be negative (0 never frees orphans)", o.orphanGrace)
	}
	if o.drainShutdownDelay < 0 || o.drainShutdownTimeout < 0 {
		return o, errors.New("--drain-shutdown-delay and --drain-shutdown-timeout must not be negative")
	}
	if o.drainMaxHeld < 1 || o.drainMaxHeldPerPod < 1 {
		return o, errors.New("--drain-max-held and --drain-max-held-per-pod must be at least 1")
	}
	if o.pprofAddr != "" && !loopback(o.pprofAddr) {
		return o, fmt.Errorf("--pprof-bind-address=%q: profiles are served without authentication: want a loopback address (127.0.0.1:P)", o.pprofAddr)
	}
	if o.kubeAPIQPS <= 0 || o.kubeAPIBurst < 1 {
		return o, fmt.Errorf("--kube-api-qps=%g and --kube-api-burst=%d: want both positive", o.kubeAPIQPS, o.kubeAPIBurst)
	}
	if !o.metricsSecure && o.metricsAddr != "0" && !loopback(o.metricsAddr) {
		return o, fmt.Errorf("--metrics-secure=false serves plain HTTP without authentication: want a loopback --metrics-bind-address (127.0.0.1:P), got %q", o.metricsAddr)
	}
	return o, nil
}

// Providers returns the registry's constructors with this process's
// settings; instances with tls get their client certificate from secrets
// at each connection, and an external adapter's bearer token from its
// Secret.
func Providers(log *slog.Logger, timeout, breakerBackoff time.Duration, secrets *controller.TLSSecrets) map[zv1.ProviderType]controller.ProviderFactory {
	return providers.Builtin(providers.Options{Log: log, Timeout: timeout, BreakerBackoff: breakerBackoff, TLS: secrets.For,
		Secret: providers.SecretKeys(secrets.Reader, secrets.Namespace)})
}

func run(ctx context.Context, args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level=%q: %w", o.logLevel, err)
	}
	handler := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	log := slog.New(handler).With("role", o.role)
	slog.SetDefault(log)
	ctrl.SetLogger(logr.FromSlogHandler(handler))

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := zv1.AddToScheme(scheme); err != nil {
		return err
	}
	cfg, err := restConfig(o.kubeconfig, o.kubeAPIQPS, o.kubeAPIBurst)
	if err != nil {
		return err
	}
	o.apiClock = setup.WatchAPIClock(cfg)

	if o.webhookCertMode == "self-managed" {
		// The webhook server reads its files at start: they must exist
		// before the manager starts (serve) or be issued (reconcile, all).
		direct, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			return err
		}
		if err := webhook.EnsureCerts(ctx, setup.CertRotator(o.setup(), direct, log), log); err != nil {
			return fmt.Errorf("webhook certificate: %w", err)
		}
	}

	leaderElect := o.leaderElect && o.reconciles()
	if o.leaderElect && !leaderElect {
		log.Info("--leader-elect ignored: every serve replica serves")
	}
	mopts := ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOptions(o),
		Cache:                         cacheOptions(),
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "zerodrop-controller.zerodrop.dev",
		LeaderElectionNamespace:       firstNonEmpty(o.leaderElectionNamespace, o.namespace),
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
		// Only the serve and all roles register a handler, which is what
		// starts this server (reconcile opens no webhook port).
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{Host: o.webhookBindHost, Port: o.webhookPort, CertDir: o.webhookCertDir,
			TLSOpts: []func(*tls.Config){disableHTTP2}}),
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	secrets := &controller.TLSSecrets{Reader: mgr.GetAPIReader(), Namespace: o.namespace}
	w, err := Wire(ctx, mgr, o, log, Providers(log, o.providerTimeout, o.breakerBackoff, secrets))
	if err != nil {
		return err
	}
	log.Info("starting zerodrop-controller", "namespace", o.namespace, "leaderElect", leaderElect,
		"pollInterval", o.pollInterval, "drainAddr", o.drainAddr)
	signals := ctrl.SetupSignalHandler()
	if o.role != RoleServe {
		return mgr.Start(signals)
	}
	// A serve replica stops gently: the preStop hooks it holds are answered
	// before its drain-only reconciler stops (manager.Start would stop both
	// at once and fail every held hook).
	mctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		<-signals.Done()
		w.Drain.Quiesce(o.drainShutdownDelay, o.drainShutdownTimeout)
		stop()
	}()
	return mgr.Start(mctx)
}

// cacheOptions trims what the informers keep: no managedFields on any
// object, and pods reduced to the fields zerodrop reads (the pod cache is
// cluster-wide, in every process).
func cacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject:         map[client.Object]cache.ByObject{&corev1.Pod{}: {Transform: podcache.TrimPod}},
	}
}

// metricsOptions serves /metrics over HTTPS with the API server
// authenticating and authorizing each caller (a Prometheus whose service
// account may get the /metrics URL), or, with --metrics-secure=false, plain
// HTTP on loopback. HTTP/2 is off either way.
func metricsOptions(o options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.metricsAddr, TLSOpts: []func(*tls.Config){disableHTTP2}}
	if o.metricsSecure {
		m.SecureServing = true
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}

// disableHTTP2 keeps a TLS server on HTTP/1.1: HTTP/2's stream reset and
// rapid reset attacks (CVE-2023-44487, CVE-2023-39325) need no
// authentication, and no client of these servers needs HTTP/2.
func disableHTTP2(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }

// loopback reports whether addr (host:port) binds a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// restConfig loads the API server's address and credentials: --kubeconfig
// when set, otherwise controller-runtime's order ($KUBECONFIG, in-cluster,
// ~/.kube/config), with the client's rates (--kube-api-qps,
// --kube-api-burst).
func restConfig(path string, qps float64, burst int) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		if cfg, err = ctrl.GetConfig(); err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", path); err != nil {
		return nil, fmt.Errorf("--kubeconfig=%s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	return cfg, nil
}

// Wire adds the role's parts to a manager (setup.Wire) with the options
// of the command line.
func Wire(ctx context.Context, mgr ctrl.Manager, o options, log *slog.Logger, factories map[zv1.ProviderType]controller.ProviderFactory) (setup.Wired, error) {
	return setup.Wire(ctx, mgr, o.setup(), log, factories)
}

// setup returns the options setup.Wire takes.
func (o options) setup() setup.Options {
	return setup.Options{
		Role: o.role, Namespace: o.namespace, MetricsRegistry: o.metricsRegistry,
		PollInterval: o.pollInterval, ResyncInterval: o.resyncInterval, PushedPollInterval: o.pushedPollInterval, NoVerdictEvents: !o.verdictEvents, OrphanGrace: o.orphanGrace, CycleTimeout: o.cycleTimeout, Workers: o.workers,
		WebhookCertMode: o.webhookCertMode, WebhookCertDir: o.webhookCertDir, WebhookService: o.webhookService, WebhookConfig: o.webhookConfig, WebhookSecret: o.webhookSecret,
		DrainAddr: o.drainAddr, DrainHookHost: o.drainHookHost, DrainService: o.drainService, DrainHookPort: o.drainHookPort,
		DrainMaxHeld: o.drainMaxHeld, DrainMaxHeldPerPod: o.drainMaxHeldPerPod,
		APIClock: o.apiClock,
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}
