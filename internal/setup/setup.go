// Package setup wires zerodrop-controller's parts into a controller-runtime
// manager for a role (kubebuilder's main, as a package): the TargetBinding
// and LoadBalancer reconcilers, the webhooks, the drain endpoint and the
// webhook certificate. cmd/zerodrop-controller keeps only the flags and the
// process; the envtest suites wire managers exactly the same way.
package setup

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/internal/webhook"
)

// Roles of a zerodrop-controller process (--role): see the command.
const (
	RoleAll       = "all"
	RoleReconcile = "reconcile"
	RoleServe     = "serve"
)

// Options are what Wire needs of the command line (docs/controller.md,
// Flags).
type Options struct {
	Role, Namespace string
	// MetricsRegistry, when set, replaces controller-runtime's registry
	// (tests run several managers in one process).
	MetricsRegistry              prometheus.Registerer
	PollInterval, ResyncInterval time.Duration
	// PushedPollInterval: TargetBindingReconciler.PushedPendingInterval.
	PushedPollInterval time.Duration
	// NoVerdictEvents: ignore verdicts load balancers push; poll only.
	NoVerdictEvents                              bool
	OrphanGrace, CycleTimeout                    time.Duration
	Workers                                      int
	WebhookCertMode, WebhookCertDir              string
	WebhookService, WebhookConfig, WebhookSecret string
	DrainAddr, DrainHookHost, DrainService       string
	DrainHookPort                                int
	DrainMaxHeld, DrainMaxHeldPerPod             int
	// APIClock, when set, samples the API server's responses (the
	// manager's rest.Config wrapped with WatchAPIClock): the reconcilers
	// anchor times read from the API with its offset, and
	// zerodrop_apiserver_clock_offset_seconds reports it.
	APIClock *controller.APIClock
}

// WatchAPIClock wraps cfg's transport so that every response of the API
// server samples its clock, and returns the estimate (Options.APIClock).
// Call it before building clients or a manager from cfg.
func WatchAPIClock(cfg *rest.Config) *controller.APIClock {
	c := &controller.APIClock{}
	cfg.Wrap(c.Wrap)
	return c
}

func (o Options) reconciles() bool { return o.Role == RoleAll || o.Role == RoleReconcile }
func (o Options) serves() bool     { return o.Role == RoleAll || o.Role == RoleServe }

// CertRotator builds the self-managed certificate rotator of the role: the
// reconcile role issues and renews (and writes no files: it serves no
// webhook), the serve role only reads, all does both.
func CertRotator(o Options, c client.Client, log *slog.Logger) *webhook.CertRotator {
	svc := o.WebhookService + "." + o.Namespace + ".svc"
	r := &webhook.CertRotator{
		Client:               c,
		Secret:               types.NamespacedName{Namespace: o.Namespace, Name: o.WebhookSecret},
		WebhookConfiguration: o.WebhookConfig,
		CertDir:              o.WebhookCertDir,
		DNSNames:             []string{svc, svc + ".cluster.local"},
		Log:                  log,
	}
	switch o.Role {
	case RoleReconcile:
		r.CertDir = ""
	case RoleServe:
		r.ReadOnly = true
		// A reader picks up a renewal within minutes; renewal happens with a
		// third of the certificate's life left, so this is plenty.
		r.CheckInterval = time.Minute
	}
	return r
}

// Wired is what Wire added to the manager.
type Wired struct {
	// Reconciler is the role's TargetBinding reconciler: the full one
	// (all, reconcile) or the drain-only one (serve).
	Reconciler *controller.TargetBindingReconciler
	// Drain is the drain endpoint's server; nil in the reconcile role.
	Drain *drain.Endpoint
}

