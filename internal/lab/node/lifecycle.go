package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
)

// minimumStopWindow is the kubelet's minimumGracePeriodInSeconds: however
// long preStop took, the container gets at least this long between SIGTERM
// and SIGKILL.
const minimumStopWindow = 2 * time.Second

// stopWindow is the time between SIGTERM and SIGKILL, computed as the
// kubelet's killContainer does: the grace period minus the whole seconds the
// preStop hook took (the kubelet truncates), and at least two seconds. So the
// grace period covers preStop and the app's shutdown together, counted from
// the start of the kill.
func stopWindow(grace int64, preStopTook time.Duration) time.Duration {
	g := grace - int64(preStopTook/time.Second)
	w := time.Duration(g) * time.Second
	if w < minimumStopWindow {
		w = minimumStopWindow
	}
	return w
}

// deletionGrace is the grace period the kubelet uses to stop a pod's
// containers: the deletion's own grace period when the pod is being deleted,
// else the pod's terminationGracePeriodSeconds, else two seconds.
func deletionGrace(pod *v1.Pod) int64 {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return *pod.DeletionGracePeriodSeconds
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return int64(minimumStopWindow / time.Second)
}

// retryUntilDone calls f until it returns nil or ctx ends, waiting 100 ms
// after the first failure and doubling up to most between attempts. It
// returns f's last error, or ctx's.
func retryUntilDone(ctx context.Context, most time.Duration, f func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, most)
	}
}

// probeKillGrace is the grace period for a container killed by a failed
// liveness or startup probe: the probe's own terminationGracePeriodSeconds
// when set, else the pod's.
func probeKillGrace(pod *v1.Pod, p *v1.Probe) int64 {
	if p != nil && p.TerminationGracePeriodSeconds != nil {
		return *p.TerminationGracePeriodSeconds
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return 30
}

// runHook runs a lifecycle handler (preStop or postStart): exec in the pod's
// namespace with the container's environment, httpGet against the pod, or
// the native sleep action. It returns when the handler is done or ctx ends.
func runHook(ctx context.Context, h *v1.LifecycleHandler, t probeTarget) error {
	switch {
	case h.Exec != nil:
		out, err := execIn(ctx, t, h.Exec.Command)
		if err != nil {
			return fmt.Errorf("exec %q: %w: %s", h.Exec.Command, err, strings.TrimSpace(string(out)))
		}
		return nil
	case h.HTTPGet != nil:
		// The kubelet only cares that the request was answered; the
		// status code does not fail the hook.
		if _, err := httpGet(ctx, h.HTTPGet, t); err != nil {
			return fmt.Errorf("httpGet %s: %w", h.HTTPGet.Path, err)
		}
		return nil
	case h.Sleep != nil:
		timer := time.NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer timer.Stop()
		select {
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case h.TCPSocket != nil:
		// Deprecated and never run by the kubelet.
		return nil
	}
	return errors.New("lifecycle handler has no action")
}
