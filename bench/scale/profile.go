package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"zerodrop.dev/zerodrop/internal/lab"
)

// profiler takes CPU profiles of both controller roles
// (--pprof-bind-address) and keeps the files it wrote, by phase and role.
type profiler struct {
	prefix string
	mu     sync.Mutex
	files  []string
	// metrics are the reconcile process's /metrics, saved by saveMetrics.
	metrics []string
	errs    []string
}

// take starts a CPU profile of each role over d and returns a function that
// waits until both are written (prefix-phase-role.pprof). A nil profiler
// takes none.
func (p *profiler) take(ctx context.Context, s *lab.Scale, phase string, d time.Duration) (wait func()) {
	if p == nil {
		return func() {}
	}
	serve, reconcile := s.Controller.PprofURLs()
	var wg sync.WaitGroup
	for role, base := range map[string]string{"serve": serve, "reconcile": reconcile} {
		file := fmt.Sprintf("%s-%s-%s.pprof", p.prefix, phase, role)
		wg.Go(func() {
			err := fetchProfile(ctx, base+"profile?seconds="+fmt.Sprint(int(d.Seconds())), file)
			p.mu.Lock()
			defer p.mu.Unlock()
			if err != nil {
				p.errs = append(p.errs, fmt.Sprintf("%s %s: %v", phase, role, err))
				return
			}
			p.files = append(p.files, file)
		})
	}
	return wg.Wait
}

func fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, raw, 0o644)
}

// report prints each profile's file name and its top functions (go tool
// pprof -top, by flat and by cumulative time).
func (p *profiler) report(out io.Writer) {
	if p == nil {
		return
	}
	bin := os.Getenv("ZERODROP_CONTROLLER")
	for _, e := range p.errs {
		fmt.Fprintf(out, "\nprofile failed: %s\n", e)
	}
	for _, file := range p.metrics {
		fmt.Fprintf(out, "\nreconcile metrics saved: %s\n", file)
	}
	for _, file := range p.files {
		for _, sort := range []string{"-flat", "-cum"} {
			var buf bytes.Buffer
			cmd := exec.Command("go", "tool", "pprof", "-top", sort, "-nodecount=15", bin, file)
			cmd.Stdout, cmd.Stderr = &buf, &buf
			err := cmd.Run()
			fmt.Fprintf(out, "\n== %s (top %s)\n", file, strings.TrimPrefix(sort, "-"))
			if err != nil {
				fmt.Fprintf(out, "go tool pprof: %v\n", err)
			}
			out.Write(buf.Bytes())
		}
	}
}

// saveMetrics writes the reconcile process's metrics now
// (prefix-phase-metrics.txt: the work queue's depth and durations beside
// zerodrop's own).
func (p *profiler) saveMetrics(s *lab.Scale, phase string) {
	if p == nil {
		return
	}
	file := fmt.Sprintf("%s-%s-metrics.txt", p.prefix, phase)
	resp, err := http.Get(s.Controller.ReconcileMetricsURL())
	if err == nil {
		defer resp.Body.Close()
		var raw []byte
		if raw, err = io.ReadAll(resp.Body); err == nil {
			err = os.WriteFile(file, raw, 0o644)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.errs = append(p.errs, fmt.Sprintf("%s metrics: %v", phase, err))
		return
	}
	p.metrics = append(p.metrics, file)
}
