package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"zerodrop.dev/zerodrop/internal/lab"
	"zerodrop.dev/zerodrop/internal/lab/proc"
)

func init() {
	labSubcommands = append(labSubcommands, newLabInstallCmd, newLabUninstallCmd)
}

// runningLab is the target of the lab `zerodrop lab up` runs in dir.
func runningLab(dir string) (lab.Target, error) {
	st, err := lab.ReadState(dir)
	if err != nil || !st.Ready || !proc.Alive(st.Supervisor.PID, st.Supervisor.Exe) {
		return lab.Target{}, fmt.Errorf("no running lab in %s: start one with `zerodrop lab up --dir %s` first", dir, dir)
	}
	return lab.TargetFromState(st)
}

// installObjects are config/default's objects, or those of the manifest
// file given with -f (a `helm template` rendering).
func installObjects(file string) ([]*unstructured.Unstructured, string, error) {
	if file == "" {
		objs, err := lab.InstallObjects()
		return objs, "config/default", err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", err
	}
	objs, err := lab.ParseObjects(data, file)
	return objs, file, err
}

func newLabInstallCmd() *cobra.Command {
	var dir, file string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install zerodrop-controller into the running lab from config/default, as pods under its own RBAC",
		Long: `Applies config/default (the objects ` + "`kubectl apply -k config/default`" + ` applies, built
from the files in this binary) to the lab ` + "`zerodrop lab up`" + ` runs, with the
admin's credentials, then the two things a user brings: the LoadBalancer of
the lab's HAProxy instances (at the address pods reach) and the Secret with
its Runtime API client certificate. The node agents run the controller's
Deployments as pods: image zerodrop-controller is the zerodrop-controller
program, each pod has its ServiceAccount's projected token, and the API
server and the node agents reach the webhook and drain endpoint through
their Services' ClusterIPs. Waits until both Deployments are available;
on failure prints the pods' states, warning events and logs.

` + "`zerodrop lab run --scenario zerodrop-installed`" + ` then uses this installation.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd.Context(), timeout)
			defer cancel()
			t, err := runningLab(dir)
			if err != nil {
				return err
			}
			objs, from, err := installObjects(file)
			if err != nil {
				return err
			}
			if _, err := lab.Install(ctx, t, objs, labLogger(cmd.ErrOrStderr(), slog.LevelInfo, false)); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "zerodrop-controller installed from %s: %d objects\n", from, len(objs))
			for _, o := range objs {
				fmt.Fprintf(w, "  %-36s %s\n", o.GetKind(), nsName(o.GetNamespace(), o.GetName()))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", lab.DefaultDir(), "run directory of the lab")
	cmd.Flags().StringVarP(&file, "filename", "f", "", "install the objects of this manifest file instead of config/default, e.g. the Helm chart's rendering: helm template zerodrop charts/zerodrop-controller -n zerodrop-system --include-crds --set namespace.create=true > zerodrop.yaml")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long")
	return cmd
}

func newLabUninstallCmd() *cobra.Command {
	var dir, file string
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what `zerodrop lab install` applied (the LoadBalancer first, the namespace last)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd.Context(), 4*time.Minute)
			defer cancel()
			t, err := runningLab(dir)
			if err != nil {
				return err
			}
			objs, _, err := installObjects(file)
			if err != nil {
				return err
			}
			in, err := lab.OpenInstallation(t, objs, labLogger(cmd.ErrOrStderr(), slog.LevelInfo, false))
			if err != nil {
				return err
			}
			if err := in.Uninstall(ctx); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "zerodrop-controller uninstalled (the CRDs stay)")
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", lab.DefaultDir(), "run directory of the lab")
	cmd.Flags().StringVarP(&file, "filename", "f", "", "the manifest file `zerodrop lab install -f` applied")
	return cmd
}

func nsName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
