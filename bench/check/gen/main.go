// Command gen writes a large multi-document YAML stream of realistic
// manifests for bench/check.sh: go run ./bench/check/gen -n 10000 > objects.yaml
package main

import (
	"flag"
	"fmt"
	"os"

	checkbench "zerodrop.dev/zerodrop/bench/check"
)

func main() {
	n := flag.Int("n", 10000, "number of objects to generate")
	flag.Parse()
	if err := checkbench.Generate(os.Stdout, *n); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
