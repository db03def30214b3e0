package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"

	"zerodrop.dev/zerodrop/internal/lab/netns"
)

// podWorker runs one pod: its network namespace, a goroutine per container
// (start, wait, restart, kill), probe goroutines, and a status loop that
// patches the pod's status whenever something changed.
type podWorker struct {
	agent           *Agent
	uid             types.UID
	key             string // namespace/name, for logs
	name, namespace string
	log             *slog.Logger
	ctx             context.Context // ends when the agent stops: kill at once, no API calls

	dirty       chan struct{} // status needs a sync (buffered 1)
	termStarted chan struct{} // closed when termination begins
	finished    chan struct{} // closed when everything is cleaned up
	wg          sync.WaitGroup
	cleanupOnce sync.Once

	mu          sync.Mutex
	pod         *v1.Pod // latest seen (informer or our own patch)
	net         *netns.PodNet
	dir         string
	vols        *podVolumes
	startTime   metav1.Time
	inits       []*container
	containers  []*container
	initDone    bool
	terminating bool
	termGrace   int64
	terminal    bool // every container stopped for good after deletion
	gone        bool // the object is gone from the API
}

// container is one container of the pod across its restarts. Fields are
// guarded by the worker's mutex.
type container struct {
	spec v1.Container
	init bool

	id        string
	restarts  int32
	state     v1.ContainerState
	last      v1.ContainerState
	proc      *process
	readiness result // verdicts for the current run
	startup   result
	// unhealthy carries a liveness or startup failure to the container's
	// goroutine, which kills and restarts it.
	unhealthy chan unhealthy
	// probesDone stops the current run's probe goroutines.
	probesDone context.CancelFunc
}

func newPodWorker(a *Agent, pod *v1.Pod) *podWorker {
	w := &podWorker{
		agent:       a,
		uid:         pod.UID,
		key:         pod.Namespace + "/" + pod.Name,
		name:        pod.Name,
		namespace:   pod.Namespace,
		ctx:         a.ctx,
		dirty:       make(chan struct{}, 1),
		termStarted: make(chan struct{}),
		finished:    make(chan struct{}),
		pod:         pod.DeepCopy(),
	}
	w.log = a.log.With("pod", w.key, "uid", string(pod.UID))
	for _, c := range pod.Spec.InitContainers {
		w.inits = append(w.inits, &container{spec: c, init: true, unhealthy: make(chan unhealthy, 1),
			state: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "PodInitializing"}}})
	}
	for _, c := range pod.Spec.Containers {
		reason := "ContainerCreating"
		if len(pod.Spec.InitContainers) > 0 {
			reason = "PodInitializing"
		}
		w.containers = append(w.containers, &container{spec: c, unhealthy: make(chan unhealthy, 1),
			state: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reason}}})
	}
	w.initDone = len(w.inits) == 0
	return w
}

// start sets up the pod's network and runs its containers.
func (w *podWorker) start() {
	a := w.agent
	pn, err := a.Network.AddPod(string(w.uid))
	dir, derr := os.MkdirTemp(a.stateDir, "pod-"+w.name+"-")
	if derr == nil {
		// Readable by a container running as another user (its default
		// working directory).
		derr = os.Chmod(dir, 0o755)
	}
	w.mu.Lock()
	w.startTime = metav1.Now().Rfc3339Copy()
	w.net, w.dir = pn, dir
	w.vols = &podVolumes{client: a.Client, dir: filepath.Join(dir, "volumes"), tokens: newTokenSource(a.Client), allocatable: a.capacity()}
	w.mu.Unlock()
	go w.statusLoop()
	if err != nil || derr != nil {
		w.log.Error("pod sandbox setup failed", "err", err, "dirErr", derr)
		a.event(w.podSnapshot(), nil, v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", firstErr(err, derr))
		// Nothing can run; wait for the deletion.
		w.markDirty()
		return
	}
	w.log.Info("pod sandbox ready", "podIP", pn.Addr, "netns", pn.Namespace, "dir", dir)
	w.markDirty()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if !w.setUpVolumes() {
			return
		}
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.volumeLoop() }()
		for _, c := range w.inits {
			if !w.runInit(c) {
				return
			}
		}
		w.mu.Lock()
		w.initDone = true
		for _, c := range w.containers {
			if c.state.Waiting != nil {
				c.state = v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "ContainerCreating"}}
			}
		}
		w.mu.Unlock()
		w.markDirty()
		for _, c := range w.containers {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				w.runContainer(c)
			}()
		}
	}()
}

