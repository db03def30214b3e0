// Package prometheus runs a real Prometheus server (Debian's `prometheus`
// package, the one `make deps` installs with promtool) for the tests and the
// lab: a generated prometheus.yml with static scrape targets and the rule
// files given, unchanged; listening on 127.0.0.1 only; its TSDB in a
// temporary directory; stopped by its pid. Its HTTP API is read back as
// plain structs (alerts, alerting rules, instant queries), so that a test
// asserts what Prometheus itself evaluated rather than what promtool would.
package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"zerodrop.dev/zerodrop/internal/lab/proc"
)

// Job is one scrape job of static targets (host:port, plain HTTP /metrics).
type Job struct {
	Name    string
	Targets []string
	// HonorLabels keeps a scraped series' own labels where they clash with
	// the target's (job, instance, and the namespace, pod, service labels a
	// Kubernetes scrape adds) instead of renaming them exported_*.
	HonorLabels bool
}

// Config describes the Prometheus to run. Zero fields take the defaults
// noted.
type Config struct {
	// Binary is the prometheus executable; default "prometheus" from PATH.
	Binary string
	// Dir holds prometheus.yml, the TSDB and the log; default a new
	// temporary directory that Stop removes.
	Dir string
	// ScrapeInterval and EvaluationInterval: default 1s each (Prometheus's
	// own defaults, 1m, would make a test wait minutes for nothing).
	ScrapeInterval, EvaluationInterval time.Duration
	// RuleFiles are loaded as they are (absolute or relative to the
	// working directory).
	RuleFiles []string
	Jobs      []Job
	// StartTimeout bounds Start; default 30s.
	StartTimeout time.Duration
}

func (c *Config) defaults() {
	if c.Binary == "" {
		c.Binary = "prometheus"
	}
	if c.ScrapeInterval == 0 {
		c.ScrapeInterval = time.Second
	}
	if c.EvaluationInterval == 0 {
		c.EvaluationInterval = time.Second
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Second
	}
}

// Instance is a running Prometheus.
type Instance struct {
	cfg    Config
	dir    string
	ownDir bool
	url    string
	p      *proc.Process
	hc     *http.Client
}

// Render returns the prometheus.yml Start writes for cfg (rule files made
// absolute).
func Render(cfg Config) ([]byte, error) {
	cfg.defaults()
	type staticConfig struct {
		Targets []string `json:"targets"`
	}
	type scrapeConfig struct {
		JobName       string         `json:"job_name"`
		HonorLabels   bool           `json:"honor_labels,omitempty"`
		StaticConfigs []staticConfig `json:"static_configs"`
	}
	file := struct {
		Global struct {
			ScrapeInterval     string `json:"scrape_interval"`
			EvaluationInterval string `json:"evaluation_interval"`
		} `json:"global"`
		RuleFiles     []string       `json:"rule_files,omitempty"`
		ScrapeConfigs []scrapeConfig `json:"scrape_configs"`
	}{}
	file.Global.ScrapeInterval = promDuration(cfg.ScrapeInterval)
	file.Global.EvaluationInterval = promDuration(cfg.EvaluationInterval)
	for _, f := range cfg.RuleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("prometheus: rule file %s: %w", f, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("prometheus: rule file: %w", err)
		}
		file.RuleFiles = append(file.RuleFiles, abs)
	}
	for i, j := range cfg.Jobs {
		if j.Name == "" || len(j.Targets) == 0 {
			return nil, fmt.Errorf("prometheus: job %d (%q): want a name and at least one target", i, j.Name)
		}
		for _, t := range j.Targets {
			if _, _, err := net.SplitHostPort(t); err != nil {
				return nil, fmt.Errorf("prometheus: job %q: target %q: %w", j.Name, t, err)
			}
		}
		file.ScrapeConfigs = append(file.ScrapeConfigs, scrapeConfig{JobName: j.Name, HonorLabels: j.HonorLabels, StaticConfigs: []staticConfig{{Targets: j.Targets}}})
	}
	return yaml.Marshal(file)
}

// promDuration writes d as Prometheus durations are written (ms precision).
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// Start writes the configuration and runs Prometheus on a free loopback
// port. It returns once /-/ready answers; on failure nothing is left
// running.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	cfg.defaults()
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("prometheus: binary %q: %w (run `make deps`)", cfg.Binary, err)
	}
	cfg.Binary = bin
	raw, err := Render(cfg)
	if err != nil {
		return nil, err
	}
	in := &Instance{cfg: cfg, dir: cfg.Dir, hc: &http.Client{Timeout: 10 * time.Second}}
	if in.dir == "" {
		if in.dir, err = os.MkdirTemp("", "zerodrop-prometheus-"); err != nil {
			return nil, fmt.Errorf("prometheus: %w", err)
		}
		in.ownDir = true
	}
	fail := func(err error) (*Instance, error) {
		if in.p != nil {
			in.p.Stop(5 * time.Second)
		}
		if in.ownDir {
			os.RemoveAll(in.dir)
		}
		return nil, err
	}
	cfgPath := filepath.Join(in.dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		return fail(fmt.Errorf("prometheus: %w", err))
	}
	// A free port picked here can be taken before Prometheus binds it:
	// start again on another one when that happens.
	for attempt := 1; ; attempt++ {
		err = in.start(ctx, cfgPath)
		if err == nil {
			return in, nil
		}
		if attempt >= 3 || !errors.Is(err, errBind) {
			return fail(err)
		}
	}
}

