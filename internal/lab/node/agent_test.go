package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Hang guards, not timing assertions.
const (
	startTimeout = 60 * time.Second
	endTimeout   = 60 * time.Second
)

func isReady(p *v1.Pod) bool { return condition(p, v1.PodReady) == v1.ConditionTrue }

func TestNodeIsRegisteredReadyWithALease(t *testing.T) {
	l := requireLab(t)
	ctx := context.Background()
	n, err := l.client.CoreV1().Nodes().Get(ctx, l.nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ready bool
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			ready = c.Status == v1.ConditionTrue
		}
	}
	if !ready {
		t.Errorf("node conditions %+v: want Ready True", n.Status.Conditions)
	}
	var internal string
	for _, a := range n.Status.Addresses {
		if a.Type == v1.NodeInternalIP {
			internal = a.Address
		}
	}
	if internal != l.network.HostAddr.String() {
		t.Errorf("InternalIP %q, want the bridge address %s", internal, l.network.HostAddr)
	}
	if n.Status.Allocatable.Pods().Value() <= 0 || n.Status.Capacity.Cpu().IsZero() || n.Status.Capacity.Memory().IsZero() {
		t.Errorf("capacity %v allocatable %v: want pods, cpu and memory", n.Status.Capacity, n.Status.Allocatable)
	}
	lease, err := l.client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, l.nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != l.nodeName || lease.Spec.RenewTime == nil {
		t.Errorf("lease spec %+v: want holder %s and a renew time", lease.Spec, l.nodeName)
	}
}

func TestPodRunsInItsNamespaceWithDownwardAPIEnv(t *testing.T) {
	l := requireLab(t)
	c := helperContainer()
	c.Env = []v1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "GREETING", Value: "hello $(POD_NAME)"},
	}
	c.ReadinessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)}, Spec: v1.PodSpec{Containers: []v1.Container{c}}})
	p := l.waitPod(t, pod, startTimeout, "Ready", isReady)

	if p.Spec.NodeName != l.nodeName {
		t.Errorf("scheduled to %q, want %q", p.Spec.NodeName, l.nodeName)
	}
	if p.Status.Phase != v1.PodRunning || p.Status.HostIP != l.network.HostAddr.String() ||
		len(p.Status.PodIPs) != 1 || p.Status.PodIPs[0].IP != p.Status.PodIP || p.Status.StartTime == nil {
		t.Errorf("status: %s hostIP=%s podIPs=%v startTime=%v", describe(p), p.Status.HostIP, p.Status.PodIPs, p.Status.StartTime)
	}
	cs := p.Status.ContainerStatuses
	if len(cs) != 1 || cs[0].State.Running == nil || !cs[0].Ready || cs[0].Started == nil || !*cs[0].Started || cs[0].ContainerID == "" {
		t.Errorf("container status %+v: want running, started, ready, with an id", cs)
	}
	for _, ct := range []v1.PodConditionType{v1.PodScheduled, v1.PodInitialized, v1.ContainersReady, v1.PodReady} {
		if condition(p, ct) != v1.ConditionTrue {
			t.Errorf("condition %s = %q, want True", ct, condition(p, ct))
		}
	}

	// The server answers on the pod's own address, from the host.
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + p.Status.PodIP + ":8080/env")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"POD_NAME": p.Name, "POD_NAMESPACE": "default", "POD_IP": p.Status.PodIP,
		"GREETING": "hello " + p.Name, "HOSTNAME": p.Name,
	} {
		if env[k] != want {
			t.Errorf("env %s = %q, want %q", k, env[k], want)
		}
	}
}

