package proc

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func shPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p, _ = filepath.EvalSymlinks(p)
	return p
}

// Scenario: a child that ignores SIGTERM is SIGKILLed when the grace period
// ends, and Stop returns only once it has been reaped.
func TestStopKillsAfterGrace(t *testing.T) {
	sh := shPath(t)
	dir := t.TempDir()
	p, err := Start(Spec{Name: "stubborn", Path: sh, Args: []string{"-c", "trap '' TERM; echo started; while :; do sleep 0.05; done"}, Log: filepath.Join(dir, "logs", "stubborn.log")})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the trap is installed (the log says so).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Tail(100), "started"); {
		if time.Now().After(deadline) {
			t.Fatal("child never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !Alive(p.PID(), sh) {
		t.Fatal("Alive says the running child is not running its executable")
	}
	p.Stop(200 * time.Millisecond)
	done, err := p.Exited()
	if !done {
		t.Fatal("Stop returned before the child was reaped")
	}
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("child ended with %v, want killed by SIGKILL", err)
	}
	if Alive(p.PID(), sh) {
		t.Error("child still alive after Stop")
	}
}

// Alive refuses a pid whose executable is not the recorded one, so Kill
// never signals a process that reused a recorded pid.
func TestKillSparesOtherExecutable(t *testing.T) {
	sh := shPath(t)
	p, err := Start(Spec{Name: "sleeper", Path: sh, Args: []string{"-c", "sleep 30"}, Log: filepath.Join(t.TempDir(), "s.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	killed, err := Kill(context.Background(), p.PID(), "/nonexistent/etcd", time.Second)
	if err != nil || killed {
		t.Fatalf("Kill with a wrong executable = %v, %v; want false, nil", killed, err)
	}
	if done, _ := p.Exited(); done {
		t.Fatal("the process was signalled")
	}
	killed, err = Kill(context.Background(), p.PID(), sh, 2*time.Second)
	if err != nil || !killed {
		t.Fatalf("Kill with the right executable = %v, %v; want true, nil", killed, err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("process survived Kill")
	}
}
