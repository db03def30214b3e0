package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/providers"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/providertest"
	"zerodrop.dev/zerodrop/provider/remote"
)

// AdapterConfig says how to reach a provider adapter (the HTTP adapter
// protocol, docs/provider-protocol.md).
type AdapterConfig struct {
	URL string
	// Token is sent as a bearer token; empty for none.
	Token string
	// Timeout bounds each request to the adapter.
	Timeout time.Duration
}

// newAdapterProvider builds the client of a provider adapter (provider/remote),
// with which `zerodrop provider-test --adapter URL` runs the kit through the
// adapter. An http:// URL is allowed here: the kit is run by the adapter's
// author, often against one on loopback.
var newAdapterProvider = func(cfg AdapterConfig) (provider.Provider, error) {
	rc := remote.Config{URL: cfg.URL, Timeout: cfg.Timeout, AllowInsecure: strings.HasPrefix(cfg.URL, "http://")}
	if cfg.Token != "" {
		rc.Token = func(context.Context) ([]byte, error) { return []byte(cfg.Token), nil }
	}
	return remote.New(rc)
}

type providerTestFlags struct {
	haproxy          []string
	unreachable      string
	adapter          string
	adapterTokenFile string
	adapterGone      string
	timeoutAPI       time.Duration

	pool        string
	frontends   []string
	checkPath   string
	interval    time.Duration
	rise, fall  int
	instances   int
	listenIP    string
	limitedPool string
	limitedCap  int
	reloadCmd   string
	promises    []string
	timeout     time.Duration
	output      string
	list        bool
	verbose     bool
}

