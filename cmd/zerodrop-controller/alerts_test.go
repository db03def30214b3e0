package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/lab/netns"
	"zerodrop.dev/zerodrop/internal/lab/proc"
	"zerodrop.dev/zerodrop/internal/lab/prometheus"
	"zerodrop.dev/zerodrop/internal/testenv"
)

// rulesFile is the alerts as shipped, loaded by Prometheus unchanged.
const rulesFile = "../../config/monitoring/zerodrop.rules.yaml"

// podAppEnv, set to host:port, makes the test binary a pod's app (see
// TestMain): it answers every request 200 on that address, which HAProxy's
// health check of the pod's server passes.
const podAppEnv = "ZERODROP_TEST_POD_APP"

func servePodApp(addr string) {
	err := http.ListenAndServe(addr, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	fmt.Fprintln(os.Stderr, "pod app:", err)
	os.Exit(1)
}

// startPodApp runs the pod's app inside its network namespace, on the pod's
// address and port 8080 (the port startPodIn's EndpointSlice names), until
// the test ends; it returns once the app answers from the host.
func startPodApp(t *testing.T, pn *netns.PodNet) {
	t.Helper()
	addr := netip.AddrPortFrom(pn.Addr, 8080).String()
	cmd := pn.Command(context.Background(), os.Args[0])
	cmd.Env = append(os.Environ(), podAppEnv+"="+addr)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := proc.StartCmd(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	hc := &http.Client{Timeout: time.Second}
	eventually(t, "the app of "+pn.ID+" answers on "+addr, func() (bool, string) {
		resp, err := hc.Get("http://" + addr + "/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// TestAlertsInARealPrometheus: the shipped alerts, loaded unchanged by a
// real Prometheus that scrapes the real zerodrop-controller binary (a real
// API server, a real HAProxy checking real servers).
//
// Pods have addresses of their own (a network namespace each on a bridge
// of the test's, internal/lab/netns: EndpointSlices refuse loopback
// addresses), so the test runs as root.
//
// Scenario: binding web-edge's pod runs its app and passes HAProxy's
// health check; then binding api-edge (gate timeout 2 s) gets a pod whose
// app does not run: the check is refused, its server never goes UP and
// its gate is stuck; then the app starts.
// Expectation: before the fault Prometheus has scraped the gate series
// (web-edge's gate latency, zerodrop_gates_stuck 0 for both bindings, the
// instance reachable, a leader) and every alert is inactive. After it,
// ZerodropGateStuck for api-edge is pending, then firing after the rules
// file's own `for: 1m` (the test waits the minute rather than shortening
// the rule), with the file's labels and runbook. ZerodropLoadBalancerInstanceUnreachable
// (its series present at 1) and every other alert stay quiet throughout;
// web-edge never alerts. When the server goes UP the alert resolves.
func TestAlertsInARealPrometheus(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	testenv.RequireBinary(t, "prometheus")
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip")
	e := startRoleEnv(t)
	bin := controllerBinary(t)
	ctx := context.Background()
	start := time.Now()
	const ns = "shop"

	podNet, err := netns.Create(fmt.Sprintf("zda%d", os.Getpid()%100000), netns.PrefixForPID(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := podNet.Destroy(); err != nil {
			t.Errorf("remove the pod network: %v", err)
		}
	})
	webNet, err := podNet.AddPod("web-1")
	if err != nil {
		t.Fatal(err)
	}
	apiNet, err := podNet.AddPod("api-1")
	if err != nil {
		t.Fatal(err)
	}
	startPodApp(t, webNet)

	check := lab.Check{HTTPPath: "/ready", Interval: 200 * time.Millisecond, Rise: 2, Fall: 2}
	hp, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{{Name: "be_web", Check: check}, {Name: "be_api", Check: check}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hp.Stop() })

	bindingCheck := &zv1.HealthCheck{Interval: &metav1.Duration{Duration: check.Interval}, Rise: ptr.To(int32(check.Rise)), Fall: ptr.To(int32(check.Fall))}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{zv1.GatesNamespaceLabel: zv1.GatesEnabled}}},
		&zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: zv1.LoadBalancerSpec{
			Provider: zv1.ProviderHAProxy, Instances: []zv1.LoadBalancerInstance{{Name: "haproxy-a", Socket: hp.Socket()}}}},
	}
	for _, b := range []struct {
		app, pool string
		gate      zv1.GateSpec
	}{
		{"web", "be_web", zv1.GateSpec{}},
		{"api", "be_api", zv1.GateSpec{Timeout: &metav1.Duration{Duration: 2 * time.Second}, OnTimeout: zv1.FailClosed}},
	} {
		objs = append(objs,
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: b.app}, Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": b.app}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}},
			&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: b.app + "-edge"}, Spec: zv1.TargetBindingSpec{
				ServiceRef: zv1.ServiceReference{Name: b.app, Port: intstr.FromString("http")}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"},
				Pool: b.pool, HealthCheck: bindingCheck, Gate: b.gate}})
	}
	for _, o := range objs {
		if err := e.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	// The controller as a user runs it (one process, leader-elected),
	// with plain-HTTP metrics on loopback for Prometheus.
	dir := t.TempDir()
	kcFile := mastersKubeconfig(t, e.env, "zerodrop-controller", dir)
	metricsAddr, probeAddr, drainAddr := freeAddr(), freeAddr(), freeAddr()
	ctl, err := proc.Start(proc.Spec{Name: "zerodrop-controller", Path: bin, Log: filepath.Join(dir, "controller.log"), Args: []string{
		"--kubeconfig=" + kcFile, "--role=all", "--leader-elect", "--namespace=" + controllerNS,
		"--webhook-cert-mode=external", "--webhook-cert-dir=" + e.wo.LocalServingCertDir,
		"--webhook-bind-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", e.wo.LocalServingPort),
		"--drain-hook-host=127.0.0.1", "--drain-bind-address=" + drainAddr, "--drain-shutdown-delay=0s",
		"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false", "--health-probe-bind-address=" + probeAddr,
		"--provider-poll-interval=100ms", "--resync-interval=1s"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctl.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("controller log (end):\n%s", ctl.Tail(8192))
		}
	})

	prom, err := prometheus.Start(ctx, prometheus.Config{RuleFiles: []string{rulesFile},
		// honor_labels as docs/monitoring.md's scrape job and the chart's
		// ServiceMonitor: zerodrop's namespace and instance labels (the
		// binding's namespace, the LB instance) are the alerts' labels,
		// not the scrape target's.
		Jobs: []prometheus.Job{{Name: "zerodrop-controller", Targets: []string{metricsAddr}, HonorLabels: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prometheus log (end):\n%s", prom.LogTail())
		}
		if err := prom.Stop(); err != nil {
			t.Errorf("stop prometheus: %v", err)
		}
	})
	t.Logf("controller pid %d (metrics %s), prometheus pid %d (%s), haproxy socket %s; started in %s",
		ctl.PID(), metricsAddr, prom.PID(), prom.URL(), hp.Socket(), time.Since(start).Round(time.Millisecond))

	// quiet checks, at every look at Prometheus, that no alert is pending
	// or firing except ZerodropGateStuck for api-edge once allowed.
	stuckAllowed := false
	quiet := func(alerts []prometheus.Alert) {
		t.Helper()
		for _, a := range alerts {
			if stuckAllowed && a.Labels["alertname"] == "ZerodropGateStuck" && a.Labels["binding"] == "api-edge" {
				continue
			}
			t.Fatalf("alert %s %s %v (value %s, active since %s): the healthy parts must not alert", a.Labels["alertname"], a.State, a.Labels, a.Value, a.ActiveAt)
		}
	}
	// query returns an instant query's values by the series' label key.
	query := func(expr, key string) map[string]float64 {
		t.Helper()
		s, err := prom.Query(ctx, expr)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, x := range s {
			out[x.Metric[key]] = x.Value
		}
		return out
	}

	// Healthy: web-1 passes its checks and its gate opens.
	eventually(t, "the controller's webhook injects the gate", func() (bool, string) {
		p := newPod(ns, "probe", map[string]string{"app": "web"})
		if err := e.c.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		return len(p.Spec.ReadinessGates) > 0, fmt.Sprint(p.Spec.ReadinessGates)
	})
	startPodIn(t, e.c, ns, "web-1", "web", webNet.Addr.String())
	eventually(t, "web-1's gate True", func() (bool, string) {
		c := gateIn(t, e.c, ns, "web-1", "web-edge")
		return c != nil && c.Status == corev1.ConditionTrue, fmt.Sprint(c)
	})

	// Before the fault: Prometheus holds the series every quiet alert is
	// evaluated on, and has evaluated the rules since.
	var seen time.Time
	eventuallyWithin(t, "Prometheus scraped the healthy controller", 60*time.Second, 250*time.Millisecond, func() (bool, string) {
		lat := query(`zerodrop_gate_latency_seconds_count{namespace="shop"}`, "binding")
		stuck := query(`zerodrop_gates_stuck{namespace="shop"}`, "binding")
		reach := query(`zerodrop_loadbalancer_instance_reachable{loadbalancer="edge"}`, "instance")
		leader := query(`leader_election_master_status{name="zerodrop-controller.zerodrop.dev"}`, "job")
		ok := lat["web-edge"] == 1 && len(stuck) == 2 && stuck["web-edge"] == 0 && stuck["api-edge"] == 0 &&
			len(reach) == 1 && reach["haproxy-a"] == 1 && leader["zerodrop-controller"] == 1
		seen = time.Now()
		return ok, fmt.Sprintf("gate latency count %v, gates stuck %v, instance reachable %v, leader %v", lat, stuck, reach, leader)
	})
	eventuallyWithin(t, "a rule evaluation after the scrape", 30*time.Second, 250*time.Millisecond, func() (bool, string) {
		rs, err := prom.AlertingRules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Health != "ok" || !r.LastEvaluation.After(seen) {
				return false, fmt.Sprintf("%s: health %s %s, last evaluation %s", r.Name, r.Health, r.LastError, r.LastEvaluation)
			}
		}
		return true, ""
	})
	rules, err := prom.AlertingRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]prometheus.Rule{}
	for _, r := range rules {
		if r.State != "inactive" {
			t.Errorf("before the fault: %s is %s, want inactive", r.Name, r.State)
		}
		byName[r.Name] = r
	}
	stuckRule, ok := byName["ZerodropGateStuck"]
	if !ok || byName["ZerodropLoadBalancerInstanceUnreachable"].Name == "" {
		t.Fatalf("rules loaded %v: want ZerodropGateStuck and ZerodropLoadBalancerInstanceUnreachable from %s", ruleNames(rules), rulesFile)
	}
	alerts, err := prom.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	quiet(alerts)
	t.Logf("before the fault: %d rules loaded, all inactive; series in Prometheus after %s", len(rules), time.Since(start).Round(time.Millisecond))

	// The fault: api-1's app does not run; its check is refused and its
	// server never goes UP.
	startPodIn(t, e.c, ns, "api-1", "api", apiNet.Addr.String())
	fault := time.Now()
	stuckAllowed = true
	eventuallyWithin(t, "zerodrop_gates_stuck 1 for api-edge in Prometheus", 60*time.Second, 250*time.Millisecond, func() (bool, string) {
		s := query(`zerodrop_gates_stuck{namespace="shop"}`, "binding")
		return s["api-edge"] == 1 && s["web-edge"] == 0, fmt.Sprint(s)
	})
	if c := gateIn(t, e.c, ns, "api-1", "api-edge"); c == nil || c.Status != corev1.ConditionFalse || c.Reason != "GateTimeoutFailClosed" {
		t.Fatalf("api-1's gate: %+v, want False GateTimeoutFailClosed", c)
	}
	stuckSeen := time.Since(fault)

	// Pending, then firing once the rule's own `for:` has passed.
	// Prometheus counts `for:` on the wall clock, which can step (the lab's
	// clock fault steps this machine's clock by 45 s): the wait is read on
	// both clocks, and asserted on the monotonic one only when they agree.
	var pendingAt, firingAt time.Time // with monotonic readings
	var firing prometheus.Alert
	eventuallyWithin(t, "ZerodropGateStuck firing", stuckRule.For()+90*time.Second, 250*time.Millisecond, func() (bool, string) {
		alerts, err := prom.Alerts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		quiet(alerts)
		for _, a := range alerts {
			switch {
			case a.State == "pending" && pendingAt.IsZero():
				pendingAt = time.Now()
			case a.State == "firing":
				firingAt, firing = time.Now(), a
				return true, ""
			}
		}
		return false, fmt.Sprint(alerts)
	})
	if pendingAt.IsZero() {
		t.Fatalf("ZerodropGateStuck fired without being seen pending first")
	}
	waited := firingAt.Sub(pendingAt)
	wallWaited := firingAt.Round(0).Sub(pendingAt.Round(0))
	// On Prometheus's clock: it fires at the first evaluation at least
	// for: after activeAt, and the test looked after that.
	if onProm := firingAt.Round(0).Sub(firing.ActiveAt); onProm < stuckRule.For() {
		t.Errorf("firing %s after its activeAt %s on the wall clock, want at least the rule's for: %s", onProm.Round(time.Millisecond), firing.ActiveAt, stuckRule.For())
	}
	if step := wallWaited - waited; step > 2*time.Second || step < -2*time.Second {
		t.Logf("the wall clock stepped by %s while the alert was pending (%s on the monotonic clock, %s on the wall clock): for: checked on Prometheus's clock only",
			step.Round(time.Millisecond), waited.Round(time.Millisecond), wallWaited.Round(time.Millisecond))
	} else if waited < stuckRule.For()-3*time.Second {
		// Seen pending within a poll and an evaluation of its activeAt.
		t.Errorf("firing %s after pending, want the rule's for: %s", waited.Round(time.Millisecond), stuckRule.For())
	}
	want := map[string]string{"alertname": "ZerodropGateStuck", "namespace": ns, "binding": "api-edge", "severity": "warning"}
	for k, v := range want {
		if firing.Labels[k] != v {
			t.Errorf("firing alert label %s=%q, want %q (labels %v)", k, firing.Labels[k], v, firing.Labels)
		}
	}
	if firing.Value != "1e+00" && firing.Value != "1" {
		t.Errorf("firing alert value %s, want 1 stuck target", firing.Value)
	}
	if firing.Annotations["runbook"] != "docs/monitoring.md#zerodropgatestuck" {
		t.Errorf("firing alert runbook %q", firing.Annotations["runbook"])
	}
	t.Logf("fault: gates_stuck=1 in Prometheus %s after api-1's endpoint; pending seen %s after the fault, firing %s after pending (for: %s)",
		stuckSeen.Round(time.Millisecond), pendingAt.Sub(fault).Round(time.Millisecond), firingAt.Sub(pendingAt).Round(time.Millisecond), stuckRule.For())

	// Per-instance verdicts, as HAProxy gave them.
	verdicts := func(binding string) map[string]float64 {
		return query(`zerodrop_targets{namespace="shop",binding="`+binding+`",loadbalancer="edge",instance="haproxy-a"}`, "health")
	}
	if v := verdicts("web-edge"); len(v) != 1 || v["Healthy"] != 1 {
		t.Errorf("zerodrop_targets of web-edge on haproxy-a: %v, want 1 Healthy", v)
	}
	// Never UP: still Initial (no check ever passed) or Unhealthy.
	if v := verdicts("api-edge"); len(v) != 1 || v["Initial"]+v["Unhealthy"] != 1 {
		t.Errorf("zerodrop_targets of api-edge on haproxy-a: %v, want 1 Initial or Unhealthy", v)
	} else {
		t.Logf("zerodrop_targets of api-edge on haproxy-a: %v", v)
	}

	// The healthy parts stayed quiet, on series that exist.
	if r := query(`zerodrop_loadbalancer_instance_reachable{loadbalancer="edge"}`, "instance"); r["haproxy-a"] != 1 {
		t.Errorf("instance reachable %v, want haproxy-a 1", r)
	}
	rules, err = prom.AlertingRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Health != "ok" {
			t.Errorf("%s: health %s: %s", r.Name, r.Health, r.LastError)
		}
		if r.Name != "ZerodropGateStuck" && r.State != "inactive" {
			t.Errorf("%s is %s during the stuck gate, want inactive", r.Name, r.State)
		}
	}

	// Recovery: the app starts, the check passes, the server goes UP, the
	// alert resolves.
	startPodApp(t, apiNet)
	recovered := time.Now()
	eventuallyWithin(t, "ZerodropGateStuck resolved", 60*time.Second, 250*time.Millisecond, func() (bool, string) {
		alerts, err := prom.Alerts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		quiet(alerts)
		return len(alerts) == 0, fmt.Sprint(alerts)
	})
	t.Logf("recovery: no alert %s after the app answered; whole test %s", time.Since(recovered).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

func ruleNames(rs []prometheus.Rule) []string {
	var names []string
	for _, r := range rs {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return names
}