var errBind = errors.New("cannot bind")

func (in *Instance) start(ctx context.Context, cfgPath string) error {
	ports, err := proc.FreePorts(1)
	if err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	logPath := filepath.Join(in.dir, "prometheus.log")
	p, err := proc.Start(proc.Spec{Name: "prometheus", Path: in.cfg.Binary, Dir: in.dir, Log: logPath, Args: []string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + filepath.Join(in.dir, "data"),
		"--web.listen-address=" + addr,
		"--log.level=info",
	}})
	if err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	in.p, in.url = p, "http://"+addr
	ctx, cancel := context.WithTimeout(ctx, in.cfg.StartTimeout)
	defer cancel()
	for {
		if exited, werr := p.Exited(); exited {
			tail := p.Tail(2048)
			in.p = nil
			if strings.Contains(tail, "address already in use") {
				return fmt.Errorf("prometheus on %s: %w", addr, errBind)
			}
			return fmt.Errorf("prometheus exited at start (%v); log %s:\n%s", werr, logPath, tail)
		}
		resp, err := in.hc.Get(in.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			p.Stop(5 * time.Second)
			in.p = nil
			return fmt.Errorf("prometheus on %s not ready after %s; log %s:\n%s", addr, in.cfg.StartTimeout, logPath, p.Tail(2048))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL is the server's base URL (http://127.0.0.1:port).
func (in *Instance) URL() string { return in.url }

// PID is the server's process id.
func (in *Instance) PID() int { return in.p.PID() }

// Dir is the directory of prometheus.yml, the TSDB and the log.
func (in *Instance) Dir() string { return in.dir }

// LogTail returns the end of the server's log, for failure messages.
func (in *Instance) LogTail() string { return in.p.Tail(4096) }

// Stop terminates the server by its pid (SIGTERM, SIGKILL after 10 s) and
// removes the directory if Start created it. It is safe to call twice.
func (in *Instance) Stop() error {
	in.p.Stop(10 * time.Second)
	if in.ownDir {
		return os.RemoveAll(in.dir)
	}
	return nil
}

// Alert is one entry of /api/v1/alerts: an alerting rule's pending or
// firing instance.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// State is "pending" (expression true, its `for:` not yet elapsed) or
	// "firing".
	State    string    `json:"state"`
	ActiveAt time.Time `json:"activeAt"`
	Value    string    `json:"value"`
}

// Rule is an alerting rule of /api/v1/rules with its evaluation state.
type Rule struct {
	Name string `json:"name"`
	// State is "inactive", "pending" or "firing".
	State string `json:"state"`
	// Health is "ok" once evaluated without error ("unknown" before the
	// first evaluation, "err" with LastError).
	Health         string    `json:"health"`
	LastError      string    `json:"lastError"`
	LastEvaluation time.Time `json:"lastEvaluation"`
	Duration       float64   `json:"duration"` // the rule's for:, in seconds
	Alerts         []Alert   `json:"alerts"`
}

// For is the rule's `for:` duration.
func (r Rule) For() time.Duration { return time.Duration(r.Duration * float64(time.Second)) }

// Sample is one series of an instant query's vector result.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Alerts returns the pending and firing alerts.
func (in *Instance) Alerts(ctx context.Context) ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	err := in.get(ctx, "/api/v1/alerts", &data)
	return data.Alerts, err
}

// AlertingRules returns every alerting rule loaded, in file order.
func (in *Instance) AlertingRules(ctx context.Context) ([]Rule, error) {
	var data struct {
		Groups []struct {
			Rules []Rule `json:"rules"`
		} `json:"groups"`
	}
	if err := in.get(ctx, "/api/v1/rules?type=alert", &data); err != nil {
		return nil, err
	}
	var rules []Rule
	for _, g := range data.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules, nil
}

// Query evaluates an instant query now; the result must be a vector.
func (in *Instance) Query(ctx context.Context, expr string) ([]Sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := in.get(ctx, "/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("prometheus: query %q: result type %q, want vector", expr, data.ResultType)
	}
	out := make([]Sample, 0, len(data.Result))
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus: query %q: value %v: %w", expr, r.Value[1], err)
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// get reads one API endpoint's data into out.
func (in *Instance) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url+path, nil)
	if err != nil {
		return err
	}
	resp, err := in.hc.Do(req)
	if err != nil {
		return fmt.Errorf("prometheus: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("prometheus: GET %s: %s: %w", path, resp.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("prometheus: GET %s: %s: %s", path, resp.Status, body.Error)
	}
	if err := json.Unmarshal(body.Data, out); err != nil {
		return fmt.Errorf("prometheus: GET %s: %w", path, err)
	}
	return nil
}
