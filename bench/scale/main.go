// Command scale measures zerodrop-controller at scale in the lab (issue 12):
// N light pods (the scale harness: pod objects on a light node, one
// listener answering every pod address, real HAProxy checks) across B
// TargetBindings and 2 HAProxy instances, and the same figures for 3 pods
// beside them, with the goals. It needs root and the lab's
// binaries; run it through bench/scale.sh.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"zerodrop.dev/zerodrop/internal/lab"
	"zerodrop.dev/zerodrop/internal/lab/haproxy"
)

func main() {
	pods := flag.Int("pods", 1000, "pods of the large run (1000, 5000, 10000)")
	bindings := flag.Int("bindings", 100, "TargetBindings (each its own Service and HAProxy backend) of the large run")
	interval := flag.Duration("check-interval", time.Second, "HAProxy check interval (every pod is checked by each instance at this rate)")
	small := flag.Int("small", 3, "pods of the comparison run (0 skips it)")
	timeout := flag.Duration("timeout", 20*time.Minute, "bound of each run")
	lease := flag.Duration("leader-lease", lab.ScaleLeaderLease, "the reconcile process's leader lease (renewed within two thirds of it); the lab's 4s is lost again and again at 5,000 pods on a shared machine")
	profiles := flag.String("profiles", "", "file name prefix of CPU profiles of both controller roles during the fill and at steady state (e.g. bench/results/scale-T); empty: none")
	var reconcileArgs []string
	flag.Func("reconcile-arg", "one more flag of the reconcile process, e.g. -reconcile-arg=--workers=16 (repeatable; after the harness's own)", func(s string) error {
		if !strings.HasPrefix(s, "--") {
			return fmt.Errorf("%q: want a zerodrop-controller flag, --name=value", s)
		}
		reconcileArgs = append(reconcileArgs, s)
		return nil
	})
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var runs []figures
	for _, size := range []struct{ pods, bindings int }{{*small, 1}, {*pods, *bindings}} {
		if size.pods <= 0 {
			continue
		}
		fmt.Fprintf(os.Stderr, "scale: %d pods over %d bindings, 2 HAProxy instances ...\n", size.pods, size.bindings)
		var prof *profiler
		if *profiles != "" {
			prof = &profiler{prefix: fmt.Sprintf("%s-%dp-%db", *profiles, size.pods, size.bindings)}
		}
		f, err := measure(size.pods, size.bindings, *interval, *lease, reconcileArgs, *timeout, log, prof)
		if err != nil {
			fmt.Fprintf(os.Stderr, "scale: %d pods: %v\n", size.pods, err)
			os.Exit(1)
		}
		runs = append(runs, f)
	}
	report(os.Stdout, runs, *interval, reconcileArgs)
	for _, r := range runs {
		r.prof.report(os.Stdout)
	}
}

// figures are one run's measurements.
type figures struct {
	pods, bindings int
	fill           time.Duration // create every pod -> every gate correct
	// gate: HAProxy's last UP -> pod seen Ready; drain: deletion -> drain
	// set on every instance; per phase (phaseAll: fill and rollout).
	gate, drain map[string]latencies
	// the rollout's drain latency from each delete call's return, and the
	// delete calls themselves
	drainRecorded, deleteCall   latencies
	gateMissing                 int                        // pods without an UP event from every instance (all phases)
	gateEarly                   int                        // pods Ready before every instance said UP (all phases)
	undrained                   map[string][]lab.Undrained // by phase
	attribution                 lab.Attribution
	rollout                     time.Duration
	crash, graceful             restart
	cpuSteady, cpuRollout       float64 // cores, reconcile process
	serveSteady, serveRollout   float64 // cores, serve process
	rssMiB, hwmMiB, serveRSSMiB float64
	apiSteady, apiRollout       float64 // API server requests/s
	callsSteady, callsRollout   float64 // Runtime API calls/s (the controller's provider calls)
	readsSteady, readsRollout   float64 // pool status reads/s
	checksPerSec                float64 // health checks the listener answered per second
	// exits of each role the harness did not cause (a lost leader
	// lease ends the reconcile process): a window spanning one has no
	// CPU or rate figure for that role (NaN), and RSS is the newest
	// process's.
	exitsReconcile, exitsServe int
	prof                       *profiler
}

// The phases latencies are reported for.
const (
	phaseAll      = "all (fill + rollout)"
	phaseFill     = "fill"
	phaseRollout  = "rollout"
	phaseCrash    = "crash restart"
	phaseGraceful = "SIGTERM restart"
)

