package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const gate v1.PodConditionType = "zerodrop.dev/lb-healthy"

func runningReady(name string, ready bool) v1.ContainerStatus {
	return v1.ContainerStatus{Name: name, Ready: ready,
		State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}}
}

func TestReadyIsContainersReadyAndEveryGate(t *testing.T) {
	spec := &v1.PodSpec{
		Containers:     []v1.Container{{Name: "app"}, {Name: "sidecar"}},
		ReadinessGates: []v1.PodReadinessGate{{ConditionType: gate}},
	}
	allReady := []v1.ContainerStatus{runningReady("app", true), runningReady("sidecar", true)}
	for _, tc := range []struct {
		name       string
		statuses   []v1.ContainerStatus
		conditions []v1.PodCondition
		want       v1.ConditionStatus
		reason     string
	}{
		{"containers ready, gate condition missing", allReady, nil, v1.ConditionFalse, reasonReadinessGatesNotReady},
		{"containers ready, gate False", allReady,
			[]v1.PodCondition{{Type: gate, Status: v1.ConditionFalse}}, v1.ConditionFalse, reasonReadinessGatesNotReady},
		{"containers ready, gate Unknown", allReady,
			[]v1.PodCondition{{Type: gate, Status: v1.ConditionUnknown}}, v1.ConditionFalse, reasonReadinessGatesNotReady},
		{"containers ready, gate True", allReady,
			[]v1.PodCondition{{Type: gate, Status: v1.ConditionTrue}}, v1.ConditionTrue, ""},
		{"gate True but one container not ready",
			[]v1.ContainerStatus{runningReady("app", true), runningReady("sidecar", false)},
			[]v1.PodCondition{{Type: gate, Status: v1.ConditionTrue}}, v1.ConditionFalse, reasonContainersNotReady},
		{"gate True but a container has no status",
			[]v1.ContainerStatus{runningReady("app", true)},
			[]v1.PodCondition{{Type: gate, Status: v1.ConditionTrue}}, v1.ConditionFalse, reasonContainersNotReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readyCondition(spec, tc.conditions, tc.statuses, v1.PodRunning)
			if got.Status != tc.want || got.Reason != tc.reason {
				t.Fatalf("Ready = %s (%s: %s), want %s (%s)", got.Status, got.Reason, got.Message, tc.want, tc.reason)
			}
		})
	}
}

func TestReadyWithoutGatesFollowsContainersReady(t *testing.T) {
	spec := &v1.PodSpec{Containers: []v1.Container{{Name: "app"}}}
	for _, ready := range []bool{true, false} {
		st := []v1.ContainerStatus{runningReady("app", ready)}
		r := readyCondition(spec, nil, st, v1.PodRunning)
		cr := containersReadyCondition(spec, st, v1.PodRunning)
		if r.Status != cr.Status || (r.Status == v1.ConditionTrue) != ready {
			t.Errorf("container ready=%v: Ready %s, ContainersReady %s", ready, r.Status, cr.Status)
		}
	}
}

func TestTerminalPhaseMakesContainersReadyFalse(t *testing.T) {
	spec := &v1.PodSpec{Containers: []v1.Container{{Name: "app"}}}
	st := []v1.ContainerStatus{runningReady("app", true)}
	for phase, reason := range map[v1.PodPhase]string{v1.PodSucceeded: reasonPodCompleted, v1.PodFailed: reasonPodFailed} {
		c := containersReadyCondition(spec, st, phase)
		if c.Status != v1.ConditionFalse || c.Reason != reason {
			t.Errorf("phase %s: ContainersReady %s/%s, want False/%s", phase, c.Status, c.Reason, reason)
		}
	}
}

