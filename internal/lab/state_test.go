package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/verify"
)

// Scenario: a lab's supervisor crashed and left a process and a directory.
// `lab down` kills the recorded process that still runs its recorded
// executable, spares a recorded pid now running another program (pid
// reuse), removes the directories and the state, and a second down finds
// nothing to do.
func TestDownAfterCrashKillsRecordedAndSparesStrangers(t *testing.T) {
	sleepBin, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	sleepBin, _ = filepath.EvalSymlinks(sleepBin)
	leftover := exec.Command(sleepBin, "300")
	if err := leftover.Start(); err != nil {
		t.Fatal(err)
	}
	leftoverDone := make(chan error, 1)
	go func() { leftoverDone <- leftover.Wait() }()
	stranger := exec.Command(sleepBin, "300")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	strangerDone := make(chan error, 1)
	go func() { strangerDone <- stranger.Wait() }()
	t.Cleanup(func() {
		_ = leftover.Process.Kill()
		_ = stranger.Process.Kill()
	})

	dir := filepath.Join(t.TempDir(), "run")
	extra := filepath.Join(t.TempDir(), "extra")
	for _, d := range []string{dir, extra} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	st := &State{
		Dir: dir,
		// A supervisor pid that is not running its executable any more.
		Supervisor: Proc{Name: "zerodrop lab", PID: stranger.Process.Pid, Exe: "/nonexistent/zerodrop"},
		Processes: []Proc{
			{Name: "etcd", PID: leftover.Process.Pid, Exe: sleepBin},
			{Name: "kube-apiserver", PID: stranger.Process.Pid, Exe: "/nonexistent/kube-apiserver"},
		},
		Dirs: []string{extra},
	}
	if err := st.write(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	did, err := Down(ctx, dir, nil)
	if err != nil || !did {
		t.Fatalf("Down = %v, %v; want true, nil", did, err)
	}
	select {
	case <-leftoverDone:
	case <-time.After(10 * time.Second):
		t.Error("recorded leftover process still runs after Down")
	}
	select {
	case err := <-strangerDone:
		t.Errorf("Down signalled a pid that runs another executable (exit: %v)", err)
	default:
	}
	if err := syscall.Kill(stranger.Process.Pid, 0); err != nil {
		t.Errorf("stranger gone: %v", err)
	}
	for _, d := range []string{dir, extra} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Down", d)
		}
	}
	if did, err := Down(ctx, dir, nil); did || err != nil {
		t.Errorf("second Down = %v, %v; want false, nil", did, err)
	}
}

// A state file that is not JSON names the file.
func TestReadStateNamesBadFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadState(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, StateFile)) {
		t.Fatalf("ReadState error %v does not name the file", err)
	}
}

// Failures are counted in the rollout whose window they ended in: from its
// start to the next rollout's start (a request cut by a fault counts where
// the fault struck); failures before the first rollout count only in the
// totals.
func TestRecorderAssignsFailuresToRolloutWindows(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	var r recorder
	for _, x := range []verify.Result{
		{Scheduled: at(0.5), Class: verify.Class502},     // before rollout 1
		{Scheduled: at(1.5), Class: verify.ClassRefused}, // rollout 1
		{Scheduled: at(1.6), Class: verify.ClassOK, Latency: 20 * time.Millisecond},
		{Scheduled: at(3.0), Class: verify.Class503},                       // rollout 2 (starts at 3.0)
		{Scheduled: at(9.0), Class: verify.Class503},                       // rollout 2, after its end: still its window
		{Scheduled: at(2.5), Latency: time.Second, Class: verify.ClassEOF}, // sent in rollout 1, cut in rollout 2
	} {
		r.add(x, StreamMain, 0, "127.0.0.1:8080")
	}
	res := Result{FailuresByClass: map[string]uint64{}}
	r.fill(&res, []time.Time{at(1), at(3)}, map[string]string{StreamMain: "GET"})
	if res.Requests != 6 || res.Failed != 5 {
		t.Errorf("requests %d failed %d, want 6 and 5", res.Requests, res.Failed)
	}
	if got := res.FailedPerRollout; len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Errorf("failed per rollout %v, want [1 3]", got)
	}
	if res.FailuresByClass["http_503"] != 2 || res.FailuresByClass["refused"] != 1 || res.FailuresByClass["http_502"] != 1 {
		t.Errorf("by class %v", res.FailuresByClass)
	}
	// Each failure is kept with its time, frontend and class.
	if len(res.FailureSamples) != 5 || res.FailureSamples[1].Class != "refused" || !res.FailureSamples[1].Scheduled.Equal(at(1.5)) || res.FailureSamples[1].Frontend != "127.0.0.1:8080" || res.FailureSamples[1].Stream != StreamMain {
		t.Errorf("failure samples %+v", res.FailureSamples)
	}
}

