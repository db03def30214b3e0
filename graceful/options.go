package graceful

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Environment variables read by New (unless WithoutEnv is given). They are set
// per deployment, in the pod spec or by zerodrop's webhook, and win over the
// values given in code: the pod spec is what knows the real grace period and
// the controller's address. Durations are Go durations ("5s", "1m30s") or
// plain seconds ("30", "2.5").
const (
	// EnvDrainWait is the fixed drain wait (the preStop-sleep equivalent), and
	// the fallback when the drain endpoint cannot be reached.
	EnvDrainWait = "ZERODROP_DRAIN_WAIT"
	// EnvDrainURL is zerodrop-controller's drain endpoint for this pod, or the
	// controller's base URL, completed with POD_NAMESPACE and POD_NAME.
	EnvDrainURL = "ZERODROP_DRAIN_URL"
	// EnvDrainMaxWait caps an exact (drain endpoint) wait.
	EnvDrainMaxWait = "ZERODROP_DRAIN_MAX_WAIT"
	// EnvDrainMinWait is the least time an exact wait lasts, even when the
	// endpoint reports the pod drained at once (for in-cluster data paths the
	// controller does not see, such as kube-proxy).
	EnvDrainMinWait = "ZERODROP_DRAIN_MIN_WAIT"
	// EnvGracePeriod is the time from the shutdown signal to SIGKILL:
	// terminationGracePeriodSeconds minus the preStop hook's duration.
	EnvGracePeriod = "ZERODROP_GRACE_PERIOD"
	// EnvGraceMargin is how long before SIGKILL the shutdown must be over.
	EnvGraceMargin = "ZERODROP_GRACE_MARGIN"
	// EnvShutdownReserve is the time kept for in-flight requests after the
	// drain wait: the drain wait is cut short to keep it.
	EnvShutdownReserve = "ZERODROP_SHUTDOWN_RESERVE"
	// EnvPodName is the pod's name (downward API: metadata.name).
	EnvPodName = "POD_NAME"
	// EnvPodNamespace is the pod's namespace (downward API: metadata.namespace).
	EnvPodNamespace = "POD_NAMESPACE"
)

// Defaults used when neither code nor environment says otherwise.
const (
	DefaultDrainWait       = 5 * time.Second
	DefaultGracePeriod     = 30 * time.Second // Kubernetes' terminationGracePeriodSeconds default
	DefaultGraceMargin     = 2 * time.Second
	DefaultShutdownReserve = 5 * time.Second
)

// Config is the effective configuration of a Group, after defaults, code
// options and environment. Group.Config returns it; it is logged when the
// shutdown begins.
type Config struct {
	// DrainWait is the fixed drain wait, and the fallback when DrainURL is
	// set but cannot be reached.
	DrainWait time.Duration
	// DrainURL is the full drain endpoint URL for this pod ("" = fixed wait).
	DrainURL string
	// DrainMaxWait caps an exact wait (0 = only the budget caps it).
	DrainMaxWait time.Duration
	// DrainMinWait is the least time an exact wait lasts.
	DrainMinWait time.Duration
	// GracePeriod is the time from the signal to SIGKILL.
	GracePeriod time.Duration
	// GraceMargin is subtracted from GracePeriod to give the shutdown deadline.
	GraceMargin time.Duration
	// ShutdownReserve is the time kept for in-flight requests after the drain wait.
	ShutdownReserve time.Duration
	// PodName and PodNamespace name this pod (logs, drain URL).
	PodName, PodNamespace string
	// Signals start the shutdown; a second one ends the process at once.
	Signals []os.Signal
}

// Option configures a Group.
type Option func(*settings)

type settings struct {
	Config
	logger     *slog.Logger
	registerer prometheus.Registerer
	client     *http.Client
	forceExit  func()
	useEnv     bool
	lookupEnv  func(string) (string, bool)
}

