// Command zerodrop-controller runs zerodrop's readiness gates and drain
// gates: the TargetBinding reconciler, the pod webhook that injects the
// gates, and the drain endpoint preStop hooks wait on. See docs/controller.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/internal/provider"
	"zerodrop.dev/zerodrop/internal/provider/haproxy"
	"zerodrop.dev/zerodrop/internal/webhook"
)

// options are the command-line flags.
type options struct {
	metricsAddr, probeAddr, drainAddr string
	leaderElect                       bool
	leaderElectionNamespace           string
	namespace                         string
	webhookPort                       int
	webhookCertDir, webhookCertMode   string
	webhookService, webhookConfig     string
	webhookSecret                     string
	drainHookHost, drainService       string
	drainHookPort                     int
	pollInterval, resyncInterval      time.Duration
	providerTimeout                   time.Duration
	workers                           int
	logLevel                          string
}

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "zerodrop-controller:", err)
		os.Exit(1)
	}
}

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("zerodrop-controller", flag.ContinueOnError)
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&o.drainAddr, "drain-bind-address", ":8082", "address of the drain endpoint (/drain/v1/...)")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader so that only one replica reconciles (set in the Deployment)")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the controller's namespace)")
	fs.StringVar(&o.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the controller's own namespace (never injected); default $POD_NAMESPACE")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "port of the admission webhook server")
	fs.StringVar(&o.webhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with the webhook's tls.crt and tls.key")
	fs.StringVar(&o.webhookCertMode, "webhook-cert-mode", "self-managed", "self-managed (the controller issues and rotates its certificate) or external (cert-manager or another tool fills --webhook-cert-dir and the caBundle)")
	fs.StringVar(&o.webhookService, "webhook-service", "zerodrop-webhook", "Service in front of the webhook (self-managed certificate names)")
	fs.StringVar(&o.webhookConfig, "webhook-configuration", "zerodrop-controller", "MutatingWebhookConfiguration whose caBundle the controller keeps (self-managed)")
	fs.StringVar(&o.webhookSecret, "webhook-secret", "zerodrop-webhook-certs", "Secret in the controller's namespace holding the webhook CA and certificate (self-managed)")
	fs.StringVar(&o.drainHookHost, "drain-hook-host", "", "host (IP) the kubelet calls for injected preStop hooks; default: the ClusterIP of --drain-service")
	fs.StringVar(&o.drainService, "drain-service", "zerodrop-drain", "Service in front of the drain endpoint, in the controller's namespace")
	fs.IntVar(&o.drainHookPort, "drain-hook-port", 8082, "port injected preStop hooks call (the drain Service's port)")
	fs.DurationVar(&o.pollInterval, "provider-poll-interval", 250*time.Millisecond, "cycle while a target registers or drains: one pool status read per instance per cycle")
	fs.DurationVar(&o.resyncInterval, "resync-interval", 5*time.Second, "cycle when nothing is pending: re-checks healthy targets and notices reloads")
	fs.DurationVar(&o.providerTimeout, "provider-timeout", 2*time.Second, "timeout of one provider command")
	fs.IntVar(&o.workers, "workers", 4, "bindings reconciled in parallel")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.namespace == "" {
		o.namespace = "zerodrop-system"
	}
	if o.webhookCertMode != "self-managed" && o.webhookCertMode != "external" {
		return o, fmt.Errorf("--webhook-cert-mode=%q: want self-managed or external", o.webhookCertMode)
	}
	if o.pollInterval <= 0 || o.resyncInterval <= 0 {
		return o, errors.New("--provider-poll-interval and --resync-interval must be positive")
	}
	return o, nil
}

// Providers is the explicit map of provider constructors: adding a load
// balancer means adding a line here, not an init function.
func Providers(log *slog.Logger, timeout time.Duration) map[zv1.ProviderType]controller.ProviderFactory {
	return map[zv1.ProviderType]controller.ProviderFactory{
		zv1.ProviderHAProxy: func(lb *zv1.LoadBalancer) (provider.Provider, error) {
			cfg := haproxy.Config{Timeout: timeout, Logger: log.With("loadbalancer", lb.Name)}
			for _, in := range lb.Spec.Instances {
				if in.TLS != nil {
					return nil, fmt.Errorf("instance %s: TLS to the Runtime API is not supported by the haproxy provider yet", in.Name)
				}
				addr := in.Socket
				if addr == "" {
					addr = "tcp:" + in.Address
				}
				cfg.Instances = append(cfg.Instances, haproxy.Instance{Name: in.Name, Address: addr})
			}
			interval, rise, fall := zv1.EffectiveHealthCheck(&lb.Spec, &zv1.TargetBindingSpec{})
			cfg.Check = provider.HealthCheck{Interval: interval, Rise: int(rise), Fall: int(fall)}
			return haproxy.New(cfg)
		},
	}
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
	log := slog.New(handler)
	slog.SetDefault(log)
	ctrl.SetLogger(logr.FromSlogHandler(handler))

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := zv1.AddToScheme(scheme); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}

	if o.webhookCertMode == "self-managed" {
		direct, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			return err
		}
		rot := certRotator(o, direct, log)
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = rot.Ensure(ictx)
		cancel()
		if err != nil {
			return fmt.Errorf("webhook certificate: %w", err)
		}
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "zerodrop-controller.zerodrop.dev",
		LeaderElectionNamespace:       firstNonEmpty(o.leaderElectionNamespace, o.namespace),
		LeaderElectionReleaseOnCancel: true,
		WebhookServer:                 ctrlwebhook.NewServer(ctrlwebhook.Options{Port: o.webhookPort, CertDir: o.webhookCertDir}),
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if _, err := Wire(ctx, mgr, o, log, Providers(log, o.providerTimeout)); err != nil {
		return err
	}
	log.Info("starting zerodrop-controller", "namespace", o.namespace, "leaderElect", o.leaderElect,
		"pollInterval", o.pollInterval, "drainAddr", o.drainAddr)
	return mgr.Start(ctrl.SetupSignalHandler())
}

