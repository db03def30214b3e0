// Package lab assembles zerodrop's local lab: a real control plane (package
// cluster), node agents that play the kubelet and run pods as processes in
// their own network namespaces (packages node and netns), a Service proxy
// that makes ClusterIPs reachable (package svcproxy), and real HAProxy
// instances in front of the pods (package haproxy), and optionally real
// NGINX instances beside them (package nginx). Scenarios (scenario.go) roll
// a Deployment of the sample app under constant load through the scenario's
// load balancer (HAProxy or NGINX) and count the failed requests.
//
// A lab records what it creates in a state file in its run directory, so
// `zerodrop lab down` can remove everything after a crash: processes by
// recorded pid (checked against the recorded executable), the bridge and the
// pod namespaces by recorded name, and the directories.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"zerodrop.dev/zerodrop/internal/lab/cluster"
	"zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/lab/k8sbin"
	"zerodrop.dev/zerodrop/internal/lab/netns"
	labnginx "zerodrop.dev/zerodrop/internal/lab/nginx"
	"zerodrop.dev/zerodrop/internal/lab/node"
	"zerodrop.dev/zerodrop/internal/lab/proc"
	"zerodrop.dev/zerodrop/internal/lab/svcproxy"
)

// AppImage is the image repository that stands for the sample app: every
// tag (zerodrop-lab/app:v1, :v2, ...) runs the zerodrop-app program.
const AppImage = "zerodrop-lab/app"

// AppEntrypoint is the app's path "inside the image": a container command
// starting with it runs the zerodrop-app program.
const AppEntrypoint = "/zerodrop-app"

// BackendName is the HAProxy backend (and frontend fe_app) in front of the
// scenario's Service.
const BackendName = "app"

// BackendSlots is how many server-template slots the lab's backend has
// (zerodrop-controller's slot mode: reloads keep them).
const BackendSlots = 16

// HardStopAfter is the lab HAProxy's hard-stop-after: how long an old
// worker serves its connections after a reload.
const HardStopAfter = 10 * time.Second

// NGINXShutdownTimeout is the lab NGINX's worker_shutdown_timeout: how long
// an old worker keeps its connections after a reload (as HardStopAfter,
// longer than the scenarios' 6 s slow requests).
const NGINXShutdownTimeout = 10 * time.Second

// NGINXWorkers is worker_processes of the lab's NGINX instances.
const NGINXWorkers = 2

// NGINXConnectTimeout is the lab NGINX's proxy_connect_timeout. It is short,
// so that a request sent to a pod whose address is gone fails (504) well
// inside the load generator's 5 s timeout instead of holding a connection
// for NGINX's default 60 s; but longer than Linux's first SYN
// retransmission (1 s after the SYN, then 3 s and 7 s): with exactly 1 s, a
// single SYN or SYN-ACK lost on the way to a live pod (the veths' per-CPU
// backlog drops packets on a loaded machine) raced the retransmission and
// failed the request with 504. 2.5 s lets TCP recover one lost packet with
// 1.5 s to spare; proxy_next_upstream stays off, so nothing is retried on
// another server.
const NGINXConnectTimeout = 2500 * time.Millisecond

// DefaultBridge is the lab's bridge; its pod namespaces are DefaultBridge-N.
const DefaultBridge = "zdlab0"

// Options configure Up. Zero fields take the defaults noted.
type Options struct {
	// Dir is the run directory: state file, cluster, node and HAProxy
	// directories, logs. Default DefaultDir(). It must not hold a running
	// lab.
	Dir string
	// Nodes is the number of node agents (Nodes lab-node-0...); default 2.
	Nodes int
	// Bridge is the pod network's bridge name (at most 11 characters, so
	// the veths Bridge+hex fit); default DefaultBridge.
	Bridge string
	// PodCIDR is the pod address range; default netns.DefaultPrefix
	// (10.77.0.0/16).
	PodCIDR netip.Prefix
	// ServiceCIDR is the ClusterIP range; default cluster.DefaultServiceCIDR
	// (10.96.0.0/16). The Service proxy puts ClusterIPs on the lab's
	// bridge, so two labs on one machine need ranges of their own
	// (ServiceCIDRForPID), as they need pod ranges of their own.
	ServiceCIDR netip.Prefix
	// AppBinary is the zerodrop-app program; default FindApp().
	AppBinary string
	// HAProxyInstances is how many HAProxy instances front the pods (each
	// its own process, frontend and runtime socket); default 1.
	HAProxyInstances int
	// NGINXInstances is how many NGINX instances run beside HAProxy (each
	// its own master, workers, frontend and upstream file), for the
	// scenarios whose load balancer is NGINX; default 0.
	NGINXInstances int
	// Check is HAProxy's health check of the app's servers. Default:
	// GET /healthz every 1 s, rise 3, fall 2 (ALB's 30 s x 5 / 2 scaled
	// down so that a run takes minutes).
	Check haproxy.Check
	// Binaries are the control-plane binaries; default the cached build.
	Binaries k8sbin.Binaries
	// Logger receives progress; nil means slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds Up; default 3 minutes.
	StartTimeout time.Duration
	// Pools are HAProxy backends besides BackendName, each with its own
	// server-template slots (the scale harness gives each binding one).
	Pools []Pool
	// ControllerManagerArgs are appended to kube-controller-manager's
	// flags (the scale harness raises its API request rate).
	ControllerManagerArgs []string
}

