package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"zerodrop.dev/zerodrop/internal/verify"
)

// verifyFlags holds the verify subcommand's flags.
type verifyFlags struct {
	rate        float64
	connections int
	duration    time.Duration
	requests    uint64
	maxWorkers  int
	timeout     time.Duration
	keepalive   bool
	insecure    bool
	method      string
	headers     []string
	body        string
	bodyFile    string
	postShare   float64
	postBody    string

	kubeconfig string
	namespace  string
	selector   string
	service    string
	restart    string
	setImage   string
	watch      string
	warmup     time.Duration
	settle     time.Duration
	bucket     time.Duration

	maxFailures string
	output      string
	htmlFile    string
	resultsFile string
	progress    string
}

func newVerifyCmd() *cobra.Command {
	f := &verifyFlags{}
	cmd := &cobra.Command{
		Use:   "verify URL [container=image ...]",
		Short: "Send constant-rate load to URL during a rollout and classify every failed request",
		Long: `verify sends load to URL at a constant rate (open model: the schedule never waits
for slow responses, and latency counts from each request's scheduled time) or
over a fixed number of connections (--connections, closed model). With
--restart or --set-image it also drives a rollout, watches pods, readiness
gates, EndpointSlices and Events through the Kubernetes API, and ends
--settle after the rollout completed and its old pods are gone (or at
--duration). Every failure is classified (502, 503, 504, other 5xx, 4xx,
refused, reset, EOF, timeout, other) and lined up with what the pods did.

Exit status: 0 when the verdict passes, 1 when more requests failed than
--max-failures allows (default: any) or the rollout did not complete,
2 on a usage or setup error. See docs/verify.md.`,
		Example: `  # 200 req/s for 30 s, no cluster
  zerodrop verify --rate 200 --duration 30s http://127.0.0.1:8080/

  # restart a Deployment under load; HTML report for the CI artifacts
  zerodrop verify -n shop --restart deployment/web --rate 100 --html report.html http://lb.example/

  # roll out a new image; tolerate 0.1 % failures; JSON for a pipeline
  zerodrop verify -n shop --set-image deployment/web app=registry/web:v2 --max-failures 0.1% -o json http://lb.example/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runVerify(cmd, f, args) },
	}
	fl := cmd.Flags()
	fl.Float64Var(&f.rate, "rate", 0, "requests per second, open model (default 50 unless --connections is set)")
	fl.IntVar(&f.connections, "connections", 0, "closed model: this many connections, each sending back to back")
	fl.DurationVar(&f.duration, "duration", 0, "upper bound of the run (default 30s; 10m with --restart/--set-image)")
	fl.Uint64Var(&f.requests, "requests", 0, "stop after this many requests (0: no count bound)")
	fl.IntVar(&f.maxWorkers, "max-workers", verify.DefaultMaxWorkers, "open model: most requests in flight at once")
	fl.DurationVar(&f.timeout, "timeout", verify.DefaultTimeout, "per request, from connect to the end of the body")
	fl.BoolVar(&f.keepalive, "keepalive", true, "reuse connections (--keepalive=false: a new connection per request)")
	fl.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate verification")
	fl.StringVarP(&f.method, "method", "X", "GET", "HTTP method")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, `request header "Name: value" (repeatable; "Host: x" sets the Host)`)
	fl.StringVar(&f.body, "body", "", "request body")
	fl.StringVar(&f.bodyFile, "body-file", "", "read the request body from this file")
	fl.Float64Var(&f.postShare, "post-share", 0, "send this share of --rate (0 to 0.9) as POST requests with --post-body to URL, counted apart: no client retries a cut POST")
	fl.StringVar(&f.postBody, "post-body", verify.DefaultPostBody, "body of the --post-share stream")

	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	fl.StringVarP(&f.namespace, "namespace", "n", "", "namespace (default: the kubeconfig context's)")
	fl.StringVarP(&f.selector, "selector", "l", "", "label selector of the pods to watch (default: the Deployment's)")
	fl.StringVar(&f.service, "service", "", "report only this Service's EndpointSlices")
	fl.StringVar(&f.restart, "restart", "", "restart deployment/NAME under load, like kubectl rollout restart")
	fl.StringVar(&f.setImage, "set-image", "", "set images of deployment/NAME under load; give container=image arguments")
	fl.StringVar(&f.watch, "watch", "", "watch deployment/NAME (someone else rolls it out); the run lasts --duration")
	fl.DurationVar(&f.warmup, "warmup", verify.DefaultWarmup, "load before the rollout starts")
	fl.DurationVar(&f.settle, "settle", verify.DefaultSettle, "load after the rollout completed and its old pods are gone")
	fl.DurationVar(&f.bucket, "bucket", verify.DefaultBucket, "timeline resolution")

	fl.StringVar(&f.maxFailures, "max-failures", "0", `failures the verdict tolerates: a count ("3") or a share ("0.1%")`)
	fl.StringVarP(&f.output, "output", "o", "text", "report format on stdout: text or json")
	fl.StringVar(&f.htmlFile, "html", "", "also write a self-contained HTML report to this file")
	fl.StringVar(&f.resultsFile, "results", "", "also write every request's result to this file (JSON lines)")
	fl.StringVar(&f.progress, "progress", "auto", "live progress line on stderr: auto (when stderr is a terminal), always, never")
	return cmd
}

// verifyUsageError marks errors in the command line (exit status 2).
func verifyUsageError(format string, args ...any) error { return fmt.Errorf(format, args...) }

// verifyDeploymentName parses "deployment/NAME" (or "deploy/NAME", "NAME").
func verifyDeploymentName(flag, v string) (string, error) {
	kind, name, found := strings.Cut(v, "/")
	if !found {
		kind, name = "deployment", v
	}
	if kind != "deployment" && kind != "deploy" && kind != "deployments" && kind != "deployment.apps" {
		return "", verifyUsageError("--%s %q: only deployments can be rolled out (want deployment/NAME)", flag, v)
	}
	if name == "" {
		return "", verifyUsageError("--%s %q: missing the Deployment's name (want deployment/NAME)", flag, v)
	}
	return name, nil
}

// verifyBuildConfig turns flags and arguments into a verify.Config (without the
// Kubernetes client).
func verifyBuildConfig(f *verifyFlags, args []string, changed func(string) bool) (verify.Config, error) {
	var cfg verify.Config
	target := args[0]
	var images = map[string]string{}
	for _, a := range args[1:] {
		c, img, ok := strings.Cut(a, "=")
		if !ok || c == "" || img == "" || f.setImage == "" {
			return cfg, verifyUsageError("argument %q: only one URL; container=image arguments go with --set-image", a)
		}
		images[c] = img
	}
	if !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://") {
		return cfg, verifyUsageError("URL %q: want http://... or https://...", target)
	}
	header := http.Header{}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return cfg, verifyUsageError("--header %q: want \"Name: value\"", h)
		}
		header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	body := []byte(f.body)
	if f.bodyFile != "" {
		if f.body != "" {
			return cfg, verifyUsageError("--body and --body-file: give one")
		}
		b, err := os.ReadFile(f.bodyFile)
		if err != nil {
			return cfg, verifyUsageError("--body-file: %v", err)
		}
		body = b
	}
	rate := f.rate
	if f.connections > 0 && changed("rate") {
		return cfg, verifyUsageError("--rate and --connections: choose the open model (--rate) or the closed model (--connections)")
	}
	if f.connections == 0 && rate == 0 {
		rate = 50
	}
	if f.connections > 0 {
		rate = 0
	}
	nActions := 0
	for _, v := range []string{f.restart, f.setImage, f.watch} {
		if v != "" {
			nActions++
		}
	}
	if nActions > 1 {
		return cfg, verifyUsageError("--restart, --set-image and --watch: give at most one")
	}
	if f.restart != "" {
		name, err := verifyDeploymentName("restart", f.restart)
		if err != nil {
			return cfg, err
		}
		cfg.Rollout = &verify.RolloutAction{Deployment: name}
	}
	if f.setImage != "" {
		name, err := verifyDeploymentName("set-image", f.setImage)
		if err != nil {
			return cfg, err
		}
		if len(images) == 0 {
			return cfg, verifyUsageError("--set-image %s: give container=image arguments after the URL", f.setImage)
		}
		cfg.Rollout = &verify.RolloutAction{Deployment: name, Images: images}
	}
	if f.watch != "" {
		name, err := verifyDeploymentName("watch", f.watch)
		if err != nil {
			return cfg, err
		}
		cfg.WatchDeployment = name
	}
	duration := f.duration
	if duration == 0 {
		duration = 30 * time.Second
		if cfg.Rollout != nil {
			duration = 10 * time.Minute
		}
	}
	th, err := verify.ParseThreshold(f.maxFailures)
	if err != nil {
		return cfg, verifyUsageError("--%v", err)
	}
	if f.output != "text" && f.output != "json" {
		return cfg, verifyUsageError("--output %q: want text or json", f.output)
	}
	if f.progress != "auto" && f.progress != "always" && f.progress != "never" {
		return cfg, verifyUsageError("--progress %q: want auto, always or never", f.progress)
	}
	cfg.Load = verify.Load{
		Target:             verify.Target{Method: f.method, URL: target, Header: header, Body: body},
		Rate:               rate,
		Connections:        f.connections,
		Duration:           duration,
		Requests:           f.requests,
		MaxWorkers:         f.maxWorkers,
		Timeout:            f.timeout,
		DisableKeepAlive:   !f.keepalive,
		InsecureSkipVerify: f.insecure,
	}
	if err := cfg.Load.Validate(); err != nil {
		return cfg, verifyUsageError("%v", err)
	}
	if f.postShare != 0 || changed("post-body") {
		switch {
		case !(f.postShare > 0 && f.postShare <= 0.9): // also rejects NaN
			return cfg, verifyUsageError("--post-share %v: want a share of --rate between 0 and 0.9 (e.g. 0.1)", f.postShare)
		case f.connections > 0:
			return cfg, verifyUsageError("--post-share: needs the open model (--rate), not --connections")
		case f.requests > 0:
			return cfg, verifyUsageError("--post-share and --requests: bound the run with --duration")
		}
		post := verify.PostStream(cfg.Load, rate*f.postShare, []byte(f.postBody))
		cfg.Load.Rate = rate * (1 - f.postShare)
		cfg.Streams = []verify.Stream{post}
	}
	cfg.Selector, cfg.Service = f.selector, f.service
	cfg.Warmup, cfg.Settle, cfg.Bucket = verifyNoneIfZero(f.warmup), verifyNoneIfZero(f.settle), f.bucket
	cfg.MaxFailures = th
	return cfg, nil
}

// verifyNoneIfZero maps an explicit 0 flag to verify's "none" (negative),
// since verify treats 0 as "default".
func verifyNoneIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// verifyNeedsCluster reports whether the run talks to Kubernetes.
func verifyNeedsCluster(f *verifyFlags) bool {
	return f.restart != "" || f.setImage != "" || f.watch != "" || f.selector != "" || f.service != ""
}

// verifyKubeClient builds a client from --kubeconfig (or the default loading
// rules) and returns it with the namespace to use.
func verifyKubeClient(kubeconfig, namespace string) (kubernetes.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{}
	if namespace != "" {
		overrides.Context.Namespace = namespace
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig namespace: %w", err)
	}
	rc.QPS, rc.Burst = 50, 100
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client for %s: %w", rc.Host, err)
	}
	return c, ns, nil
}

func verifyIsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func runVerify(cmd *cobra.Command, f *verifyFlags, args []string) error {
	cfg, err := verifyBuildConfig(f, args, cmd.Flags().Changed)
	if err != nil {
		return err
	}
	if verifyNeedsCluster(f) {
		c, ns, err := verifyKubeClient(f.kubeconfig, f.namespace)
		if err != nil {
			return err
		}
		cfg.Kube, cfg.Namespace = c, ns
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first Ctrl-C the run stops sending and reports; a second
		// one gets the default behaviour and ends the process at once.
		<-ctx.Done()
		stop()
	}()

	if f.resultsFile != "" {
		out, err := os.Create(f.resultsFile)
		if err != nil {
			return fmt.Errorf("--results: %w", err)
		}
		defer out.Close()
		bw := bufio.NewWriterSize(out, 1<<16)
		defer bw.Flush()
		enc := json.NewEncoder(bw)
		cfg.OnResult = func(r verify.Result) { _ = enc.Encode(r) }
	}
	stderr := cmd.ErrOrStderr()
	showProgress := f.progress == "always" || (f.progress == "auto" && stderr == io.Writer(os.Stderr) && verifyIsTerminal(os.Stderr))
	if showProgress {
		cfg.OnProgress = func(p verify.Progress) { fmt.Fprintf(stderr, "\r\033[K%s", verify.ProgressLine(p)) }
	}
	rep, runErr := verify.Run(ctx, cfg)
	if showProgress {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if rep == nil {
		return runErr
	}
	if runErr != nil {
		fmt.Fprintln(stderr, "zerodrop verify:", runErr)
	}
	if f.htmlFile != "" {
		if err := verifyWriteFile(f.htmlFile, func(w io.Writer) error { return verify.WriteHTML(w, rep) }); err != nil {
			return fmt.Errorf("--html: %w", err)
		}
	}
	report := verify.WriteText
	if f.output == "json" {
		report = verify.WriteJSON
	}
	if err := report(cmd.OutOrStdout(), rep); err != nil {
		return err
	}
	switch {
	case runErr != nil && !errors.Is(runErr, context.Canceled):
		return exitError{code: 2} // the run could not be carried out
	case !rep.Verdict.Pass:
		return exitError{code: max(rep.Verdict.ExitCode, 1)}
	}
	return nil
}

func verifyWriteFile(path string, write func(io.Writer) error) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(out)
	if err := write(bw); err != nil {
		out.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