func certRotator(o options, c client.Client, log *slog.Logger) *webhook.CertRotator {
	svc := o.webhookService + "." + o.namespace + ".svc"
	return &webhook.CertRotator{
		Client:               c,
		Secret:               types.NamespacedName{Namespace: o.namespace, Name: o.webhookSecret},
		WebhookConfiguration: o.webhookConfig,
		CertDir:              o.webhookCertDir,
		DNSNames:             []string{svc, svc + ".cluster.local"},
		Log:                  log,
	}
}

// Wire adds the reconciler, the webhook, the drain endpoint and the checks
// to a manager.
func Wire(ctx context.Context, mgr ctrl.Manager, o options, log *slog.Logger, factories map[zv1.ProviderType]controller.ProviderFactory) (*controller.TargetBindingReconciler, error) {
	metrics, err := controller.NewMetrics(nil)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	drains := drain.NewRegistry()
	instances := &controller.InstanceTracker{}
	nudges := make(chan event.GenericEvent, 1024)
	r := &controller.TargetBindingReconciler{
		Client:          mgr.GetClient(),
		Recorder:        mgr.GetEventRecorder("zerodrop-controller"),
		Providers:       &controller.Providers{Factories: factories},
		Drains:          drains,
		Metrics:         metrics,
		Instances:       instances,
		Log:             log.With("controller", "targetbinding"),
		PendingInterval: o.pollInterval,
		SteadyInterval:  o.resyncInterval,
	}
	if err := r.SetupWithManager(mgr, nudges, o.workers); err != nil {
		return nil, fmt.Errorf("targetbinding controller: %w", err)
	}

	if err := (&controller.LoadBalancerReconciler{Client: mgr.GetClient(), Instances: instances, Interval: o.resyncInterval}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("loadbalancer controller: %w", err)
	}

	if o.webhookCertMode == "self-managed" {
		direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(certRotator(o, direct, log)); err != nil {
			return nil, err
		}
	}
	hookTarget := &webhook.DrainHookTarget{Port: int32(o.drainHookPort), Host: func(ctx context.Context) (string, error) {
		if o.drainHookHost != "" {
			return o.drainHookHost, nil
		}
		var svc corev1.Service
		if err := mgr.GetClient().Get(ctx, types.NamespacedName{Namespace: o.namespace, Name: o.drainService}, &svc); err != nil {
			return "", fmt.Errorf("drain Service %s/%s: %w", o.namespace, o.drainService, err)
		}
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			return "", fmt.Errorf("drain Service %s/%s has no ClusterIP", o.namespace, o.drainService)
		}
		return svc.Spec.ClusterIP, nil
	}}
	mgr.GetWebhookServer().Register(webhook.Path, &ctrlwebhook.Admission{Handler: &webhook.PodGateInjector{
		Reader:              mgr.GetClient(),
		Decoder:             admission.NewDecoder(mgr.GetScheme()),
		ControllerNamespace: o.namespace,
		DrainHook:           hookTarget,
		Log:                 log.With("component", "webhook"),
	}})

	// The drain endpoint answers from the leader's verdicts, so it runs
	// with the reconciler, on the leader only. Readiness does not depend on
	// leadership (a new replica could never become Ready during the
	// controller's own rolling update): run one replica; leader election
	// keeps two from acting at once while it is replaced.
	mux := http.NewServeMux()
	(&drain.Handler{Reader: mgr.GetClient(), Drains: drains, Nudge: nudges, Log: log.With("component", "drain")}).Register(mux)
	if err := mgr.Add(&drainServer{addr: o.drainAddr, handler: mux, log: log}); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return nil, err
	}
	return r, nil
}

// drainServer serves the drain endpoint while the manager runs (leader
// only).
type drainServer struct {
	addr    string
	handler http.Handler
	log     *slog.Logger
}

func (d *drainServer) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", d.addr)
	if err != nil {
		return fmt.Errorf("drain endpoint listen %s: %w", d.addr, err)
	}
	srv := &http.Server{Handler: d.handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	d.log.Info("drain endpoint listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (d *drainServer) NeedLeaderElection() bool { return true }

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}