// setUpVolumes sets up the pod's volumes before any container starts,
// retrying as the kubelet's volume manager does (a FailedMount event per
// failed attempt, the retry delay starting at 500 ms and doubling up to
// 2m2s as in pkg/util/goroutinemap/exponentialbackoff; the containers stay
// ContainerCreating). It reports false when the pod terminates first.
func (w *podWorker) setUpVolumes() bool {
	delay := 500 * time.Millisecond
	for {
		err := w.vols.setUp(w.ctx, w.podSnapshot())
		if err == nil {
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		w.log.Warn("volume setup failed", "err", err)
		w.agent.event(w.podSnapshot(), nil, v1.EventTypeWarning, "FailedMount", "%v", err)
		select {
		case <-time.After(delay):
			delay = min(2*delay, 2*time.Minute+2*time.Second)
		case <-w.termStarted:
			return false
		case <-w.ctx.Done():
			return false
		}
	}
}

// volumeLoop rewrites the secret, configMap, downwardAPI and projected
// volumes every VolumeResync (new data, a token to refresh), atomically,
// until the pod terminates.
func (w *podWorker) volumeLoop() {
	t := time.NewTicker(w.agent.VolumeResync)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-w.termStarted:
			return
		case <-w.ctx.Done():
			return
		}
		if err := w.vols.setUp(w.ctx, w.podSnapshot()); err != nil && w.ctx.Err() == nil {
			w.log.Warn("volume refresh failed", "err", err)
			w.agent.event(w.podSnapshot(), nil, v1.EventTypeWarning, "FailedMount", "%v", err)
		}
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// update records a newer version of the pod and reacts to a deletion.
func (w *podWorker) update(pod *v1.Pod) {
	w.mu.Lock()
	if newerOrSame(pod, w.pod) {
		w.pod = pod.DeepCopy()
	}
	deleting := pod.DeletionTimestamp != nil && !w.terminating
	w.mu.Unlock()
	w.markDirty()
	if deleting {
		go w.terminate(deletionGrace(pod))
	}
}

// objectGone reacts to the pod's removal from the API (a force delete, or
// our own final delete): stop everything without further API calls.
func (w *podWorker) objectGone(last *v1.Pod) {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	grace := int64(1)
	if last != nil && last.DeletionGracePeriodSeconds != nil && *last.DeletionGracePeriodSeconds > grace {
		grace = *last.DeletionGracePeriodSeconds
	}
	go w.terminate(grace)
}

func newerOrSame(a, b *v1.Pod) bool {
	ra, err1 := strconv.ParseUint(a.ResourceVersion, 10, 64)
	rb, err2 := strconv.ParseUint(b.ResourceVersion, 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return ra >= rb
}

func (w *podWorker) markDirty() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

func (w *podWorker) isTerminating() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.terminating
}

// runInit runs an init container to completion, retrying failures as the
// restart policy says. It reports whether the pod may go on.
func (w *podWorker) runInit(c *container) bool {
	var b backoff
	for {
		if w.isTerminating() || w.ctx.Err() != nil {
			return false
		}
		if !w.waitBackoff(c, &b) {
			return false
		}
		p := w.startContainer(c)
		if p == nil {
			b.failed()
			continue
		}
		select {
		case <-p.exited:
		case <-w.termStarted:
			w.kill(c, p, w.grace(), "Stopping container "+c.spec.Name)
		case <-w.ctx.Done():
			p.kill()
			<-p.exited
		}
		code := w.recordExit(c, p)
		if code == 0 {
			w.mu.Lock()
			c.readiness = resultSuccess // an init container that completed is "ready"
			w.mu.Unlock()
			w.markDirty()
			return true
		}
		if w.podSpec().RestartPolicy == v1.RestartPolicyNever {
			return false
		}
		b.failed()
	}
}

// runContainer runs a regular container until the pod terminates or the
// restart policy says it is done.
func (w *podWorker) runContainer(c *container) {
	var b backoff
	for {
		if w.isTerminating() || w.ctx.Err() != nil {
			return
		}
		if !w.waitBackoff(c, &b) {
			return
		}
		p := w.startContainer(c)
		if p == nil {
			b.failed()
			continue
		}
		select {
		case <-p.exited:
		case u := <-c.unhealthy:
			probe := c.spec.LivenessProbe
			if u.kind == startup {
				probe = c.spec.StartupProbe
			}
			w.kill(c, p, probeKillGrace(w.podSnapshot(), probe), u.message)
		case <-w.termStarted:
			w.kill(c, p, w.grace(), "Stopping container "+c.spec.Name)
		case <-w.ctx.Done():
			p.kill()
			<-p.exited
		}
		code := w.recordExit(c, p)
		if w.isTerminating() || w.ctx.Err() != nil {
			return
		}
		switch w.podSpec().RestartPolicy {
		case v1.RestartPolicyNever:
			return
		case v1.RestartPolicyOnFailure:
			if code == 0 {
				return
			}
		}
		if p.finishedAt.Sub(p.startedAt) >= 10*time.Minute {
			b = backoff{} // a container that ran long enough starts over
		}
		b.failed()
	}
}

// unhealthy is a liveness or startup probe's failure verdict.
type unhealthy struct {
	kind    probeKind
	message string
}

// backoff is the kubelet's crash-loop back-off: the first restart is
// immediate, then 1x, 2x, 4x ... the base delay, at most five minutes.
type backoff struct{ n int }

func (b *backoff) failed() { b.n++ }

func (b backoff) delay(base time.Duration) time.Duration {
	if b.n <= 1 {
		return 0
	}
	d := base << (b.n - 2)
	if d > 5*time.Minute || d <= 0 {
		d = 5 * time.Minute
	}
	return d
}

// waitBackoff waits out the back-off before a restart, showing
// CrashLoopBackOff meanwhile. It reports false when the pod terminates.
func (w *podWorker) waitBackoff(c *container, b *backoff) bool {
	d := b.delay(w.agent.RestartBackoff)
	if d == 0 {
		return true
	}
	w.mu.Lock()
	reason := "CrashLoopBackOff"
	configError := false
	if c.state.Waiting != nil {
		switch c.state.Waiting.Reason {
		case "ErrImagePull":
			reason = "ImagePullBackOff"
		case "CreateContainerConfigError", "CreateContainerError":
			// The kubelet keeps showing why the container cannot be
			// created while it retries.
			configError = true
		}
	}
	if !configError {
		c.state = v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reason,
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", d, c.spec.Name, w.name, w.namespace, w.uid)}}
	}
	w.mu.Unlock()
	w.markDirty()
	if !configError {
		w.agent.event(w.podSnapshot(), &c.spec, v1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", c.spec.Name, w.name)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.termStarted:
		return false
	case <-w.ctx.Done():
		return false
	}
}

func (w *podWorker) podSnapshot() *v1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod.DeepCopy()
}

func (w *podWorker) podSpec() v1.PodSpec {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod.Spec
}

func (w *podWorker) grace() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.termGrace
}