func TestReadyWaitsForReadinessGates(t *testing.T) {
	l := requireLab(t)
	ctx := context.Background()
	pod := l.create(t, &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName(t)},
		Spec: v1.PodSpec{
			Containers:     []v1.Container{helperContainer()},
			ReadinessGates: []v1.PodReadinessGate{{ConditionType: gate}},
		},
	})
	p := l.waitPod(t, pod, startTimeout, "ContainersReady", func(p *v1.Pod) bool {
		return condition(p, v1.ContainersReady) == v1.ConditionTrue
	})
	if condition(p, v1.PodReady) != v1.ConditionFalse || findCondition(p.Status.Conditions, v1.PodReady).Reason != reasonReadinessGatesNotReady {
		t.Fatalf("gate condition absent, containers ready: %s; want Ready False (%s)", describe(p), reasonReadinessGatesNotReady)
	}

	setGate := func(status v1.ConditionStatus) {
		t.Helper()
		patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":%q,"reason":"Test","lastTransitionTime":%q}]}}`,
			gate, status, time.Now().UTC().Format(time.RFC3339))
		if _, err := l.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
	}
	setGate(v1.ConditionFalse)
	// Ready must stay False with the gate False. Changing a container's
	// readiness forces the agent to rewrite its conditions meanwhile; the
	// gate condition must survive that and still hold Ready back.
	p = l.waitPod(t, pod, startTimeout, "agent to see the False gate", func(p *v1.Pod) bool {
		c := findCondition(p.Status.Conditions, v1.PodReady)
		return c != nil && strings.Contains(c.Message, "but False")
	})
	if condition(p, v1.PodReady) != v1.ConditionFalse || condition(p, v1.ContainersReady) != v1.ConditionTrue {
		t.Fatalf("gate False: %s; want Ready False, ContainersReady True", describe(p))
	}

	setGate(v1.ConditionTrue)
	p = l.waitPod(t, pod, startTimeout, "Ready after the gate turned True", isReady)
	if g := findCondition(p.Status.Conditions, gate); g == nil || g.Status != v1.ConditionTrue || g.Reason != "Test" {
		t.Errorf("gate condition after the agent's updates: %+v, want ours preserved", g)
	}

	setGate(v1.ConditionFalse)
	l.waitPod(t, pod, startTimeout, "Ready False again after the gate turned False", func(p *v1.Pod) bool {
		return condition(p, v1.PodReady) == v1.ConditionFalse && condition(p, v1.ContainersReady) == v1.ConditionTrue
	})
}

func TestProbesGateContainersReady(t *testing.T) {
	l := requireLab(t)
	httpReady := l.file(t, "http-ready")
	execReady := l.file(t, "exec-ready")
	web := helperContainer("--port", "8080", "--ready-file", httpReady)
	web.ReadinessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
		PeriodSeconds: 1, FailureThreshold: 1}
	web.Ports = []v1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	side := helperContainer("--port", "8081")
	side.Name = "side"
	side.ReadinessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"test", "-f", execReady}}},
		PeriodSeconds: 1, FailureThreshold: 1}
	tcp := helperContainer("--port", "8082")
	tcp.Name = "tcp"
	tcp.ReadinessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(8082)}}, PeriodSeconds: 1}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)},
		Spec: v1.PodSpec{Containers: []v1.Container{web, side, tcp}}})

	ready := func(p *v1.Pod) map[string]bool {
		m := map[string]bool{}
		for _, c := range p.Status.ContainerStatuses {
			m[c.Name] = c.Ready
		}
		return m
	}
	p := l.waitPod(t, pod, startTimeout, "tcp container ready", func(p *v1.Pod) bool { return ready(p)["tcp"] })
	if r := ready(p); r["app"] || r["side"] || condition(p, v1.ContainersReady) != v1.ConditionFalse {
		t.Fatalf("readiness files absent: %s; want app and side not ready, ContainersReady False", describe(p))
	}

	touch(t, httpReady)
	p = l.waitPod(t, pod, startTimeout, "app ready (httpGet)", func(p *v1.Pod) bool { return ready(p)["app"] })
	if ready(p)["side"] || condition(p, v1.ContainersReady) != v1.ConditionFalse {
		t.Fatalf("exec probe still failing: %s; want side not ready, ContainersReady False", describe(p))
	}

	touch(t, execReady)
	l.waitPod(t, pod, startTimeout, "ContainersReady (exec passed)", func(p *v1.Pod) bool {
		return condition(p, v1.ContainersReady) == v1.ConditionTrue && isReady(p)
	})

	if err := os.Remove(httpReady); err != nil {
		t.Fatal(err)
	}
	l.waitPod(t, pod, startTimeout, "ContainersReady False after the http probe failed", func(p *v1.Pod) bool {
		return !ready(p)["app"] && condition(p, v1.ContainersReady) == v1.ConditionFalse && !isReady(p)
	})
}

