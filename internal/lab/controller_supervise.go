package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"zerodrop.dev/zerodrop/internal/lab/proc"
)

// The controller's two roles, as processes.
const (
	roleServe     = "serve"
	roleReconcile = "reconcile"
)

// crashRestartDelay is how long an exited controller process stays down
// before the lab starts it again, as the kubelet restarts a container of
// the controller's Deployment (restartPolicy Always; the kubelet's first
// restart is immediate, later ones back off from 10 s).
const crashRestartDelay = time.Second

// startRole starts the process of role, watches it (an exit the lab did
// not cause starts it again), and waits until it answers its health probe.
func (c *Controller) startRole(ctx context.Context, role string) error {
	args, probe := c.serveArgs, "http://"+c.serveProbe+"/readyz"
	if role == roleReconcile {
		args, probe = c.reconcileArgs, "http://"+c.reconcileProbe+"/healthz"
	}
	p, err := c.start(role, args)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		p.Stop(10 * time.Second)
		return fmt.Errorf("lab: controller (%s): stopping", role)
	}
	if role == roleServe {
		c.serve = p
	} else {
		c.reconcile = p
	}
	c.mu.Unlock()
	go c.watch(role, p)
	if err := waitHTTP(ctx, probe, p); err != nil {
		return fmt.Errorf("lab: controller (%s) not healthy: %w", role, err)
	}
	return nil
}

// watch starts role again when p exits without the lab having stopped or
// killed it: controller-runtime ends the process when it loses its leader
// lease (an API server or etcd away for longer than the renew deadline),
// and in a cluster its Deployment brings it back.
func (c *Controller) watch(role string, p *proc.Process) {
	<-p.Done()
	c.mu.Lock()
	expected := c.stopping || c.killed[p]
	if !expected {
		if c.crashes == nil {
			c.crashes = map[string]int{}
		}
		c.crashes[role]++
		c.restarts++ // a new log file
	}
	c.mu.Unlock()
	if expected {
		return
	}
	_, werr := p.Exited()
	c.log.Warn("zerodrop-controller exited; starting it again as its Deployment would", "role", role, "pid", p.PID(), "exit", werr, "log", p.Tail(600))
	time.Sleep(crashRestartDelay)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.startRole(ctx, role); err != nil {
		c.log.Error("zerodrop-controller restart", "role", role, "err", err)
	}
}

// kill kills role's process with SIGKILL, as an OOM kill or a node failure
// would, and waits until it is gone. It is not started again (see
// startRole).
func (c *Controller) kill(role string) error { return c.signal(role, syscall.SIGKILL, 0) }

// signal sends sig to role's process and waits until it is gone, SIGKILLing
// it after grace when grace > 0. The lab does not start it again.
func (c *Controller) signal(role string, sig syscall.Signal, grace time.Duration) error {
	c.mu.Lock()
	p := c.reconcile
	if role == roleServe {
		p = c.serve
	}
	if p != nil {
		if c.killed == nil {
			c.killed = map[*proc.Process]bool{}
		}
		c.killed[p] = true
	}
	c.restarts++
	c.mu.Unlock()
	if p == nil {
		return errors.New("lab: controller: no " + role + " process running")
	}
	if err := syscall.Kill(p.PID(), sig); err != nil {
		return fmt.Errorf("lab: signal %s to controller (%s) %d: %w", sig, role, p.PID(), err)
	}
	if grace > 0 {
		select {
		case <-p.Done():
		case <-time.After(grace):
			_ = syscall.Kill(p.PID(), syscall.SIGKILL)
			<-p.Done()
			return fmt.Errorf("lab: controller (%s) %d still running %s after %s: killed", role, p.PID(), grace, sig)
		}
	}
	<-p.Done()
	c.log.Info("zerodrop-controller stopped", "role", role, "pid", p.PID(), "signal", sig)
	return nil
}

// StopReconciler stops the reconcile process with SIGTERM, as a rollout of
// the controller's Deployment does (the kubelet's SIGTERM, then SIGKILL
// after grace), and waits until it is gone: the controller releases its
// leader Lease on the way out. It stays down until StartReconciler.
func (c *Controller) StopReconciler(grace time.Duration) error {
	return c.signal(roleReconcile, syscall.SIGTERM, grace)
}

// KillServe kills the serve process (webhook and drain endpoint) with
// SIGKILL; the drain requests it holds are cut. It stays down until
// StartServe.
func (c *Controller) KillServe() error { return c.kill(roleServe) }

// StartServe starts the serve process again on the same ports and waits
// until it is ready.
func (c *Controller) StartServe(ctx context.Context) error { return c.startRole(ctx, roleServe) }

// Crashes returns how many times each role exited without the lab causing
// it (and was started again).
func (c *Controller) Crashes() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.crashes {
		out[k] = v
	}
	return out
}

// logRange is a byte range [from, to) of one controller log file.
type logRange struct {
	file     string
	from, to int64
}

// logSizes returns the size of each controller log file now.
func (c *Controller) logSizes() map[string]int64 {
	out := map[string]int64{}
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".log" {
			continue
		}
		if fi, err := e.Info(); err == nil {
			out[e.Name()] = fi.Size()
		}
	}
	return out
}

// excuseForbidden excuses the "forbidden" lines the controller logged
// between two logSizes (a file new since from counts from its start), and
// returns how many there are. A kube-apiserver that has just started
// answers requests before its RBAC authorizer's informers have synced and
// refuses them meanwhile: under the apiserver and etcd faults that is the
// API server's doing, not a role config/rbac lacks.
func (c *Controller) excuseForbidden(from, to map[string]int64) int {
	c.mu.Lock()
	for f, end := range to {
		if end > from[f] {
			c.excused = append(c.excused, logRange{file: f, from: from[f], to: end})
		}
	}
	c.mu.Unlock()
	return len(forbiddenLines(c.dir, nil)) - len(forbiddenLines(c.dir, c.isExcused))
}

// isExcused reports whether the line at offset of file lies in an excused
// range.
func (c *Controller) isExcused(file string, offset int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.excused {
		if r.file == file && offset >= r.from && offset < r.to {
			return true
		}
	}
	return false
}
