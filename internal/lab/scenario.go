package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/verify"
)

// App describes how the sample app behaves in a scenario (its knobs).
type App struct {
	// StartupDelay is how long the app waits before it listens, as a JVM
	// or a framework warming up does.
	StartupDelay time.Duration
	// Latency is added to every request, so requests are in flight when
	// a pod is told to stop.
	Latency time.Duration
	// Drain makes the app drain in-flight requests on SIGTERM (keep
	// serving, close keep-alive connections, exit when idle); otherwise it
	// exits at once, as Spring Boot did before 3.4.
	Drain bool
	// DrainWait is how long a draining app keeps serving after SIGTERM
	// before it stops accepting (its own wait for the LB, on top of any
	// preStop sleep).
	DrainWait time.Duration
}

// Scenario is one way of deploying the sample app; the four baseline
// scenarios add the usual fixes one by one.
type Scenario struct {
	// Name is what --scenario takes.
	Name string
	// Summary says what the scenario adds.
	Summary string
	// App are the app's knobs.
	App App
	// ReadinessProbe adds an httpGet readiness probe on the app's
	// readiness endpoint.
	ReadinessProbe bool
	// PreStopSleep adds a preStop sleep action of this length.
	PreStopSleep time.Duration
	// GracePeriod is terminationGracePeriodSeconds; zero keeps the
	// default (30 s).
	GracePeriod time.Duration

	// LB is the load balancer the scenario runs through: its load, its
	// baseline syncer and its "servers up" waits; "" is LBHAProxy.
	LB LBKind

	// The hooks below let a scenario bring its own load-balancer
	// integration (zerodrop-controller's scenario: readiness gates and
	// drain gates instead of the baseline syncer).

	// ExternalLB skips the baseline syncer: something the scenario starts
	// in Prepare keeps the load balancer's pool filled.
	ExternalLB bool
	// Prepare runs after the namespace and the Service are created and
	// before the Deployment is (label the namespace, create bindings, start
	// a controller). The returned Integration's Stop runs when the scenario
	// ends, also on failure.
	Prepare func(ctx context.Context, t Target, namespace string) (*Integration, error)
	// Mutate changes the Deployment before it is created.
	Mutate func(*appsv1.Deployment)
}

// Integration is what a scenario's Prepare started: how to stop it, and the
// faults it can suffer (nil when it has no such part).
type Integration struct {
	// Stop removes what Prepare created; it runs before the namespace is
	// deleted.
	Stop func()
	// KillController kills the scenario's controller (SIGKILL);
	// RestartController starts it again.
	KillController    func() error
	RestartController func(ctx context.Context) error
	// Check, when set, runs after the rollouts: an error fails the run
	// (the controller was refused by RBAC).
	Check func() error
	// Controller is the zerodrop-controller the scenario started, for the
	// cluster-side faults (fault_cluster.go); nil when it has none.
	Controller *Controller
}

// The app's knobs shared by every scenario: a start that takes a moment,
// and requests that take a moment.
var baseApp = App{StartupDelay: 2 * time.Second, Latency: 20 * time.Millisecond}

// Scenarios are the four baseline scenarios of the seeds, in order.
var Scenarios = []Scenario{
	{
		Name:    "naive",
		Summary: "no readinessProbe, no preStop, the app exits at once on SIGTERM",
		App:     baseApp,
	},
	{
		Name:           "readiness",
		Summary:        "+ readinessProbe",
		App:            baseApp,
		ReadinessProbe: true,
	},
	{
		Name:           "prestop",
		Summary:        "+ preStop sleep 5s with a grace period that fits (15s)",
		App:            baseApp,
		ReadinessProbe: true,
		PreStopSleep:   5 * time.Second,
		GracePeriod:    15 * time.Second,
	},
	{
		Name:           "drain",
		Summary:        "+ the app drains in-flight requests on SIGTERM",
		App:            App{StartupDelay: baseApp.StartupDelay, Latency: baseApp.Latency, Drain: true, DrainWait: time.Second},
		ReadinessProbe: true,
		PreStopSleep:   5 * time.Second,
		GracePeriod:    15 * time.Second,
	},
}

