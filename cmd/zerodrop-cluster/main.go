// Command zerodrop-cluster runs zerodrop's commands that drive a cluster and
// a load balancer: verify (load during a rollout), lab (a local cluster
// with a real HAProxy and NGINX), provider-test (the provider conformance
// kit against a real load balancer).
//
// They live in a binary of their own so that `zerodrop check` does not pay
// for them: Go runs the initialisation of every package a binary links,
// and these link client-go's typed clients, controller-runtime,
// Prometheus and the providers, which cost check more start-up time than
// its analysis of a 50-object file (docs/check.md, "Start-up"). `zerodrop
// verify|lab|provider-test ...` runs this binary with the same arguments.
package main

import (
	"fmt"
	"io"
	"os"

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

func run(args []string) int {
	return runIO(args, os.Stdin, os.Stdout, os.Stderr)
}

// runIO runs the command line with the given standard streams (tests run
// the CLI in-process through it) and returns the exit code.
func runIO(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		// zerodrop hands these commands over under its own name.
		Use:           "zerodrop",
		Short:         "Reproduce and measure the requests a rolling deployment drops (verify, lab, provider-test)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version) },
	})
	root.AddCommand(newVerifyCmd(), newLabCmd(), newProviderTestCmd())
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		if ee, ok := err.(exitError); ok {
			return ee.code
		}
		fmt.Fprintln(stderr, "zerodrop:", err)
		return 2
	}
	return 0
}
