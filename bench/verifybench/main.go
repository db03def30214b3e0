// Command verifybench measures whether zerodrop verify could be the
// bottleneck of a measurement: it starts a fast HTTP target on loopback and
// runs zerodrop verify and its peers against it in the same run, several
// times, and prints each tool's sustained rate, the schedule error of the
// constant-rate tools (requests sent against requests scheduled), latency
// percentiles and the CPU each tool's process spent per request (from
// getrusage of the child), side by side with ratios. Peers: wrk and hey,
// bombardier (closed model, as the seeds measured: 200 connections) and
// vegeta (open model). A peer whose binary is not given is left out. Run it
// through bench/verify.sh.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// measurement is one tool's run.
type measurement struct {
	requests float64
	rate     float64 // requests per second, as the tool reports it
	cpuUS    float64 // user+system CPU microseconds per request
	lagP50   float64 // ms, zerodrop only
	lagP99   float64
	failed   float64
	// Latency percentiles in ms, for the tools that report them.
	latP50, latP90, latP99 float64
}

func main() {
	zerodrop := flag.String("zerodrop", "bin/zerodrop", "zerodrop binary")
	wrk := flag.String("wrk", "", "wrk binary (empty: leave wrk out)")
	hey := flag.String("hey", "", "hey binary (empty: leave hey out)")
	bombardier := flag.String("bombardier", "", "bombardier binary (empty: leave bombardier out)")
	vegeta := flag.String("vegeta", "", "vegeta binary (empty: leave vegeta out)")
	out := flag.String("out", "", "also write the summary to this file")
	runs := flag.Int("runs", 3, "runs per tool and scenario (medians are printed)")
	seconds := flag.Int("seconds", 5, "duration of each run in seconds")
	conns := flag.Int("connections", 200, "connections of the closed-model scenario (the seeds measured with bombardier at 200)")
	rate := flag.Int("rate", 10000, "request rate of the constant-rate scenario")
	flag.Parse()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		slog.Error("listen", "err", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/"
	d := fmt.Sprintf("%ds", *seconds)

	type tool struct {
		name  string
		args  []string
		parse func(out []byte) (measurement, error)
	}
	closed := []tool{
		{"zerodrop verify", []string{*zerodrop, "verify", "--connections", strconv.Itoa(*conns), "--duration", d, "-o", "json", "--progress", "never", "--max-failures", "100%", url}, parseZerodrop},
	}
	if *wrk != "" {
		closed = append(closed, tool{"wrk", []string{*wrk, "-t2", "-c" + strconv.Itoa(*conns), "-d" + d, url}, parseWrk})
	}
	if *hey != "" {
		closed = append(closed, tool{"hey", []string{*hey, "-z", d, "-c", strconv.Itoa(*conns), url}, parseHey})
	}
	if *bombardier != "" {
		closed = append(closed, tool{"bombardier", []string{*bombardier, "-c", strconv.Itoa(*conns), "-d", d, "-l", "-p", "r", "-o", "j", url}, parseBombardier})
	}
	perWorker := float64(*rate) / float64(*conns)
	open := []tool{
		{"zerodrop verify", []string{*zerodrop, "verify", "--rate", strconv.Itoa(*rate), "--duration", d, "-o", "json", "--progress", "never", "--max-failures", "100%", url}, parseZerodrop},
	}
	if *hey != "" {
		open = append(open, tool{"hey", []string{*hey, "-z", d, "-c", strconv.Itoa(*conns), "-q", strconv.FormatFloat(perWorker, 'f', 2, 64), url}, parseHey})
	}
	if *vegeta != "" {
		// vegeta attack writes binary results; vegeta report reads them
		// (run by parseVegeta, outside the attack's CPU accounting).
		results := filepath.Join(os.TempDir(), fmt.Sprintf("verifybench-vegeta-%d.bin", os.Getpid()))
		defer os.Remove(results)
		open = append(open, tool{"vegeta", []string{"sh", "-c", fmt.Sprintf("echo 'GET %s' | exec %s attack -rate %d/s -duration %s -output %s", url, *vegeta, *rate, d, results)},
			func([]byte) (measurement, error) { return parseVegeta(*vegeta, results) }})
	}
	scenarios := []struct {
		title string
		tools []tool
		open  bool
	}{
		{fmt.Sprintf("closed model, %d connections, %s: as fast as possible", *conns, d), closed, false},
		{fmt.Sprintf("constant rate %d/s, %s (wrk and bombardier have no rate mode; hey -q %.1f per worker x %d)", *rate, d, perWorker, *conns), open, true},
	}
	var summary bytes.Buffer
	stdout := io.MultiWriter(os.Stdout, &summary)
	fmt.Fprintf(stdout, "target %s (Go net/http, in the harness process); %d runs each, interleaved, medians; %s\n", url, *runs, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "machine: %d CPUs, load average %s at start\n\n", runtime.NumCPU(), loadAverage())
	for _, sc := range scenarios {
		results := map[string][]measurement{}
		// Interleave tools so that a noisy neighbour hits all of them alike.
		for range *runs {
			for _, t := range sc.tools {
				m, err := measure(t.args, t.parse)
				if err != nil {
					slog.Error("run failed", "tool", t.name, "err", err)
					os.Exit(1)
				}
				results[t.name] = append(results[t.name], m)
			}
		}
		fmt.Fprintln(stdout, sc.title)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "tool\trate req/s\tschedule error\tlatency p50 / p90 / p99 ms\tCPU µs/req\tsend lag p50\tsend lag p99\tfailed\tverify / tool rate\tCPU/req vs verify\t")
		base := median(results["zerodrop verify"], func(m measurement) float64 { return m.rate })
		baseCPU := median(results["zerodrop verify"], func(m measurement) float64 { return m.cpuUS })
		for _, t := range sc.tools {
			ms := results[t.name]
			r := median(ms, func(m measurement) float64 { return m.rate })
			c := median(ms, func(m measurement) float64 { return m.cpuUS })
			lag50, lag99 := "n/a", "n/a"
			if t.name == "zerodrop verify" && sc.open {
				lag50 = fmt.Sprintf("%.3f ms", median(ms, func(m measurement) float64 { return m.lagP50 }))
				lag99 = fmt.Sprintf("%.3f ms", median(ms, func(m measurement) float64 { return m.lagP99 }))
			}
			sched := "n/a"
			if sc.open {
				// The rate actually sent (requests over the time from the
				// first send to the last) against the schedule's: a tool
				// that sends late, or drops what it could not send in
				// time, falls short.
				sched = fmt.Sprintf("%.2f %%", 100*(1-r/float64(*rate)))
			}
			lat := "n/a"
			if p50 := median(ms, func(m measurement) float64 { return m.latP50 }); p50 > 0 {
				lat = fmt.Sprintf("%.2f / %.2f / %.2f", p50, median(ms, func(m measurement) float64 { return m.latP90 }), median(ms, func(m measurement) float64 { return m.latP99 }))
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.1f\t%s\t%s\t%.0f\t%.2f\t%.2f\t\n", t.name, r, sched, lat, c, lag50, lag99,
				median(ms, func(m measurement) float64 { return m.failed }), base/r, c/baseCPU)
		}
		tw.Flush()
		fmt.Fprintln(stdout)
	}
	fmt.Fprintln(stdout, "rate: requests over the time from the first send to the last; schedule error: 1 - rate / scheduled rate.")
	fmt.Fprintln(stdout, "verify / tool rate: above 1, verify sent faster.")
	fmt.Fprintln(stdout, "Latency: verify measures from each request's scheduled send time (a late send counts as latency);")
	fmt.Fprintln(stdout, "vegeta, bombardier and hey from the actual send.")
	if *out != "" {
		if err := os.WriteFile(*out, summary.Bytes(), 0o644); err != nil {
			slog.Error("write summary", "err", err)
			os.Exit(1)
		}
	}
}