// Pool is an extra HAProxy backend of the lab, filled by
// zerodrop-controller through its server-template slots.
type Pool struct {
	Name  string
	Slots int
}

// Lab is a running lab.
type Lab struct {
	// Dir is the run directory.
	Dir string
	// Cluster is the control plane.
	Cluster *cluster.Cluster
	// Client is an admin client of the cluster.
	Client kubernetes.Interface
	// Network is the pod network.
	Network *netns.Network
	// Services is the lab's kube-proxy: every Service's ClusterIP on the
	// bridge, forwarding to its endpoints (package svcproxy); the
	// `kubernetes` Service forwards to the API server.
	Services *svcproxy.Proxy
	// HAProxy are the instances in front of the pods.
	HAProxy []*haproxy.Instance
	// NGINX are the NGINX instances (Options.NGINXInstances).
	NGINX []*labnginx.Instance
	// AppBinary is the program the app image runs.
	AppBinary string
	// Check is the HAProxy health check in use.
	Check haproxy.Check

	log         *slog.Logger
	state       *State
	stateMu     sync.Mutex
	cancel      context.CancelFunc
	runCtx      context.Context // the node agents run until it ends (Close)
	images      map[string]node.Program
	imageDir    string // copies of programs run as non-root (stageProgram)
	agents      sync.WaitGroup
	nodesMu     sync.Mutex
	nodes       map[string]*nodeAgent // by node name: the agent running it now
	closeOnce   sync.Once
	closeErr    error
	ownsDir     bool
	refreshDone chan struct{}
}

// FindApp locates the zerodrop-app program: $ZERODROP_APP, else next to the
// running executable (make build puts both in bin/), else on PATH.
func FindApp() (string, error) {
	if p := os.Getenv("ZERODROP_APP"); p != "" {
		return filepath.Abs(p)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "zerodrop-app")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath("zerodrop-app"); err == nil {
		return filepath.Abs(p)
	}
	return "", errors.New("lab: zerodrop-app program not found next to this executable, on PATH or in $ZERODROP_APP (run `make build`, or `go build -o bin/ ./cmd/...`)")
}

func (o *Options) defaults() error {
	if o.Dir == "" {
		o.Dir = DefaultDir()
	}
	if o.Nodes <= 0 {
		o.Nodes = 2
	}
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if len(o.Bridge) > 11 {
		return fmt.Errorf("lab: bridge name %q longer than 11 characters", o.Bridge)
	}
	if !o.PodCIDR.IsValid() {
		o.PodCIDR = netns.DefaultPrefix
	}
	if o.HAProxyInstances <= 0 {
		o.HAProxyInstances = 1
	}
	if o.Check.HTTPPath == "" {
		o.Check.HTTPPath = appHealthPath
	}
	if o.Check.Interval <= 0 {
		o.Check.Interval = haproxy.DefaultCheckInterval
	}
	if o.Check.Rise <= 0 {
		o.Check.Rise = haproxy.DefaultCheckRise
	}
	if o.Check.Fall <= 0 {
		o.Check.Fall = haproxy.DefaultCheckFall
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 3 * time.Minute
	}
	if o.AppBinary == "" {
		p, err := FindApp()
		if err != nil {
			return err
		}
		o.AppBinary = p
	}
	if o.Binaries.Dir == "" {
		b, ok := k8sbin.Present()
		if !ok {
			return fmt.Errorf("lab: kubernetes binaries not built in %s: run `zerodrop lab binaries` first (about 8 minutes once)", k8sbin.EnvtestAssets())
		}
		o.Binaries = b
	}
	return nil
}