// startContainer starts one run of c, runs its postStart hook and its
// probes. On failure it records a waiting state and returns nil.
func (w *podWorker) startContainer(c *container) *process {
	a := w.agent
	pod := w.podSnapshot()
	w.mu.Lock()
	pn, dir := w.net, w.dir
	w.mu.Unlock()
	fail := func(reason, format string, args ...any) *process {
		msg := fmt.Sprintf(format, args...)
		w.log.Warn("container failed to start", "container", c.spec.Name, "reason", reason, "message", msg)
		w.mu.Lock()
		c.state = v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reason, Message: msg}}
		w.mu.Unlock()
		w.markDirty()
		a.event(pod, &c.spec, v1.EventTypeWarning, "Failed", "Error: %s", msg)
		return nil
	}
	prog, ok := lookupImage(a.Images, c.spec.Image)
	if !ok {
		return fail("ErrImagePull", "image %q is not in the node agent's image table", c.spec.Image)
	}
	a.event(pod, &c.spec, v1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.spec.Image)
	ident, err := containerIdentity(pod, &c.spec, prog)
	if err != nil {
		return fail("CreateContainerConfigError", "%v", err)
	}
	services, err := a.serviceLinks(w.ctx, pod)
	if err != nil {
		return fail("CreateContainerConfigError", "%v", err)
	}
	env, envMap, err := podEnv(w.ctx, a.Client, pod, &c.spec, prog, pn.Addr.String(), a.Network.HostAddr.String(), services, a.capacity())
	if err != nil {
		return fail("CreateContainerConfigError", "%v", err)
	}
	args, err := argv(prog, &c.spec, envMap)
	if err != nil {
		return fail("CreateContainerError", "%v", err)
	}
	args[0] = absPath(args[0])
	if err := executableBy(args[0], ident); err != nil {
		return fail("CreateContainerError", "container %q: program %s cannot run as uid %d: %v", c.spec.Name, args[0], ident.uid, err)
	}
	mounts, err := containerMounts(&c.spec, w.vols, pod, &a.mountPoints)
	if err != nil {
		return fail("CreateContainerConfigError", "%v", err)
	}
	readOnlyRoot := c.spec.SecurityContext != nil && c.spec.SecurityContext.ReadOnlyRootFilesystem != nil && *c.spec.SecurityContext.ReadOnlyRootFilesystem
	full := sandboxArgv(pn.Namespace, mounts, readOnlyRoot, ident, args)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	if c.spec.WorkingDir != "" {
		cmd.Dir = c.spec.WorkingDir
	}
	id := newContainerID()
	a.event(pod, &c.spec, v1.EventTypeNormal, "Created", "Created container %s", c.spec.Name)
	p, err := startProcess(cmd, filepath.Join(dir, c.spec.Name+".log"))
	if err != nil {
		return fail("RunContainerError", "start %s: %v", args[0], err)
	}
	if !p.waitExec(args, 2*time.Second) && !p.done() {
		w.log.Warn("container's sandbox setup did not finish within 2s", "container", c.spec.Name, "pid", p.pid)
	}
	w.log.Info("container started", "container", c.spec.Name, "pid", p.pid, "argv", args)
	a.event(pod, &c.spec, v1.EventTypeNormal, "Started", "Started container %s", c.spec.Name)

	target := probeTarget{podIP: pn.Addr.String(), net: pn, env: env, container: &c.spec, program: prog, pid: p.pid, id: ident}
	// postStart runs before the container counts as running; a failure
	// kills it.
	if h := c.spec.Lifecycle; h != nil && h.PostStart != nil {
		if err := runHook(w.ctx, h.PostStart, target); err != nil {
			a.event(pod, &c.spec, v1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v", err)
			w.killNow(p)
			w.mu.Lock()
			c.id, c.proc = id, p
			w.mu.Unlock()
			return p
		}
	}
	probeCtx, cancel := context.WithCancel(w.ctx)
	w.mu.Lock()
	c.id, c.proc = id, p
	c.state = v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: metav1.NewTime(p.startedAt).Rfc3339Copy()}}
	c.readiness, c.startup = readiness.initialResult(), startup.initialResult()
	c.probesDone = cancel
	w.mu.Unlock()
	w.markDirty()
	if !c.init {
		for kind, spec := range map[probeKind]*v1.Probe{readiness: c.spec.ReadinessProbe, liveness: c.spec.LivenessProbe, startup: c.spec.StartupProbe} {
			if spec != nil {
				go w.probeLoop(probeCtx, c, kind, defaultedProbe(spec), target, p.startedAt)
			}
		}
	}
	return p
}