// NGINXNaiveScenario is the naive scenario through NGINX instead of
// HAProxy, with NGINX's own baseline: the upstream file rewritten from the
// Service's Ready endpoints and NGINX reloaded (a template and a reload
// loop), no gate.
var NGINXNaiveScenario = Scenario{
	Name:    "nginx-naive",
	Summary: "naive through NGINX, synced by rewriting the upstream and reloading (no gate)",
	App:     baseApp,
	LB:      LBNGINX,
}

// AllScenarios are the four baselines, the zerodrop scenario, the zerodrop
// scenario through the provider adapter, the two NGINX scenarios and the
// zerodrop scenario with an app using the graceful package, in order.
func AllScenarios() []Scenario {
	return append(slices.Clone(Scenarios), ZerodropScenario, ZerodropAdapterScenario, NGINXNaiveScenario, ZerodropNGINXScenario, ZerodropGracefulScenario, ZerodropInstalledScenario)
}

// ScenarioByName returns a scenario of AllScenarios.
func ScenarioByName(name string) (Scenario, error) {
	for _, s := range AllScenarios() {
		if s.Name == name {
			return s, nil
		}
	}
	var names []string
	for _, s := range AllScenarios() {
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("lab: unknown scenario %q (known: %s, all)", name, strings.Join(names, ", "))
}

// appPort is the port the app listens on inside its pod.
const appPort = 8080

// Deployment builds the scenario's Deployment: Replicas pods of the app
// image, rolled one at a time (maxSurge 1, maxUnavailable 0).
func (s Scenario) Deployment(ns string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	c := corev1.Container{
		Name:    "app",
		Image:   AppImage + ":v1",
		Command: []string{AppEntrypoint},
		Args:    appArgs(s.App, s),
		Env:     appEnv(),
		Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: appPort}},
	}
	if s.ReadinessProbe {
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: appReadyPath, Port: intstr.FromString("http"),
			}},
			PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 1,
		}
	}
	if s.PreStopSleep > 0 {
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Sleep: &corev1.SleepAction{Seconds: int64(s.PreStopSleep / time.Second)},
		}}
	}
	spec := corev1.PodSpec{Containers: []corev1.Container{c}}
	if s.GracePeriod > 0 {
		g := int64(s.GracePeriod / time.Second)
		spec.TerminationGracePeriodSeconds = &g
	}
	one := intstr.FromInt32(1)
	zero := intstr.FromInt32(0)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &one, MaxUnavailable: &zero},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       spec,
			},
		},
	}
}

// Service builds the Service in front of the scenario's pods.
func (s Scenario) Service(ns string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
}

