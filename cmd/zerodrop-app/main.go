// Command zerodrop-app is the lab's sample application (image
// zerodrop-lab/app:*): an HTTP server whose startup, latency and behaviour on
// SIGTERM are knobs, so that the lab can reproduce how real services drop
// requests during a rolling deployment, and show the fix.
//
// Every knob is a flag and an environment variable; a flag given on the
// command line wins. docs/sample-app.md lists them. Shutdown modes:
//
//   - immediate: exit at once on SIGTERM, cutting requests in flight (Spring
//     Boot before 3.4, most apps without shutdown handling);
//   - shutdown: http.Server.Shutdown at once (what most Go services do): the
//     listener closes under the load balancer, in-flight requests finish;
//   - drain: the graceful package: readiness fails, serving continues for the
//     drain wait (fixed or from zerodrop-controller's drain endpoint), then
//     in-flight requests finish within the grace period.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"zerodrop.dev/zerodrop/graceful"
)

// Shutdown modes.
const (
	modeImmediate = "immediate"
	modeShutdown  = "shutdown"
	modeDrain     = "drain"
)

// Exit codes.
const (
	exitOK       = 0
	exitRunError = 1
	exitUsage    = 2
	// exitSIGTERM is what a JVM (and a process killed by SIGTERM, seen from a
	// shell) exits with: 128 + 15.
	exitSIGTERM = 143
)

// maxSleep bounds ?sleep= so that a typo cannot hold a connection for days.
const maxSleep = 10 * time.Minute

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stderr))
}

// config is the app's knobs.
type config struct {
	listen       string
	startupDelay time.Duration
	readyPath    string
	livePath     string
	latency      time.Duration
	shutdown     string
	podName      string
	version      string
	logLevel     slog.Level
}

// knob is one setting: a flag and the environment variable that backs it.
type knob struct {
	flag, env, def, usage string
	// graceful marks the graceful package's knobs: a flag sets the
	// environment variable, which the package reads.
	graceful bool
}

var knobs = []knob{
	{"listen", "APP_LISTEN", ":8080", "address to listen on (APP_PORT=N is a shorthand for :N)", false},
	{"startup-delay", "APP_STARTUP_DELAY", "0s", "time to wait before listening, as a slow-starting app does", false},
	{"ready-path", "APP_READY_PATH", "/ready", "readiness endpoint path", false},
	{"live-path", "APP_LIVE_PATH", "/healthz", "liveness endpoint path", false},
	{"latency", "APP_LATENCY", "0s", "time every request takes; ?sleep=DURATION overrides it per request", false},
	{"shutdown", "APP_SHUTDOWN", modeImmediate, "behaviour on SIGTERM: immediate, shutdown or drain", false},
	{"pod-name", "POD_NAME", "", "pod name put in responses (downward API)", false},
	{"app-version", "APP_VERSION", "dev", "version put in responses (the lab sets the image tag)", false},
	{"log-level", "APP_LOG_LEVEL", "info", "debug, info, warn or error", false},
	// Knobs of the graceful package (drain mode). The flags set its
	// environment variables, which it reads.
	{"drain-wait", graceful.EnvDrainWait, "", "drain mode: fixed drain wait, and fallback when the drain URL is unreachable (default 5s)", true},
	{"drain-url", graceful.EnvDrainURL, "", "drain mode: zerodrop-controller's drain endpoint (exact drain wait)", true},
	{"grace-period", graceful.EnvGracePeriod, "", "drain mode: time from SIGTERM to SIGKILL (default 30s)", true},
}

func run(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) int {
	fs := flag.NewFlagSet("zerodrop-app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	values := map[string]*string{}
	for _, k := range knobs {
		values[k.flag] = fs.String(k.flag, k.def, k.usage+" (env "+k.env+")")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// value: the flag if given, else the environment, else the default.
	value := func(k knob) string {
		if set[k.flag] {
			return *values[k.flag]
		}
		if v, ok := lookupEnv(k.env); ok && v != "" {
			return v
		}
		if k.flag == "listen" {
			if p, ok := lookupEnv("APP_PORT"); ok && p != "" {
				return ":" + p
			}
		}
		return k.def
	}
	cfg, err := parseConfig(value)
	if err != nil {
		fmt.Fprintf(stderr, "zerodrop-app: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	for _, k := range knobs {
		if k.graceful && set[k.flag] {
			// graceful reads its environment, which wins over code options.
			os.Setenv(k.env, *values[k.flag])
		}
	}
	if err := serve(cfg, log); err != nil {
		var ex exitCode
		if errors.As(err, &ex) {
			return int(ex)
		}
		log.Error("zerodrop-app failed", "err", err)
		return exitRunError
	}
	return exitOK
}

// exitCode ends the process with that code without being an error.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func parseConfig(value func(knob) string) (config, error) {
	k := map[string]knob{}
	for _, kn := range knobs {
		k[kn.flag] = kn
	}
	dur := func(name string) (time.Duration, error) {
		v := value(k[name])
		d, err := graceful.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("--%s / %s: %w", name, k[name].env, err)
		}
		return d, nil
	}
	var cfg config
	var err error
	cfg.listen = value(k["listen"])
	if _, _, err := net.SplitHostPort(cfg.listen); err != nil {
		return cfg, fmt.Errorf("--listen / APP_LISTEN %q: want host:port or :port", cfg.listen)
	}
	if cfg.startupDelay, err = dur("startup-delay"); err != nil {
		return cfg, err
	}
	if cfg.latency, err = dur("latency"); err != nil {
		return cfg, err
	}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"ready-path", &cfg.readyPath}, {"live-path", &cfg.livePath}} {
		*p.dst = value(k[p.name])
		if !strings.HasPrefix(*p.dst, "/") {
			return cfg, fmt.Errorf("--%s / %s %q: must start with /", p.name, k[p.name].env, *p.dst)
		}
	}
	if cfg.readyPath == cfg.livePath || cfg.readyPath == "/" || cfg.livePath == "/" {
		return cfg, fmt.Errorf("--ready-path %q and --live-path %q must differ from each other and from /", cfg.readyPath, cfg.livePath)
	}
	cfg.shutdown = value(k["shutdown"])
	switch cfg.shutdown {
	case modeImmediate, modeShutdown, modeDrain:
	default:
		return cfg, fmt.Errorf("--shutdown / APP_SHUTDOWN %q: want immediate, shutdown or drain", cfg.shutdown)
	}
	cfg.podName = value(k["pod-name"])
	if cfg.podName == "" {
		cfg.podName, _ = os.Hostname()
	}
	cfg.version = value(k["app-version"])
	if err := cfg.logLevel.UnmarshalText([]byte(value(k["log-level"]))); err != nil {
		return cfg, fmt.Errorf("--log-level / APP_LOG_LEVEL: %w", err)
	}
	for _, name := range []string{"drain-wait", "grace-period"} {
		if v := value(k[name]); v != "" {
			if _, err := graceful.ParseDuration(v); err != nil {
				return cfg, fmt.Errorf("--%s / %s: %w", name, k[name].env, err)
			}
		}
	}
	return cfg, nil
}

