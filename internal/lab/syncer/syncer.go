// Package syncer is the lab's baseline: it keeps an HAProxy backend's
// servers equal to the Ready endpoints of a Service, the way on-prem sync
// scripts and ingress controllers do, with their two blind spots:
//
//   - a new Ready endpoint is added the naive way (add server, enable
//     health, state ready), so HAProxy marks it UP at once, before any of
//     its own health checks passed;
//   - an endpoint that stops being Ready (the pod is terminating) is
//     removed after the propagation delay, while the kubelet has already
//     started the pod's shutdown in parallel.
//
// PropagationDelay models the 1-3 s in-cluster data-path lag of domain.md:
// every EndpointSlice change reaches HAProxy that long after the syncer saw
// it. The syncer also re-adds its servers after an HAProxy reload (found by
// the periodic resync), as those scripts do.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	labhaproxy "zerodrop.dev/zerodrop/internal/lab/haproxy"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// Config configures a Syncer. Zero fields take the defaults noted.
type Config struct {
	// Client reads EndpointSlices.
	Client kubernetes.Interface
	// Namespace and Service select the EndpointSlices (label
	// kubernetes.io/service-name).
	Namespace, Service string
	// Port picks the EndpointSlice port by name or number; "" takes the
	// first.
	Port string
	// Backend is the HAProxy backend to keep in sync.
	Backend string
	// Instances are the Runtime API addresses of every HAProxy (socket
	// path or host:port); each is synced on its own.
	Instances []string
	// Check holds the health-check keywords of added servers (Inter, Rise,
	// Fall...); checks are always on. Default inter 1s, rise 3, fall 2.
	Check hapi.ServerOptions
	// PropagationDelay between seeing a change and applying it; default
	// 1s, negative for none.
	PropagationDelay time.Duration
	// Resync re-reads every instance and repairs it (e.g. after a reload);
	// default 2s.
	Resync time.Duration
	// RetryAfter is the wait before retrying failed actions (a server
	// that still has connections cannot be deleted); default 200ms.
	RetryAfter time.Duration
	// OnAction, if set, is called after each action on each instance
	// (err nil on success), e.g. to put LB changes on the lab's timeline.
	OnAction func(instance string, a Action, err error)
	// Logger: slog.Default when nil.
	Logger *slog.Logger
}

// Syncer keeps one backend of one or more HAProxy instances in sync with a
// Service's Ready endpoints.
type Syncer struct {
	cfg     Config
	clients []*hapi.Client
	log     *slog.Logger
	kick    chan struct{}

	mu      sync.Mutex
	pending []snapshot // observed, not yet due, oldest first
	current map[string]string
	ready   bool // current holds a due snapshot
}

type snapshot struct {
	due     time.Time
	desired map[string]string
}

// New checks the configuration.
func New(cfg Config) (*Syncer, error) {
	if cfg.Client == nil || cfg.Namespace == "" || cfg.Service == "" || cfg.Backend == "" || len(cfg.Instances) == 0 {
		return nil, errors.New("syncer: Client, Namespace, Service, Backend and at least one instance are required")
	}
	if cfg.PropagationDelay == 0 {
		cfg.PropagationDelay = time.Second
	}
	if cfg.PropagationDelay < 0 {
		cfg.PropagationDelay = 0
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 2 * time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 200 * time.Millisecond
	}
	cfg.Check.Check = true
	if cfg.Check.Inter == 0 {
		cfg.Check.Inter = labhaproxy.DefaultCheckInterval
	}
	if cfg.Check.Rise == 0 {
		cfg.Check.Rise = labhaproxy.DefaultCheckRise
	}
	if cfg.Check.Fall == 0 {
		cfg.Check.Fall = labhaproxy.DefaultCheckFall
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Syncer{cfg: cfg, log: cfg.Logger.With("syncer", cfg.Namespace+"/"+cfg.Service, "backend", cfg.Backend), kick: make(chan struct{}, 1)}
	for _, addr := range cfg.Instances {
		c, err := hapi.NewClient(addr)
		if err != nil {
			return nil, fmt.Errorf("syncer: %w", err)
		}
		s.clients = append(s.clients, c)
	}
	return s, nil
}

// Run watches the EndpointSlices and syncs until ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(s.cfg.Client, 0,
		informers.WithNamespace(s.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=" + s.cfg.Service
		}))
	inf := factory.Discovery().V1().EndpointSlices()
	lister := inf.Lister().EndpointSlices(s.cfg.Namespace)
	observe := func() {
		slices, err := lister.List(labels.Everything())
		if err != nil {
			s.log.Error("syncer: list endpointslices", "err", err)
			return
		}
		s.observe(Desired(slices, s.cfg.Port), time.Now())
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { observe() },
		UpdateFunc: func(any, any) { observe() },
		DeleteFunc: func(any) { observe() },
	}); err != nil {
		return fmt.Errorf("syncer: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return fmt.Errorf("syncer: endpointslices of %s/%s: cache not synced: %w", s.cfg.Namespace, s.cfg.Service, ctx.Err())
	}
	observe() // a Service without slices yet still gets an (empty) snapshot
	s.log.Info("syncer: watching", "delay", s.cfg.PropagationDelay, "resync", s.cfg.Resync)

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-timer.C:
		}
		failed := s.apply(ctx)
		next := s.cfg.Resync
		if failed {
			next = s.cfg.RetryAfter
		}
		if d, ok := s.nextDue(time.Now()); ok && d < next {
			next = d
		}
		timer.Reset(next)
	}
}