// RunOptions configure one scenario run.
type RunOptions struct {
	// Rollouts is how many times the Deployment is rolled (K); default 3.
	Rollouts int
	// Rate is the constant request rate (per second, across all the
	// load balancer's instances); default 200.
	Rate float64
	// SlowRate is the rate of slow requests sent besides Rate (reports,
	// uploads: requests still in flight when a pod is told to stop);
	// default Rate/50, at least 1 per second; negative for none.
	SlowRate float64
	// SlowLatency is how long a slow request takes (the app's ?sleep=);
	// default 6 s, longer than the preStop sleep minus the LB's reaction,
	// so slow requests are in flight at SIGTERM.
	SlowLatency time.Duration
	// Replicas of the Deployment; default 3.
	Replicas int32
	// Settle is the load before the first rollout and after each one
	// (once every new pod passes HAProxy's checks); default 3 s.
	Settle time.Duration
	// RolloutTimeout bounds each rollout; default 3 minutes.
	RolloutTimeout time.Duration
	// Namespace for the scenario; default "zd-<scenario>". It is created
	// and deleted.
	Namespace string
	// Fault, when set, strikes in the middle of every rollout: at the
	// moment its first old pod is deleted (drain hooks waiting, new pods
	// registering).
	Fault Fault
	// Faults, when set, replaces Fault: rollout i suffers
	// Faults[(i-1) mod len(Faults)] ("" for none), a fault campaign in one
	// deployed scenario.
	Faults []Fault
	// FaultHold is how long lbdown, slowlb, partition, full and clock last;
	// default DefaultFaultHold.
	FaultHold time.Duration
	// RestartDelay is how long a killed controller stays down before it is
	// started again (FaultKillController); default 1 s.
	RestartDelay time.Duration
	// PostRate is the rate of the POST stream sent besides Rate (an order
	// with a body the app reads: a cut connection no client retries);
	// default Rate/10 through HAProxy, none through NGINX (its reloads
	// close idle keep-alive connections: docs/nginx.md, "Known limits");
	// negative for none.
	PostRate float64
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Progress, when set, receives one line per step.
	Progress io.Writer
	// Timeline, when set, also builds verify's report of the run
	// (Result.Report, for `lab run --html`): the main and POST streams'
	// requests, the slow stream's failures (its successes would set every
	// bucket's p99 to the slow latency), the pods', endpoints' and
	// Kubernetes events of the namespace, and each rollout's steps and
	// fault. In a campaign (Faults) it builds one report per rollout
	// instead (RolloutRecord.Report), of the rollout's window.
	Timeline bool
	// OnResult, when set, sees every request's result with its stream
	// (StreamMain, StreamSlow, StreamPost) and the index of the instance it
	// went through (e.g. to build a verify timeline per rollout, cut at
	// Result.PerRollout[].Started). It runs on the results' path, from
	// several goroutines: keep it fast and safe for concurrent use.
	OnResult func(stream string, instance int, r verify.Result)

	// Prometheus, when set, runs Debian's Prometheus beside the scenario:
	// it loads config/monitoring/zerodrop.rules.yaml unchanged and scrapes
	// the scenario's zerodrop-controller and every HAProxy instance's
	// exporter every second; Result.Alerts lists what is pending or firing
	// after the rollouts.
	Prometheus bool

	lbRig *lbRig // the LB faults' shared parts (Run sets it)
}

// Target is the lab a scenario runs against: its API and its HAProxy and
// NGINX instances (a lab in this process, or one started by `zerodrop lab
// up`).
type Target struct {
	// Config is the admin client configuration (for controllers a
	// scenario starts); Client is built from it. Kubeconfig is the same
	// as a file, for controller processes.
	Config     *rest.Config
	Kubeconfig string
	Client     kubernetes.Interface
	HAProxy    []HAProxyState
	NGINX      []NGINXState
	// Check is the health check the syncer gives the servers it adds.
	Check haproxy.Check
	// Dir is the lab's run directory (its node agents keep each pod's
	// container logs under nodes/<node>/pod-<name>-*/).
	Dir string

	// controlPlane restarts control-plane processes (fault_cluster.go);
	// nil for a lab in another process.
	controlPlane controlPlane
	// nodes powers nodes off and on (fault_node.go); nil for a lab in
	// another process.
	nodes nodePower
}

