package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"zerodrop.dev/zerodrop/internal/verify"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// FaultClock steps this machine's wall clock (CLOCK_REALTIME) forward by
// ClockStep while a drain is held (the controller has seen the deletion
// and put the pod's server in drain), keeps it there for FaultHold, and
// steps it back by the same amount. The monotonic clock does not move. It
// is the machine's clock: the controller's, and the API server's, etcd's,
// HAProxy's and the node agents' too (docs/faults.md says what each did).
const FaultClock Fault = "clock"

// ClockStep is how far the clock fault steps the wall clock: more than the
// lab binding's drain.timeout (30 s), so that a controller comparing the
// API's deletion time with its wall clock would time the held drain out at
// once; less than what Kubernetes itself tolerates on the step back: the
// API server's 60 s leeway for service account tokens issued during the
// step (kube-controller-manager's controllers use such tokens) and the
// node-monitor grace period (50 s; the lab's node agents also post a
// status heartbeat every 10 s, which keeps their nodes Ready while the
// lease's renewTime lies behind the one written during the step).
const ClockStep = 45 * time.Second

// ClockFaultPromise is the clock fault's promise.
var ClockFaultPromise = FaultPromise{Fault: FaultClock, ZeroFailed: true, NoDrainTimeout: true,
	Promise: "0 failed but HAProxy's own at the step (an instance with a thread busy at that instant misses it and times out what it holds: counted apart); no drain gate released by `drain.timeout` (each waits for the load balancer's drained verdict); nothing stuck, nothing left in HAProxy",
	Why:     "the controller anchors every time it reads from the API (deletion request, ContainersReady, its gate's transition) to its monotonic clock when it first sees it (controller promise 8), so a step of the wall clock moves no timeout; every other wait (drain endpoint holds, reload grace, node agent grace periods) is monotonic already"}

// HAProxy 2.6 corrects a step of the wall clock only when it happens while
// a thread sleeps in poll: it compares the time after poll with the time
// before (src/clock.c; HAProxy's commit ef8d8215d, 3.1: "if it changes
// between two poll() calls ... no correction is applied"; 3.1 also uses
// CLOCK_MONOTONIC). A thread busy at the step's instant misses it, its
// internal clock jumps ClockStep forward, and every timeout shorter than
// that expires at once: 504 (timeout server) for each request in flight
// through that instance, and its idle client connections closed (timeout
// client), which fails the POST next written on each (eof; a GET is sent
// again). The lab counts those apart (RolloutRecord.FailedClockJump): an
// instance that answered 504 within clockJumpWindow of the step missed
// it, and its failures of clockJumpFailures' classes until a second after
// the step back are HAProxy's; a drain gate released early fails what the
// pod serves with 502 once its app exits, through any instance.
const clockJumpWindow = 250 * time.Millisecond

var clockJumpFailures = []verify.Class{verify.Class504, verify.ClassEOF}

// capSysTime is CAP_SYS_TIME's bit in /proc/self/status's CapEff.
const capSysTime = 25

// canStepClock reports why this process may not set the clock, or nil.
func canStepClock() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("fault clock: read capabilities: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return fmt.Errorf("fault clock: capabilities %q: %w", v, err)
			}
			if caps&(1<<capSysTime) == 0 {
				return errors.New("fault clock: needs CAP_SYS_TIME (root) to step the machine's clock")
			}
			return nil
		}
	}
	return errors.New("fault clock: no CapEff in /proc/self/status")
}