// response is the body of every application request.
type response struct {
	Pod     string  `json:"pod"`
	Version string  `json:"version"`
	SleptMS float64 `json:"slept_ms"`
	Path    string  `json:"path"`
	// Received is the length of the request body the app read (a POST's
	// order); it is omitted for requests without a body.
	Received int64 `json:"received,omitempty"`
}

// maxBody bounds the request body the app reads.
const maxBody = 1 << 20

func appHandler(cfg config, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sleep := cfg.latency
		if s := r.URL.Query().Get("sleep"); s != "" {
			d, err := graceful.ParseDuration(s)
			if err != nil || d > maxSleep {
				http.Error(w, fmt.Sprintf("sleep %q: want a duration up to %s", s, maxSleep), http.StatusBadRequest)
				return
			}
			sleep = d
		}
		log.Debug("request started", "method", r.Method, "path", r.URL.Path, "sleep", sleep)
		// The body is read before the answer, as a service that stores an
		// order does: a connection cut while it arrives fails the request.
		n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, fmt.Sprintf("reading the request body: %v", err), http.StatusBadRequest)
			return
		}
		if sleep > 0 {
			t := time.NewTimer(sleep)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Pod-Name", cfg.podName)
		w.Header().Set("X-App-Version", cfg.version)
		json.NewEncoder(w).Encode(response{Pod: cfg.podName, Version: cfg.version,
			SleptMS: float64(sleep) / float64(time.Millisecond), Path: r.URL.Path, Received: n})
	}
}

func okHandler(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }

func serve(cfg config, base *slog.Logger) error {
	log := base.With("pod", cfg.podName, "version", cfg.version)
	// SIGTERM during the startup delay ends the process as a booting JVM
	// would: at once.
	early := make(chan os.Signal, 1)
	signal.Notify(early, syscall.SIGTERM, os.Interrupt)
	log.Info("starting", "shutdown", cfg.shutdown, "startup_delay", cfg.startupDelay, "latency", cfg.latency)
	if cfg.startupDelay > 0 {
		select {
		case <-time.After(cfg.startupDelay):
		case sig := <-early:
			log.Info("signal during startup: exiting", "signal", sig.String())
			return exitCode(exitSIGTERM)
		}
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(cfg.livePath, okHandler)
	mux.HandleFunc("/", appHandler(cfg, log))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	if cfg.shutdown == modeDrain {
		// graceful adds the pod to its log lines itself.
		g, err := graceful.New(graceful.WithLogger(base.With("version", cfg.version)),
			graceful.WithPod(os.Getenv(graceful.EnvPodNamespace), cfg.podName))
		if err != nil {
			ln.Close()
			return err
		}
		mux.Handle(cfg.readyPath, g.ReadinessHandler())
		g.AddHTTP("app", srv, ln)
		c := g.Config()
		log.Info("listening", "addr", ln.Addr().String(), "drain_wait", c.DrainWait, "drain_url", c.DrainURL,
			"grace_period", c.GracePeriod)
		// Run installs its own signal handler; a signal that came before it
		// did reaches only ours, and must start the shutdown all the same.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-early:
				if !g.Ready() {
					cancel()
				}
			case <-ctx.Done():
			}
		}()
		return g.Run(ctx)
	}

	mux.HandleFunc(cfg.readyPath, okHandler)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	var sig os.Signal
	select {
	case sig = <-early:
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}
	start := time.Now()
	if cfg.shutdown == modeImmediate {
		log.Info("signal: exiting at once, requests in flight are cut", "signal", sig.String())
		return exitCode(exitSIGTERM)
	}
	log.Info("signal: http.Server.Shutdown (listener closes now)", "signal", sig.String())
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		log.Info("shutdown complete", "took", time.Since(start).Round(time.Millisecond))
		return err
	case sig := <-early:
		log.Warn("second signal: exiting at once", "signal", sig.String())
		return exitCode(exitRunError)
	}
}