func newContainerID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "zerodrop://" + hex.EncodeToString(b)
}

// killNow stops a process at once (postStart failure, agent shutdown).
func (w *podWorker) killNow(p *process) {
	if w.ctx.Err() != nil {
		// The agent is stopping or lost its power: no SIGTERM.
		p.kill()
		<-p.exited
		return
	}
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(minimumStopWindow)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		p.kill()
		<-p.exited
	}
}

// kill stops one run of a container as the kubelet's killContainer does:
// the preStop hook, bounded by the grace period; then SIGTERM; then SIGKILL
// when the grace period (less what preStop took, at least two seconds) is
// over. It returns once the process has been reaped.
func (w *podWorker) kill(c *container, p *process, grace int64, reason string) {
	a := w.agent
	pod := w.podSnapshot()
	begin := time.Now()
	w.log.Info("killing container", "container", c.spec.Name, "pid", p.pid, "grace", grace, "reason", reason)
	a.event(pod, &c.spec, v1.EventTypeNormal, "Killing", "%s", reason)
	w.mu.Lock()
	pn := w.net
	w.mu.Unlock()
	// The hook's own processes must not outlive the container.
	hookCtx, hookDone := context.WithCancel(w.ctx)
	defer hookDone()
	if h := c.spec.Lifecycle; h != nil && h.PreStop != nil && grace > 0 && !p.done() {
		prog, _ := lookupImage(a.Images, c.spec.Image)
		target := probeTarget{podIP: pn.Addr.String(), net: pn, env: p.cmd.Env, container: &c.spec, program: prog, pid: p.pid}
		target.id, _ = containerIdentity(pod, &c.spec, prog)
		hookErr := make(chan error, 1)
		go func() { hookErr <- runHook(hookCtx, h.PreStop, target) }()
		t := time.NewTimer(time.Duration(grace) * time.Second)
		select {
		case err := <-hookErr:
			if err != nil && w.ctx.Err() == nil {
				w.log.Warn("preStop hook failed", "container", c.spec.Name, "err", err)
				a.event(pod, &c.spec, v1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
			}
		case <-t.C:
			w.log.Warn("preStop hook did not complete in the grace period", "container", c.spec.Name, "grace", grace)
		case <-w.ctx.Done():
		}
		t.Stop()
	}
	if w.ctx.Err() != nil {
		// The agent is stopping or lost its power: no SIGTERM.
		p.kill()
		<-p.exited
		return
	}
	window := stopWindow(grace, time.Since(begin))
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		w.log.Info("grace period over, SIGKILL", "container", c.spec.Name, "pid", p.pid)
		p.kill()
		<-p.exited
	case <-w.ctx.Done():
		p.kill()
		<-p.exited
	}
}