// loadAverage is /proc/loadavg's first three fields, "" elsewhere.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func median(ms []measurement, f func(measurement) float64) float64 {
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// measure runs one tool and adds its CPU time per request.
func measure(args []string, parse func([]byte) (measurement, error)) (measurement, error) {
	cmd := exec.Command(args[0], args[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if _, exit := err.(*exec.ExitError); !exit {
			return measurement{}, fmt.Errorf("%s: %w", args[0], err)
		}
	}
	m, err := parse(out.Bytes())
	if err != nil {
		return m, fmt.Errorf("%s output: %w\n%s%s", args[0], err, out.String(), errb.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if m.requests > 0 {
		m.cpuUS = float64(cpu.Microseconds()) / m.requests
	}
	return m, nil
}

func parseZerodrop(out []byte) (measurement, error) {
	var r struct {
		Requests, Failed float64
		Rate             float64
		DurationMS       float64 `json:"duration_ms"`
		Lag              struct {
			P50 float64 `json:"p50_ms"`
			P99 float64 `json:"p99_ms"`
		}
		Latency struct {
			P50 float64 `json:"p50_ms"`
			P90 float64 `json:"p90_ms"`
			P99 float64 `json:"p99_ms"`
		}
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return measurement{}, err
	}
	return measurement{requests: r.Requests, rate: r.Rate, lagP50: r.Lag.P50, lagP99: r.Lag.P99, failed: r.Failed,
		latP50: r.Latency.P50, latP90: r.Latency.P90, latP99: r.Latency.P99}, nil
}

// parseBombardier reads `bombardier -p r -o j` (latencies in µs).
func parseBombardier(out []byte) (measurement, error) {
	var r struct {
		Result struct {
			Req1xx, Req2xx, Req3xx, Req4xx, Req5xx, Others float64
			TimeTakenSeconds                               float64
			Latency                                        struct {
				Percentiles map[string]float64
			}
		}
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return measurement{}, err
	}
	res := r.Result
	if res.TimeTakenSeconds <= 0 {
		return measurement{}, fmt.Errorf("no timeTakenSeconds")
	}
	m := measurement{requests: res.Req1xx + res.Req2xx + res.Req3xx + res.Req4xx + res.Req5xx + res.Others}
	m.rate = m.requests / res.TimeTakenSeconds
	m.failed = res.Req4xx + res.Req5xx + res.Others
	p := res.Latency.Percentiles
	m.latP50, m.latP90, m.latP99 = p["50"]/1000, p["90"]/1000, p["99"]/1000
	return m, nil
}

// parseVegeta runs `vegeta report -type json` on an attack's results
// (latencies in ns; rate is requests sent per second of the attack).
func parseVegeta(vegeta, results string) (measurement, error) {
	out, err := exec.Command(vegeta, "report", "-type", "json", results).Output()
	if err != nil {
		return measurement{}, fmt.Errorf("vegeta report: %w", err)
	}
	var r struct {
		Requests  float64
		Rate      float64
		Success   float64
		Latencies map[string]float64
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return measurement{}, err
	}
	l := r.Latencies
	return measurement{requests: r.Requests, rate: r.Rate, failed: r.Requests * (1 - r.Success),
		latP50: l["50th"] / 1e6, latP90: l["90th"] / 1e6, latP99: l["99th"] / 1e6}, nil
}

var (
	wrkTotal  = regexp.MustCompile(`(\d+) requests in`)
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkErrors = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	heyRate   = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	heyCodes  = regexp.MustCompile(`\[(\d+)\]\s+(\d+) responses`)
	heyErrors = regexp.MustCompile(`\[(\d+)\]\s+Get `)
)

func parseWrk(out []byte) (measurement, error) {
	s := string(out)
	t, r := wrkTotal.FindStringSubmatch(s), wrkRate.FindStringSubmatch(s)
	if t == nil || r == nil {
		return measurement{}, fmt.Errorf("no request count or rate")
	}
	m := measurement{}
	m.requests, _ = strconv.ParseFloat(t[1], 64)
	m.rate, _ = strconv.ParseFloat(r[1], 64)
	for _, e := range wrkErrors.FindAllStringSubmatch(s, -1) {
		for _, n := range e[1:] {
			v, _ := strconv.ParseFloat(n, 64)
			m.failed += v
		}
	}
	return m, nil
}

func parseHey(out []byte) (measurement, error) {
	s := string(out)
	r := heyRate.FindStringSubmatch(s)
	if r == nil {
		return measurement{}, fmt.Errorf("no rate")
	}
	m := measurement{}
	m.rate, _ = strconv.ParseFloat(r[1], 64)
	for _, c := range heyCodes.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.ParseFloat(c[2], 64)
		m.requests += n
		if !strings.HasPrefix(c[1], "2") && !strings.HasPrefix(c[1], "3") {
			m.failed += n
		}
	}
	for _, e := range heyErrors.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.ParseFloat(e[1], 64)
		m.requests += n
		m.failed += n
	}
	return m, nil
}
