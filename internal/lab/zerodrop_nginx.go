package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/lab/proc"
)

// ZerodropNGINXScenario is the zerodrop scenario through NGINX: the naive
// app (exits at once on SIGTERM) with a readinessProbe, behind
// zerodrop-controller's readiness gate and drain gate, the LoadBalancer
// driving the lab's NGINX instances through the provider adapter protocol
// (provider external, the reference adapter serving the NGINX provider).
// NGINX open source has no health checks: the readiness gate opens once
// every instance has loaded the pod, and the drain gate holds SIGTERM until
// no NGINX worker that had the pod in rotation is alive.
var ZerodropNGINXScenario = Scenario{
	Name:           "zerodrop-nginx",
	Summary:        "zerodrop's gates through NGINX (provider adapter); the app exits at once",
	App:            baseApp,
	ReadinessProbe: true,
	ExternalLB:     true,
	GracePeriod:    zerodropGrace,
	LB:             LBNGINX,
	Prepare:        prepareZerodropNGINX,
}

// prepareZerodropNGINX starts the adapter for the lab's NGINX instances,
// then the controller with a LoadBalancer of provider external pointing at
// it (prepareGates). The adapter stops after the controller.
func prepareZerodropNGINX(ctx context.Context, t Target, ns string) (*Integration, error) {
	a, err := startAdapter(ctx, t.NGINX)
	if err != nil {
		return nil, err
	}
	return prepareGates(ctx, t, ns, LBNGINX, nginxLoadBalancer(a.URL()), a.Stop, false)
}

// nginxLoadBalancer is the LoadBalancer for the lab's NGINX instances: the
// adapter at url (plain HTTP on loopback) reports them. reloadGrace is 0:
// the NGINX provider counts the old workers that still hold a target
// (docs/nginx.md), so a grace on top would only add
// worker_shutdown_timeout to every drain.
func nginxLoadBalancer(url string) *zv1.LoadBalancer {
	lb := &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: LoadBalancerName}}
	lb.Spec.Provider = zv1.ProviderExternal
	lb.Spec.External = &zv1.ExternalProvider{URL: url, AllowInsecure: true}
	lb.Spec.ReloadGrace = &metav1.Duration{Duration: 0}
	lb.Spec.Pools = []zv1.PoolGrant{{Name: BackendName, AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromAll}}}
	return lb
}

// adapterArgs is the reference adapter's command line serving the NGINX
// provider for the lab's NGINX instances on listen: plain HTTP without
// authentication, allowed on loopback only. The one place that knows the
// adapter's flags.
func adapterArgs(listen string, ns []NGINXState) []string {
	args := []string{"--provider", "nginx", "--listen", listen, "--allow-insecure"}
	for _, n := range ns {
		args = append(args, "--nginx-instance", n.Name+"="+n.UpstreamFile+","+n.PidFile)
	}
	return args
}

// adapter is a running zerodrop-adapter process.
type adapter struct {
	p    *proc.Process
	addr string
	dir  string
	once sync.Once
}

// URL is the adapter's base URL.
func (a *adapter) URL() string { return "http://" + a.addr }

// Stop stops the process and removes its directory (its log; kept with
// ZERODROP_KEEP_LOGS). Safe to call twice.
func (a *adapter) Stop() {
	a.once.Do(func() {
		a.p.Stop(10 * time.Second)
		if os.Getenv("ZERODROP_KEEP_LOGS") == "" {
			_ = os.RemoveAll(a.dir)
		}
	})
}

// startAdapter starts the adapter on a free loopback port for the NGINX
// instances and waits until it answers /healthz.
func startAdapter(ctx context.Context, ns []NGINXState) (*adapter, error) {
	if len(ns) == 0 {
		return nil, errors.New("lab: adapter: no NGINX instance (start the lab with --nginx N)")
	}
	bin, err := FindAdapter()
	if err != nil {
		return nil, err
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "zerodrop-adapter-")
	if err != nil {
		return nil, fmt.Errorf("lab: adapter: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	p, err := proc.Start(proc.Spec{Name: "zerodrop-adapter", Path: bin, Args: adapterArgs(addr, ns), Log: filepath.Join(dir, "adapter.log")})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lab: adapter: %w", err)
	}
	a := &adapter{p: p, addr: addr, dir: dir}
	if err := waitHTTP(ctx, a.URL()+"/healthz", p); err != nil {
		a.Stop()
		return nil, fmt.Errorf("lab: adapter not serving: %w", err)
	}
	return a, nil
}