// latencies are one phase's gate or drain latencies.
type latencies struct {
	p50, p99 time.Duration
	n        int
}

// durations are end[k] - start[k] for each key of start also in end.
func durations(start, end map[string]time.Time) []time.Duration {
	var out []time.Duration
	for k, s := range start {
		if e, ok := end[k]; ok {
			out = append(out, e.Sub(s))
		}
	}
	return out
}

func summarize(xs []time.Duration) latencies {
	return latencies{p50: lab.Quantile(xs, 0.5), p99: lab.Quantile(xs, 0.99), n: len(xs)}
}

// restart is one restart of the reconcile process with 1 % of the pods
// replaced while it is down.
type restart struct {
	stop      time.Duration // signal -> process gone
	converge  time.Duration // started again -> every gate correct
	leaseWait time.Duration // of converge: until the new process held the Lease
	r         lab.Replacement
}

func measure(pods, bindings int, interval, lease time.Duration, reconcileArgs []string, timeout time.Duration, log *slog.Logger, prof *profiler) (f figures, err error) {
	f.pods, f.bindings, f.prof = pods, bindings, prof
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := lab.StartScale(ctx, lab.ScaleOptions{
		Lab:  lab.Options{Logger: log, Check: haproxy.Check{Interval: interval}},
		Pods: pods, Bindings: bindings, LeaderLease: lease, ReconcileArgs: reconcileArgs,
	})
	if err != nil {
		return f, err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	times, stop, err := s.RecordTimes(ctx)
	if err != nil {
		return f, err
	}
	defer stop()

	start := time.Now()
	fillProfiles := prof.take(ctx, s, "fill", 30*time.Second)
	names, err := s.CreatePods(ctx, pods)
	if err != nil {
		return f, err
	}
	if _, err := s.WaitSettled(ctx, nil); err != nil {
		return f, err
	}
	f.fill = time.Since(start)
	prof.saveMetrics(s, "fill")
	fillProfiles()

	// Steady: nothing changes for 10 s.
	time.Sleep(3 * time.Second)
	w := startWindow(ctx, s)
	steadyProfiles := prof.take(ctx, s, "steady", 10*time.Second)
	time.Sleep(10 * time.Second)
	f.cpuSteady, f.serveSteady, f.apiSteady, f.callsSteady, f.readsSteady = w.end(ctx)
	steadyProfiles()
	checks0, checksAt := s.Net.Requests(), time.Now()

	// A 10 % rollout: as many pods deleted as created.
	n := max(1, pods/10)
	w = startWindow(ctx, s)
	start = time.Now()
	r, err := s.Replace(ctx, n)
	if err != nil {
		return f, err
	}
	if _, err := s.WaitReplaced(ctx, r); err != nil {
		return f, err
	}
	f.rollout = time.Since(start)
	f.cpuRollout, f.serveRollout, f.apiRollout, f.callsRollout, f.readsRollout = w.end(ctx)
	f.checksPerSec = float64(s.Net.Requests()-checks0) / time.Since(checksAt).Seconds()
	servePID, reconcilePID := s.Controller.PIDs()
	f.rssMiB, f.hwmMiB = memMiB(reconcilePID)
	f.serveRSSMiB, _ = memMiB(servePID)

	// Restarts of the reconcile process, 1 % of the pods replaced while it
	// is down: a crash (SIGKILL: the Lease is held until it expires), then
	// a graceful stop (SIGTERM, as a rollout of the controller's
	// Deployment: the controller releases the Lease on the way out).
	m := max(1, pods/100)
	if f.crash, err = restartReconciler(ctx, s, m, s.Controller.KillReconciler); err != nil {
		return f, fmt.Errorf("crash restart: %w", err)
	}
	prof.saveMetrics(s, "converged")
	if f.graceful, err = restartReconciler(ctx, s, m, func() error { return s.Controller.StopReconciler(30 * time.Second) }); err != nil {
		return f, fmt.Errorf("SIGTERM restart: %w", err)
	}

	f.gate, f.drain, f.undrained = map[string]latencies{}, map[string]latencies{}, map[string][]lab.Undrained{}
	for _, ph := range []struct {
		name string
		pods []string
	}{{phaseAll, append(slices.Clip(names), r.New...)}, {phaseFill, names}, {phaseRollout, r.New}, {phaseCrash, f.crash.r.New}, {phaseGraceful, f.graceful.r.New}} {
		gate, early, missing := times.GateLatencies(ph.pods)
		f.gate[ph.name] = summarize(gate)
		if ph.name != phaseFill && ph.name != phaseRollout { // counted in phaseAll
			f.gateEarly += len(early)
			f.gateMissing += len(missing)
		}
	}
	for _, ph := range []struct {
		name string
		r    lab.Replacement
	}{{phaseRollout, r}, {phaseCrash, f.crash.r}, {phaseGraceful, f.graceful.r}} {
		drain, undrained := times.DrainLatencies(ph.r.Deleted, ph.r.Addrs)
		f.drain[ph.name] = summarize(drain)
		f.undrained[ph.name] = undrained
		if ph.name == phaseRollout {
			recorded, _ := times.DrainLatencies(ph.r.Recorded, ph.r.Addrs)
			f.drainRecorded = summarize(recorded)
			f.deleteCall = summarize(durations(ph.r.Deleted, ph.r.Recorded))
		}
	}
	f.attribution = times.Attribution()
	exits := s.Controller.Crashes()
	f.exitsReconcile, f.exitsServe = exits["reconcile"], exits["serve"]
	return f, s.Controller.Forbidden()
}

// restartReconciler stops the reconcile process with stop, replaces n pods
// while it is down, starts it again and waits until every gate is correct.
func restartReconciler(ctx context.Context, s *lab.Scale, n int, stop func() error) (x restart, err error) {
	holder := leaseHolder(ctx, s)
	t := time.Now()
	if err := stop(); err != nil {
		return x, err
	}
	x.stop = time.Since(t)
	if x.r, err = s.Replace(ctx, n); err != nil {
		return x, err
	}
	start := time.Now()
	taken := make(chan time.Time, 1)
	go func() { taken <- leaseTaken(ctx, s, holder) }()
	if err := s.Controller.StartReconciler(ctx); err != nil {
		return x, err
	}
	if _, err := s.WaitReplaced(ctx, x.r); err != nil {
		return x, err
	}
	x.converge = time.Since(start)
	if at := <-taken; !at.IsZero() {
		x.leaseWait = at.Sub(start)
	}
	return x, nil
}

// leaseHolder is the holder of the reconcile process's leader Lease now.
func leaseHolder(ctx context.Context, s *lab.Scale) string {
	l, err := s.Lab.Client.CoordinationV1().Leases(lab.ControllerNamespace).Get(ctx, lab.ControllerLeaseName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// leaseTaken polls the Lease until someone other than old holds it and
// returns when it saw that (zero if ctx ended first). A SIGKILLed leader
// does not release its Lease: its successor waits until it expires.
func leaseTaken(ctx context.Context, s *lab.Scale, old string) time.Time {
	for {
		if h := leaseHolder(ctx, s); h != "" && h != old {
			return time.Now()
		}
		select {
		case <-ctx.Done():
			return time.Time{}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// window measures the controller's CPU and the request rates over a span.
type window struct {
	s                      *lab.Scale
	at                     time.Time
	servePID, reconcilePID int
	cpu, serve             float64
	api, calls, reads      float64
}

func startWindow(ctx context.Context, s *lab.Scale) *window {
	w := &window{s: s, at: time.Now()}
	w.servePID, w.reconcilePID = s.Controller.PIDs()
	w.cpu, w.serve = cpuSeconds(w.reconcilePID), cpuSeconds(w.servePID)
	w.api = apiRequests(ctx, s)
	w.calls, w.reads = controllerCounts(s.Controller.ReconcileMetricsURL())
	return w
}

// end returns the rates since startWindow; a role's process that was
// replaced meanwhile (its CPU time and counters started again from zero)
// has NaN for its figures.
func (w *window) end(ctx context.Context) (cpu, serve, api, calls, reads float64) {
	d := time.Since(w.at).Seconds()
	servePID, reconcilePID := w.s.Controller.PIDs()
	c, sv := cpuSeconds(reconcilePID), cpuSeconds(servePID)
	a := apiRequests(ctx, w.s)
	k, r := controllerCounts(w.s.Controller.ReconcileMetricsURL())
	sameReconcile, sameServe := reconcilePID == w.reconcilePID, servePID == w.servePID
	return perSecond(w.cpu, c, d, sameReconcile), perSecond(w.serve, sv, d, sameServe), perSecond(w.api, a, d, true),
		perSecond(w.calls, k, d, sameReconcile), perSecond(w.reads, r, d, sameReconcile)
}

// perSecond is a counter's rate over d seconds, or NaN when the counter
// belongs to a process that was replaced in between (or went backwards,
// which only a restart does).
func perSecond(before, after, d float64, sameProcess bool) float64 {
	if !sameProcess || after < before || d <= 0 {
		return math.NaN()
	}
	return (after - before) / d
}

// cpuSeconds is a process's user + system CPU time (/proc/PID/stat).
func cpuSeconds(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// memMiB is a process's resident set now and at its peak.
func memMiB(pid int) (rss, hwm float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// apiRequests is the API server's apiserver_request_total, summed.
func apiRequests(ctx context.Context, s *lab.Scale) float64 {
	raw, err := s.Lab.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0
	}
	return sumMetric(strings.NewReader(string(raw)), "apiserver_request_total")
}

// controllerCounts reads the reconcile process's provider calls and pool
// status reads.
func controllerCounts(url string) (calls, reads float64) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return sumMetric(strings.NewReader(string(raw)), "zerodrop_provider_call_duration_seconds_count"),
		sumMetric(strings.NewReader(string(raw)), "zerodrop_pool_status_reads_total")
}

// sumMetric sums every sample of one metric in Prometheus text format.
func sumMetric(r io.Reader, name string) float64 {
	var sum float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func report(out io.Writer, runs []figures, interval time.Duration, reconcileArgs []string) {
	fmt.Fprintf(out, "zerodrop-controller at scale (bench/scale): 2 HAProxy instances, checks every %s, rise/fall the lab's; light pods (lab scale harness)\n", interval)
	if len(reconcileArgs) > 0 {
		fmt.Fprintf(out, "reconcile process flags beside the harness's: %s\n", strings.Join(reconcileArgs, " "))
	}
	fmt.Fprintf(out, "machine: %d CPUs shared; %s\n\n", numCPU(), time.Now().UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "figure\t"
	for _, r := range runs {
		header += fmt.Sprintf("%d pods / %d bindings\t", r.pods, r.bindings)
	}
	fmt.Fprintln(tw, header+"goal (issue 12)\t")
	row := func(name, goal string, v func(figures) string) {
		line := name + "\t"
		for _, r := range runs {
			line += v(r) + "\t"
		}
		fmt.Fprintln(tw, line+goal+"\t")
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	lat := func(l latencies) string {
		if l.n == 0 {
			return "-"
		}
		return fmt.Sprintf("%s / %s ms (%d)", ms(l.p50), ms(l.p99), l.n)
	}
	rollGoal := "goals are for rollouts: p99 <= 250 ms at 10k, <= 100 ms at 3"
	row("gate latency p50 / p99 (pods), last instance UP -> pod Ready: all (fill + rollout)", "", func(f figures) string { return lat(f.gate[phaseAll]) })
	row("  fill: every pod created at once (stress case)", "none (not a rollout); shown as measured", func(f figures) string { return lat(f.gate[phaseFill]) })
	row("  10 % rollout", rollGoal, func(f figures) string { return lat(f.gate[phaseRollout]) })
	row("  pods created while the reconciler was down: crash restart", "", func(f figures) string { return lat(f.gate[phaseCrash]) })
	row("  pods created while the reconciler was down: SIGTERM restart", "", func(f figures) string { return lat(f.gate[phaseGraceful]) })
	row("  pods without every UP event / Ready before UP (all phases)", "0 Ready before UP", func(f figures) string {
		return fmt.Sprintf("%d / %d", f.gateMissing, f.gateEarly)
	})
	row("drain latency p50 / p99 (pods), deletion -> drain on every instance: 10 % rollout", "p99 <= 50 ms (rollouts)", func(f figures) string { return lat(f.drain[phaseRollout]) })
	row("  of it, the delete call (API server: the deletion written)", "", func(f figures) string { return lat(f.deleteCall) })
	row("  10 % rollout, from the delete call's return (the controller's part, and the watch)", "", func(f figures) string { return lat(f.drainRecorded) })
	row("  pods deleted while the reconciler was down (serve's drain-only reconciler drains them): crash restart", "", func(f figures) string { return lat(f.drain[phaseCrash]) })
	row("  pods deleted while the reconciler was down (serve's drain-only reconciler drains them): SIGTERM restart", "", func(f figures) string { return lat(f.drain[phaseGraceful]) })
	row("  deleted pods never drained everywhere: rollout / crash / SIGTERM restart", "0", func(f figures) string {
		return fmt.Sprintf("%d / %d / %d", len(f.undrained[phaseRollout]), len(f.undrained[phaseCrash]), len(f.undrained[phaseGraceful]))
	})
	row("ring events not attributed to an address / state reads failed", "0", func(f figures) string {
		return fmt.Sprintf("%d / %d", len(f.attribution.Unattributed), f.attribution.ReadErrors)
	})
	row("  drains a read right after the event credits to another pod", "", func(f figures) string { return strconv.Itoa(f.attribution.ReadAfterMisses) })
	sec := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	row("all pods created -> every gate correct", "", func(f figures) string { return sec(f.fill) })
	row("10 % rollout -> old gone, new Ready", "", func(f figures) string { return sec(f.rollout) })
	row("convergence after SIGKILL restart (1 % replaced while down)", "< 10 s", func(f figures) string { return sec(f.crash.converge) })
	row("  of which waiting for the killed leader's lease", "", func(f figures) string { return sec(f.crash.leaseWait) })
	row("convergence after SIGTERM restart (1 % replaced while down)", "< 10 s", func(f figures) string { return sec(f.graceful.converge) })
	row("  of which until the new process held the released lease", "", func(f figures) string { return sec(f.graceful.leaseWait) })
	row("  SIGTERM -> process gone", "", func(f figures) string { return f.graceful.stop.Round(time.Millisecond).String() })
	cores := func(v float64) string { return orRestarted("%.3f", v) }
	row("reconcile CPU steady (cores)", "< 0.1", func(f figures) string { return cores(f.cpuSteady) })
	row("reconcile CPU during rollout (cores)", "", func(f figures) string { return cores(f.cpuRollout) })
	row("serve CPU steady / rollout (cores)", "", func(f figures) string { return cores(f.serveSteady) + " / " + cores(f.serveRollout) })
	row("reconcile RSS / peak (MiB)", "< 256", func(f figures) string { return fmt.Sprintf("%.0f / %.0f", f.rssMiB, f.hwmMiB) })
	row("serve RSS (MiB)", "", func(f figures) string { return fmt.Sprintf("%.0f", f.serveRSSMiB) })
	rate := func(a, b float64) string { return orRestarted("%.1f", a) + " / " + orRestarted("%.1f", b) }
	row("API server requests/s steady / rollout", "", func(f figures) string { return rate(f.apiSteady, f.apiRollout) })
	row("Runtime API calls/s steady / rollout", "", func(f figures) string { return rate(f.callsSteady, f.callsRollout) })
	row("pool status reads/s steady / rollout", "", func(f figures) string { return rate(f.readsSteady, f.readsRollout) })
	row("health checks answered/s (listener)", "", func(f figures) string { return fmt.Sprintf("%.0f", f.checksPerSec) })
	row("controller exits not caused by the harness (reconcile / serve)", "0", func(f figures) string {
		return fmt.Sprintf("%d / %d", f.exitsReconcile, f.exitsServe)
	})
	tw.Flush()
	fmt.Fprintln(out, "\nGate latency is measured from HAProxy's own timestamp of the last instance's \"is UP\" line (event ring) to the")
	fmt.Fprintln(out, "harness's watch seeing Ready; drain latency from the delete call to HAProxy's \"enters drain state\" line. A line")
	fmt.Fprintln(out, "names a slot; it is credited to the address the slot held at the line's time (its occupancy between maintenance")
	fmt.Fprintln(out, "lines, and the state reads made during it). The fill creates every pod at once (a stress case for the API server);")
	fmt.Fprintln(out, "the issue's latency goals are for rollouts. Runtime API calls are the reconcile process's provider calls")
	fmt.Fprintln(out, "(zerodrop_provider_call_duration_seconds_count).")
	for _, r := range runs {
		for _, ph := range []string{phaseRollout, phaseCrash, phaseGraceful} {
			for _, u := range r.undrained[ph] {
				fmt.Fprintf(out, "never drained everywhere (%d pods, %s): %s\n", r.pods, ph, u)
			}
		}
		for i, u := range r.attribution.Unattributed {
			if i == 20 {
				fmt.Fprintf(out, "not attributed (%d pods): ... and %d more\n", r.pods, len(r.attribution.Unattributed)-i)
				break
			}
			fmt.Fprintf(out, "not attributed (%d pods): %s\n", r.pods, u)
		}
	}
}

// orRestarted formats v, or says the process was replaced during the
// window (NaN from perSecond).
func orRestarted(format string, v float64) string {
	if math.IsNaN(v) {
		return "restarted"
	}
	return fmt.Sprintf(format, v)
}

func numCPU() int {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(raw), "processor\t:")
}
