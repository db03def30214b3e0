// Package proc starts the lab's long-running child processes (etcd,
// kube-apiserver, haproxy, node agents, ...) so that they are always stopped:
// each logs to its own file, dies with the parent (Pdeathsig), and is stopped
// by its pid, SIGTERM first and SIGKILL after a grace period. A process
// recorded in a state file can be stopped by a later `zerodrop lab down`
// after a crash; the recorded executable is checked first so a reused pid is
// never signalled. FreePorts picks the loopback ports they listen on.
package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one running child.
type Process struct {
	// Name is a short label (etcd, kube-apiserver, ...).
	Name string
	// Path is the executable that was started.
	Path string
	// Log is the file stdout and stderr go to.
	Log string

	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	mu      sync.Mutex
	err     error
}

// Spec describes a process to start.
type Spec struct {
	Name string
	Path string
	Args []string
	// Dir is the working directory; empty means the parent's.
	Dir string
	// Env is appended to the parent's environment.
	Env []string
	// Log is the file to write stdout and stderr to (created, appended).
	Log string
}

// Start starts a process. It dies when the parent dies (SIGKILL through
// Pdeathsig) and runs in its own process group, so a Ctrl-C in the terminal
// reaches only the parent, which stops its children in order.
func Start(s Spec) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(s.Log), 0o755); err != nil {
		return nil, fmt.Errorf("start %s: log directory: %w", s.Name, err)
	}
	lf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log %s: %w", s.Name, s.Log, err)
	}
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := StartCmd(cmd); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", s.Name, s.Path, err)
	}
	p := &Process{Name: s.Name, Path: s.Path, Log: s.Log, cmd: cmd, logFile: lf, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		lf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// The kernel ties Pdeathsig to the thread that forked the child, not to the
// process: when that OS thread exits, the child gets the signal although the
// parent runs on. Go ends threads — a goroutine that locked its thread to
// enter a network namespace and returns still locked takes its thread down —
// so a child started from an arbitrary goroutine dies at a random moment
// (seen: both zerodrop-controller processes SIGKILLed in the middle of a lab
// run). Children are therefore forked from one goroutine locked to its
// thread for the life of the process.
var (
	spawnOnce sync.Once
	spawnReq  chan func()
)

// StartCmd starts cmd from the spawn thread, which never exits, so that a
// Pdeathsig in cmd.SysProcAttr fires only when this process dies. Every
// child with Pdeathsig must be started through it.
func StartCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReq = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for f := range spawnReq {
				f()
			}
		}()
	})
	done := make(chan error, 1)
	spawnReq <- func() { done <- cmd.Start() }
	return <-done
}

// PID returns the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited (and been reaped).
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, waits up to grace for the exit, then SIGKILLs and
// waits for the reaping. It is safe to call more than once.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Tail returns the last n bytes of the process's log, for error messages.
func (p *Process) Tail(n int) string { return TailFile(p.Log, n) }

// TailFile returns the last n bytes of a file ("" if unreadable).
func TailFile(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(raw) > n {
		raw = raw[len(raw)-n:]
	}
	return string(raw)
}

// Alive reports whether pid names a live process running the executable exe
// (compared by /proc/<pid>/exe, the resolved path). A pid that was reused by
// another program is not alive for our purposes.
func Alive(pid int, exe string) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if exe == "" {
		return true
	}
	got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	got = strings.TrimSuffix(got, " (deleted)")
	want, err := filepath.EvalSymlinks(exe)
	if err != nil {
		want = exe
	}
	if wantAbs, err := filepath.Abs(want); err == nil {
		want = wantAbs
	}
	return got == want
}

// Zombie reports whether pid is a zombie (exited, not reaped): it no longer
// runs, though signals to it still succeed.
func Zombie(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(raw)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

// Kill stops a recorded process that is not our child (after a crash): if
// pid still runs exe it gets SIGTERM, then SIGKILL after grace. It returns
// whether a process was signalled.
func Kill(ctx context.Context, pid int, exe string, grace time.Duration) (bool, error) {
	if !Alive(pid, exe) {
		return false, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return false, nil
		}
		return false, fmt.Errorf("SIGTERM pid %d (%s): %w", pid, exe, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !Alive(pid, exe) || Zombie(pid) {
			return true, nil
		}
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return true, fmt.Errorf("SIGKILL pid %d (%s): %w", pid, exe, err)
	}
	return true, nil
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1. They are held
// open together so the kernel does not hand out one twice, then released;
// the window until the processes bind them is short. Ask for all the ports
// a process set needs in one call.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
