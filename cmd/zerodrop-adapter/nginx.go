package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/nginx"
)

// nginxInstanceFlags collects repeated --nginx-instance flags.
type nginxInstanceFlags []nginx.Instance

func (f *nginxInstanceFlags) String() string {
	parts := make([]string, len(*f))
	for i, in := range *f {
		parts[i] = in.Name + "=" + in.UpstreamFile + "," + in.PidFile
	}
	return strings.Join(parts, " ")
}

func (f *nginxInstanceFlags) Set(v string) error {
	name, files, ok := strings.Cut(v, "=")
	ups, pid, ok2 := strings.Cut(files, ",")
	if !ok || !ok2 || name == "" || ups == "" || pid == "" {
		return fmt.Errorf("%q: want name=UPSTREAM_FILE,PID_FILE", v)
	}
	*f = append(*f, nginx.Instance{Name: name, UpstreamFile: ups, PidFile: pid})
	return nil
}

func nginxBackend(fs *flag.FlagSet) func(common) (served, error) {
	var ins nginxInstanceFlags
	fs.Var(&ins, "nginx-instance", "an NGINX instance as name=UPSTREAM_FILE,PID_FILE: the include file the adapter owns (inside http {}) and the master's pid file; repeat for each instance")
	bin := fs.String("nginx-binary", "nginx", "the nginx executable that validates a new upstream file (nginx -t)")
	return func(c common) (served, error) {
		if len(ins) == 0 {
			return served{}, errors.New("no --nginx-instance")
		}
		p, err := nginx.New(nginx.Config{Instances: ins, Binary: *bin})
		if err != nil {
			return served{}, err
		}
		s := served{provider: p}
		for _, in := range ins {
			s.instances = append(s.instances, in.Name)
		}
		// Reachable: the master named by the pid file runs (the adapter
		// signals it to reload, so it must run on the same host).
		s.ready = func(context.Context) error {
			var errs []error
			for _, in := range ins {
				if err := masterRuns(in.PidFile); err != nil {
					errs = append(errs, &provider.Error{Code: provider.CodeUnreachable, Instance: in.Name, Message: err.Error(), Cause: err})
				}
			}
			return errors.Join(errs...)
		}
		return s, nil
	}
}

func masterRuns(pidFile string) error {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 1 {
		return fmt.Errorf("pid file %s: %q is not a pid", pidFile, strings.TrimSpace(string(b)))
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("nginx master %d (%s): %w", pid, pidFile, err)
	}
	return nil
}
