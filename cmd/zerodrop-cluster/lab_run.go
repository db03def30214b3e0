package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"zerodrop.dev/zerodrop/internal/lab"
	"zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/lab/k8sbin"
	"zerodrop.dev/zerodrop/internal/lab/labreport"
	"zerodrop.dev/zerodrop/internal/lab/proc"
)

func init() {
	labSubcommands = append(labSubcommands, newLabUpCmd, newLabDownCmd, newLabStatusCmd, newLabRunCmd)
}

// labFlags are the options shared by `lab up` and `lab run` (which starts
// its own lab when none is up).
type labFlags struct {
	dir      string
	nodes    int
	haproxys int
	nginxs   int
	app      string
	inter    time.Duration
	rise     int
	fall     int
	timeout  time.Duration
}

func (f *labFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "dir", lab.DefaultDir(), "run directory (state file, logs)")
	cmd.Flags().IntVar(&f.nodes, "nodes", 2, "node agents (Nodes lab-node-0...)")
	cmd.Flags().IntVar(&f.haproxys, "haproxy", 1, "HAProxy instances in front of the pods")
	cmd.Flags().IntVar(&f.nginxs, "nginx", 0, "NGINX instances beside HAProxy, for the NGINX scenarios (lab run: default as many as --haproxy when a run needs them)")
	cmd.Flags().StringVar(&f.app, "app", "", "zerodrop-app program (default: next to this executable, or on PATH)")
	cmd.Flags().DurationVar(&f.inter, "check-interval", haproxy.DefaultCheckInterval, "HAProxy health-check interval")
	cmd.Flags().IntVar(&f.rise, "check-rise", haproxy.DefaultCheckRise, "HAProxy health checks passed before a server is UP")
	cmd.Flags().IntVar(&f.fall, "check-fall", haproxy.DefaultCheckFall, "HAProxy health checks failed before a server is DOWN")
}

func (f *labFlags) options(logger *slog.Logger) lab.Options {
	return lab.Options{
		Dir: f.dir, Nodes: f.nodes, HAProxyInstances: f.haproxys, NGINXInstances: f.nginxs, AppBinary: f.app, Logger: logger,
		Check: haproxy.Check{Interval: f.inter, Rise: f.rise, Fall: f.fall},
	}
}