// recordExit turns a reaped run into a terminated state and stops its
// probes. It returns the exit code.
func (w *podWorker) recordExit(c *container, p *process) int32 {
	<-p.exited
	reason := "Error"
	if p.exitCode == 0 {
		reason = "Completed"
	}
	w.mu.Lock()
	if c.probesDone != nil {
		c.probesDone()
		c.probesDone = nil
	}
	c.state = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
		ExitCode:    p.exitCode,
		Reason:      reason,
		StartedAt:   metav1.NewTime(p.startedAt).Rfc3339Copy(),
		FinishedAt:  metav1.NewTime(p.finishedAt).Rfc3339Copy(),
		ContainerID: c.id,
	}}
	c.readiness, c.startup = resultFailure, resultUnknown
	terminating := w.terminating
	w.mu.Unlock()
	w.log.Info("container exited", "container", c.spec.Name, "pid", p.pid, "exitCode", p.exitCode)
	if !terminating && w.ctx.Err() == nil && willRestart(w.podSpec().RestartPolicy, c.init, p.exitCode) {
		// The next run's status shows this one as its last state.
		w.mu.Lock()
		c.last = c.state
		c.restarts++
		c.state = v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "ContainerCreating"}}
		w.mu.Unlock()
	}
	w.markDirty()
	return p.exitCode
}

