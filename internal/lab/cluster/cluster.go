// Package cluster starts a real Kubernetes control plane on this machine as
// child processes: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, built by package k8sbin. Everything listens on 127.0.0.1
// at free ports; certificates, keys, data and logs live in one work
// directory. Deployments, ReplicaSets, EndpointSlices and scheduling work as
// in any cluster; there is no kubelet (the lab's node agent plays it).
//
// Stop (also called when Start fails) stops the processes by pid, SIGTERM
// then SIGKILL, and removes the work directory unless asked to keep it. The
// children also die with the parent (Pdeathsig), so a crashed test leaves
// nothing running.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"zerodrop.dev/zerodrop/internal/lab/k8sbin"
	"zerodrop.dev/zerodrop/internal/lab/proc"
)

// DefaultServiceCIDR is the ClusterIP range of lab clusters.
const DefaultServiceCIDR = "10.96.0.0/16"

// Options configure Start. The zero value works once the binaries are built.
type Options struct {
	// Binaries are the control-plane binaries. Zero means the cached build
	// of k8sbin (an error if it is missing: building takes minutes, so the
	// caller decides; see k8sbin.Ensure).
	Binaries k8sbin.Binaries
	// Dir is the work directory (pki, etcd data, kubeconfig, logs). Empty
	// means a new temporary directory.
	Dir string
	// KeepDir keeps a temporary Dir after Stop (for reading logs). A Dir
	// the caller named is always kept: it is the caller's.
	KeepDir bool
	// ServiceCIDR is the ClusterIP range; default DefaultServiceCIDR.
	ServiceCIDR string
	// StartTimeout bounds Start; default 2 minutes.
	StartTimeout time.Duration
	// Logger receives progress; nil means slog.Default().
	Logger *slog.Logger
	// ControllerManagerArgs are appended to kube-controller-manager's flags
	// (a later flag wins), e.g. "--node-monitor-grace-period=20s".
	ControllerManagerArgs []string
	// APIServerArgs are appended to kube-apiserver's flags (a later flag
	// wins), e.g. "--default-unreachable-toleration-seconds=2".
	APIServerArgs []string
}

// Cluster is a running control plane.
type Cluster struct {
	// Dir is the work directory.
	Dir string
	// Kubeconfig is an admin kubeconfig file (system:masters).
	Kubeconfig string
	// Config is the admin client configuration.
	Config *rest.Config
	// Server is the apiserver's URL, e.g. https://127.0.0.1:34567.
	Server string
	// EtcdURL is etcd's client URL.
	EtcdURL string
	// ServiceCIDR is the ClusterIP range.
	ServiceCIDR string
	// Version is the Kubernetes version running.
	Version string
	// CACert is the PEM file of the cluster CA (trusted by the apiserver
	// for client certificates).
	CACert string

	keepDir bool
	log     *slog.Logger
	mu      sync.Mutex      // procs and specs (Restart replaces a process)
	procs   []*proc.Process // start order
	specs   []proc.Spec     // procs[i] was started from specs[i]
	stopped bool            // Stop has begun: Restart starts nothing
	once    sync.Once
}

// Process describes a running control-plane process, for state files.
type Process struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Exe  string `json:"exe"`
	Log  string `json:"log"`
}

// Processes lists the control-plane processes in start order.
func (c *Cluster) Processes() []Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Process, 0, len(c.procs))
	for _, p := range c.procs {
		out = append(out, Process{Name: p.Name, PID: p.PID(), Exe: p.Path, Log: p.Log})
	}
	return out
}