func TestLivenessFailureRestartsTheContainer(t *testing.T) {
	l := requireLab(t)
	dead := l.file(t, "dead")
	rec := l.file(t, "records")
	c := helperContainer("--live-file", dead, "--record", rec)
	c.LivenessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/live", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1, FailureThreshold: 2}
	c.Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"/helper", "record", "prestop", rec}}}}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)},
		Spec: v1.PodSpec{Containers: []v1.Container{c}, TerminationGracePeriodSeconds: int64p(5)}})
	p := l.waitPod(t, pod, startTimeout, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	firstID := p.Status.ContainerStatuses[0].ContainerID

	touch(t, dead)
	p = l.waitPod(t, pod, startTimeout, "a restart", func(p *v1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 1 && cs[0].State.Running != nil
	})
	_ = os.Remove(dead)
	cs := p.Status.ContainerStatuses[0]
	if cs.ContainerID == firstID || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ContainerID != firstID {
		t.Errorf("after the restart: id %s (first %s), last state %+v; want a new id and the old run as last state", cs.ContainerID, firstID, cs.LastTerminationState)
	}
	// The new run records its start a moment after it is reported running.
	ev := waitRecords(t, rec, func(ev map[string][]time.Time) bool { return len(ev["start"]) >= 2 })
	if len(ev["start"]) < 2 || len(ev["prestop"]) < 1 || len(ev["sigterm"]) < 1 {
		t.Errorf("records %v: want two starts, and a preStop and SIGTERM for the killed run (the kubelet runs preStop on a liveness kill too)", keys(ev))
	}
	if !hasEvent(t, l, p, "Unhealthy") || !hasEvent(t, l, p, "Killing") {
		t.Errorf("want Unhealthy and Killing events for pod %s", p.Name)
	}
}

func TestTerminationRunsPreStopThenSIGTERMThenDeletes(t *testing.T) {
	l := requireLab(t)
	rec := l.file(t, "records")
	c := helperContainer("--record", rec)
	c.ReadinessProbe = listening(8080)
	c.Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{
		// Records, then takes a second, so SIGTERM arriving early would show.
		Command: []string{"sh", "-c", fmt.Sprintf("%s record prestop %s && sleep 1", selfPath(t), rec)},
	}}}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)},
		Spec: v1.PodSpec{Containers: []v1.Container{c}, TerminationGracePeriodSeconds: int64p(10)}})
	p := l.waitPod(t, pod, startTimeout, "Ready", isReady)
	ns := nsOf(t, l, p)

	deleted := time.Now()
	if err := l.client.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l.waitGone(t, p, endTimeout)

	ev := events(t, rec)
	if len(ev["prestop"]) != 1 || len(ev["sigterm"]) != 1 {
		t.Fatalf("records %v: want one prestop and one sigterm", ev)
	}
	pre, term := ev["prestop"][0], ev["sigterm"][0]
	if !pre.After(deleted) || !term.After(pre) {
		t.Fatalf("deleted %s, preStop %s, SIGTERM %s: want deletion < preStop < SIGTERM",
			deleted.Format(time.StampMicro), pre.Format(time.StampMicro), term.Format(time.StampMicro))
	}
	// preStop takes a second after recording; SIGTERM must wait for it.
	if term.Sub(pre) < 900*time.Millisecond {
		t.Errorf("SIGTERM %s after preStop started: want it after preStop finished (>= 1s)", term.Sub(pre))
	}
	assertNamespaceGone(t, ns)
}