// Result is the outcome of one scenario run.
type Result struct {
	Scenario string  `json:"scenario"`
	Summary  string  `json:"summary"`
	Rollouts int     `json:"rollouts"`
	Rate     float64 `json:"rate"`
	// Requests sent and how many failed.
	Requests uint64 `json:"requests"`
	Failed   uint64 `json:"failed"`
	// FailuresByClass counts failed requests per verify class (http_502,
	// refused, reset, eof, timeout, ...).
	FailuresByClass map[string]uint64 `json:"failuresByClass"`
	// FailedPerRollout lists the failed requests that ended while each
	// rollout ran (from its start to the next one's, or the run's end).
	FailedPerRollout []uint64 `json:"failedPerRollout"`
	// RolloutSeconds is how long each rollout took, from the restart to
	// the last old pod gone.
	RolloutSeconds []float64 `json:"rolloutSeconds"`
	// P50/P99 latency of the main stream's successful requests, in
	// milliseconds.
	LatencyP50ms float64   `json:"latencyP50ms"`
	LatencyP99ms float64   `json:"latencyP99ms"`
	Started      time.Time `json:"started"`
	Ended        time.Time `json:"ended"`
	// Fault is the fault injected in every rollout ("" for none), and
	// Faults what happened each time.
	Fault  Fault        `json:"fault,omitempty"`
	Faults []FaultEvent `json:"faults,omitempty"`
	// Gates are the measured gate and drain latencies (scenarios with their
	// own load-balancer integration).
	Gates *GateTimings `json:"gates,omitempty"`
	// Prometheus is what RunOptions.Prometheus saw after the rollouts:
	// scrape targets up, and the alerts pending or firing.
	Prometheus *PrometheusSummary `json:"prometheus,omitempty"`
	// Report is verify's report of the run (RunOptions.Timeline), for its
	// HTML timeline; not part of the JSON table. A campaign has none: its
	// rollouts have one each (RolloutRecord.Report).
	Report *verify.Report `json:"-"`
	// FailureSamples are the first failed requests (maxFailureSamples),
	// in the order they ended: when, through which frontend, and how
	// long each took tell a refused connection (instant 502) from a
	// connect timeout (504 after proxy_connect_timeout).
	FailureSamples []FailureSample `json:"failureSamples,omitempty"`
	// Streams counts each load stream apart (main, slow, post).
	Streams []StreamCount `json:"streams,omitempty"`
	// Faults when the run cycled through several (RunOptions.Faults).
	FaultCycle []Fault `json:"faultCycle,omitempty"`
	// PerRollout is what each rollout measured.
	PerRollout []RolloutRecord `json:"perRollout"`
}

// FailureSample is one failed request.
type FailureSample struct {
	// Scheduled is when the request was due.
	Scheduled time.Time `json:"scheduled"`
	// Stream is the load stream that sent it (main, slow, post).
	Stream string `json:"stream,omitempty"`
	// Frontend is the load-balancer instance's address it went to.
	Frontend string `json:"frontend"`
	Class    string `json:"class"`
	Code     int    `json:"code,omitempty"`
	// LatencyMs is how long the client waited for the failure.
	LatencyMs float64 `json:"latencyMs"`
	Error     string  `json:"error,omitempty"`
}

// maxFailureSamples bounds Result.FailureSamples.
const maxFailureSamples = 20

// Name is the scenario's name with its fault, as the table shows it.
func (r Result) Name() string {
	if len(r.FaultCycle) > 0 {
		return r.Scenario + "+campaign"
	}
	if r.Fault != "" {
		return r.Scenario + "+" + string(r.Fault)
	}
	return r.Scenario
}

// RolloutDuration is the total time spent rolling.
func (r Result) RolloutDuration() time.Duration {
	var s float64
	for _, x := range r.RolloutSeconds {
		s += x
	}
	return time.Duration(s * float64(time.Second))
}