// willRestart applies the restart policy to a container that exited.
func willRestart(policy v1.RestartPolicy, init bool, code int32) bool {
	switch {
	case policy == v1.RestartPolicyNever:
		return false
	case policy == v1.RestartPolicyOnFailure || init:
		return code != 0
	}
	return true
}

// terminate stops the pod: every container killed in parallel with the
// grace period, then the final status, then the pod object deleted with
// grace 0 (the kubelet's final delete), then the namespace removed.
func (w *podWorker) terminate(grace int64) {
	w.mu.Lock()
	if w.terminating {
		w.mu.Unlock()
		return
	}
	w.terminating = true
	w.termGrace = grace
	close(w.termStarted)
	w.mu.Unlock()
	w.log.Info("pod terminating", "grace", grace)
	w.markDirty()

	w.wg.Wait() // every container goroutine has killed its process

	w.mu.Lock()
	w.terminal = true
	for _, c := range append(append([]*container(nil), w.inits...), w.containers...) {
		if c.state.Terminated == nil {
			// Never ran (or was waiting to restart): the kubelet reports
			// such containers as terminated with 137 at the end.
			if c.state.Waiting != nil && c.last.Terminated != nil {
				c.state = c.last
			} else {
				c.state = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
					ExitCode: 137, Reason: "ContainerStatusUnknown",
					Message: "The container could not be located when the pod was terminated"}}
			}
		}
		if c.probesDone != nil {
			c.probesDone()
			c.probesDone = nil
		}
	}
	gone := w.gone
	w.mu.Unlock()

	if !gone && w.ctx.Err() == nil {
		// The kubelet's status manager retries until the API server takes
		// the final status and the deletion: an API server (or etcd) away
		// at this moment must not leave the pod terminating for ever.
		err := retryUntilDone(w.ctx, finalReportRetry, func() error {
			err := w.finalReport()
			if err != nil {
				w.log.Warn("final status update or delete failed; retrying", "err", err)
			}
			return err
		})
		if err == nil {
			w.log.Info("pod deleted")
		}
	}
	w.cleanup()
}

// finalReportRetry is the longest wait between two attempts of the final
// status update and deletion.
const finalReportRetry = 2 * time.Second

// finalReport patches the terminal status and deletes the pod object
// (grace 0, this pod's UID only); a pod already gone is done.
func (w *podWorker) finalReport() error {
	if err := w.syncStatus(); err != nil {
		return err
	}
	w.mu.Lock()
	gone := w.gone
	w.mu.Unlock()
	if gone {
		return nil
	}
	pod := w.podSnapshot()
	zero := int64(0)
	err := w.agent.Client.CoreV1().Pods(pod.Namespace).Delete(w.ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &w.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete %s: %w", w.key, err)
	}
	return nil
}

// unplug cuts the pod's network (PowerOff): from now on nothing its
// processes send leaves the namespace.
func (w *podWorker) unplug() {
	w.mu.Lock()
	pn := w.net
	w.mu.Unlock()
	if pn == nil {
		return
	}
	if err := pn.Unplug(); err != nil {
		w.log.Warn("unplug pod network", "err", err)
	}
}

// cleanup removes the pod's namespace and directory, once.
func (w *podWorker) cleanup() {
	w.cleanupOnce.Do(w.doCleanup)
}

func (w *podWorker) doCleanup() {
	w.mu.Lock()
	pn, dir := w.net, w.dir
	w.mu.Unlock()
	if pn != nil {
		if err := pn.Remove(); err != nil {
			w.log.Warn("remove pod network", "err", err)
		}
	}
	if dir != "" && !w.agent.KeepPodDirs {
		_ = os.RemoveAll(dir)
	}
	close(w.finished)
}