func TestSIGKILLAtTheGracePeriodCountedFromDeletion(t *testing.T) {
	l := requireLab(t)
	rec := l.file(t, "records")
	const grace, preStop = 6, 3
	c := helperContainer("--record", rec, "--ignore-term", "--heartbeat")
	c.ReadinessProbe = listening(8080)
	c.Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Sleep: &v1.SleepAction{Seconds: preStop}}}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)},
		Spec: v1.PodSpec{Containers: []v1.Container{c}, TerminationGracePeriodSeconds: int64p(30)}})
	p := l.waitPod(t, pod, startTimeout, "Ready", isReady)

	// Watch for the last status before the final delete.
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	w, err := l.client.CoreV1().Pods(p.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + p.Name, ResourceVersion: p.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	deleted := time.Now()
	if err := l.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: int64p(grace)}); err != nil {
		t.Fatal(err)
	}
	var final *v1.Pod
	for e := range w.ResultChan() {
		if obj, ok := e.Object.(*v1.Pod); ok {
			final = obj
			if e.Type == "DELETED" {
				break
			}
		}
	}
	if final == nil {
		t.Fatal("no watch events")
	}

	ev := events(t, rec)
	if len(ev["sigterm"]) != 1 || len(ev["alive"]) == 0 {
		t.Fatalf("records %v: want one sigterm and heartbeats", keys(ev))
	}
	sigterm := ev["sigterm"][0].Sub(deleted)
	alive := ev["alive"]
	killed := alive[len(alive)-1].Sub(deleted)
	t.Logf("deletion grace %ds, preStop sleep %ds: SIGTERM at +%s, last heartbeat at +%s", grace, preStop, sigterm.Round(time.Millisecond), killed.Round(time.Millisecond))
	if sigterm < preStop*time.Second {
		t.Errorf("SIGTERM at +%s: want after the %ds preStop sleep", sigterm, preStop)
	}
	// SIGKILL comes when the grace period counted from the deletion ends,
	// not grace after preStop (+%d s). The margins are hang guards wide
	// enough for a loaded machine; the two cases are 3 s apart.
	if killed < (grace-1)*time.Second || killed >= (grace+preStop-1)*time.Second {
		t.Errorf("process died at +%s: want about +%ds (the grace period), not +%ds (grace after preStop)", killed, grace, grace+preStop)
	}
	cs := final.Status.ContainerStatuses
	if len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 137 || final.Status.Phase != v1.PodFailed {
		t.Errorf("final status %s: want the container terminated with 137 (SIGKILL) and phase Failed", describe(final))
	}
}

func TestPreStopHTTPGetRunsAgainstThePod(t *testing.T) {
	l := requireLab(t)
	rec := l.file(t, "records")
	c := helperContainer("--record", rec)
	c.ReadinessProbe = listening(8080)
	c.Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{HTTPGet: &v1.HTTPGetAction{Path: "/prestop", Port: intstr.FromInt32(8080)}}}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)},
		Spec: v1.PodSpec{Containers: []v1.Container{c}, TerminationGracePeriodSeconds: int64p(10)}})
	p := l.waitPod(t, pod, startTimeout, "Ready", isReady)
	if err := l.client.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l.waitGone(t, p, endTimeout)
	ev := events(t, rec)
	if len(ev["prestop-http"]) != 1 || len(ev["sigterm"]) != 1 || !ev["sigterm"][0].After(ev["prestop-http"][0]) {
		t.Fatalf("records %v: want the preStop request, then SIGTERM", ev)
	}
}