func (o *RunOptions) defaults(s Scenario) {
	if o.Rollouts <= 0 {
		o.Rollouts = 3
	}
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.SlowRate == 0 {
		o.SlowRate = max(1, o.Rate/50)
	}
	if o.SlowLatency <= 0 {
		o.SlowLatency = 6 * time.Second
	}
	if o.Replicas <= 0 {
		o.Replicas = 3
	}
	if o.Settle <= 0 {
		o.Settle = 3 * time.Second
	}
	if o.RolloutTimeout <= 0 {
		o.RolloutTimeout = 3 * time.Minute
	}
	if o.Namespace == "" {
		o.Namespace = "zd-" + s.Name
	}
	if o.RestartDelay <= 0 {
		o.RestartDelay = time.Second
	}
	if o.PostRate == 0 && s.lb() != LBNGINX {
		o.PostRate = max(1, o.Rate/10)
	}
	if o.FaultHold <= 0 {
		o.FaultHold = DefaultFaultHold
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Run runs one scenario: it deploys the app and its Service in a fresh
// namespace, keeps the load balancer's pool in sync with the Service's Ready
// endpoints (the baseline syncer of the scenario's LB, or the scenario's
// own integration), waits until every replica serves through the load
// balancer, then sends constant load through every instance of it while
// rolling the Deployment K times, and counts what failed. The namespace is
// deleted afterwards, also on failure.
func Run(ctx context.Context, t Target, s Scenario, o RunOptions) (res Result, err error) {
	o.defaults(s)
	lbNames, frontends, err := t.instances(s.lb())
	if err != nil {
		return res, err
	}
	cs := t.Client
	res = Result{Scenario: s.Name, Summary: s.Summary, Rollouts: o.Rollouts, Rate: o.Rate, FailuresByClass: map[string]uint64{}, Fault: o.Fault, FaultCycle: o.Faults}
	faults := o.Faults
	if len(faults) == 0 && o.Fault != "" {
		faults = []Fault{o.Fault}
	}
	// The LB faults may change how the controller reaches the victim
	// (their proxy) and restart instances: on a copy of the instances.
	t.HAProxy = slices.Clone(t.HAProxy)
	rig, err := newLBRig(&t, faults)
	if err != nil {
		return res, err
	}
	defer rig.close()
	step := func(format string, args ...any) {
		fmt.Fprintf(o.Progress, "[%s] %s\n", s.Name, fmt.Sprintf(format, args...))
	}

	d, err := Deploy(ctx, t, s, o)
	if err != nil {
		return res, err
	}
	defer d.Close()
	var prom *labPrometheus
	if o.Prometheus {
		if prom, err = startLabPrometheus(ctx, t, &d.Integration); err != nil {
			return res, err
		}
		defer prom.stop()
	}

	for _, f := range faults {
		if err := f.check(d.Integration); err != nil {
			return res, fmt.Errorf("lab: scenario %s: %w", s.Name, err)
		}
		if err := f.checkLB(t, s.lb(), d.Integration); err != nil {
			return res, fmt.Errorf("lab: scenario %s: %w", s.Name, err)
		}
	}

	// Load through every instance, the rate split evenly.
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var probe *latencyProbe
	if s.ExternalLB && s.lb() == LBHAProxy {
		// NGINX open source has no per-server counters to probe.
		probe = startProbe(loadCtx, cs, o.Namespace, t.HAProxy)
	}
	var rec recorder
	var wg sync.WaitGroup
	res.Started = time.Now()
	tl, err := startTimeline(ctx, t, o, res.Started)
	if err != nil {
		return res, err
	}
	defer tl.stop()
	methods := map[string]string{}
	for i, fe := range frontends {
		for _, st := range o.streams() {
			methods[st.name] = st.method
			var header http.Header
			if st.body != nil {
				header = http.Header{"Content-Type": {"application/json"}}
			}
			results, err := verify.Attack(loadCtx, verify.Load{
				Target:   verify.Target{Method: st.method, URL: "http://" + fe + st.path, Body: st.body, Header: header},
				Rate:     st.rate / float64(len(frontends)),
				Duration: 24 * time.Hour, // bounded by loadCtx: stopped after the last rollout
				Timeout:  st.timeout,
			})
			if err != nil {
				return res, fmt.Errorf("lab: load through %s: %w", fe, err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range results {
					rec.add(r, st.name, i, fe)
					tl.add(r, st.name)
					if o.OnResult != nil {
						o.OnResult(st.name, i, r)
					}
				}
			}()
		}
	}
	step("load at %.0f req/s (+ %.0f req/s taking %s, + %.0f POST/s) through %d %s instance(s); settling %s",
		o.Rate, max(0, o.SlowRate), o.SlowLatency, max(0, o.PostRate), len(frontends), s.lb(), o.Settle)
	var runErr error
	if !sleepCtx(ctx, o.Settle) {
		runErr = ctx.Err()
	}
	var marks []time.Time
	minWait := time.Duration(t.Check.Rise) * t.Check.Interval
	for i := 0; runErr == nil && i < o.Rollouts; i++ {
		start := time.Now()
		marks = append(marks, start)
		tl.openRollout(start)
		ro := o
		ro.Fault = o.faultFor(i + 1)
		ro.lbRig = rig
		record := RolloutRecord{Rollout: i + 1, Fault: ro.Fault, Started: start}
		gctx, stopGates := context.WithCancel(ctx)
		gates := watchGateReasons(gctx, t, o.Namespace)
		gen, err := verify.RolloutRestart(ctx, cs, o.Namespace, "web")
		if err != nil {
			stopGates()
			runErr = err
			break
		}
		tl.rollout(start, verify.RolloutStart, fmt.Sprintf("rollout %d/%d: restart", i+1, o.Rollouts), fmt.Sprintf("generation %d", gen))
		rctx, cancel := context.WithTimeout(ctx, o.RolloutTimeout)
		var fault chan FaultEvent
		if ro.Fault != "" {
			fault = make(chan FaultEvent, 1)
			go func(i int) { fault <- injectFault(rctx, t, d, ro, i, start) }(i + 1)
		}
		err = waitRolledOut(rctx, cs, o.Namespace, "web")
		rolledOut := time.Now()
		if fault != nil {
			ev := <-fault
			res.Faults = append(res.Faults, ev)
			tl.fault(start, ev)
			record.FaultEvent = &ev
			if ev.Err != "" && err == nil {
				err = fmt.Errorf("fault %s: %s", ev.Kind, ev.Err)
			}
			step("rollout %d: %s at +%s (took %s)", i+1, ev.Kind, ev.At.Round(10*time.Millisecond), ev.Took.Round(10*time.Millisecond))
		}
		cancel()
		took := time.Since(start)
		if err == nil {
			res.RolloutSeconds = append(res.RolloutSeconds, took.Seconds())
			// Let the rollout's consequences land in its own window: new
			// pods passing the load balancer's checks, then the settle time.
			rctx, cancel = context.WithTimeout(ctx, o.RolloutTimeout)
			if err = t.waitServersUp(rctx, s.lb(), int(o.Replicas)); err != nil {
				err = fmt.Errorf("after the rollout: %w", err)
			}
			cancel()
			if err == nil && !sleepCtx(ctx, o.Settle) {
				err = ctx.Err()
			}
		}
		stopGates()
		record.GateReasons = gates.stop()
		record.Seconds = took.Seconds()
		record.finish(ctx, t, &rec, probe, rig, s, o, lbNames, minWait, start, methods, err)
		tl.faultWindows(start, record, rig.victimName(t))
		res.PerRollout = append(res.PerRollout, record)
		if err != nil {
			tl.rollout(time.Now(), verify.RolloutFailed, fmt.Sprintf("rollout %d/%d", i+1, o.Rollouts), err.Error())
			runErr = fmt.Errorf("lab: rollout %d: %w", i+1, err)
			break
		}
		tl.rollout(rolledOut, verify.RolloutClean, fmt.Sprintf("rollout %d/%d: no old pod left", i+1, o.Rollouts), "")
		step("rollout %d/%d%s done in %s; %d failed so far%s", i+1, o.Rollouts, faultLabel(ro.Fault), took.Round(10*time.Millisecond), rec.failedSoFar(), promiseLabel(record.Promise))
	}
	stopLoad()
	wg.Wait()
	res.Ended = time.Now()
	if runErr == nil && d.Integration.Check != nil {
		runErr = d.Integration.Check()
	}
	if prom != nil {
		ps := &PrometheusSummary{}
		var perr error
		if ps.TargetsUp, ps.Targets, perr = prom.up(ctx); perr == nil {
			ps.Alerts, perr = prom.alerts(ctx)
		}
		if perr != nil && runErr == nil {
			runErr = perr
		}
		res.Prometheus = ps
	}
	// The last rollout's counts end with the load (the others' were taken
	// at the next rollout's start, when their window closed).
	if n := len(res.PerRollout); n > 0 {
		last := &res.PerRollout[n-1]
		last.recount(&rec, marks[n-1], time.Time{}, methods, rig, last.VictimDown)
	}
	for j := range res.PerRollout {
		if j+1 < len(marks) {
			res.PerRollout[j].recount(&rec, marks[j], marks[j+1], methods, rig, res.PerRollout[j].VictimDown)
		}
	}
	rec.fill(&res, marks, methods)
	tl.report(&res, frontends, o)
	if probe != nil {
		res.Gates = probe.result(lbNames, minWait)
	}
	return res, runErr
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func recreateNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := deleteNamespace(dctx, cs, ns); err != nil {
		return err
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("lab: create namespace %s: %w", ns, err)
	}
	// Pods need the namespace's default ServiceAccount (admission).
	for {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return fmt.Errorf("lab: namespace %s has no default ServiceAccount: %w", ns, ctx.Err())
		}
	}
}

// deleteNamespace deletes ns and waits until it is gone (its pods
// terminated by the node agents, its objects removed by the namespace
// controller).
func deleteNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab: delete namespace %s: %w", ns, err)
	}
	if err := waitPodsGone(ctx, cs, ns, labels.Everything()); err != nil {
		return fmt.Errorf("lab: delete namespace %s: %w", ns, err)
	}
	for {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return fmt.Errorf("lab: namespace %s not gone: %w", ns, ctx.Err())
		}
	}
}

