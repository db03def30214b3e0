package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// clusterBinary is the program that carries verify, lab and provider-test.
//
// Why a second binary: Go initialises every package a binary links before
// main runs, and those commands link client-go's typed clients,
// controller-runtime, Prometheus and the providers. In one binary that
// initialisation cost `zerodrop check` about as much start-up time as
// kube-score needs for a whole 50-object file; without them check starts in
// about half the time (docs/check.md, "Start-up"; bench/startup.sh).
const clusterBinary = "zerodrop-cluster"

// clusterCommands are the commands zerodrop hands over to clusterBinary,
// with their one-line help for `zerodrop --help`; everything after the
// command name, flags and --help included, goes to clusterBinary as is.
func clusterCommands() []*cobra.Command {
	var cmds []*cobra.Command
	for _, c := range []struct{ name, short string }{
		{"verify", "Send constant-rate load to URL during a rollout and classify every failed request"},
		{"lab", "A local cluster (real kube-apiserver, etcd, HAProxy, NGINX) that reproduces and measures dropped requests"},
		{"provider-test", "Check a load-balancer provider against zerodrop's provider contract, with real traffic and the LB's own health checks"},
	} {
		cmds = append(cmds, &cobra.Command{
			Use:                c.name,
			Short:              c.short,
			Long:               c.short + "\n\n(Run by " + clusterBinary + ", next to zerodrop or on PATH.)",
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				self, err := os.Executable()
				if err != nil {
					return fmt.Errorf("%s: own executable: %w", c.name, err)
				}
				return handOver(cmd, self, append([]string{c.name}, args...))
			},
		})
	}
	return cmds
}

// findCluster returns clusterBinary next to self (symbolic links resolved),
// else on PATH.
func findCluster(self string) (string, error) {
	if real, err := filepath.EvalSymlinks(self); err == nil {
		self = real
	}
	next := filepath.Join(filepath.Dir(self), clusterBinary)
	if st, err := os.Stat(next); err == nil && !st.IsDir() {
		return next, nil
	}
	if p, err := exec.LookPath(clusterBinary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s is not next to %s nor on PATH (make build builds both; go install zerodrop.dev/zerodrop/cmd/%s)", clusterBinary, self, clusterBinary)
}

// handOver runs clusterBinary with args. With the process's own standard
// streams it replaces this process (signals, exit code and the terminal go
// straight to it); with others (tests) it runs it as a child on them and
// returns its exit code.
func handOver(cmd *cobra.Command, self string, args []string) error {
	path, err := findCluster(self)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	if cmd.InOrStdin() == os.Stdin && cmd.OutOrStdout() == os.Stdout && cmd.ErrOrStderr() == os.Stderr {
		err := syscall.Exec(path, append([]string{path}, args...), os.Environ())
		return fmt.Errorf("%s: run %s: %w", args[0], path, err)
	}
	child := exec.Command(path, args...)
	child.Stdin, child.Stdout, child.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	err = child.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return exitError{code: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("%s: run %s: %w", args[0], path, err)
	}
	return nil
}
