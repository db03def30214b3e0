package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"zerodrop.dev/zerodrop/config"
	"zerodrop.dev/zerodrop/internal/lab/prometheus"
)

// AlertRecord is an alert of config/monitoring/zerodrop.rules.yaml that was
// pending or firing in the lab's Prometheus at the end of a run.
type AlertRecord struct {
	Name   string            `json:"name"`
	State  string            `json:"state"`
	Labels map[string]string `json:"labels,omitempty"`
}

func (a AlertRecord) String() string {
	var kv []string
	for k, v := range a.Labels {
		if k != "alertname" && k != "severity" {
			kv = append(kv, k+"="+v)
		}
	}
	sort.Strings(kv)
	return fmt.Sprintf("%s %s {%s}", a.Name, a.State, strings.Join(kv, ", "))
}

// PrometheusSummary is what the run's Prometheus saw at its end.
type PrometheusSummary struct {
	// TargetsUp of Targets were scraped successfully at the last scrape.
	TargetsUp int `json:"targetsUp"`
	Targets   int `json:"targets"`
	// Alerts pending or firing, sorted.
	Alerts []AlertRecord `json:"alerts"`
}

// labPrometheus is Debian's Prometheus for one scenario run
// (RunOptions.Prometheus): it loads the shipped alerts unchanged and
// scrapes the scenario's zerodrop-controller (both processes) and every
// HAProxy instance's built-in exporter, every second.
type labPrometheus struct {
	in  *prometheus.Instance
	dir string
}

func startLabPrometheus(ctx context.Context, t Target, in *Integration) (*labPrometheus, error) {
	rules, err := config.FS.ReadFile("monitoring/zerodrop.rules.yaml")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "zerodrop-lab-rules-")
	if err != nil {
		return nil, err
	}
	p := &labPrometheus{dir: dir}
	file := filepath.Join(dir, "zerodrop.rules.yaml")
	if err := os.WriteFile(file, rules, 0o644); err != nil {
		p.stop()
		return nil, err
	}
	var jobs []prometheus.Job
	if in != nil && in.Controller != nil {
		// The controller's own labels (namespace, binding, instance)
		// name what the alerts are about: honor them, as the chart's
		// ServiceMonitor does.
		jobs = append(jobs, prometheus.Job{Name: "zerodrop-controller", Targets: in.Controller.MetricsAddrs(), HonorLabels: true})
	}
	var lbs []string
	for _, h := range t.HAProxy {
		if h.Metrics != "" {
			lbs = append(lbs, h.Metrics)
		}
	}
	if len(lbs) > 0 {
		jobs = append(jobs, prometheus.Job{Name: "haproxy", Targets: lbs})
	}
	if p.in, err = prometheus.Start(ctx, prometheus.Config{RuleFiles: []string{file}, Jobs: jobs}); err != nil {
		p.stop()
		return nil, fmt.Errorf("lab: prometheus: %w", err)
	}
	return p, nil
}

// alerts are the pending and firing alerts now, sorted.
func (p *labPrometheus) alerts(ctx context.Context) ([]AlertRecord, error) {
	as, err := p.in.Alerts(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: prometheus alerts: %w", err)
	}
	out := make([]AlertRecord, 0, len(as))
	for _, a := range as {
		out = append(out, AlertRecord{Name: a.Labels["alertname"], State: a.State, Labels: a.Labels})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// up is how many of its targets Prometheus scraped successfully, of how
// many.
func (p *labPrometheus) up(ctx context.Context) (ok, all int, err error) {
	samples, err := p.in.Query(ctx, "up")
	if err != nil {
		return 0, 0, err
	}
	for _, s := range samples {
		all++
		if s.Value == 1 {
			ok++
		}
	}
	return ok, all, nil
}

func (p *labPrometheus) stop() {
	if p.in != nil {
		_ = p.in.Stop()
	}
	_ = os.RemoveAll(p.dir)
}