func TestMergeConditionsKeepsOthersConditions(t *testing.T) {
	earlier := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(earlier.Add(time.Minute))
	existing := []v1.PodCondition{
		{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: earlier},
		{Type: gate, Status: v1.ConditionTrue, Reason: "Healthy", LastTransitionTime: earlier},
		{Type: v1.ContainersReady, Status: v1.ConditionFalse, LastTransitionTime: earlier},
	}
	owned := []v1.PodCondition{
		{Type: v1.PodScheduled, Status: v1.ConditionTrue},
		{Type: v1.ContainersReady, Status: v1.ConditionTrue},
		{Type: v1.PodReady, Status: v1.ConditionTrue},
	}
	got := mergeConditions(existing, owned, now)
	if len(got) != 4 {
		t.Fatalf("got %d conditions, want 4: %+v", len(got), got)
	}
	if g := findCondition(got, gate); g == nil || g.Status != v1.ConditionTrue || g.Reason != "Healthy" || !g.LastTransitionTime.Equal(&earlier) {
		t.Errorf("gate condition changed: %+v", g)
	}
	if c := findCondition(got, v1.PodScheduled); !c.LastTransitionTime.Equal(&earlier) {
		t.Errorf("PodScheduled did not change status but its transition time moved to %s", c.LastTransitionTime)
	}
	if c := findCondition(got, v1.ContainersReady); c.Status != v1.ConditionTrue || !c.LastTransitionTime.Equal(&now) {
		t.Errorf("ContainersReady: %+v, want True with transition time now", c)
	}
	if c := findCondition(got, v1.PodReady); c == nil || !c.LastTransitionTime.Equal(&now) {
		t.Errorf("new Ready condition: %+v, want added with transition time now", c)
	}
}

func TestPodPhase(t *testing.T) {
	term := func(code int32) v1.ContainerState {
		return v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: code}}
	}
	running := v1.ContainerState{Running: &v1.ContainerStateRunning{}}
	waiting := v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	one := func(s v1.ContainerState, last *v1.ContainerState) []v1.ContainerStatus {
		st := v1.ContainerStatus{Name: "app", State: s}
		if last != nil {
			st.LastTerminationState = *last
		}
		return []v1.ContainerStatus{st}
	}
	failed := term(1)
	for _, tc := range []struct {
		name     string
		policy   v1.RestartPolicy
		initDone bool
		statuses []v1.ContainerStatus
		terminal bool
		want     v1.PodPhase
	}{
		{"init containers still running", v1.RestartPolicyAlways, false, one(waiting, nil), false, v1.PodPending},
		{"container being created", v1.RestartPolicyAlways, true, one(waiting, nil), false, v1.PodPending},
		{"no status yet", v1.RestartPolicyAlways, true, nil, false, v1.PodPending},
		{"running", v1.RestartPolicyAlways, true, one(running, nil), false, v1.PodRunning},
		{"crash-looping under Always", v1.RestartPolicyAlways, true, one(waiting, &failed), false, v1.PodRunning},
		{"exited 0 under Always, restarting", v1.RestartPolicyAlways, true, one(term(0), nil), false, v1.PodRunning},
		{"exited 0 under Never", v1.RestartPolicyNever, true, one(term(0), nil), false, v1.PodSucceeded},
		{"exited 1 under Never", v1.RestartPolicyNever, true, one(term(1), nil), false, v1.PodFailed},
		{"exited 1 under OnFailure", v1.RestartPolicyOnFailure, true, one(term(1), nil), false, v1.PodRunning},
		{"deleted, exited 0 after SIGTERM", v1.RestartPolicyAlways, true, one(term(0), nil), true, v1.PodSucceeded},
		{"deleted, SIGKILLed (137)", v1.RestartPolicyAlways, true, one(term(137), nil), true, v1.PodFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &v1.PodSpec{RestartPolicy: tc.policy, Containers: []v1.Container{{Name: "app"}}}
			if got := podPhase(spec, tc.initDone, tc.statuses, tc.terminal); got != tc.want {
				t.Fatalf("phase %s, want %s", got, tc.want)
			}
		})
	}
}

func TestThresholdChangesVerdictOnlyAfterARun(t *testing.T) {
	var th threshold
	// failureThreshold 3: two failures do not change the verdict, the third does.
	seq := []struct {
		r    result
		want bool
	}{
		{resultFailure, false}, {resultFailure, false}, {resultFailure, true},
		{resultSuccess, false}, {resultSuccess, true}, // successThreshold 2
		{resultFailure, false}, {resultSuccess, false}, {resultSuccess, true},
	}
	for i, s := range seq {
		if got := th.observe(s.r, 2, 3); got != s.want {
			t.Fatalf("result %d (%s): verdict changes %v, want %v", i, s.r, got, s.want)
		}
	}
}