// WithDrainWait sets the fixed drain wait: how long the servers keep serving
// after readiness fails (the preStop-sleep equivalent for images without a
// shell). With a drain URL it is the fallback when the endpoint cannot be
// reached. Zero disables the wait. Default 5 s.
func WithDrainWait(d time.Duration) Option { return func(s *settings) { s.DrainWait = d } }

// WithDrainURL makes the drain wait exact: it lasts until zerodrop-controller's
// drain endpoint reports this pod drained (see docs/graceful.md for the
// protocol). A URL without a path is a base URL, completed to
// /drain/v1/namespaces/{namespace}/pods/{name} from WithPod or POD_NAMESPACE
// and POD_NAME.
func WithDrainURL(u string) Option { return func(s *settings) { s.DrainURL = u } }

// WithDrainMaxWait caps an exact drain wait. The budget (grace period minus
// margin minus shutdown reserve) caps it in any case.
func WithDrainMaxWait(d time.Duration) Option { return func(s *settings) { s.DrainMaxWait = d } }

// WithDrainMinWait sets the least time an exact drain wait lasts, for data
// paths the controller does not watch (kube-proxy, in-cluster clients).
func WithDrainMinWait(d time.Duration) Option { return func(s *settings) { s.DrainMinWait = d } }

// WithGracePeriod sets the time from the shutdown signal to SIGKILL. In
// Kubernetes that is terminationGracePeriodSeconds minus the time the preStop
// hook took, because the grace period counts from deletion. Default 30 s.
func WithGracePeriod(d time.Duration) Option { return func(s *settings) { s.GracePeriod = d } }

// WithGraceMargin sets how long before SIGKILL the shutdown must end. Default 2 s.
func WithGraceMargin(d time.Duration) Option { return func(s *settings) { s.GraceMargin = d } }

// WithShutdownReserve sets the time kept for in-flight requests after the
// drain wait; a drain wait that would eat into it is cut short. Default 5 s.
func WithShutdownReserve(d time.Duration) Option {
	return func(s *settings) { s.ShutdownReserve = d }
}

// WithPod names the pod, for logs and to complete a base drain URL. Default
// from POD_NAMESPACE and POD_NAME.
func WithPod(namespace, name string) Option {
	return func(s *settings) { s.PodNamespace, s.PodName = namespace, name }
}

// WithSignals sets the signals that start the shutdown. Default SIGTERM and SIGINT.
func WithSignals(sig ...os.Signal) Option { return func(s *settings) { s.Signals = sig } }

// WithLogger sets the logger for the shutdown phases. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.logger = l } }

// WithMetrics registers the package's Prometheus metrics (see docs/graceful.md)
// with reg.
func WithMetrics(reg prometheus.Registerer) Option { return func(s *settings) { s.registerer = reg } }

// WithHTTPClient sets the client used for the drain endpoint (for TLS or
// authentication). Its Timeout should be zero: each poll gets its own.
func WithHTTPClient(c *http.Client) Option { return func(s *settings) { s.client = c } }

// WithForceExit replaces what a second signal does. The default exits the
// process at once with status 1, as kube-apiserver and controller-runtime do.
// If f returns, Run closes every server at once and returns ErrForced.
func WithForceExit(f func()) Option { return func(s *settings) { s.forceExit = f } }

// WithoutEnv makes New ignore the environment variables.
func WithoutEnv() Option { return func(s *settings) { s.useEnv = false } }

func defaultSettings() settings {
	return settings{
		Config: Config{
			DrainWait:       DefaultDrainWait,
			GracePeriod:     DefaultGracePeriod,
			GraceMargin:     DefaultGraceMargin,
			ShutdownReserve: DefaultShutdownReserve,
			Signals:         []os.Signal{syscall.SIGTERM, os.Interrupt},
		},
		useEnv:    true,
		lookupEnv: os.LookupEnv,
		forceExit: func() { os.Exit(1) },
	}
}

