package node

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"zerodrop.dev/zerodrop/internal/lab/proc"
)

// process is one run of a container: a local process in the pod's network
// namespace, in its own process group so that killing the container also
// kills whatever it started (as tearing down a container's PID namespace
// does).
type process struct {
	cmd       *exec.Cmd
	pid       int
	startedAt time.Time
	// exited is closed once the process has been reaped; the fields below
	// are valid after that.
	exited     chan struct{}
	finishedAt time.Time
	exitCode   int32
	signaled   bool
}

// start launches cmd (built by PodNet.Command) with its output appended to
// logPath.
func startProcess(cmd *exec.Cmd, logPath string) (*process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open container log %s: %w", logPath, err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the agent dies without cleaning up, its pods die with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := proc.StartCmd(cmd); err != nil {
		_ = log.Close()
		return nil, err
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, startedAt: time.Now(), exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		p.finishedAt = time.Now()
		st := cmd.ProcessState
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// Container runtimes report death by signal N as 128+N.
			p.exitCode, p.signaled = 128+int32(ws.Signal()), true
		} else {
			p.exitCode = int32(st.ExitCode())
		}
		// The main process is gone: take the rest of its group with it.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		close(p.exited)
	}()
	return p, nil
}

// signal sends sig to the main process only, as a runtime sends the stop
// signal to the container's PID 1.
func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.exited:
	default:
		_ = syscall.Kill(p.pid, sig)
	}
}

// kill sends SIGKILL to the whole process group.
func (p *process) kill() {
	select {
	case <-p.exited:
	default:
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
}

func (p *process) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// waitExec waits until the process runs argv itself, i.e. the sandbox's
// wrappers (ip netns exec, unshare, the mount script, setpriv) have set up
// its namespaces and mounts and exec'd it, so that exec probes and hooks
// entering its mount namespace find the volumes, as they would in a
// container that a runtime reports started. It gives up after timeout or
// when the process exits (a failed mount).
func (p *process) waitExec(argv []string, timeout time.Duration) bool {
	want := strings.Join(argv, "\x00") + "\x00"
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.done() {
			return false
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid)); err == nil && string(b) == want {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}
