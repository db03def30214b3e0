package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"zerodrop.dev/zerodrop/internal/lab/k8sbin"
)

// labSubcommands are the lab commands besides binaries.
var labSubcommands []func() *cobra.Command

// newLabCmd is the `zerodrop lab` command group: a local cluster with real
// control-plane processes, pods as processes, a real HAProxy in front.
func newLabCmd() *cobra.Command {
	lab := &cobra.Command{
		Use:   "lab",
		Short: "A local cluster (real kube-apiserver, etcd, HAProxy, NGINX) that reproduces and measures dropped requests",
	}
	lab.AddCommand(newLabBinariesCmd())
	for _, c := range labSubcommands {
		lab.AddCommand(c())
	}
	return lab
}

// signalContext is cancelled on SIGINT/SIGTERM so every lab command cleans up
// on Ctrl-C, and bounded by timeout so nothing runs forever.
func signalContext(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	if timeout <= 0 {
		return ctx, stop
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	return tctx, func() { cancel(); stop() }
}

func newLabBinariesCmd() *cobra.Command {
	var timeout time.Duration
	var printDir bool
	cmd := &cobra.Command{
		Use:   "binaries",
		Short: "Build (once) and print the cached Kubernetes and etcd binaries the lab and envtest use",
		Long: fmt.Sprintf(`Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
(Kubernetes %s) and etcd %s from the Go module proxy into the cache directory
($ZERODROP_CACHE, else $XDG_CACHE_HOME/zerodrop, else ~/.cache/zerodrop), once;
later runs reuse the build. --envtest-assets prints only the directory, for
KUBEBUILDER_ASSETS.`, k8sbin.KubernetesVersion, k8sbin.EtcdVersion),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd.Context(), timeout)
			defer cancel()
			logw := cmd.ErrOrStderr()
			b, err := k8sbin.Ensure(ctx, k8sbin.Options{Log: logw})
			if err != nil {
				return err
			}
			if printDir {
				fmt.Fprintln(cmd.OutOrStdout(), b.Dir)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kubernetes %s\netcd       %s\ndirectory  %s\n", b.Version, b.EtcdVersion, b.Dir)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 45*time.Minute, "give up building after this long")
	cmd.Flags().BoolVar(&printDir, "envtest-assets", false, "print only the binaries directory (for KUBEBUILDER_ASSETS)")
	return cmd
}