// PrintTable writes the scenario table.
func PrintTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trollouts\trequests\tfailed\tfailed/rollout\tfailures by class\trollout time\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.Name(), r.Rollouts, r.Requests, r.Failed,
			joinUints(r.FailedPerRollout), classes(r.FailuresByClass), r.RolloutDuration().Round(100*time.Millisecond))
	}
	tw.Flush()
	for _, r := range results {
		g := r.Gates
		if g == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s: gate latency (every instance UP -> pod Ready) p50 %.0f ms, p99 %.0f ms over %d pods;"+
			" time behind the gate (ContainersReady -> Ready) p50 %.0f ms against the LB's own minimum (rise x interval) %.0f ms: extra p50 %.0f ms, p99 %.0f ms;"+
			" drain latency (deletion -> last new request) p50 %.0f ms, p99 %.0f ms over %d pods (probe every %.0f ms)\n",
			r.Name(), g.GateLatencyP50ms, g.GateLatencyP99ms, g.GateSamples, g.GateWaitP50ms, g.MinWaitMs, g.ExtraP50ms, g.ExtraP99ms,
			g.DrainLatencyP50ms, g.DrainLatencyP99ms, g.DrainSamples, g.ProbeIntervalMs)
	}
	for _, r := range results {
		printFailureSamples(w, r)
	}
	for _, r := range results {
		p := r.Prometheus
		if p == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s: Prometheus scraped %d of %d targets (controller, HAProxy exporters) at the end; alerts of config/monitoring/zerodrop.rules.yaml pending or firing: ", r.Name(), p.TargetsUp, p.Targets)
		if len(p.Alerts) == 0 {
			fmt.Fprintln(w, "none")
			continue
		}
		fmt.Fprintln(w, len(p.Alerts))
		for _, a := range p.Alerts {
			fmt.Fprintf(w, "  %s\n", a)
		}
	}
}

// printFailureSamples lists r's first failed requests, each placed in its
// rollout (time since the rollout's start), so that a rare failure in CI
// can be laid beside the pods' and the controller's logs.
func printFailureSamples(w io.Writer, r Result) {
	if len(r.FailureSamples) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s: first %d failed requests (rollout +seconds since its start; stream; frontend; class; waited):\n", r.Name(), len(r.FailureSamples))
	for _, f := range r.FailureSamples {
		at := "before rollout 1"
		for _, ro := range r.PerRollout {
			if !f.Scheduled.Before(ro.Started) {
				at = fmt.Sprintf("rollout %d +%.3fs", ro.Rollout, f.Scheduled.Sub(ro.Started).Seconds())
			}
		}
		code := ""
		if f.Code != 0 {
			code = fmt.Sprintf(" %d", f.Code)
		}
		fmt.Fprintf(w, "  %s (%s UTC)  %s  %s  %s%s  %.1f ms  %s\n", at, f.Scheduled.UTC().Format("15:04:05.000"), f.Stream, f.Frontend, f.Class, code, f.LatencyMs, f.Error)
	}
}

func joinUints(xs []uint64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, " ")
}

func classes(m map[string]uint64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