// Start starts a control plane and returns when it serves: apiserver
// /readyz is ok, controller-manager and scheduler /healthz are ok, and the
// default namespace has its default ServiceAccount (so pods can be created).
// On any failure everything started is stopped before Start returns.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = DefaultServiceCIDR
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	bins := opts.Binaries
	if bins.Dir == "" {
		b, ok := k8sbin.Present()
		if !ok {
			return nil, fmt.Errorf("cluster: kubernetes binaries not built in %s: run `zerodrop lab binaries` (or k8sbin.Ensure)", k8sbin.EnvtestAssets())
		}
		bins = b
	}
	serviceIP, err := firstServiceIP(opts.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "zerodrop-cluster-"); err != nil {
			return nil, fmt.Errorf("cluster: work directory: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: work directory %s: %w", dir, err)
	}
	c = &Cluster{Dir: dir, ServiceCIDR: opts.ServiceCIDR, Version: bins.Version, keepDir: opts.KeepDir || opts.Dir != "", log: opts.Logger}
	defer func() {
		if err != nil {
			c.log.Error("cluster start failed; stopping what started", "dir", dir, "err", err)
			c.Stop()
			c = nil
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	pk, err := newPKI(filepath.Join(dir, "pki"), serviceIP)
	if err != nil {
		return c, fmt.Errorf("cluster: %w", err)
	}
	c.CACert = pk.CACert
	ports, err := proc.FreePorts(5)
	if err != nil {
		return c, fmt.Errorf("cluster: %w", err)
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	c.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	c.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	logs := filepath.Join(dir, "logs")

	c.Config = &rest.Config{
		Host: c.Server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: pk.caPEM, CertData: pk.adminCertPEM, KeyData: pk.adminKeyPEM,
		},
		QPS: 200, Burst: 400,
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Server, pk); err != nil {
		return c, err
	}

	// etcd: one member, loopback only; fsync off because a lab cluster's
	// data is thrown away and shared disks make fsync the slowest part.
	peer := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	if err := c.start(proc.Spec{
		Name: "etcd", Path: bins.Path(k8sbin.Etcd), Log: filepath.Join(logs, "etcd.log"),
		Args: []string{
			"--name=lab", "--data-dir=" + filepath.Join(dir, "etcd"),
			"--listen-client-urls=" + c.EtcdURL, "--advertise-client-urls=" + c.EtcdURL,
			"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=lab=" + peer, "--initial-cluster-state=new",
			"--unsafe-no-fsync=true", "--log-level=warn",
		},
	}); err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, "etcd", c.EtcdURL+"/health", nil); err != nil {
		return c, err
	}

	if err := c.start(proc.Spec{
		Name: "kube-apiserver", Path: bins.Path(k8sbin.KubeAPIServer), Log: filepath.Join(logs, "kube-apiserver.log"),
		Args: append([]string{
			"--etcd-servers=" + c.EtcdURL,
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(apiPort),
			"--cert-dir=" + filepath.Join(dir, "pki", "generated"),
			"--tls-cert-file=" + pk.ServingCert, "--tls-private-key-file=" + pk.ServeKey,
			"--client-ca-file=" + pk.CACert,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pk.SAPub, "--service-account-signing-key-file=" + pk.SAKey,
			"--service-cluster-ip-range=" + opts.ServiceCIDR,
			"--authorization-mode=RBAC", "--allow-privileged=true",
			// The apiserver's own Endpoints for the kubernetes Service
			// would carry 127.0.0.1, which endpoint validation rejects.
			"--endpoint-reconciler-type=none",
			"--profiling=false", "--v=1",
		}, opts.APIServerArgs...),
	}); err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, "kube-apiserver", c.Server+"/readyz", c.Config); err != nil {
		return c, err
	}

	common := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig, "--authorization-kubeconfig=" + c.Kubeconfig,
		"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false", "--v=1",
	}
	kcmArgs := append(append([]string{}, common...),
		"--secure-port="+strconv.Itoa(kcmPort),
		"--cert-dir="+filepath.Join(dir, "pki", "kcm"),
		// Each controller acts with its own ServiceAccount, as in a real
		// cluster, so RBAC in the lab is what users meet.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+pk.SAKey,
		"--root-ca-file="+pk.CACert,
		"--cluster-signing-cert-file="+pk.CACert, "--cluster-signing-key-file="+pk.CAKey,
		"--controllers=*",
		// No cloud and no pod CIDRs: the lab's node agent hands out pod
		// addresses itself.
		"--allocate-node-cidrs=false", "--configure-cloud-routes=false",
	)
	kcmArgs = append(kcmArgs, opts.ControllerManagerArgs...)
	if err := c.start(proc.Spec{
		Name: "kube-controller-manager", Path: bins.Path(k8sbin.KubeControllerManager),
		Log: filepath.Join(logs, "kube-controller-manager.log"), Args: kcmArgs,
	}); err != nil {
		return c, err
	}
	if err := c.start(proc.Spec{
		Name: "kube-scheduler", Path: bins.Path(k8sbin.KubeScheduler), Log: filepath.Join(logs, "kube-scheduler.log"),
		Args: append(append([]string{}, common...), "--secure-port="+strconv.Itoa(schedPort)),
	}); err != nil {
		return c, err
	}
	insecure := &rest.Config{Host: "https://127.0.0.1", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	if err := c.waitHTTP(ctx, "kube-controller-manager", "https://127.0.0.1:"+strconv.Itoa(kcmPort)+"/healthz", insecure); err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, "kube-scheduler", "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz", insecure); err != nil {
		return c, err
	}
	if err := c.waitDefaultServiceAccount(ctx); err != nil {
		return c, err
	}
	c.log.Info("lab cluster ready", "version", c.Version, "server", c.Server, "kubeconfig", c.Kubeconfig, "dir", dir)
	return c, nil
}