func newProviderTestCmd() *cobra.Command {
	f := &providerTestFlags{}
	cmd := &cobra.Command{
		Use:   "provider-test",
		Short: "Check a load-balancer provider against zerodrop's provider contract, with real traffic and the LB's own health checks",
		Long: `provider-test runs zerodrop's conformance kit (provider/providertest) against a
real load balancer: it starts HTTP listeners on this machine, registers them as
targets through the provider under test, sends requests through the LB's
frontend and checks every promise of the provider contract against what
arrives: no request before the LB's checks pass, draining stops new requests,
"drained" only when nothing is sent, Deregister busy while a request is open,
idempotency, re-registration after a reload, a full pool, an unreachable
instance, statelessness. The LB must reach --listen-ip and health-check the
pool on --check-path.

The provider under test is HAProxy (--haproxy-instance, one per instance) or
an adapter speaking zerodrop's provider protocol (--adapter URL).

Exit status: 0 when no promise is broken (skipped promises do not apply to
the provider's capabilities or to what the flags let the kit do), 1 when one
is, 2 on a usage or setup error. See docs/provider-conformance.md.`,
		Example: `  # HAProxy with pool "app" served on 127.0.0.1:8080, checked on /ready
  zerodrop provider-test --haproxy-instance lb-a=/run/haproxy/admin.sock \
      --pool app --frontend 127.0.0.1:8080 --check-path /ready \
      --check-interval 2s --check-rise 2 --check-fall 3

  # an adapter, with JSON output
  zerodrop provider-test --adapter http://127.0.0.1:9400 --pool app \
      --frontend 10.0.0.5:80 --check-path /healthz -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.list {
				for _, p := range providertest.Promises() {
					fmt.Fprintf(cmd.OutOrStdout(), "%-26s %s\n", p.ID, p.Title)
				}
				return nil
			}
			return runProviderTest(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.haproxy, "haproxy-instance", nil, "an HAProxy instance under test, `name=address`: its Runtime API (level admin) as a unix socket path or host:port; repeat for each instance")
	fl.StringVar(&f.unreachable, "unreachable-instance", "", "with --haproxy-instance: `name=address` of an instance that does not answer, added to a second provider to check the Unreachable error (e.g. gone=/nonexistent.sock)")
	fl.StringVar(&f.adapter, "adapter", "", "base `URL` of a provider adapter under test (provider external)")
	fl.StringVar(&f.adapterTokenFile, "adapter-token-file", "", "`file` holding the adapter's bearer token")
	fl.StringVar(&f.adapterGone, "adapter-unreachable", "", "with --adapter: `URL=instance` of an adapter configured with one unreachable instance of that name")
	fl.DurationVar(&f.timeoutAPI, "api-timeout", 5*time.Second, "bound on each call to the LB's API or the adapter")
	fl.StringVar(&f.pool, "pool", "", "the pool the kit registers its targets in (HAProxy: a backend); required")
	fl.StringArrayVar(&f.frontends, "frontend", nil, "`host:port` where the LB balances HTTP requests to the pool; one per instance is best; required")
	fl.StringVar(&f.checkPath, "check-path", "", "path of the LB's HTTP health check of the pool (required when the LB has active checks)")
	fl.DurationVar(&f.interval, "check-interval", 0, "the LB's check interval for the pool (default: the provider's)")
	fl.IntVar(&f.rise, "check-rise", 0, "the LB's rise for the pool (default: the provider's)")
	fl.IntVar(&f.fall, "check-fall", 0, "the LB's fall for the pool (default: the provider's)")
	fl.IntVar(&f.instances, "instances", 0, "number of instances Status must report (default: the number of --haproxy-instance; any with --adapter)")
	fl.StringVar(&f.listenIP, "listen-ip", "127.0.0.1", "IP the kit's targets listen on; the LB must reach it")
	fl.StringVar(&f.limitedPool, "limited-pool", "", "a pool of limited capacity, empty, for the PoolFull promise (HAProxy: a backend of server-template slots)")
	fl.IntVar(&f.limitedCap, "limited-capacity", 0, "capacity of --limited-pool")
	fl.StringVar(&f.reloadCmd, "reload-command", "", "shell `command` that reloads the LB and returns once it serves again (e.g. 'systemctl reload haproxy'), for ReregisterAfterReload")
	fl.StringArrayVar(&f.promises, "promise", nil, "check only this promise `ID` (repeatable; --list shows them)")
	fl.DurationVar(&f.timeout, "timeout", 0, "bound on each wait (a target turning Healthy, a drain); default 20 × (rise+fall) × interval, at least 15s")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	fl.BoolVar(&f.list, "list", false, "list the promises and exit")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log each step to stderr")
	return cmd
}

func runProviderTest(cmd *cobra.Command, f *providerTestFlags) error {
	stderr := cmd.ErrOrStderr()
	usage := func(format string, args ...any) error {
		fmt.Fprintf(stderr, "zerodrop provider-test: "+format+"\n", args...)
		return exitError{2}
	}
	if f.output != "table" && f.output != "json" {
		return usage("-o %q: want table or json", f.output)
	}
	h := providertest.Harness{
		Pool: f.pool, Frontends: f.frontends, CheckPath: f.checkPath,
		Check:     provider.HealthCheck{Interval: f.interval, Rise: f.rise, Fall: f.fall},
		Instances: f.instances, ListenIP: f.listenIP, Timeout: f.timeout,
	}
	if f.verbose {
		h.Logf = func(format string, args ...any) {
			fmt.Fprintf(stderr, "  %s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
		}
	}
	switch {
	case len(f.haproxy) > 0 && f.adapter != "":
		return usage("--haproxy-instance and --adapter: test one provider at a time")
	case len(f.haproxy) > 0:
		if f.adapterGone != "" {
			return usage("--adapter-unreachable goes with --adapter; with --haproxy-instance use --unreachable-instance")
		}
		lb, err := haproxyLB(f.haproxy, f)
		if err != nil {
			return usage("%v", err)
		}
		build := providers.Builtin(providers.Options{Timeout: f.timeoutAPI, Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})[zv1.ProviderHAProxy]
		h.New = func() (provider.Provider, error) { return build(lb) }
		if h.Instances == 0 {
			h.Instances = len(lb.Spec.Instances)
		}
		if f.unreachable != "" {
			gone, err := haproxyLB(append(append([]string(nil), f.haproxy...), f.unreachable), f)
			if err != nil {
				return usage("--unreachable-instance: %v", err)
			}
			h.NewUnreachable = func() (provider.Provider, error) { return build(gone) }
			h.UnreachableInstance = gone.Spec.Instances[len(gone.Spec.Instances)-1].Name
		}
	case f.adapter != "":
		if f.unreachable != "" {
			return usage("--unreachable-instance goes with --haproxy-instance; with --adapter use --adapter-unreachable")
		}
		if newAdapterProvider == nil {
			return usage("--adapter: this zerodrop is built without the adapter client (provider/remote); use --haproxy-instance")
		}
		cfg := AdapterConfig{URL: f.adapter, Timeout: f.timeoutAPI}
		if f.adapterTokenFile != "" {
			b, err := os.ReadFile(f.adapterTokenFile)
			if err != nil {
				return usage("--adapter-token-file: %v", err)
			}
			cfg.Token = strings.TrimSpace(string(b))
		}
		h.New = func() (provider.Provider, error) { return newAdapterProvider(cfg) }
		if f.adapterGone != "" {
			url, name, ok := strings.Cut(f.adapterGone, "=")
			if !ok || url == "" || name == "" {
				return usage("--adapter-unreachable %q: want URL=instance", f.adapterGone)
			}
			gone := cfg
			gone.URL = url
			h.NewUnreachable = func() (provider.Provider, error) { return newAdapterProvider(gone) }
			h.UnreachableInstance = name
		}
	default:
		return usage("name the provider under test: --haproxy-instance name=address (repeatable) or --adapter URL")
	}
	if f.limitedPool != "" || f.limitedCap != 0 {
		if f.limitedPool == "" || f.limitedCap < 1 {
			return usage("--limited-pool and --limited-capacity (at least 1) go together")
		}
		h.LimitedPool = &providertest.LimitedPool{Name: f.limitedPool, Capacity: f.limitedCap}
	}
	if f.reloadCmd != "" {
		h.Reload = func(ctx context.Context) error {
			c := exec.CommandContext(ctx, "sh", "-c", f.reloadCmd)
			c.Stdout, c.Stderr = stderr, stderr
			if err := c.Run(); err != nil {
				return fmt.Errorf("--reload-command %q: %w", f.reloadCmd, err)
			}
			return nil
		}
	}
	suite, err := providertest.NewSuite(h)
	if err != nil {
		return usage("%v", strings.TrimPrefix(err.Error(), "providertest: "))
	}
	ids, err := selectPromises(f.promises)
	if err != nil {
		return usage("%v", err)
	}
	ctx, cancel := signalContext(cmd.Context(), 0)
	defer cancel()
	rep := providertest.Report{Pool: f.pool, Capabilities: suite.Capabilities()}
	for _, id := range ids {
		fmt.Fprintf(stderr, "checking %s\n", id)
		r := suite.Check(ctx, id)
		fmt.Fprintf(stderr, "%s: %s (%s)\n", id, r.Outcome, r.Duration.Round(10*time.Millisecond))
		rep.Results = append(rep.Results, r)
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
	}
	if err := writeProviderReport(cmd.OutOrStdout(), rep, f.output); err != nil {
		return err
	}
	if rep.Count(providertest.Broken) > 0 {
		return exitError{1}
	}
	return nil
}

func writeProviderReport(w io.Writer, rep providertest.Report, format string) error {
	if format == "json" {
		return rep.WriteJSON(w)
	}
	return rep.WriteTable(w)
}

// selectPromises returns the IDs asked for, in the kit's order, or all.
func selectPromises(asked []string) ([]string, error) {
	want := map[string]bool{}
	for _, id := range asked {
		want[id] = true
	}
	known := map[string]bool{}
	var ids []string
	for _, p := range providertest.Promises() {
		known[p.ID] = true
		if len(want) == 0 || want[p.ID] {
			ids = append(ids, p.ID)
		}
	}
	for _, id := range asked {
		if !known[id] {
			return nil, fmt.Errorf("--promise %q: no such promise (zerodrop provider-test --list)", id)
		}
	}
	return ids, nil
}

// haproxyLB turns name=address flags into the LoadBalancer the provider
// registry builds an HAProxy provider from.
func haproxyLB(specs []string, f *providerTestFlags) (*zv1.LoadBalancer, error) {
	lb := &zv1.LoadBalancer{Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderHAProxy}}
	lb.Name = "provider-test"
	seen := map[string]bool{}
	for _, s := range specs {
		in, err := parseInstanceFlag(s)
		if err != nil {
			return nil, err
		}
		if seen[in.Name] {
			return nil, fmt.Errorf("instance %q named twice", in.Name)
		}
		seen[in.Name] = true
		lb.Spec.Instances = append(lb.Spec.Instances, in)
	}
	hc := &lb.Spec.PoolDefaults.HealthCheck
	if f.interval > 0 {
		hc.Interval = &metav1.Duration{Duration: f.interval}
	}
	if f.rise > 0 {
		r := int32(f.rise)
		hc.Rise = &r
	}
	if f.fall > 0 {
		n := int32(f.fall)
		hc.Fall = &n
	}
	return lb, nil
}

// parseInstanceFlag parses "name=address": a unix socket path (starting
// with '/') or host:port.
func parseInstanceFlag(s string) (zv1.LoadBalancerInstance, error) {
	name, addr, ok := strings.Cut(s, "=")
	name, addr = strings.TrimSpace(name), strings.TrimSpace(addr)
	switch {
	case !ok || name == "" || addr == "":
		return zv1.LoadBalancerInstance{}, fmt.Errorf("instance %q: want name=address (a unix socket path or host:port)", s)
	case strings.ContainsAny(name, " \t/="):
		return zv1.LoadBalancerInstance{}, fmt.Errorf("instance %q: name %q contains a space, '/' or '='", s, name)
	case strings.HasPrefix(addr, "/"):
		return zv1.LoadBalancerInstance{Name: name, Socket: addr}, nil
	}
	if i := strings.LastIndexByte(addr, ':'); i <= 0 || i == len(addr)-1 {
		return zv1.LoadBalancerInstance{}, fmt.Errorf("instance %q: address %q is neither a socket path (/...) nor host:port", s, addr)
	}
	return zv1.LoadBalancerInstance{Name: name, Address: addr}, nil
}