// applyEnv overrides s with the environment variables that are set.
func (s *settings) applyEnv() error {
	durations := []struct {
		name string
		dst  *time.Duration
	}{
		{EnvDrainWait, &s.DrainWait},
		{EnvDrainMaxWait, &s.DrainMaxWait},
		{EnvDrainMinWait, &s.DrainMinWait},
		{EnvGracePeriod, &s.GracePeriod},
		{EnvGraceMargin, &s.GraceMargin},
		{EnvShutdownReserve, &s.ShutdownReserve},
	}
	for _, d := range durations {
		v, ok := s.lookupEnv(d.name)
		if !ok || strings.TrimSpace(v) == "" {
			continue
		}
		parsed, err := ParseDuration(v)
		if err != nil {
			return fmt.Errorf("environment variable %s=%q: %w", d.name, v, err)
		}
		*d.dst = parsed
	}
	if v, ok := s.lookupEnv(EnvDrainURL); ok && strings.TrimSpace(v) != "" {
		s.DrainURL = strings.TrimSpace(v)
	}
	if v, ok := s.lookupEnv(EnvPodName); ok && v != "" {
		s.PodName = v
	}
	if v, ok := s.lookupEnv(EnvPodNamespace); ok && v != "" {
		s.PodNamespace = v
	}
	return nil
}

// validate checks the durations and completes the drain URL.
func (s *settings) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"drain wait", s.DrainWait},
		{"drain max wait", s.DrainMaxWait},
		{"drain min wait", s.DrainMinWait},
		{"grace margin", s.GraceMargin},
		{"shutdown reserve", s.ShutdownReserve},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s %s is negative", d.name, d.v)
		}
	}
	if s.GracePeriod <= 0 {
		return fmt.Errorf("grace period %s must be positive", s.GracePeriod)
	}
	if s.GraceMargin >= s.GracePeriod {
		return fmt.Errorf("grace margin %s must be shorter than the grace period %s", s.GraceMargin, s.GracePeriod)
	}
	if s.DrainURL != "" {
		u, err := DrainEndpoint(s.DrainURL, s.PodNamespace, s.PodName)
		if err != nil {
			return err
		}
		s.DrainURL = u
	}
	return nil
}

// ParseDuration parses a duration from the environment: a Go duration
// ("1m30s", "500ms") or a number of seconds ("30", "2.5"), as Kubernetes
// manifests give them. Negative values are rejected.
func ParseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs != secs || secs > float64(1<<62)/float64(time.Second) || secs < -float64(1<<62)/float64(time.Second) {
			return 0, fmt.Errorf("duration %q out of range", v)
		}
		d = time.Duration(secs * float64(time.Second))
	} else {
		d, err = time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("duration %q: want a Go duration (30s, 1m30s) or seconds (30)", v)
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", v)
	}
	return d, nil
}

// DrainPath returns the drain endpoint's path for a pod:
// /drain/v1/namespaces/{namespace}/pods/{name}.
func DrainPath(namespace, name string) string {
	// Namespaces and pod names are DNS labels/subdomains: nothing to escape.
	return "/drain/v1/namespaces/" + namespace + "/pods/" + name
}

// DrainEndpoint returns the drain endpoint URL for a pod. raw is either the
// full URL (it has a path; returned as is) or the controller's base URL (no
// path, or "/"), which is completed with DrainPath.
func DrainEndpoint(raw, namespace, name string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("drain URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("drain URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("drain URL %q: no host", raw)
	}
	if u.Path == "" || u.Path == "/" {
		if namespace == "" || name == "" {
			return "", fmt.Errorf("drain URL %q is a base URL, but the pod is unknown: set %s and %s (downward API) or use WithPod",
				raw, EnvPodNamespace, EnvPodName)
		}
		u.Path = DrainPath(namespace, name)
		u.RawPath = ""
	}
	return u.String(), nil
}