// Wire adds the role's parts to a manager: the reconcilers (all,
// reconcile), the webhook and the drain endpoint (all, serve), certificate
// rotation (self-managed mode) and the checks.
func Wire(ctx context.Context, mgr ctrl.Manager, o Options, log *slog.Logger, factories map[zv1.ProviderType]controller.ProviderFactory) (Wired, error) {
	var w Wired
	metrics, err := controller.NewMetrics(o.MetricsRegistry)
	if err != nil {
		return w, fmt.Errorf("metrics: %w", err)
	}
	drains := drain.NewRegistry()
	nudges := make(chan event.GenericEvent, 1024)
	// drainHookHost is the host injected drain hooks call: the webhook
	// writes it, the reconciler checks running pods' hooks against it.
	drainHookHost := func(ctx context.Context) (string, error) {
		if o.DrainHookHost != "" {
			return o.DrainHookHost, nil
		}
		var svc corev1.Service
		if err := mgr.GetClient().Get(ctx, types.NamespacedName{Namespace: o.Namespace, Name: o.DrainService}, &svc); err != nil {
			return "", fmt.Errorf("drain Service %s/%s: %w", o.Namespace, o.DrainService, err)
		}
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			return "", fmt.Errorf("drain Service %s/%s has no ClusterIP", o.Namespace, o.DrainService)
		}
		return svc.Spec.ClusterIP, nil
	}
	r := &controller.TargetBindingReconciler{
		Client:                mgr.GetClient(),
		APIReader:             mgr.GetAPIReader(),
		Providers:             &controller.Providers{Factories: factories},
		Drains:                drains,
		Metrics:               metrics,
		Log:                   log.With("controller", "targetbinding"),
		PendingInterval:       o.PollInterval,
		PushedPendingInterval: o.PushedPollInterval,
		NoVerdictEvents:       o.NoVerdictEvents,
		SteadyInterval:        o.ResyncInterval,
		DrainOnly:             o.Role == RoleServe,
		OrphanGrace:           o.OrphanGrace,
		CycleTimeout:          o.CycleTimeout,
		APIClock:              o.APIClock,
	}
	if o.APIClock != nil {
		o.APIClock.Report(metrics.APIServerClockOffset)
	}
	if r.DrainOnly {
		r.Log = log.With("controller", "targetbinding-drain")
	} else {
		r.Recorder = mgr.GetEventRecorder("zerodrop-controller")
		r.Instances = &controller.InstanceTracker{}
		r.DrainHookHost = drainHookHost
	}
	if err := r.SetupWithManager(mgr, nudges, o.Workers); err != nil {
		return w, fmt.Errorf("targetbinding controller: %w", err)
	}
	w.Reconciler = r
	if o.reconciles() {
		lbr := &controller.LoadBalancerReconciler{Client: mgr.GetClient(), Instances: r.Instances, Interval: o.ResyncInterval, Metrics: metrics,
			TLS:       &controller.TLSSecrets{Reader: mgr.GetAPIReader(), Namespace: o.Namespace},
			Providers: r.Providers, Recorder: r.Recorder}
		if err := lbr.SetupWithManager(mgr); err != nil {
			return w, fmt.Errorf("loadbalancer controller: %w", err)
		}
	}
	if o.WebhookCertMode == "self-managed" {
		direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
		if err != nil {
			return w, err
		}
		rot := CertRotator(o, direct, log)
		rot.Observe = func(notAfter time.Time) {
			metrics.CertificateExpiry.WithLabelValues(o.Namespace + "/" + o.WebhookSecret).Set(float64(notAfter.Unix()))
		}
		if err := mgr.Add(rot); err != nil {
			return w, err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return w, err
	}
	if !o.serves() {
		return w, mgr.AddReadyzCheck("ping", healthz.Ping)
	}

	hookTarget := &webhook.DrainHookTarget{Port: int32(o.DrainHookPort), Host: drainHookHost}
	mgr.GetWebhookServer().Register(webhook.Path, &ctrlwebhook.Admission{Handler: &webhook.PodGateInjector{
		Reader:              mgr.GetClient(),
		Decoder:             admission.NewDecoder(mgr.GetScheme()),
		ControllerNamespace: o.Namespace,
		DrainHook:           hookTarget,
		Log:                 log.With("component", "webhook"),
	}})
	mgr.GetWebhookServer().Register(webhook.BindingPath, &ctrlwebhook.Admission{Handler: &webhook.PoolGrantValidator{
		Reader:  mgr.GetClient(),
		Decoder: admission.NewDecoder(mgr.GetScheme()),
		Log:     log.With("component", "webhook"),
	}})

	// In the all role the drain endpoint answers from the leader's
	// verdicts, so it runs with the reconciler, on the leader only
	// (readiness does not wait for leadership, or a new replica could never
	// become Ready during the controller's own rolling update). In the
	// serve role it answers from this replica's drain-only reconciler and
	// runs on every replica.
	// The token form looks its pod up by this index, not by listing (and
	// copying) every pod of the namespace.
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, drain.TokenIndex, drain.TokenIndexValues); err != nil {
		return w, fmt.Errorf("pod index %s: %w", drain.TokenIndex, err)
	}
	mux := http.NewServeMux()
	dh := &drain.Handler{Reader: mgr.GetClient(), Drains: drains, Nudge: nudges, NudgeInterval: o.PollInterval,
		MaxHeld: o.DrainMaxHeld, MaxHeldPerPod: o.DrainMaxHeldPerPod, Log: log.With("component", "drain")}
	dh.Register(mux)
	w.Drain = &drain.Endpoint{Addr: o.DrainAddr, Handler: mux, Log: log, LeaderOnly: o.Role == RoleAll, MaxConns: 2 * o.DrainMaxHeld}
	if err := mgr.Add(w.Drain); err != nil {
		return w, err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return w, err
	}
	if o.Role == RoleServe {
		if err := mgr.AddReadyzCheck("drain", w.Drain.Listening); err != nil {
			return w, err
		}
	}
	return w, nil
}