func TestInitialResults(t *testing.T) {
	if readiness.initialResult() != resultFailure || liveness.initialResult() != resultSuccess || startup.initialResult() != resultUnknown {
		t.Fatal("initial results differ from the kubelet's: readiness Failure, liveness Success, startup Unknown")
	}
}

func TestContainerStatusGatesStartedAndReadyOnProbes(t *testing.T) {
	probe := &v1.Probe{}
	running := v1.ContainerState{Running: &v1.ContainerStateRunning{}}
	for _, tc := range []struct {
		name                 string
		spec                 v1.Container
		readiness, startupR  result
		wantStarted, wantRdy bool
	}{
		{"no probes: ready once running", v1.Container{Name: "a"}, resultFailure, resultUnknown, true, true},
		{"readiness not yet passed", v1.Container{Name: "a", ReadinessProbe: probe}, resultFailure, resultUnknown, true, false},
		{"readiness passed", v1.Container{Name: "a", ReadinessProbe: probe}, resultSuccess, resultUnknown, true, true},
		{"startup not passed holds readiness", v1.Container{Name: "a", ReadinessProbe: probe, StartupProbe: probe}, resultSuccess, resultUnknown, false, false},
		{"startup passed", v1.Container{Name: "a", StartupProbe: probe}, resultFailure, resultSuccess, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &container{spec: tc.spec, state: running, readiness: tc.readiness, startup: tc.startupR}
			s := c.status()
			if *s.Started != tc.wantStarted || s.Ready != tc.wantRdy {
				t.Fatalf("started %v ready %v, want %v %v", *s.Started, s.Ready, tc.wantStarted, tc.wantRdy)
			}
		})
	}
}

func TestStopWindowCountsPreStopAgainstTheGracePeriod(t *testing.T) {
	for _, tc := range []struct {
		grace   int64
		preStop time.Duration
		want    time.Duration
	}{
		{30, 0, 30 * time.Second},
		{30, 10 * time.Second, 20 * time.Second},
		{6, 2*time.Second + 300*time.Millisecond, 4 * time.Second}, // the kubelet truncates to whole seconds
		{10, 9 * time.Second, 2 * time.Second},                     // at least two seconds
		{10, 25 * time.Second, 2 * time.Second},                    // preStop cut at the grace period
		{0, 0, 2 * time.Second},
	} {
		if got := stopWindow(tc.grace, tc.preStop); got != tc.want {
			t.Errorf("stopWindow(grace %d, preStop %s) = %s, want %s", tc.grace, tc.preStop, got, tc.want)
		}
	}
}

func TestDeletionGracePrefersTheDeletionsOwn(t *testing.T) {
	five, thirty := int64(5), int64(30)
	pod := &v1.Pod{Spec: v1.PodSpec{TerminationGracePeriodSeconds: &thirty}}
	if g := deletionGrace(pod); g != 30 {
		t.Errorf("no deletion grace: %d, want the spec's 30", g)
	}
	pod.DeletionGracePeriodSeconds = &five
	if g := deletionGrace(pod); g != 5 {
		t.Errorf("deletion grace 5: %d, want 5", g)
	}
}

