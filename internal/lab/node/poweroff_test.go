package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario: a node loses its power (PowerOff) with a serving pod that has
// a preStop hook. The pod dies at once by SIGKILL: no preStop, no SIGTERM;
// a connection a client holds to it sees neither FIN nor RST; and the pod
// object stays as it was (not deleted, its status not touched), for the
// node lifecycle controller to find stale. The pod is then deleted while
// the node is away, as that controller's eviction does; when the node
// comes back (a new agent under the same name) its agent finishes the
// deletion without starting anything: no sandbox, no second start, no
// preStop.
func TestPowerOffKillsPodsSilentlyAndTheNodeBackFinishesTheirDeletion(t *testing.T) {
	l := requireLab(t)
	name := l.nodeName + "-off"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func() (stop func(), done <-chan error) {
		a := l.agent(name)
		c := make(chan error, 1)
		actx, acancel := context.WithCancel(ctx)
		go func() { c <- a.Run(actx) }()
		return func() { a.PowerOff(); acancel() }, c
	}
	powerOff, done := run()
	t.Cleanup(func() {
		// The Node must not stay behind for the scheduler of later tests.
		_ = l.client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	if err := l.waitNodeReady(ctx, name); err != nil {
		powerOff()
		t.Fatalf("node %s never Ready: %v", name, err)
	}

	rec := l.file(t, "records")
	c := helperContainer("--record", rec, "--heartbeat")
	c.ReadinessProbe = listening(8080)
	c.Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{
		Command: []string{"sh", "-c", fmt.Sprintf("%s record prestop %s", selfPath(t), rec)},
	}}}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)},
		Spec: v1.PodSpec{NodeName: name, Containers: []v1.Container{c}, TerminationGracePeriodSeconds: int64p(10)}})
	p := l.waitPod(t, pod, startTimeout, "Ready", isReady)
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(p.Status.PodIP, "8080"), 5*time.Second)
	if err != nil {
		powerOff()
		t.Fatal(err)
	}
	defer conn.Close()

	off := time.Now()
	powerOff()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent Run after PowerOff: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent Run did not return within 30 s of PowerOff")
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := conn.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("read on a client's open connection after the power-off: %v, want a timeout (no FIN or RST from a dead node)", err)
	}
	ev := events(t, rec)
	alive := ev["alive"]
	if len(ev["start"]) != 1 || len(ev["sigterm"]) != 0 || len(ev["prestop"]) != 0 || len(alive) == 0 {
		t.Fatalf("records %v: want one start, heartbeats, and neither SIGTERM nor preStop", keys(ev))
	}
	if last := alive[len(alive)-1]; last.After(off.Add(500 * time.Millisecond)) {
		t.Errorf("last heartbeat %s after the power-off: want the process dead at once", last.Sub(off))
	}
	// Nothing more reaches the API: the pod is as the agent last wrote it.
	time.Sleep(2 * time.Second)
	after, err := l.client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pod after the power-off: %v (want it still there)", err)
	}
	if after.DeletionTimestamp != nil || after.Status.Phase != v1.PodRunning || after.ResourceVersion != p.ResourceVersion {
		t.Errorf("pod after the power-off: deleted %v, phase %s, resourceVersion %s (was %s): want it untouched",
			after.DeletionTimestamp, after.Status.Phase, after.ResourceVersion, p.ResourceVersion)
	}

	// Evicted while the node is away, then the node comes back.
	if err := l.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sandboxes := len(l.network.Names().Namespaces)
	stop, done := run()
	defer func() {
		stop()
		<-done
	}()
	l.waitGone(t, p, endTimeout)
	ev = events(t, rec)
	if len(ev["start"]) != 1 || len(ev["sigterm"]) != 0 || len(ev["prestop"]) != 0 {
		t.Errorf("records %v after the node came back: want the pod not started again and no hook run", keys(ev))
	}
	if n := len(l.network.Names().Namespaces) - sandboxes; n != 0 {
		t.Errorf("the node back made %d pod sandbox(es) for a pod deleted while it was away, want none", n)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