// stepClockBy moves CLOCK_REALTIME by d (microseconds) from its current
// reading, in one call: the kernel adds the offset (clock_adjtime
// ADJ_SETOFFSET), so no time passes between reading the clock and setting
// it, and stepping back by -d puts it exactly where it would be. (Without
// ADJ_NANO, which would leave the kernel's NTP state in nanosecond mode.)
func stepClockBy(d time.Duration) error {
	us := d.Microseconds()
	sec, usec := us/1e6, us%1e6
	if usec < 0 { // the kernel wants 0 <= usec < 1e6, sec may be negative
		sec, usec = sec-1, usec+1e6
	}
	tx := unix.Timex{Modes: unix.ADJ_SETOFFSET, Time: unix.Timeval{Sec: sec, Usec: usec}}
	if _, err := unix.ClockAdjtime(unix.CLOCK_REALTIME, &tx); err != nil {
		return fmt.Errorf("step the clock by %s: %w", d, err)
	}
	return nil
}

// stepClock steps the machine's wall clock by d and returns the function
// that steps it back by d, once however often it is called. A SIGINT or
// SIGTERM meanwhile steps it back too and is then raised again, so that
// the process ends as the signal meant, on the right time.
func stepClock(d time.Duration) (restore func() error, err error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	if err := stepClockBy(d); err != nil {
		signal.Stop(sigs)
		return nil, err
	}
	done := make(chan struct{})
	restore = sync.OnceValue(func() error {
		signal.Stop(sigs)
		close(done)
		return stepClockBy(-d)
	})
	go func() {
		select {
		case s := <-sigs:
			_ = restore()
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Signal(s)
			}
		case <-done:
		}
	}()
	return restore, nil
}

// injectClockFault strikes FaultClock: it waits until a drain is held (a
// hook open to the drain endpoint, and the deleted pod's server in drain on
// every instance), steps the clock forward by ClockStep for hold, and back.
// start is the rollout's start (rep.StepAt counts from it).
func injectClockFault(ctx context.Context, t Target, d *Deployed, hold time.Duration, rep *ClusterFaultReport, start time.Time) error {
	ctl := d.Integration.Controller
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := pollUntil(hctx, 10*time.Millisecond, func() bool {
		rep.HookHeld = establishedTo(ctl.drainAddr) > 0
		return rep.HookHeld && deletedPodInDrain(hctx, t, d.Namespace)
	})
	cancel()
	if err != nil {
		return fmt.Errorf("fault clock: no drain held (hook open %v): %w", rep.HookHeld, err)
	}
	// Both controller processes (the leader and the serve replica that
	// answers the hook) have seen the deletion by now, within a cycle.
	sleepCtx(ctx, 500*time.Millisecond)
	before := time.Now()
	restore, err := stepClock(ClockStep)
	if err != nil {
		return fmt.Errorf("fault clock: %w", err)
	}
	defer restore()
	rep.ClockStep, rep.StepAt = ClockStep, max(time.Since(start), time.Nanosecond)
	sleepCtx(ctx, hold)
	err = restore()
	rep.StepBackAt = time.Since(start)
	// What the clock is off by now: its wall progress minus the monotonic.
	rep.ClockError = time.Now().Round(0).Sub(before.Round(0)) - time.Since(before)
	if err != nil {
		return fmt.Errorf("fault clock: %w", err)
	}
	return nil
}

// deletedPodInDrain reports whether a pod of ns is being deleted and every
// HAProxy instance holds its server out of rotation (drain or maintenance),
// or no longer at all: the controller has acted on the deletion.
func deletedPodInDrain(ctx context.Context, t Target, ns string) bool {
	pods, err := t.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return false
	}
	ip := ""
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil && p.Status.PodIP != "" {
			ip = p.Status.PodIP
			break
		}
	}
	if ip == "" || len(t.HAProxy) == 0 {
		return false
	}
	for _, h := range t.HAProxy {
		c, err := hapi.NewClient(h.Socket)
		if err != nil {
			return false
		}
		stats, err := c.ShowStat(ctx, h.Backend)
		if err != nil {
			return false
		}
		for _, s := range stats {
			if host, _, err := net.SplitHostPort(s.Addr); err == nil && host == ip && s.Type == hapi.TypeServer &&
				!strings.HasPrefix(s.Status, "DRAIN") && !strings.HasPrefix(s.Status, "MAINT") {
				return false
			}
		}
	}
	return true
}