func TestBackoffIsImmediateThenDoubles(t *testing.T) {
	var b backoff
	var got []time.Duration
	for range 7 {
		b.failed()
		got = append(got, b.delay(10*time.Second))
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
}

func TestImageTable(t *testing.T) {
	images := map[string]Program{
		"zerodrop-lab/app":    {Path: "/bin/app"},
		"zerodrop-lab/app:v9": {Path: "/bin/app-v9"},
	}
	for ref, want := range map[string]string{
		"zerodrop-lab/app:v2":               "/bin/app",
		"zerodrop-lab/app":                  "/bin/app",
		"zerodrop-lab/app:v9":               "/bin/app-v9",
		"zerodrop-lab/app@sha256:abcd":      "/bin/app",
		"zerodrop-lab/app:v2@sha256:abcd":   "/bin/app",
		"registry:5000/zerodrop-lab/app:v2": "",
		"zerodrop-lab/other:v1":             "",
		"zerodrop-lab/app-and-more:v1":      "",
	} {
		p, ok := lookupImage(images, ref)
		if ok != (want != "") || p.Path != want {
			t.Errorf("lookupImage(%q) = %q, %v; want %q", ref, p.Path, ok, want)
		}
	}
}

func TestArgvFollowsKubernetesCommandRules(t *testing.T) {
	prog := Program{Path: "/opt/app", Args: []string{"--default"}, Name: "/app"}
	env := map[string]string{"PORT": "8080"}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          string
	}{
		{"neither: entrypoint and default args", nil, nil, "/opt/app --default"},
		{"args only replace the default args", nil, []string{"--port=$(PORT)"}, "/opt/app --port=8080"},
		{"command naming the entrypoint", []string{"/app", "-x"}, nil, "/opt/app -x"},
		{"command and args", []string{"/app"}, []string{"$(PORT)", "$$(PORT)", "$(NOPE)"}, "/opt/app 8080 $(PORT) $(NOPE)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := argv(prog, &v1.Container{Name: "c", Command: tc.command, Args: tc.args}, env)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("argv %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := argv(prog, &v1.Container{Name: "c", Command: []string{"/no/such/binary"}}, env); err == nil ||
		!strings.Contains(err.Error(), `container "c"`) {
		t.Errorf("unknown command: err %v, want one naming the container", err)
	}
}

func TestDownwardAPIFields(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u-1",
		Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a/b": "c"}},
		Spec: v1.PodSpec{NodeName: "lab-node-1"}}
	for path, want := range map[string]string{
		"metadata.name": "web-1", "metadata.namespace": "shop", "metadata.uid": "u-1",
		"spec.nodeName": "lab-node-1", "status.podIP": "10.77.0.2", "status.hostIP": "10.77.0.1",
		"metadata.labels['app']": "web", "metadata.annotations['a/b']": "c",
	} {
		got, err := fieldValue(pod, path, "10.77.0.2", "10.77.0.1")
		if err != nil || got != want {
			t.Errorf("fieldRef %s = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := fieldValue(pod, "spec.nope", "", ""); err == nil {
		t.Error("unknown fieldRef: nil error")
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"", "plain", "$(A)", "$$(A)", "$(", "$", "a$(B)c$(A)", "$(A", "$$$"} {
		f.Add(s)
	}
	env := map[string]string{"A": "x", "B": "$(A)"}
	f.Fuzz(func(t *testing.T, s string) {
		out := expand(s, env)
		if !strings.Contains(s, "$") && out != s {
			t.Fatalf("expand(%q) = %q: a string without $ must not change", s, out)
		}
	})
}

func FuzzImageRepository(f *testing.F) {
	for _, s := range []string{"", "a", "a:b", "r:5000/a/b:c@sha256:x", "@", ":/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := imageRepository(s)
		if len(r) > len(s) || !strings.HasPrefix(s, r) {
			t.Fatalf("imageRepository(%q) = %q: want a prefix of the reference", s, r)
		}
	})
}

// Scenario: the final status update and deletion of a terminated pod meet
// an API server that is away (restarted): the agent tries again until it
// answers, as the kubelet's status manager does, instead of leaving the pod
// terminating for ever; it stops trying when the agent stops.
func TestFinalReportIsRetriedUntilTheAPIServerAnswers(t *testing.T) {
	calls := 0
	err := retryUntilDone(context.Background(), 20*time.Millisecond, func() error {
		calls++
		if calls < 5 {
			return errors.New("connect: connection refused")
		}
		return nil
	})
	if err != nil || calls != 5 {
		t.Fatalf("retryUntilDone: %v after %d calls, want success at the 5th", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = retryUntilDone(ctx, 20*time.Millisecond, func() error { return errors.New("connection refused") })
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("retryUntilDone with an API server that never answers: %v, want the context's error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("retryUntilDone kept trying %s after the agent stopped", d)
	}
}