// labLogger writes the lab's logs to w at level (debug with -v).
func labLogger(w io.Writer, level slog.Level, verbose bool) *slog.Logger {
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func newLabUpCmd() *cobra.Command {
	var f labFlags
	var foreground, verbose bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the lab (control plane, node agents, HAProxy) in the background",
		Long: `Starts the lab and returns once it is ready; a supervisor process keeps it
running until ` + "`zerodrop lab down`" + `. --foreground keeps it in this terminal
until Ctrl-C. The kubeconfig and HAProxy frontends are printed, and
` + "`zerodrop lab status`" + ` shows them again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if foreground {
				return labForeground(cmd, f, verbose)
			}
			return labBackground(cmd, f, verbose)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&foreground, "foreground", false, "run in this terminal until Ctrl-C instead of in the background")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logs")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 4*time.Minute, "give up starting after this long")
	return cmd
}

// labForeground runs the lab in this process until SIGINT/SIGTERM.
func labForeground(cmd *cobra.Command, f labFlags, verbose bool) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := f.options(labLogger(cmd.ErrOrStderr(), slog.LevelInfo, verbose))
	opts.StartTimeout = f.timeout
	l, err := lab.Up(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "lab ready in %s (Ctrl-C stops it)\n", l.Dir)
	printLab(cmd.OutOrStdout(), l.State())
	<-ctx.Done()
	fmt.Fprintln(cmd.ErrOrStderr(), "stopping the lab")
	return l.Close()
}

// labBackground starts `lab up --foreground` as a detached supervisor (its
// own session, output to supervisor.log in the run directory) and waits
// until the state file says ready, or the supervisor dies.
func labBackground(cmd *cobra.Command, f labFlags, verbose bool) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("lab up: own executable: %w", err)
	}
	if st, err := lab.ReadState(f.dir); err == nil {
		return fmt.Errorf("lab up: %s already holds a lab (supervisor pid %d); run `zerodrop lab status` or `zerodrop lab down`", f.dir, st.Supervisor.PID)
	}
	if err := os.MkdirAll(filepath.Dir(f.dir), 0o755); err != nil {
		return err
	}
	logPath := f.dir + ".supervisor.log"
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("lab up: supervisor log: %w", err)
	}
	defer logf.Close()
	args := []string{"lab", "up", "--foreground", "--dir", f.dir, "--nodes", fmt.Sprint(f.nodes),
		"--haproxy", fmt.Sprint(f.haproxys), "--nginx", fmt.Sprint(f.nginxs), "--check-interval", f.inter.String(),
		"--check-rise", fmt.Sprint(f.rise), "--check-fall", fmt.Sprint(f.fall), "--timeout", f.timeout.String()}
	if f.app != "" {
		args = append(args, "--app", f.app)
	}
	if verbose {
		args = append(args, "-v")
	}
	child := exec.Command(exe, args...)
	child.Stdout, child.Stderr = logf, logf
	// A session of its own: the supervisor outlives this command and
	// ignores the terminal's Ctrl-C; `lab down` stops it by pid.
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return fmt.Errorf("lab up: start supervisor: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	ctx, cancel := signalContext(cmd.Context(), f.timeout+30*time.Second)
	defer cancel()
	fmt.Fprintf(cmd.ErrOrStderr(), "starting the lab (supervisor pid %d, log %s)\n", child.Process.Pid, logPath)
	for {
		if st, err := lab.ReadState(f.dir); err == nil && st.Ready && st.Supervisor.PID == child.Process.Pid {
			fmt.Fprintf(cmd.OutOrStdout(), "lab ready in %s\n", st.Dir)
			printLab(cmd.OutOrStdout(), *st)
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("lab up: supervisor exited (%v); its log %s ends:\n%s", err, logPath, proc.TailFile(logPath, 3000))
		case <-ctx.Done():
			_ = child.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = child.Process.Kill()
			}
			return fmt.Errorf("lab up: not ready: %w (log %s)", ctx.Err(), logPath)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func printLab(w io.Writer, st lab.State) {
	fmt.Fprintf(w, "  kubernetes  %s at %s\n", st.Kubernetes, st.Server)
	fmt.Fprintf(w, "  kubeconfig  %s\n", st.Kubeconfig)
	fmt.Fprintf(w, "  nodes       %s (pods in %s on bridge %s)\n", strings.Join(st.Nodes, ", "), st.PodCIDR, st.Bridge)
	for _, h := range st.HAProxy {
		fmt.Fprintf(w, "  %s   http://%s (backend %s, runtime API %s)\n", h.Name, h.Frontend, h.Backend, h.Socket)
	}
	for _, n := range st.NGINX {
		fmt.Fprintf(w, "  %s     http://%s (upstream %s in %s, pid file %s)\n", n.Name, n.Frontend, n.Pool, n.UpstreamFile, n.PidFile)
	}
	fmt.Fprintf(w, "  try: kubectl --kubeconfig %s get nodes\n", st.Kubeconfig)
}

func newLabDownCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab and remove everything it created (also after a crash)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd.Context(), 3*time.Minute)
			defer cancel()
			did, err := lab.Down(ctx, dir, labLogger(cmd.ErrOrStderr(), slog.LevelInfo, false))
			if err != nil {
				return err
			}
			os.Remove(dir + ".supervisor.log")
			if !did {
				fmt.Fprintf(cmd.OutOrStdout(), "no lab in %s\n", dir)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab in %s removed\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", lab.DefaultDir(), "run directory of the lab")
	return cmd
}

func newLabStatusCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what the lab runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, procs, err := lab.Status(dir)
			if errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "no lab in %s\n", dir)
				return exitError{code: 1}
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			state := "ready"
			if !st.Ready {
				state = "starting (or crashed while starting)"
			}
			if !procs[0].Alive {
				state = "supervisor gone: run `zerodrop lab down` to clean up"
			}
			fmt.Fprintf(w, "lab in %s: %s, started %s\n", st.Dir, state, st.Started.Local().Format(time.DateTime))
			printLab(w, *st)
			fmt.Fprintln(w, "  processes:")
			for _, p := range procs {
				alive := "running"
				if !p.Alive {
					alive = "gone"
				}
				fmt.Fprintf(w, "    %-24s pid %-8d %-8s %s\n", p.Name, p.PID, alive, p.Log)
			}
			fmt.Fprintf(w, "  pod namespaces: %d\n", len(st.Namespaces))
			if !procs[0].Alive {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", lab.DefaultDir(), "run directory of the lab")
	return cmd
}

func newLabRunCmd() *cobra.Command {
	var f labFlags
	var scenario, jsonPath, htmlDir string
	var rollouts, replicas, campaign int
	var rate float64
	var faultHold time.Duration
	var verbose, withPrometheus bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Roll a Deployment of the sample app K times under constant load through HAProxy or NGINX; count failed requests",
		Long: `Runs one scenario (or all) and prints the table: scenario, rollouts,
requests, failed requests, failures per rollout and by class, rollout time.
Uses the lab started by ` + "`zerodrop lab up`" + ` when one runs in --dir; otherwise
starts a lab for this run and removes it afterwards. Each scenario names its
load balancer: the nginx scenarios run through the lab's NGINX instances
(--nginx; a lab this command starts gets as many as --haproxy when a run
needs them), the others through HAProxy.

Scenarios:
` + scenarioHelp(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if campaign > 0 && !cmd.Flags().Changed("scenario") {
				scenario = "zerodrop"
			}
			runs, err := parseRuns(scenario)
			if err != nil {
				return err
			}
			if campaign != 0 {
				if campaign < 1 || campaign > 1000 {
					return fmt.Errorf("--campaign %d: want 1..1000 rollouts", campaign)
				}
				if len(runs) != 1 || runs[0].fault != "" || runs[0].rollouts != 0 {
					return fmt.Errorf("--campaign: give one scenario without a fault or count (--scenario zerodrop); the campaign cycles through every fault")
				}
				runs[0].rollouts = campaign
				runs[0].campaign = true
			}
			if faultHold < 0 {
				return fmt.Errorf("--fault-hold %s: must not be negative", faultHold)
			}

			if rollouts < 1 || rollouts > 100 && campaign == 0 {
				return fmt.Errorf("--rollouts %d: want 1..100", rollouts)
			}
			if rate <= 0 || rate > 20000 {
				return fmt.Errorf("--rate %v: want a rate in (0, 20000] requests/s", rate)
			}
			if htmlDir != "" {
				// Before the long run, not after it.
				if err := os.MkdirAll(htmlDir, 0o755); err != nil {
					return fmt.Errorf("--html %s: %w", htmlDir, err)
				}
			}
			// Bounded: generous per rollout, plus the lab's start.
			budget := f.timeout
			for _, r := range runs {
				budget += time.Duration(r.count(rollouts))*3*time.Minute + 5*time.Minute
			}
			ctx, cancel := signalContext(cmd.Context(), budget)
			defer cancel()
			// Warnings only: the progress lines and the table are the output.
			logger := labLogger(cmd.ErrOrStderr(), slog.LevelWarn, verbose)
			needNGINX := false
			for _, r := range runs {
				needNGINX = needNGINX || r.scenario.LB == lab.LBNGINX
			}
			if needNGINX && !cmd.Flags().Changed("nginx") {
				f.nginxs = f.haproxys
			}
			var target lab.Target
			if st, err := lab.ReadState(f.dir); err == nil && st.Ready && proc.Alive(st.Supervisor.PID, st.Supervisor.Exe) {
				if target, err = lab.TargetFromState(st); err != nil {
					return err
				}
				if needNGINX && len(target.NGINX) == 0 {
					return fmt.Errorf("the lab in %s runs no NGINX instance, which the nginx scenarios need: start it with `zerodrop lab up --nginx 2`", f.dir)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "using the lab in %s\n", f.dir)
			} else {
				opts := f.options(logger)
				if err == nil {
					// A state file without a live supervisor: a run of its own in a new dir.
					opts.Dir = ""
				}
				if opts.Dir == lab.DefaultDir() || opts.Dir == "" {
					d, err := os.MkdirTemp("", "zerodrop-lab-run-")
					if err != nil {
						return err
					}
					os.Remove(d) // Up creates it and records it
					opts.Dir = d
				}
				opts.StartTimeout = f.timeout
				fmt.Fprintf(cmd.ErrOrStderr(), "starting a lab for this run in %s\n", opts.Dir)
				l, err := lab.Up(ctx, opts)
				if err != nil {
					return err
				}
				defer l.Close()
				target = l.Target()
			}
			var results []lab.Result
			var runErr error
			for _, r := range runs {
				o := lab.RunOptions{
					Rollouts: r.count(rollouts), Rate: rate, Replicas: int32(replicas), Fault: r.fault, FaultHold: faultHold, Logger: logger, Progress: cmd.ErrOrStderr(),
					Timeline: htmlDir != "", Prometheus: withPrometheus,
				}
				if r.campaign {
					o.Faults = campaignFaults()
				}
				res, err := lab.Run(ctx, target, r.scenario, o)
				if err != nil {
					runErr = fmt.Errorf("scenario %s: %w", res.Name(), err)
					if r.campaign {
						results = append(results, res) // what the campaign measured so far
					}
					break
				}
				results = append(results, res)
			}
			lab.PrintTable(cmd.OutOrStdout(), results)
			for _, res := range results {
				if len(res.FaultCycle) > 0 {
					lab.PrintCampaign(cmd.OutOrStdout(), res)
				}
			}
			if jsonPath != "" {
				raw, _ := json.MarshalIndent(map[string]any{"kubernetes": k8sbin.KubernetesVersion, "results": results}, "", "  ")
				if err := os.WriteFile(jsonPath, append(raw, '\n'), 0o644); err != nil {
					return fmt.Errorf("--json %s: %w", jsonPath, err)
				}
			}
			if htmlDir != "" {
				index, err := labreport.WriteHTML(htmlDir, results, k8sbin.KubernetesVersion)
				if err != nil {
					return fmt.Errorf("--html %s: %w", htmlDir, err)
				}
				if abs, err := filepath.Abs(index); err == nil {
					index = abs
				}
				fmt.Fprintf(cmd.OutOrStdout(), "\ntimelines: file://%s\n", index)
			}
			return runErr
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&scenario, "scenario", "all", "scenario, or comma-separated runs NAME[+FAULT][:K] (zerodrop+kill, zerodrop:10), or all")
	cmd.Flags().IntVar(&rollouts, "rollouts", 3, "rollouts per scenario (K)")
	cmd.Flags().Float64Var(&rate, "rate", 200, "constant request rate through the load balancer (requests/s)")
	cmd.Flags().IntVar(&replicas, "replicas", 3, "replicas of the Deployment")
	cmd.Flags().IntVar(&campaign, "campaign", 0, "fault campaign: N rollouts of one deployed scenario (default zerodrop), cycling through none and every fault; per-rollout records in --json, a summary by fault in the text, and with --html a summary by fault linking a timeline per rollout")
	cmd.Flags().DurationVar(&faultHold, "fault-hold", lab.DefaultFaultHold, "how long lbdown, slowlb, partition, full and clock last")
	cmd.Flags().StringVar(&jsonPath, "json", "", "also write the results as JSON to this file")
	cmd.Flags().StringVar(&htmlDir, "html", "", "also write verify's HTML report (timeline) of every scenario run into this directory, with index.html linking them (a campaign: one per rollout)")
	cmd.Flags().BoolVar(&withPrometheus, "prometheus", false, "run Prometheus (Debian's, from PATH) beside each scenario, loading config/monitoring/zerodrop.rules.yaml unchanged and scraping zerodrop-controller and the HAProxy exporters every second; print the alerts pending or firing after the rollouts")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logs")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 4*time.Minute, "give up starting the lab after this long")
	return cmd
}

func scenarioHelp() string {
	var b strings.Builder
	for _, s := range lab.AllScenarios() {
		fmt.Fprintf(&b, "  %-15s %s\n", s.Name, s.Summary)
	}
	b.WriteString("\nRuns are NAME[+FAULT][:K]: K overrides --rollouts for that run.\n")
	b.WriteString("Faults (NAME+FAULT), one in the middle of every rollout, when its first old pod is deleted:\n")
	b.WriteString("  reload     every instance is reloaded (HAProxy: state saved to the server-state file first; NGINX: SIGHUP)\n")
	b.WriteString("  reloadall  every instance is reloaded at the same moment (no HAProxy instance answers for a while)\n")
	b.WriteString("  kill       the controller's reconciler is killed with SIGKILL and restarted 1 s later\n")
	b.WriteString("  serve      the controller's serve process (webhook, drain endpoint) is SIGKILLed while it holds a drain hook, restarted 1 s later\n")
	b.WriteString("  apiserver  kube-apiserver is stopped and started again 1 s later (same port, certificates, etcd)\n")
	b.WriteString("  etcd       etcd is SIGKILLed and started again 1 s later (same data)\n")
	b.WriteString("  webhook    the pod webhook is unreachable until the rollout's new pods exist (admitted without gates)\n")
	b.WriteString("  node       a node running serving pods loses its power (pods SIGKILLed, network cut); it boots again once its pods are evicted\n")
	b.WriteString("  clock      this machine's wall clock is stepped 45 s forward while a drain is held, and back --fault-hold later (root)\n")
	b.WriteString("  lbdown     the last HAProxy instance is stopped at the rollout's start and started again --fault-hold later\n")
	b.WriteString("  lbflap     the last HAProxy instance is stopped and started 3 times (2 s down, 3 s up)\n")
	b.WriteString("  slowlb     the last instance's Runtime API answers 400 ms late for --fault-hold (a proxy the lab owns)\n")
	b.WriteString("  partition  the controller cannot reach the last instance's Runtime API for --fault-hold (blackhole)\n")
	b.WriteString("  full       every free server-template slot is taken at the rollout's start, freed --fault-hold later\n")
	b.WriteString("--campaign N cycles through none and every fault, one per rollout (docs/faults.md); with --html\n")
	b.WriteString("DIR, DIR/index.html sums the rollouts by fault and links verify's timeline of each.\n")
	b.WriteString("\nall = " + allRuns + "\n")
	return b.String()
}

// allRuns is what --scenario all runs: the four baselines, zerodrop, and
// zerodrop under each fault, then zerodrop with the controller installed
// from config/default as pods, then the NGINX baseline and zerodrop
// through NGINX.
// zerodrop's own run is at least 10 rollouts, the bar it has to clear.
const allRuns = "naive,readiness,prestop,drain,zerodrop:10,zerodrop+reload,zerodrop+reloadall,zerodrop+kill,zerodrop-installed,nginx-naive,zerodrop-nginx"

// labRun is one scenario with an optional fault and rollout count (0:
// --rollouts).
type labRun struct {
	scenario lab.Scenario
	fault    lab.Fault
	rollouts int
	campaign bool // cycle through every fault (--campaign)
}

// campaignFaults is the cycle of --campaign: a plain rollout, then every
// fault the lab knows.
func campaignFaults() []lab.Fault {
	return append([]lab.Fault{lab.FaultNone}, lab.Faults...)
}

// count is the run's rollouts: its own K, else def (--rollouts).
func (r labRun) count(def int) int {
	if r.rollouts > 0 {
		return r.rollouts
	}
	return def
}

// parseRuns reads --scenario.
func parseRuns(spec string) ([]labRun, error) {
	if spec == "all" {
		spec = allRuns
	}
	var runs []labRun
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		spec, count, hasCount := strings.Cut(item, ":")
		k := 0
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 1 || n > 100 {
				return nil, fmt.Errorf("--scenario %s: rollouts %q: want 1..100", item, count)
			}
			k = n
		}
		name, fault, _ := strings.Cut(spec, "+")
		s, err := lab.ScenarioByName(name)
		if err != nil {
			return nil, fmt.Errorf("--scenario %s: %w", item, err)
		}
		f, err := lab.ParseFault(fault)
		if err != nil {
			return nil, fmt.Errorf("--scenario %s: %w", item, err)
		}
		runs = append(runs, labRun{scenario: s, fault: f, rollouts: k})
	}
	return runs, nil
}