// Up starts a lab and returns when every part serves: the control plane is
// ready, every Node is Ready, every HAProxy answers on its runtime socket.
// On failure everything started is removed before Up returns. The lab runs
// until Close (or until ctx ends, which stops the node agents: call Close).
func Up(ctx context.Context, opts Options) (l *Lab, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab: run directory %s: %w", opts.Dir, err)
	}
	if st, err := ReadState(dir); err == nil && proc.Alive(st.Supervisor.PID, st.Supervisor.Exe) {
		return nil, fmt.Errorf("lab: a lab already runs in %s (supervisor pid %d); run `zerodrop lab down`", dir, st.Supervisor.PID)
	} else if err == nil {
		return nil, fmt.Errorf("lab: %s holds the state of a lab that did not stop cleanly; run `zerodrop lab down --dir %s` first", dir, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: run directory: %w", err)
	}
	exe, _ := os.Executable()
	l = &Lab{Dir: dir, AppBinary: opts.AppBinary, Check: opts.Check, log: opts.Logger, refreshDone: make(chan struct{})}
	l.state = &State{
		Dir: dir, Started: time.Now().UTC(), Bridge: opts.Bridge, PodCIDR: opts.PodCIDR.String(),
		Supervisor: Proc{Name: "zerodrop lab", PID: os.Getpid(), Exe: exe},
		Kubernetes: opts.Binaries.Version, AppBinary: opts.AppBinary, Check: opts.Check,
	}
	// The state file exists before anything is created, so a crash at any
	// point leaves a record for `lab down`.
	if err := l.state.write(); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	defer func() {
		if err != nil {
			l.log.Error("lab start failed; removing what started", "err", err)
			if cerr := l.Close(); cerr != nil {
				l.log.Error("lab cleanup", "err", cerr)
			}
			l = nil
		}
	}()
	startCtx, cancelStart := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancelStart()

	l.log.Info("starting control plane", "kubernetes", opts.Binaries.Version, "binaries", opts.Binaries.Dir)
	l.Cluster, err = cluster.Start(startCtx, cluster.Options{
		Binaries: opts.Binaries, Dir: filepath.Join(dir, "cluster"), Logger: l.log, ServiceCIDR: serviceCIDR(opts.ServiceCIDR),
		ControllerManagerArgs: append(slices.Clone(nodeLifecycleArgs), opts.ControllerManagerArgs...), APIServerArgs: podTolerationArgs,
	})
	if err != nil {
		return l, err
	}
	l.updateState(func(s *State) {
		s.Kubeconfig, s.Server = l.Cluster.Kubeconfig, l.Cluster.Server
		for _, p := range l.Cluster.Processes() {
			s.Processes = append(s.Processes, Proc{Name: p.Name, PID: p.PID, Exe: p.Exe, Log: p.Log})
		}
	})
	if l.Client, err = l.Cluster.Clientset(); err != nil {
		return l, fmt.Errorf("lab: client: %w", err)
	}

	l.Network, err = netns.Create(opts.Bridge, opts.PodCIDR)
	if err != nil {
		return l, fmt.Errorf("lab: pod network: %w", err)
	}
	l.updateState(func(s *State) { s.Namespaces = l.Network.Names().Namespaces })
	if l.Services, err = startServiceProxy(startCtx, l); err != nil {
		return l, err
	}

	l.runCtx = runCtx
	l.images = map[string]node.Program{AppImage: {Path: opts.AppBinary, Name: AppEntrypoint}}
	// The controller's image, for config/default's Deployments
	// (install.go). Without the program, its pods fail as an image pull
	// would (ErrImagePull), which says what is missing.
	if bin, err := FindController(); err == nil {
		// The image runs as user 65532: a copy of the program in a
		// directory every user may search (the program's own directory
		// may be a test's private one).
		if l.imageDir, err = os.MkdirTemp("", "zerodrop-lab-images-"); err != nil {
			return l, fmt.Errorf("lab: images: %w", err)
		}
		l.updateState(func(s *State) { s.Dirs = append(s.Dirs, l.imageDir) })
		p, err := stageProgram(bin, l.imageDir)
		if err != nil {
			return l, err
		}
		l.images[ControllerImage] = controllerProgram(p)
	}
	var nodeNames []string
	for i := range opts.Nodes {
		name := fmt.Sprintf("lab-node-%d", i)
		nodeNames = append(nodeNames, name)
		l.startAgent(name)
	}
	l.updateState(func(s *State) { s.Nodes = nodeNames })
	if err := waitNodesReady(startCtx, l.Client, nodeNames); err != nil {
		return l, err
	}

	// zerodrop-controller reaches every instance's Runtime API over mutual
	// TLS, as docs/haproxy.md asks of a real install: one CA, a serving
	// certificate for 127.0.0.1, and the client's pair for its Secret.
	// The same socket listens on the bridge's host address too, for the
	// controller when it runs as pods (install.go).
	podSide := l.Network.HostAddr.String()
	adminTLS, adminTLSDir, err := issueAdminTLS(filepath.Join(dir, "admin-tls"), podSide)
	if err != nil {
		return l, err
	}
	backends := []haproxy.Backend{{Name: BackendName, Check: opts.Check, Slots: BackendSlots}}
	for _, p := range opts.Pools {
		backends = append(backends, haproxy.Backend{Name: p.Name, Check: opts.Check, Slots: p.Slots})
	}
	for i := range opts.HAProxyInstances {
		name := fmt.Sprintf("haproxy-%d", i)
		in, err := haproxy.Start(startCtx, haproxy.Config{
			Dir: filepath.Join(dir, name),
			// Slots: servers from the configuration file, which a reload
			// keeps (with the server-state file); zerodrop-controller
			// fills them. The baseline syncer adds runtime servers.
			Backends: backends,
			// Longer than the scenarios' slow requests (6 s): a reload
			// does not cut them.
			HardStopAfter: HardStopAfter,
			AdminTLS:      adminTLS,
			AdminTLSHosts: []string{podSide},
			Metrics:       true,
			Logger:        l.log,
		})
		if err != nil {
			return l, fmt.Errorf("lab: %s: %w", name, err)
		}
		l.HAProxy = append(l.HAProxy, in)
		master, _ := in.Pids()
		exe, _ := exec.LookPath(in.Binary())
		l.updateState(func(s *State) {
			s.HAProxy = append(s.HAProxy, HAProxyState{
				Name: name, Socket: in.Socket(), Frontend: in.Addr(), Backend: BackendName,
				Config: in.ConfigPath(), Log: in.LogPath(),
				Master: master, Exe: exe, StateFile: in.StateFile(),
				AdminTLS: in.AdminTLSAddr(), AdminTLSDir: adminTLSDir, AdminTLSPods: in.AdminTLSAddrOn(podSide),
				Metrics: in.MetricsAddr(),
			})
		})
		l.recordHAProxyPids()
	}
	for i := range opts.NGINXInstances {
		if err := l.startNGINX(startCtx, i); err != nil {
			return l, err
		}
	}
	go l.refreshLoop(runCtx)
	l.updateState(func(s *State) { s.Ready = true })
	l.log.Info("lab ready", "dir", dir, "kubeconfig", l.Cluster.Kubeconfig, "nodes", nodeNames, "frontend", l.Frontends())
	return l, nil
}

