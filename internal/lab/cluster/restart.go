package cluster

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"zerodrop.dev/zerodrop/internal/lab/proc"
)

// Names of the control-plane processes, for Restart.
const (
	Etcd                  = "etcd"
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
)

// Restart stops the control-plane process name (SIGKILL when kill, as a
// crash or an OOM kill; else SIGTERM, as a rolling upgrade does, with
// SIGKILL after 10 s), keeps it down for down, and starts it again with the
// same flags: the same ports, certificates and etcd data directory, so
// clients and the other processes reconnect to what they knew. It returns
// when etcd answers /health or the apiserver /readyz (the other two are
// not waited for), or when ctx ends.
func (c *Cluster) Restart(ctx context.Context, name string, kill bool, down time.Duration) error {
	c.mu.Lock()
	i := slices.IndexFunc(c.specs, func(s proc.Spec) bool { return s.Name == name })
	if i < 0 || c.stopped {
		c.mu.Unlock()
		return fmt.Errorf("cluster: restart %s: no such process running", name)
	}
	old, spec := c.procs[i], c.specs[i]
	c.mu.Unlock()

	if kill {
		_ = syscall.Kill(old.PID(), syscall.SIGKILL)
		<-old.Done()
	} else {
		old.Stop(10 * time.Second)
	}
	c.log.Info("control-plane process stopped for a restart", "name", name, "pid", old.PID(), "kill", kill, "down", down)
	select {
	case <-ctx.Done():
	case <-time.After(down):
	}
	// Started even when ctx has ended: a fault must undo itself.
	p, err := proc.Start(spec)
	if err != nil {
		return fmt.Errorf("cluster: restart %s: %w", name, err)
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		p.Stop(10 * time.Second)
		return fmt.Errorf("cluster: restart %s: the cluster is stopping", name)
	}
	c.procs[i] = p
	c.mu.Unlock()
	c.log.Info("control-plane process restarted", "name", name, "pid", p.PID())

	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	switch name {
	case Etcd:
		return c.waitHTTP(wctx, name, c.EtcdURL+"/health", nil)
	case KubeAPIServer:
		return c.waitHTTP(wctx, name, c.Server+"/readyz", c.Config)
	}
	return nil
}
