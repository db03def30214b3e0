// Command zerodrop finds, reproduces and measures the requests a Kubernetes
// rolling deployment drops behind a load balancer.
//
// Subcommands: check (static analysis), version, and verify (load during a
// rollout), lab (a local cluster with a real HAProxy), provider-test (the
// provider conformance kit against a real load balancer). This binary
// carries check; the other three are in zerodrop-cluster, which it runs
// with the same arguments (see cluster.go for why).
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

// exitError carries a process exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// invokedAs is the path this program was started by (os.Args[0]).
var invokedAs = os.Args[0]

// displayName is how help and usage name the program: "kubectl zerodrop"
// when it runs as a kubectl plugin (kubectl runs kubectl-zerodrop from
// PATH for `kubectl zerodrop ...`; krew installs it so, and `make build`
// links bin/kubectl-zerodrop), else "zerodrop".
func displayName(argv0 string) string {
	if strings.HasPrefix(filepath.Base(argv0), "kubectl-") {
		return "kubectl zerodrop"
	}
	return "zerodrop"
}

func run(args []string) int {
	return runIO(args, os.Stdin, os.Stdout, os.Stderr)
}

// runIO runs the command line with the given standard streams (tests run
// the CLI in-process through it) and returns the exit code.
func runIO(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "zerodrop",
		Short:         "Find, reproduce and measure the requests a rolling deployment drops",
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: displayName(invokedAs)},
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version) },
	})
	root.AddCommand(newCheckCmd())
	root.AddCommand(clusterCommands()...)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		if ee, ok := err.(exitError); ok {
			return ee.code
		}
		fmt.Fprintln(stderr, displayName(invokedAs)+":", err)
		return 2
	}
	return 0
}