// KubernetesService is the Service in-cluster clients reach the API server
// through (KUBERNETES_SERVICE_HOST is its ClusterIP).
var KubernetesService = types.NamespacedName{Namespace: "default", Name: "kubernetes"}

// startServiceProxy starts the lab's Service proxy on the pod network's
// bridge. The API server listens on 127.0.0.1 only and publishes no
// endpoints (--endpoint-reconciler-type=none), so the `kubernetes` Service
// is forwarded to it explicitly; its serving certificate carries the
// Service's ClusterIP.
func startServiceProxy(ctx context.Context, l *Lab) (*svcproxy.Proxy, error) {
	api, err := netip.ParseAddrPort(strings.TrimPrefix(l.Cluster.Server, "https://"))
	if err != nil {
		return nil, fmt.Errorf("lab: API server address %s: %w", l.Cluster.Server, err)
	}
	p, err := svcproxy.Start(ctx, svcproxy.Options{
		Client: l.Client, Addrs: l.Network,
		Overrides: map[types.NamespacedName]netip.AddrPort{KubernetesService: api},
		Logger:    l.log,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: service proxy: %w", err)
	}
	return p, nil
}

func serviceCIDR(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// stageProgram copies the program bin into dir (made searchable by every
// user), executable by every user, and returns the copy's path.
func stageProgram(bin, dir string) (string, error) {
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("lab: images: %w", err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("lab: images: %w", err)
	}
	p := filepath.Join(dir, filepath.Base(bin))
	if err := os.WriteFile(p, data, 0o755); err != nil {
		return "", fmt.Errorf("lab: images: %w", err)
	}
	return p, os.Chmod(p, 0o755)
}

// ServiceCIDRForPID is a ClusterIP range of its own for the lab of process
// pid (a /24 of 10.114.0.0/15), for tests whose labs may run beside
// another process's: ClusterIPs live on each lab's bridge, so two labs
// with one range would answer for each other.
func ServiceCIDRForPID(pid int) netip.Prefix {
	i := pid % 512
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 114 + byte(i/256), byte(i % 256), 0}), 24)
}

