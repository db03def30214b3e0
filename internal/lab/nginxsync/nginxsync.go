// Package nginxsync is the lab's NGINX baseline: it keeps one upstream of
// one or more NGINX instances equal to a Service's Ready endpoints by
// rewriting the upstream file and reloading, the way confd, consul-template
// and hand-written sync scripts do, with no gate:
//
//   - a pod is in rotation as soon as its endpoint is Ready and the reload
//     is done; nobody waits for every instance to have loaded it before the
//     rollout goes on (there is no readiness gate);
//   - an endpoint that stops being Ready (the pod is terminating) is removed
//     after the propagation delay, while the kubelet has already started the
//     pod's shutdown in parallel.
//
// PropagationDelay models the 1-3 s in-cluster data-path lag: every
// EndpointSlice change reaches NGINX that long after the syncer saw it.
package nginxsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"zerodrop.dev/zerodrop/internal/lab/syncer"
	"zerodrop.dev/zerodrop/internal/nginxproc"
)

// Instance is one NGINX: the upstream file the syncer owns and the master's
// pid file.
type Instance struct {
	UpstreamFile, PidFile string
}

// Config configures a Syncer. Zero fields take the defaults noted.
type Config struct {
	// Client reads EndpointSlices.
	Client kubernetes.Interface
	// Namespace and Service select the EndpointSlices.
	Namespace, Service string
	// Port picks the EndpointSlice port by name or number; "" takes the
	// first.
	Port string
	// Pool is the upstream's name.
	Pool      string
	Instances []Instance
	// PropagationDelay between seeing a change and applying it; default
	// 1s, negative for none.
	PropagationDelay time.Duration
	// Resync re-applies the current state (a file someone else edited);
	// default 2s. A reload lost in between is not repeated, as in the
	// scripts this models.
	Resync time.Duration
	// Logger: slog.Default when nil.
	Logger *slog.Logger
}

// Syncer keeps one upstream in sync with a Service's Ready endpoints.
type Syncer struct {
	cfg  Config
	log  *slog.Logger
	kick chan struct{}

	mu      sync.Mutex
	pending []snapshot
	current []string
	ready   bool
}

type snapshot struct {
	due  time.Time
	addr []string
}

// New checks the configuration.
func New(cfg Config) (*Syncer, error) {
	if cfg.Client == nil || cfg.Namespace == "" || cfg.Service == "" || cfg.Pool == "" || len(cfg.Instances) == 0 {
		return nil, errors.New("nginxsync: Client, Namespace, Service, Pool and at least one instance are required")
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Syncer{cfg: cfg, log: cfg.Logger.With("nginxsync", cfg.Namespace+"/"+cfg.Service, "pool", cfg.Pool), kick: make(chan struct{}, 1)}, nil
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
			s.log.Error("nginxsync: list endpointslices", "err", err)
			return
		}
		var addrs []string
		for _, a := range syncer.Desired(slices, s.cfg.Port) {
			addrs = append(addrs, a)
		}
		sort.Strings(addrs)
		s.mu.Lock()
		s.pending = append(s.pending, snapshot{due: time.Now().Add(s.cfg.PropagationDelay), addr: addrs})
		s.mu.Unlock()
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { observe() },
		UpdateFunc: func(any, any) { observe() },
		DeleteFunc: func(any) { observe() },
	}); err != nil {
		return fmt.Errorf("nginxsync: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return fmt.Errorf("nginxsync: endpointslices of %s/%s: cache not synced: %w", s.cfg.Namespace, s.cfg.Service, ctx.Err())
	}
	observe()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-timer.C:
		}
		s.apply()
		next := s.cfg.Resync
		s.mu.Lock()
		if len(s.pending) > 0 {
			next = min(next, max(time.Until(s.pending[0].due), 0))
		}
		s.mu.Unlock()
		timer.Reset(next)
	}
}

// apply writes the newest due state into every instance's file and reloads
// the instances whose file changed.
func (s *Syncer) apply() {
	s.mu.Lock()
	n := 0
	for n < len(s.pending) && !s.pending[n].due.After(time.Now()) {
		n++
	}
	if n > 0 {
		s.current, s.ready = s.pending[n-1].addr, true
		s.pending = append(s.pending[:0], s.pending[n:]...)
	}
	addrs, ready := s.current, s.ready
	s.mu.Unlock()
	if !ready {
		return
	}
	text := Render(s.cfg.Pool, addrs)
	for _, in := range s.cfg.Instances {
		changed, err := Write(in, text)
		if err != nil {
			s.log.Warn("nginxsync: sync failed; will retry", "file", in.UpstreamFile, "err", err)
			continue
		}
		if changed {
			s.log.Info("nginxsync: reloaded", "file", in.UpstreamFile, "servers", addrs)
		}
	}
}

// Render is the upstream file for the addresses: every one in rotation at
// once, a down placeholder when there is none (NGINX refuses an empty
// upstream).
func Render(pool string, addrs []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by zerodrop's lab NGINX baseline (sync by reload, no gate).\nupstream %s {\n", pool)
	for _, a := range addrs {
		fmt.Fprintf(&b, "    server %s;\n", a)
	}
	if len(addrs) == 0 {
		b.WriteString("    server 127.0.0.1:9 down;\n")
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// Write replaces the instance's upstream file with text when it differs and
// reloads the master (SIGHUP); it reports whether it did.
func Write(in Instance, text []byte) (bool, error) {
	old, err := os.ReadFile(in.UpstreamFile)
	if err == nil && bytes.Equal(old, text) {
		return false, nil
	}
	tmp := filepath.Join(filepath.Dir(in.UpstreamFile), "."+filepath.Base(in.UpstreamFile)+".nginxsync")
	if err := os.WriteFile(tmp, text, 0o644); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, in.UpstreamFile); err != nil {
		os.Remove(tmp)
		return false, err
	}
	m, err := nginxproc.Read(in.PidFile)
	if err != nil {
		return true, err
	}
	if err := syscall.Kill(m.PID, syscall.SIGHUP); err != nil {
		return true, fmt.Errorf("reload: SIGHUP to %d: %w", m.PID, err)
	}
	return true, nil
}
