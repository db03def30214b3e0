// Command verifybench measures whether zerodrop verify could be the
// bottleneck of a measurement: it starts a fast HTTP target on loopback and
// runs zerodrop verify, wrk and hey against it in the same run, several
// times, and prints each tool's sustained rate, zerodrop's schedule accuracy
// and the CPU each tool's process spent per request (from getrusage of the
// child), side by side with ratios. Run it through bench/verify.sh.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
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
}

func main() {
	zerodrop := flag.String("zerodrop", "bin/zerodrop", "zerodrop binary")
	wrk := flag.String("wrk", "wrk", "wrk binary")
	hey := flag.String("hey", "hey", "hey binary")
	runs := flag.Int("runs", 3, "runs per tool and scenario (medians are printed)")
	seconds := flag.Int("seconds", 4, "duration of each run in seconds")
	conns := flag.Int("connections", 32, "connections of the closed-model scenario")
	rate := flag.Int("rate", 4000, "request rate of the constant-rate scenario")
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
		{"wrk", []string{*wrk, "-t2", "-c" + strconv.Itoa(*conns), "-d" + d, url}, parseWrk},
		{"hey", []string{*hey, "-z", d, "-c", strconv.Itoa(*conns), url}, parseHey},
	}
	perWorker := float64(*rate) / float64(*conns)
	open := []tool{
		{"zerodrop verify", []string{*zerodrop, "verify", "--rate", strconv.Itoa(*rate), "--duration", d, "-o", "json", "--progress", "never", "--max-failures", "100%", url}, parseZerodrop},
		{"hey", []string{*hey, "-z", d, "-c", strconv.Itoa(*conns), "-q", strconv.FormatFloat(perWorker, 'f', 2, 64), url}, parseHey},
	}
	scenarios := []struct {
		title string
		tools []tool
		open  bool
	}{
		{fmt.Sprintf("closed model, %d connections, %s: as fast as possible", *conns, d), closed, false},
		{fmt.Sprintf("constant rate %d/s, %s (wrk has no rate mode; hey -q %.1f per worker x %d)", *rate, d, perWorker, *conns), open, true},
	}
	fmt.Printf("target %s (Go net/http, in the harness process); %d runs each, medians; %s\n\n", url, *runs, time.Now().Format(time.RFC3339))
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
		fmt.Println(sc.title)
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "tool\trate req/s\tCPU µs/req\tsend lag p50\tsend lag p99\tfailed\trate vs verify\tCPU/req vs verify\t")
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
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%s\t%s\t%.0f\t%.2f\t%.2f\t\n", t.name, r, c, lag50, lag99,
				median(ms, func(m measurement) float64 { return m.failed }), r/base, c/baseCPU)
		}
		tw.Flush()
		fmt.Println()
	}
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
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return measurement{}, err
	}
	return measurement{requests: r.Requests, rate: r.Rate, lagP50: r.Lag.P50, lagP99: r.Lag.P99, failed: r.Failed}, nil
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
