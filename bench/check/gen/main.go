// Command gen writes a large multi-document YAML stream of realistic
// manifests for bench/check.sh: go run ./bench/check/gen -n 10000 [-style flow] > objects.yaml
package main

import (
	"flag"
	"fmt"
	"os"

	checkbench "zerodrop.dev/zerodrop/bench/check"
)

func main() {
	n := flag.Int("n", 10000, "number of objects to generate")
	style := flag.String("style", "block", "YAML style: block, or flow ({...} and [...] below the top-level keys, wrapped at 80 columns)")
	flag.Parse()
	generate := checkbench.Generate
	switch *style {
	case "block":
	case "flow":
		generate = checkbench.GenerateFlow
	default:
		fmt.Fprintf(os.Stderr, "gen: -style %q: want block or flow\n", *style)
		os.Exit(2)
	}
	if err := generate(os.Stdout, *n); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