// observe queues a desired state to be applied PropagationDelay later.
func (s *Syncer) observe(desired map[string]string, now time.Time) {
	s.mu.Lock()
	s.pending = append(s.pending, snapshot{due: now.Add(s.cfg.PropagationDelay), desired: desired})
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// nextDue returns the time until the oldest pending snapshot is due.
func (s *Syncer) nextDue(now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return 0, false
	}
	return max(s.pending[0].due.Sub(now), 0), true
}

// take promotes the newest due snapshot to current and returns a copy.
func (s *Syncer) take(now time.Time) (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(s.pending) && !s.pending[n].due.After(now) {
		n++
	}
	if n > 0 {
		s.current = s.pending[n-1].desired
		s.ready = true
		s.pending = append(s.pending[:0], s.pending[n:]...)
	}
	return s.current, s.ready
}

// apply syncs every instance with the current desired state and reports
// whether any action failed.
func (s *Syncer) apply(ctx context.Context) (failed bool) {
	desired, ok := s.take(time.Now())
	if !ok {
		return false // nothing due yet: never empty a backend before knowing
	}
	for _, c := range s.clients {
		if err := s.applyTo(ctx, c, desired); err != nil {
			failed = true
			level := slog.LevelWarn
			if errors.Is(err, hapi.ErrServerBusy) {
				level = slog.LevelDebug // expected while a removed server finishes its requests
			}
			s.log.Log(ctx, level, "syncer: sync failed; will retry", "instance", c.Address(), "err", err)
		}
	}
	return failed
}

func (s *Syncer) applyTo(ctx context.Context, c *hapi.Client, desired map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	actual, err := c.ShowServersState(ctx, s.cfg.Backend)
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range Plan(desired, actual) {
		err := s.do(ctx, c, a)
		if s.cfg.OnAction != nil {
			s.cfg.OnAction(c.Address(), a, err)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
			continue
		}
		s.log.Info("syncer: "+string(a.Kind), "instance", c.Address(), "server", a.Server, "addr", a.Addr)
	}
	return errors.Join(errs...)
}

func (s *Syncer) do(ctx context.Context, c *hapi.Client, a Action) error {
	b := s.cfg.Backend
	switch a.Kind {
	case Add:
		return hapi.RegisterNaively(ctx, c, b, a.Server, a.Addr, s.cfg.Check)
	case Enable:
		// Checks may never have been enabled if an earlier add stopped
		// half-way; enabling them twice is harmless.
		if err := c.EnableHealth(ctx, b, a.Server); err != nil {
			return err
		}
		return c.SetServerState(ctx, b, a.Server, hapi.StateReady)
	case Remove:
		if err := c.SetServerState(ctx, b, a.Server, hapi.StateMaint); err != nil && !errors.Is(err, hapi.ErrNoSuchServer) {
			return err
		}
		if err := c.DelServer(ctx, b, a.Server); err != nil && !errors.Is(err, hapi.ErrNoSuchServer) {
			return err // ErrServerBusy: connections left; retried
		}
		return nil
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}
