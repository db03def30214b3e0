// Command controller prints the gate and drain latencies of a `zerodrop lab
// run --json` result file, with the readiness baseline beside them.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"zerodrop.dev/zerodrop/internal/lab"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: controller RESULTS.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var doc struct {
		Results []lab.Result `json:"results"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	for _, r := range doc.Results {
		fmt.Printf("%-10s %3d rollouts at %.0f req/s: %d of %d requests failed\n", r.Name(), r.Rollouts, r.Rate, r.Failed, r.Requests)
		g := r.Gates
		if g == nil {
			continue
		}
		fmt.Printf("  gate latency  (every instance UP -> pod Ready)   p50 %6.0f ms  p99 %6.0f ms  (%d pods; target p99 < 1000 ms)\n", g.GateLatencyP50ms, g.GateLatencyP99ms, g.GateSamples)
		fmt.Printf("  behind gate   (ContainersReady -> Ready)        p50 %6.0f ms  vs LB minimum rise x interval %.0f ms: extra p50 %.0f ms, p99 %.0f ms\n", g.GateWaitP50ms, g.MinWaitMs, g.ExtraP50ms, g.ExtraP99ms)
		fmt.Printf("  drain latency (deletion -> last new request)    p50 %6.0f ms  p99 %6.0f ms  (%d pods; target p99 < 200 ms)\n", g.DrainLatencyP50ms, g.DrainLatencyP99ms, g.DrainSamples)
		fmt.Printf("  (probe resolution %.0f ms)\n", g.ProbeIntervalMs)
	}
}