// statusLoop patches the pod's status whenever it is marked dirty, and
// every resync period in case an update was lost.
func (w *podWorker) statusLoop() {
	resync := time.NewTicker(10 * time.Second)
	defer resync.Stop()
	for {
		select {
		case <-w.finished:
			return
		case <-w.ctx.Done():
			return
		case <-w.dirty:
		case <-resync.C:
		}
		w.mu.Lock()
		gone := w.gone
		w.mu.Unlock()
		if gone {
			continue
		}
		if err := w.syncStatus(); err != nil && w.ctx.Err() == nil {
			w.log.Warn("status update failed, retrying", "err", err)
			time.Sleep(200 * time.Millisecond)
			w.markDirty()
		}
	}
}

// syncStatus computes the status and patches what differs from the last
// status seen, as the kubelet's status manager does: a strategic merge patch
// of the status subresource, so conditions set by others (readiness gates)
// are never touched, with the pod's UID as a precondition.
func (w *podWorker) syncStatus() error {
	w.mu.Lock()
	pod := w.pod.DeepCopy()
	st := w.buildStatus(pod, metav1.Now().Rfc3339Copy())
	w.mu.Unlock()
	updated, err := patchStatus(w.ctx, w.agent.Client, pod, st)
	if apierrors.IsNotFound(err) {
		w.mu.Lock()
		w.gone = true
		w.mu.Unlock()
		return nil
	}
	if err != nil || updated == nil {
		return err
	}
	w.update(updated)
	return nil
}

// patchStatus sends the difference between pod's status and st as one
// strategic merge patch with the pod's UID as precondition, as the kubelet's
// status manager does. It returns the updated pod, or nil when there was
// nothing to send.
func patchStatus(ctx context.Context, cs kubernetes.Interface, pod *v1.Pod, st v1.PodStatus) (*v1.Pod, error) {
	key := pod.Namespace + "/" + pod.Name
	oldJSON, err := json.Marshal(v1.Pod{Status: pod.Status})
	if err != nil {
		return nil, err
	}
	newJSON, err := json.Marshal(v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: pod.UID}, Status: st})
	if err != nil {
		return nil, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, v1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("status patch for %s: %w", key, err)
	}
	if onlyUID(patch) {
		return nil, nil
	}
	updated, err := cs.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("patch status of %s: %w", key, err)
	}
	return updated, nil
}

// onlyUID reports whether a status patch carries nothing but the UID
// precondition.
func onlyUID(patch []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(patch, &m) != nil {
		return false
	}
	delete(m, "metadata")
	return len(m) == 0
}

// buildStatus computes the pod status from the containers' state; call with
// the mutex held.
func (w *podWorker) buildStatus(pod *v1.Pod, now metav1.Time) v1.PodStatus {
	st := *pod.Status.DeepCopy()
	host := w.agent.Network.HostAddr.String()
	st.HostIP = host
	st.HostIPs = []v1.HostIP{{IP: host}}
	if w.net != nil {
		ip := w.net.Addr.String()
		st.PodIP = ip
		st.PodIPs = []v1.PodIP{{IP: ip}}
	}
	if st.StartTime == nil && !w.startTime.IsZero() {
		t := w.startTime
		st.StartTime = &t
	}
	st.InitContainerStatuses = nil
	for _, c := range w.inits {
		st.InitContainerStatuses = append(st.InitContainerStatuses, c.status())
	}
	st.ContainerStatuses = nil
	for _, c := range w.containers {
		st.ContainerStatuses = append(st.ContainerStatuses, c.status())
	}
	st.Phase = podPhase(&pod.Spec, w.initDone, st.ContainerStatuses, w.terminal)
	if w.terminal && st.Phase == v1.PodPending {
		st.Phase = v1.PodFailed
	}
	sandbox := v1.ConditionFalse
	if w.net != nil && !w.terminal {
		sandbox = v1.ConditionTrue
	}
	owned := []v1.PodCondition{
		{Type: v1.PodReadyToStartContainers, Status: sandbox},
		initializedCondition(&pod.Spec, st.InitContainerStatuses, st.ContainerStatuses, st.Phase),
		readyCondition(&pod.Spec, pod.Status.Conditions, st.ContainerStatuses, st.Phase),
		containersReadyCondition(&pod.Spec, st.ContainerStatuses, st.Phase),
		{Type: v1.PodScheduled, Status: v1.ConditionTrue},
	}
	st.Conditions = mergeConditions(pod.Status.Conditions, owned, now)
	return st
}