// The table names each sampled failure's rollout and time within it, so
// a single failure in CI can be found in the pods' logs.
func TestTheTablePlacesEachFailureInItsRollout(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
	res := Result{Scenario: "zerodrop", FailureSamples: []FailureSample{
		{Scheduled: t0.Add(-time.Second), Stream: StreamMain, Frontend: "127.0.0.1:1", Class: "http_502", Code: 502, LatencyMs: 1},
		{Scheduled: t0.Add(12500 * time.Millisecond), Stream: StreamPost, Frontend: "127.0.0.1:2", Class: "eof", LatencyMs: 3.25, Error: "POST: EOF"},
	}, PerRollout: []RolloutRecord{{Rollout: 1, Started: t0}, {Rollout: 2, Started: t0.Add(10 * time.Second)}}}
	var sb strings.Builder
	PrintTable(&sb, []Result{res})
	for _, want := range []string{
		"before rollout 1 (17:59:59.000 UTC)  main  127.0.0.1:1  http_502 502",
		"rollout 2 +2.500s (18:00:12.500 UTC)  post  127.0.0.1:2  eof  3.2 ms  POST: EOF",
	} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, sb.String())
		}
	}
}

// Every scenario's Deployment rolls one pod at a time and only the fixes it
// claims differ: the probe from readiness on, preStop and grace from
// prestop on, drain only in drain.
func TestScenariosAddOneFixEach(t *testing.T) {
	want := []struct {
		name              string
		probe, preStop    bool
		drain             bool
		graceMoreThanStop bool
	}{
		{"naive", false, false, false, false},
		{"readiness", true, false, false, false},
		{"prestop", true, true, false, true},
		{"drain", true, true, true, true},
	}
	if len(Scenarios) != len(want) {
		t.Fatalf("%d scenarios, want %d", len(Scenarios), len(want))
	}
	for i, w := range want {
		s := Scenarios[i]
		d := s.Deployment("ns", 3)
		c := d.Spec.Template.Spec.Containers[0]
		if s.Name != w.name {
			t.Errorf("scenario %d is %q, want %q", i, s.Name, w.name)
		}
		if (c.ReadinessProbe != nil) != w.probe {
			t.Errorf("%s: readinessProbe %v, want %v", s.Name, c.ReadinessProbe != nil, w.probe)
		}
		if (c.Lifecycle != nil && c.Lifecycle.PreStop != nil) != w.preStop {
			t.Errorf("%s: preStop set = %v, want %v", s.Name, c.Lifecycle != nil, w.preStop)
		}
		if got := strings.Contains(strings.Join(c.Args, " "), "--shutdown=drain"); got != w.drain {
			t.Errorf("%s: drain = %v, want %v (args %v)", s.Name, got, w.drain, c.Args)
		}
		if w.graceMoreThanStop {
			g := *d.Spec.Template.Spec.TerminationGracePeriodSeconds
			if g <= c.Lifecycle.PreStop.Sleep.Seconds {
				t.Errorf("%s: grace %ds does not fit preStop sleep %ds", s.Name, g, c.Lifecycle.PreStop.Sleep.Seconds)
			}
		}
		ru := d.Spec.Strategy.RollingUpdate
		if ru.MaxSurge.IntValue() != 1 || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("%s: rolling update %v/%v, want surge 1, unavailable 0", s.Name, ru.MaxSurge, ru.MaxUnavailable)
		}
	}
}