// Clientset returns a typed client for the admin configuration.
func (c *Cluster) Clientset() (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(c.Config)
}

// Stop stops the processes in reverse start order (SIGTERM, SIGKILL after
// 10 s) and removes the work directory unless it is kept. Safe to call twice.
func (c *Cluster) Stop() {
	c.once.Do(func() {
		c.mu.Lock()
		c.stopped = true
		procs := c.procs
		c.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Stop(10 * time.Second)
		}
		if !c.keepDir && c.Dir != "" {
			if err := os.RemoveAll(c.Dir); err != nil {
				c.log.Warn("remove cluster work directory", "dir", c.Dir, "err", err)
			}
		}
	})
}

func (c *Cluster) start(s proc.Spec) error {
	p, err := proc.Start(s)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.specs = append(c.specs, s)
	c.mu.Unlock()
	c.log.Debug("started", "name", s.Name, "pid", p.PID(), "log", s.Log)
	return nil
}

// waitHTTP polls url until it answers 200, failing early when any of our
// processes has exited (with the tail of its log).
func (c *Cluster) waitHTTP(ctx context.Context, name, url string, cfg *rest.Config) error {
	client := &http.Client{Timeout: 2 * time.Second}
	if cfg != nil {
		tr, err := rest.TransportFor(cfg)
		if err != nil {
			return fmt.Errorf("cluster: transport for %s: %w", name, err)
		}
		client.Transport = tr
	}
	var last string
	for {
		if err := c.exited(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s not healthy at %s (last: %s): %w", name, url, last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// exited returns an error naming the first process that has exited.
func (c *Cluster) exited() error {
	c.mu.Lock()
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		if done, werr := p.Exited(); done {
			return fmt.Errorf("cluster: %s (pid %d) exited during start (%v); log %s ends:\n%s",
				p.Name, p.PID(), werr, p.Log, p.Tail(3000))
		}
	}
	return nil
}

func (c *Cluster) waitDefaultServiceAccount(ctx context.Context) error {
	cs, err := c.Clientset()
	if err != nil {
		return fmt.Errorf("cluster: client: %w", err)
	}
	var last error
	for {
		if err := c.exited(); err != nil {
			return err
		}
		_, last = cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if last == nil {
			return nil
		}
		if !apierrors.IsNotFound(last) && ctx.Err() == nil {
			c.log.Debug("waiting for default ServiceAccount", "err", last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: default ServiceAccount in namespace default never appeared (last: %v): %w", last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func writeKubeconfig(path, server string, pk *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: pk.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: pk.adminCertPEM, ClientKeyData: pk.adminKeyPEM}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "admin", Namespace: corev1.NamespaceDefault}
	cfg.CurrentContext = "lab"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("cluster: write kubeconfig %s: %w", path, err)
	}
	return nil
}

// firstServiceIP is the kubernetes Service's ClusterIP: the first address of
// the range, which the apiserver serving certificate must name.
func firstServiceIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("cluster: service CIDR %q: %w", cidr, err)
	}
	ip := n.IP.To4()
	if ip == nil {
		return nil, errors.New("cluster: service CIDR " + cidr + ": only IPv4 is supported")
	}
	out := make(net.IP, 4)
	copy(out, ip)
	out[3]++
	return out, nil
}