// Target returns what scenarios run against: this lab's API and HAProxy
// instances.
func (l *Lab) Target() Target {
	st := l.State()
	return Target{Config: l.Cluster.Config, Kubeconfig: l.Cluster.Kubeconfig, Client: l.Client, HAProxy: st.HAProxy, NGINX: st.NGINX, Check: l.Check, Dir: st.Dir,
		controlPlane: labControlPlane{l}, nodes: l}
}

// TargetFromState connects to a lab recorded in a state file (one started
// by `zerodrop lab up` in another process).
func TargetFromState(st *State) (Target, error) {
	if !st.Ready {
		return Target{}, fmt.Errorf("lab: the lab in %s is not ready", st.Dir)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		return Target{}, fmt.Errorf("lab: kubeconfig %s: %w", st.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Target{}, fmt.Errorf("lab: client for %s: %w", st.Server, err)
	}
	return Target{Config: cfg, Kubeconfig: st.Kubeconfig, Client: cs, HAProxy: st.HAProxy, NGINX: st.NGINX, Check: st.Check, Dir: st.Dir}, nil
}

// Frontends returns the address of each HAProxy's app frontend.
func (l *Lab) Frontends() []string {
	var out []string
	for _, in := range l.HAProxy {
		out = append(out, in.Addr())
	}
	return out
}

// State returns a copy of the lab's recorded state.
func (l *Lab) State() State {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	return *l.state
}

func (l *Lab) updateState(f func(*State)) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	f(l.state)
	if err := l.state.write(); err != nil {
		l.log.Warn("lab state", "err", err)
	}
}

// recordHAProxyPids records every HAProxy master and current worker.
func (l *Lab) recordHAProxyPids() {
	l.updateState(func(s *State) {
		for _, in := range l.HAProxy {
			master, worker := in.Pids()
			bin, _ := exec.LookPath("haproxy")
			for _, p := range []Proc{{Name: "haproxy-master", PID: master, Exe: bin, Log: in.LogPath()}, {Name: "haproxy-worker", PID: worker, Exe: bin, Log: in.LogPath()}} {
				if p.PID > 0 && !slices.ContainsFunc(s.Processes, func(q Proc) bool { return q.PID == p.PID }) {
					s.Processes = append(s.Processes, p)
				}
			}
		}
	})
}

// refreshLoop keeps the state file current with the pod namespaces and
// HAProxy workers (a reload starts a new worker).
func (l *Lab) refreshLoop(ctx context.Context) {
	defer close(l.refreshDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		names := l.Network.Names().Namespaces
		l.stateMu.Lock()
		changed := !slices.Equal(names, l.state.Namespaces)
		l.stateMu.Unlock()
		if changed {
			l.updateState(func(s *State) { s.Namespaces = names })
		}
		l.recordHAProxyPids()
		l.recordNGINXPids()
	}
}