// status is the container's status for the API; call with the mutex held.
func (c *container) status() v1.ContainerStatus {
	s := v1.ContainerStatus{
		Name:                 c.spec.Name,
		Image:                c.spec.Image,
		ImageID:              "zerodrop-lab://" + c.spec.Image,
		State:                *c.state.DeepCopy(), // marshalled after the lock is released
		LastTerminationState: *c.last.DeepCopy(),
		RestartCount:         c.restarts,
	}
	running := c.state.Running != nil
	if running || c.state.Terminated != nil {
		s.ContainerID = c.id
	}
	if c.init {
		s.Ready = c.state.Terminated != nil && c.state.Terminated.ExitCode == 0
		started := running
		s.Started = &started
		return s
	}
	started := running && (c.spec.StartupProbe == nil || c.startup == resultSuccess)
	s.Started = &started
	s.Ready = started && (c.spec.ReadinessProbe == nil || c.readiness == resultSuccess)
	return s
}

// probeLoop is the kubelet's probe worker for one run of a container: it
// probes every period once the initial delay is over, holds readiness and
// liveness probes until the startup probe passed, changes the verdict only
// after the thresholds, and hands liveness and startup failures to the
// container's goroutine. Once the pod is being deleted, liveness and
// startup probes stop with a final success; readiness probes go on until
// the container exits, as in the kubelet.
func (w *podWorker) probeLoop(ctx context.Context, c *container, kind probeKind, spec v1.Probe, target probeTarget, startedAt time.Time) {
	a := w.agent
	var th threshold
	ticker := time.NewTicker(time.Duration(spec.PeriodSeconds) * time.Second)
	defer ticker.Stop()
	set := func(r result) {
		w.mu.Lock()
		changed := false
		switch kind {
		case readiness:
			changed = c.readiness != r
			c.readiness = r
		case startup:
			changed = c.startup != r
			c.startup = r
		}
		w.mu.Unlock()
		if changed {
			w.markDirty()
		}
	}
	for {
		if ctx.Err() != nil {
			return
		}
		if kind != readiness && w.isTerminating() {
			set(resultSuccess)
			return
		}
		if int32(time.Since(startedAt)/time.Second) >= spec.InitialDelaySeconds {
			w.mu.Lock()
			started := c.spec.StartupProbe == nil || c.startup == resultSuccess
			w.mu.Unlock()
			probe := (kind == startup) != started // startup probes until started, others after
			if probe {
				r, out, err := runProbe(ctx, &spec, target, time.Duration(spec.TimeoutSeconds)*time.Second)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					w.log.Debug("probe error, result ignored", "container", c.spec.Name, "probe", kind, "err", err)
				} else {
					if r == resultFailure {
						a.event(w.podSnapshot(), &c.spec, v1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", kind, out)
					}
					if th.observe(r, spec.SuccessThreshold, spec.FailureThreshold) {
						set(r)
						if kind != readiness && r == resultFailure {
							msg := fmt.Sprintf("Container %s failed %s probe, will be restarted", c.spec.Name, lower(kind.String()))
							select {
							case c.unhealthy <- unhealthy{kind, msg}:
							default:
							}
							return // on hold until the next run
						}
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-w.termStarted:
			if kind != readiness {
				set(resultSuccess)
				return
			}
			// Readiness goes on; wait for the next tick.
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		case <-ticker.C:
		}
	}
}

func lower(s string) string {
	if s == "" {
		return s
	}
	b := []byte(s)
	if b[0] >= 'A' && b[0] <= 'Z' {
		b[0] += 'a' - 'A'
	}
	return string(b)
}
