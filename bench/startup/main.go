// Command startup times zerodrop check against kube-score on small inputs,
// where process start-up dominates. Runs alternate between the two tools
// (neither always runs on a cooler machine); each run's wall time, CPU time
// (user + system, from the kernel's accounting of the child, which a shared
// machine disturbs much less than the wall clock) and maximum RSS are
// recorded, and the medians and ratios printed. bench/startup.sh builds the
// tools and the inputs and calls it.
//
//	go run ./bench/startup -zerodrop bin/zerodrop -kube-score ks -runs 21 one.yaml fifty.yaml
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// sample is one run of one tool.
type sample struct {
	wall, cpu time.Duration
	rssKiB    int64
}

func run(argv []string) (sample, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	if cmd.ProcessState == nil {
		return sample{}, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	// Both tools exit non-zero when they find problems: the exit status
	// is not the measurement's business.
	s := sample{wall: wall, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.rssKiB = ru.Maxrss
	}
	return s, nil
}

func median[T int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type medians struct {
	wall, cpu time.Duration
	rssKiB    int64
}

func summarize(xs []sample) medians {
	var w, c []time.Duration
	var r []int64
	for _, x := range xs {
		w, c, r = append(w, x.wall), append(c, x.cpu), append(r, x.rssKiB)
	}
	return medians{median(w), median(c), median(r)}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func main() {
	zd := flag.String("zerodrop", "bin/zerodrop", "zerodrop binary (run as: zerodrop check FILE)")
	ks := flag.String("kube-score", "kube-score", "kube-score binary (run as: kube-score score FILE)")
	runs := flag.Int("runs", 21, "runs of each tool per input")
	verbose := flag.Bool("v", false, "print every run")
	flag.Parse()
	if flag.NArg() == 0 || *runs < 1 {
		fmt.Fprintln(os.Stderr, "usage: startup [-zerodrop BIN] [-kube-score BIN] [-runs N] FILE...")
		os.Exit(2)
	}
	fmt.Printf("%-22s %10s %10s %8s %10s %10s %8s %9s %9s\n", "input", "zd ms", "ks ms", "wall x", "zd cpu ms", "ks cpu ms", "cpu x", "zd MiB", "ks MiB")
	worst := 0.0
	for _, file := range flag.Args() {
		zargs, kargs := []string{*zd, "check", file}, []string{*ks, "score", file}
		// One untimed run each warms the page cache.
		for _, a := range [][]string{zargs, kargs} {
			if _, err := run(a); err != nil {
				fmt.Fprintln(os.Stderr, "startup:", err)
				os.Exit(1)
			}
		}
		var z, k []sample
		for i := range *runs {
			order := [][]string{zargs, kargs}
			if i%2 == 1 {
				order = [][]string{kargs, zargs}
			}
			for _, a := range order {
				s, err := run(a)
				if err != nil {
					fmt.Fprintln(os.Stderr, "startup:", err)
					os.Exit(1)
				}
				if a[0] == *zd {
					z = append(z, s)
				} else {
					k = append(k, s)
				}
			}
			if *verbose {
				fmt.Fprintf(os.Stderr, "%s run %d: zerodrop %.1f ms (cpu %.1f), kube-score %.1f ms (cpu %.1f)\n",
					filepath.Base(file), i+1, ms(z[i].wall), ms(z[i].cpu), ms(k[i].wall), ms(k[i].cpu))
			}
		}
		zm, km := summarize(z), summarize(k)
		wallX, cpuX := ms(zm.wall)/ms(km.wall), ms(zm.cpu)/ms(km.cpu)
		worst = max(worst, wallX)
		fmt.Printf("%-22s %10.1f %10.1f %7.2fx %10.1f %10.1f %7.2fx %9.1f %9.1f\n", filepath.Base(file),
			ms(zm.wall), ms(km.wall), wallX, ms(zm.cpu), ms(km.cpu), cpuX, float64(zm.rssKiB)/1024, float64(km.rssKiB)/1024)
	}
	fmt.Printf("\nmedians of %d interleaved runs. wall x and cpu x = zerodrop / kube-score (at most 1: zerodrop as fast or faster);\n", *runs)
	fmt.Println("cpu = user + system time of the process. Goal (issue 14): wall x <= 1 on the 50-object file.")
}