// Close stops everything in reverse order: HAProxy, the node agents (which
// kill their pods), the Service proxy, the pod network, the control plane; then removes the
// run directory. Safe to call twice.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		var errs []error
		for _, in := range l.HAProxy {
			errs = append(errs, in.Stop())
			// A master a fault restarted (lbdown, lbflap) is not the
			// Instance's child: stop it by the pid file.
			errs = append(errs, haproxy.StopDir(in.Dir()))
		}
		for _, in := range l.NGINX {
			errs = append(errs, in.Stop())
		}
		if l.cancel != nil {
			l.cancel()
		}
		l.agents.Wait()
		if l.Services != nil {
			errs = append(errs, l.Services.Stop())
		}
		if l.Network != nil {
			errs = append(errs, l.Network.Destroy())
		}
		if l.Cluster != nil {
			l.Cluster.Stop()
		}
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, fmt.Errorf("lab: remove %s: %w", l.Dir, err))
		}
		if l.imageDir != "" {
			if err := os.RemoveAll(l.imageDir); err != nil {
				errs = append(errs, fmt.Errorf("lab: remove %s: %w", l.imageDir, err))
			}
		}
		l.closeErr = errors.Join(errs...)
		l.log.Info("lab stopped", "dir", l.Dir)
	})
	return l.closeErr
}

// Down removes a lab recorded in dir: it asks the supervisor to stop (SIGTERM)
// and waits for it, then removes whatever is left: recorded processes still
// running their recorded executable, the pod namespaces (recorded, and any
// named <bridge>-N), the bridge, the directories. It is idempotent and
// reports whether there was anything to do.
func Down(ctx context.Context, dir string, log *slog.Logger) (bool, error) {
	if log == nil {
		log = slog.Default()
	}
	st, err := ReadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var errs []error
	if st.Supervisor.PID != os.Getpid() && proc.Alive(st.Supervisor.PID, st.Supervisor.Exe) {
		log.Info("stopping lab supervisor", "pid", st.Supervisor.PID)
		// The supervisor stops its parts in order; give it time, then
		// clean up by force.
		if _, err := proc.Kill(ctx, st.Supervisor.PID, st.Supervisor.Exe, 60*time.Second); err != nil {
			errs = append(errs, err)
		}
		waitGone(ctx, st.Supervisor.PID, st.Supervisor.Exe, 5*time.Second)
	}
	for _, h := range st.HAProxy {
		if err := haproxy.StopDir(filepath.Dir(h.Config)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range st.NGINX {
		if err := stopNGINXFromState(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(st.Processes) - 1; i >= 0; i-- {
		p := st.Processes[i]
		if killed, err := proc.Kill(ctx, p.PID, p.Exe, 5*time.Second); err != nil {
			errs = append(errs, err)
		} else if killed {
			log.Info("stopped leftover process", "name", p.Name, "pid", p.PID)
		}
	}
	if st.Bridge != "" {
		names := netns.Names{Bridge: st.Bridge, Namespaces: st.Namespaces}
		names.Namespaces = append(names.Namespaces, leftoverNamespaces(st.Bridge)...)
		slices.Sort(names.Namespaces)
		names.Namespaces = slices.Compact(names.Namespaces)
		if err := netns.Cleanup(names); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range st.Dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(st.Dir); err != nil {
		errs = append(errs, err)
	}
	return true, errors.Join(errs...)
}

func waitGone(ctx context.Context, pid int, exe string, d time.Duration) {
	deadline := time.Now().Add(d)
	for proc.Alive(pid, exe) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
}

// leftoverNamespaces lists network namespaces named <bridge>-N: pods of a
// lab whose last state write missed them.
func leftoverNamespaces(bridge string) []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(bridge) + `-[0-9]+$`)
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && re.MatchString(f[0]) {
			names = append(names, f[0])
		}
	}
	return names
}

// ProcStatus is a recorded process and whether it still runs.
type ProcStatus struct {
	Proc
	Alive bool
}

// Status reads dir's state and checks every recorded process.
func Status(dir string) (*State, []ProcStatus, error) {
	st, err := ReadState(dir)
	if err != nil {
		return nil, nil, err
	}
	var ps []ProcStatus
	ps = append(ps, ProcStatus{Proc: st.Supervisor, Alive: proc.Alive(st.Supervisor.PID, st.Supervisor.Exe)})
	for _, p := range st.Processes {
		ps = append(ps, ProcStatus{Proc: p, Alive: proc.Alive(p.PID, p.Exe)})
	}
	return st, ps, nil
}

// waitNodesReady waits until every named Node reports Ready=True.
func waitNodesReady(ctx context.Context, cs kubernetes.Interface, names []string) error {
	for {
		var notReady []string
		for _, n := range names {
			node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil || !nodeReady(node) {
				notReady = append(notReady, n)
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: nodes %v not Ready: %w", notReady, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