func TestUnknownImageWaitsWithErrImagePull(t *testing.T) {
	l := requireLab(t)
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "nginx:1.27"}}}})
	p := l.waitPod(t, pod, startTimeout, "a waiting reason", func(p *v1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].State.Waiting != nil && strings.Contains(cs[0].State.Waiting.Reason, "Image")
	})
	if w := p.Status.ContainerStatuses[0].State.Waiting; !strings.Contains(w.Message, "nginx:1.27") && w.Reason == "ErrImagePull" {
		t.Errorf("waiting %+v: want the message to name the image", w)
	}
	if p.Status.Phase != v1.PodPending {
		t.Errorf("phase %s, want Pending", p.Status.Phase)
	}
}

// waitRecords reads a record file until cond holds (or a hang guard ends)
// and returns the last reading.
func waitRecords(t *testing.T, file string, cond func(map[string][]time.Time) bool) map[string][]time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev := events(t, file)
		if cond(ev) || time.Now().After(deadline) {
			return ev
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listening is a readiness probe that passes once the test program listens
// (and so has its SIGTERM handler in place).
func listening(port int32) *v1.Probe {
	return &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(port)}}, PeriodSeconds: 1}
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string][]time.Time) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

func selfPath(t *testing.T) string {
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hasEvent(t *testing.T, l *lab, p *v1.Pod, reason string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := waitFor(ctx, func() (bool, error) {
		list, err := l.client.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.uid=" + string(p.UID)})
		if err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Reason == reason && e.Source.Component == "kubelet" {
				return true, nil
			}
		}
		return false, nil
	})
	return err == nil
}

// nsOf finds the pod's network namespace by its address.
func nsOf(t *testing.T, l *lab, p *v1.Pod) string {
	t.Helper()
	for _, pn := range l.network.Pods() {
		if pn.Addr.String() == p.Status.PodIP {
			return pn.Namespace
		}
	}
	t.Fatalf("no namespace holds pod address %s", p.Status.PodIP)
	return ""
}

func assertNamespaceGone(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := waitFor(ctx, func() (bool, error) {
		out, err := exec.Command("ip", "netns", "list").Output()
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == ns {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("namespace %s still listed after the pod is gone", ns)
	}
}

func TestStartupProbeHoldsReadinessUntilItPasses(t *testing.T) {
	l := requireLab(t)
	started := l.file(t, "started")
	c := helperContainer()
	c.StartupProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"test", "-f", started}}},
		PeriodSeconds: 1, FailureThreshold: 600}
	c.ReadinessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
	init := v1.Container{Name: "init", Image: helperImage, Command: []string{"/helper", "record", "init", l.file(t, "init")}}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)},
		Spec: v1.PodSpec{InitContainers: []v1.Container{init}, Containers: []v1.Container{c}}})
	p := l.waitPod(t, pod, startTimeout, "running", func(p *v1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].State.Running != nil
	})
	if condition(p, v1.PodInitialized) != v1.ConditionTrue || len(p.Status.InitContainerStatuses) != 1 ||
		p.Status.InitContainerStatuses[0].State.Terminated == nil || p.Status.InitContainerStatuses[0].State.Terminated.ExitCode != 0 {
		t.Errorf("init container: %+v, Initialized %s; want it completed and the pod Initialized", p.Status.InitContainerStatuses, condition(p, v1.PodInitialized))
	}
	// The server listens, so readiness would pass, but startup has not.
	time.Sleep(2 * time.Second)
	p = l.waitPod(t, pod, startTimeout, "status", func(*v1.Pod) bool { return true })
	if cs := p.Status.ContainerStatuses[0]; *cs.Started || cs.Ready || isReady(p) {
		t.Fatalf("startup probe failing: %s; want started=false, not ready", describe(p))
	}
	touch(t, started)
	p = l.waitPod(t, pod, startTimeout, "Ready after startup passed", isReady)
	if cs := p.Status.ContainerStatuses[0]; !*cs.Started || cs.RestartCount != 0 {
		t.Errorf("after startup: %s; want started and no restart", describe(p))
	}
}
