package verify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const ns = "shop"

func ptr[T any](v T) *T { return &v }

func deployment(gen, observed int64, replicas, updated, available, total int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Generation: gen},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:v1"}, {Name: "sidecar", Image: "proxy:v1"}}},
			},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: total, UpdatedReplicas: updated, AvailableReplicas: available, ReadyReplicas: available},
	}
}

func pod(name string, ready bool, gates ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, g := range gates {
		p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: corev1.PodConditionType(g)})
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.ContainersReady, Status: st}, {Type: corev1.PodReady, Status: st}}
	return p
}

func slice(eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abcde", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
}

func endpoint(podName, ip string, ready, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(serving), Terminating: ptr(terminating)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: podName, Namespace: ns},
	}
}

func TestRolloutRestartSetsTheRestartedAtAnnotation(t *testing.T) {
	c := fake.NewClientset(deployment(1, 1, 1, 1, 1, 1))
	if _, err := RolloutRestart(context.Background(), c, ns, "web"); err != nil {
		t.Fatal(err)
	}
	d, _ := c.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	v := d.Spec.Template.Annotations[restartedAtAnnotation]
	if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
		t.Fatalf("restartedAt annotation %q: %v", v, err)
	}
	if d.Spec.Template.Spec.Containers[0].Image != "web:v1" {
		t.Fatalf("restart changed the image")
	}
	if _, err := RolloutRestart(context.Background(), c, ns, "missing"); err == nil || !strings.Contains(err.Error(), "shop/missing") {
		t.Fatalf("restart of a missing deployment: %v", err)
	}
}

func TestSetImageChangesNamedContainersOnly(t *testing.T) {
	c := fake.NewClientset(deployment(1, 1, 1, 1, 1, 1))
	if _, err := SetImage(context.Background(), c, ns, "web", map[string]string{"app": "web:v2"}); err != nil {
		t.Fatal(err)
	}
	d, _ := c.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if got := []string{d.Spec.Template.Spec.Containers[0].Image, d.Spec.Template.Spec.Containers[1].Image}; !slices.Equal(got, []string{"web:v2", "proxy:v1"}) {
		t.Fatalf("images %v", got)
	}
	_, err := SetImage(context.Background(), c, ns, "web", map[string]string{"nope": "x"})
	if err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "app, sidecar") {
		t.Fatalf("unknown container: %v", err)
	}
}

func TestRolloutStatusFollowsKubectl(t *testing.T) {
	for _, tc := range []struct {
		name   string
		d      *appsv1.Deployment
		minGen int64
		done   bool
		want   string
	}{
		{"spec not observed", deployment(3, 2, 3, 3, 3, 3), 3, false, "observed"},
		{"older generation than the patch", deployment(2, 2, 3, 3, 3, 3), 3, false, "observed"},
		{"replicas still updating", deployment(3, 3, 3, 1, 3, 4), 3, false, "1 of 3 new replicas updated"},
		{"old replicas pending termination", deployment(3, 3, 3, 3, 3, 4), 3, false, "1 old replicas pending termination"},
		{"updated not yet available", deployment(3, 3, 3, 3, 2, 3), 3, false, "2 of 3 updated replicas available"},
		{"complete", deployment(3, 3, 3, 3, 3, 3), 3, true, "successfully rolled out"},
	} {
		done, status, err := RolloutStatus(tc.d, tc.minGen)
		if err != nil || done != tc.done || !strings.Contains(status, tc.want) {
			t.Errorf("%s: done=%v status=%q err=%v; want done=%v status containing %q", tc.name, done, status, err, tc.done, tc.want)
		}
	}
	stuck := deployment(3, 3, 3, 1, 3, 4)
	stuck.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: progressDeadlineExceeded, Message: "ReplicaSet web-2 has timed out"}}
	if _, _, err := RolloutStatus(stuck, 3); err == nil || !strings.Contains(err.Error(), "progress deadline") {
		t.Errorf("stuck rollout: %v", err)
	}
}

func TestPodChangesReportsConditionsGatesDeletionAndContainers(t *testing.T) {
	gate := "zerodrop.dev/lb-healthy"
	old := pod("web-a", false, gate)
	p := old.DeepCopy()
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ReadinessGatesNotReady"},
		{Type: corev1.PodConditionType(gate), Status: corev1.ConditionFalse, Reason: "Registering"},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}, // not reported: noise
	}
	p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	p.DeletionGracePeriodSeconds = ptr(int64(30))
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 143, Reason: "Error"}}}}
	var got []string
	for _, e := range PodChanges(old, p) {
		got = append(got, e.Type+" "+e.Detail)
	}
	want := []string{
		"condition ContainersReady=True",
		"gate zerodrop.dev/lb-healthy=False",
		"deleting grace 30s",
		"container app terminated exit 143",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
}

// recorded collects events from a watcher.
type recorded struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorded) add(e Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }

// waitFor waits (hang guard: 30 s) until an event whose String contains
// every part was recorded.
func (r *recorded) waitFor(t *testing.T, parts ...string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.events {
			if containsAll(e.String(), parts) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		var all []string
		for _, e := range r.events {
			all = append(all, e.String())
		}
		t.Fatalf("no event with %q; got:\n%s", parts, strings.Join(all, "\n"))
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func TestWatcherReportsPodEndpointAndEventChanges(t *testing.T) {
	ctx := context.Background()
	other := pod("db-0", true)
	other.Labels = map[string]string{"app": "db"}
	c := fake.NewClientset(pod("web-old", true), other, slice(endpoint("web-old", "10.0.0.1", true, true, false), endpoint("db-0", "10.0.0.9", true, true, false)))
	rec := &recorded{}
	w, err := StartWatch(ctx, Watch{Client: c, Namespace: ns, Selector: "app=web", Deployment: "web"}, rec.add)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	rec.waitFor(t, "pod/web-old present", "Ready=True")

	// A new pod appears and becomes ready; its endpoint is added.
	pods := c.CoreV1().Pods(ns)
	slices_ := c.DiscoveryV1().EndpointSlices(ns)
	newPod, _ := pods.Create(ctx, pod("web-new", false), metav1.CreateOptions{})
	rec.waitFor(t, "pod/web-new created")
	newPod.Status.Conditions = pod("", true).Status.Conditions
	if _, err := pods.UpdateStatus(ctx, newPod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "pod/web-new condition Ready=True")
	s := slice(endpoint("web-old", "10.0.0.1", true, true, false), endpoint("web-new", "10.0.0.2", true, true, false), endpoint("db-0", "10.0.0.9", true, true, false))
	if _, err := slices_.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "endpoint pod/web-new added ready=true serving=true terminating=false")

	// The old pod is deleted: deletionTimestamp, endpoint terminating, gone.
	old, _ := pods.Get(ctx, "web-old", metav1.GetOptions{})
	old.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	old.DeletionGracePeriodSeconds = ptr(int64(45))
	if _, err := pods.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "pod/web-old deleting grace 45s")
	if total, terminating := w.Pods(); total != 2 || terminating != 1 {
		t.Errorf("Pods() = %d, %d terminating; want 2, 1", total, terminating)
	}
	s.Endpoints[0] = endpoint("web-old", "10.0.0.1", false, true, true)
	slices_.Update(ctx, s, metav1.UpdateOptions{})
	rec.waitFor(t, "endpoint pod/web-old changed ready=false serving=true terminating=true")
	c.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web-old.1", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-old", Namespace: ns},
		Reason:         "Killing", Message: "Stopping container app", Type: "Normal",
	}, metav1.CreateOptions{})
	rec.waitFor(t, "kube_event pod/web-old Killing", "Stopping container app")
	s.Endpoints = s.Endpoints[1:]
	slices_.Update(ctx, s, metav1.UpdateOptions{})
	rec.waitFor(t, "endpoint pod/web-old removed")
	pods.Delete(ctx, "web-old", metav1.DeleteOptions{})
	rec.waitFor(t, "pod/web-old gone")

	// Nothing about the pod the selector excludes, nor its endpoint.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.events {
		if strings.Contains(e.Object, "db-0") {
			t.Errorf("event about an unwatched pod: %s", e)
		}
	}
}

// fakeController plays the Deployment controller and kubelet for a restart
// of a 1-replica Deployment, and makes the target fail exactly `drops`
// requests with 502 while the old pod is going.
func fakeController(t *testing.T, c kubernetes.Interface, brokenFor *atomic.Int64, drops int64, failures <-chan struct{}, deletionSeen <-chan struct{}) {
	ctx := context.Background()
	deps := c.AppsV1().Deployments(ns)
	pods := c.CoreV1().Pods(ns)
	must := func(err error) {
		if err != nil {
			t.Error(err)
		}
	}
	// Wait for the restart patch.
	var d *appsv1.Deployment
	wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		d, _ = deps.Get(ctx, "web", metav1.GetOptions{})
		return d.Spec.Template.Annotations[restartedAtAnnotation] != "", nil
	})
	d.Generation = 2
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 1}
	_, err := deps.Update(ctx, d, metav1.UpdateOptions{})
	must(err)
	_, err = pods.Create(ctx, pod("web-new", true), metav1.CreateOptions{})
	must(err)
	old, _ := pods.Get(ctx, "web-old", metav1.GetOptions{})
	old.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	old.DeletionGracePeriodSeconds = ptr(int64(30))
	_, err = pods.Update(ctx, old, metav1.UpdateOptions{})
	must(err)
	// The old pod exits too early: the LB answers 502 for a while. (Wait
	// until verify has seen the deletion, so that the order of events in the
	// report does not depend on the machine's load.)
	<-deletionSeen
	brokenFor.Store(drops)
	for range drops {
		<-failures
	}
	must(pods.Delete(ctx, "web-old", metav1.DeleteOptions{}))
	d, _ = deps.Get(ctx, "web", metav1.GetOptions{})
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1, ReadyReplicas: 1}
	_, err = deps.Update(ctx, d, metav1.UpdateOptions{})
	must(err)
}

// bumpGenerationOnPatch makes the fake clientset do what the apiserver does
// when a Deployment's spec changes (by patch or update): increment
// metadata.generation.
func bumpGenerationOnPatch(t *testing.T, c *fake.Clientset) {
	c.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		_, obj, err := k8stesting.ObjectReaction(c.Tracker())(a)
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment)
		d.Generation++
		if err := c.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("deployments"), d, d.Namespace); err != nil {
			t.Errorf("bump generation: %v", err)
		}
		return true, d, nil
	})
	c.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d, ok := a.(k8stesting.UpdateAction).GetObject().(*appsv1.Deployment)
		if !ok || a.GetSubresource() != "" {
			return false, nil, nil
		}
		stored, err := c.Tracker().Get(appsv1.SchemeGroupVersion.WithResource("deployments"), d.Namespace, d.Name)
		if err == nil && !equality.Semantic.DeepEqual(stored.(*appsv1.Deployment).Spec, d.Spec) {
			d.Generation = stored.(*appsv1.Deployment).Generation + 1
		}
		return false, nil, nil // the default reactor stores d
	})
}

func TestRunDrivesARolloutAndLinesFailuresUpWithPodEvents(t *testing.T) {
	// Setup: a fake cluster with one pod of deployment/web, a real HTTP
	// target that answers 502 to exactly 5 requests after the old pod is
	// deleted, load at 200/s.
	// Expectation: the rollout completes, the run ends by itself after the
	// settle time, 5 failures of class http_502, one episode whose preceding
	// events include the old pod's deletion, a failed verdict.
	var brokenFor atomic.Int64
	failures := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for {
			n := brokenFor.Load()
			if n <= 0 {
				return
			}
			if brokenFor.CompareAndSwap(n, n-1) {
				w.WriteHeader(http.StatusBadGateway)
				failures <- struct{}{}
				return
			}
		}
	}))
	defer srv.Close()
	c := fake.NewClientset(deployment(1, 1, 1, 1, 1, 1), pod("web-old", true))
	bumpGenerationOnPatch(t, c)
	deletionSeen := make(chan struct{})
	var once sync.Once
	go fakeController(t, c, &brokenFor, 5, failures, deletionSeen)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var progress atomic.Int64
	rep, err := Run(ctx, Config{
		Load:       Load{Target: Target{URL: srv.URL}, Rate: 200, Duration: 50 * time.Second},
		Kube:       c,
		Namespace:  ns,
		Rollout:    &RolloutAction{Deployment: "web"},
		Warmup:     100 * time.Millisecond,
		Settle:     100 * time.Millisecond,
		OnProgress: func(Progress) { progress.Add(1) },
		OnEvent: func(e Event) {
			if e.Object == "pod/web-old" && e.Type == PodDeleting {
				once.Do(func() { close(deletionSeen) })
			}
		},
		ProgressInterval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rollout == nil || !rep.Rollout.Complete || rep.Rollout.CompletedAtMS < rep.Rollout.StartedAtMS || rep.Rollout.OldGoneAtMS == 0 {
		t.Fatalf("rollout report %+v", rep.Rollout)
	}
	if rep.Failed != 5 || len(rep.Failures) != 1 || rep.Failures[0].Class != Class502 || rep.Failures[0].Count != 5 {
		t.Fatalf("failed %d, failures %+v; want 5 of class http_502", rep.Failed, rep.Failures)
	}
	if rep.Verdict.Pass || rep.Verdict.ExitCode != 1 {
		t.Fatalf("verdict %+v for 5 failures with max 0", rep.Verdict)
	}
	if len(rep.Episodes) != 1 {
		t.Fatalf("episodes %+v", rep.Episodes)
	}
	var before []string
	for _, e := range rep.Episodes[0].Preceding {
		before = append(before, e.String())
	}
	if !slices.ContainsFunc(before, func(s string) bool { return strings.Contains(s, "pod/web-old deleting") }) {
		t.Fatalf("episode's preceding events %q lack the old pod's deletion", before)
	}
	var sawPending bool
	for _, e := range rep.Events {
		if e.Object == "pod/web-old" && e.Type == PodGone {
			sawPending = true
		}
	}
	if !sawPending {
		t.Errorf("no 'gone' event for the old pod")
	}
	// The load stopped because the rollout ended, not at the 50 s bound.
	if rep.Requests >= 200*50 {
		t.Errorf("%d requests: the run did not end after the rollout", rep.Requests)
	}
	if progress.Load() == 0 {
		t.Errorf("progress callback never called")
	}
}

func TestRunFailsTheVerdictWhenTheRolloutDoesNotCompleteInTime(t *testing.T) {
	// Setup: nobody plays the Deployment controller, so the restart is never
	// observed; the load is bounded to 600 ms.
	// Expectation: the run ends by itself at the load bound, no request
	// failed, yet the verdict fails because the rollout did not complete.
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	c := fake.NewClientset(deployment(1, 1, 1, 1, 1, 1), pod("web-old", true))
	bumpGenerationOnPatch(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		Load:      Load{Target: Target{URL: srv.URL}, Rate: 100, Duration: 600 * time.Millisecond},
		Kube:      c,
		Namespace: ns,
		Rollout:   &RolloutAction{Deployment: "web", Images: map[string]string{"app": "web:v2"}},
		Warmup:    50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 60 are scheduled; on a loaded machine the pacer may reach the bound
	// before the last few are sent (schedule accuracy has its own tests).
	if rep.Failed != 0 || rep.Requests > 60 || rep.Requests < 30 {
		t.Fatalf("%d requests, %d failed; want 30-60 (60 scheduled), 0 failed", rep.Requests, rep.Failed)
	}
	if rep.Rollout == nil || rep.Rollout.Complete || rep.Verdict.Pass || !strings.Contains(rep.Verdict.Reason, "rollout did not complete") {
		t.Fatalf("rollout %+v verdict %+v", rep.Rollout, rep.Verdict)
	}
	if rep.Config.Rollout != "set-image deployment/web app=web:v2" {
		t.Errorf("config rollout %q", rep.Config.Rollout)
	}
}

func TestRunRejectsAMissingDeployment(t *testing.T) {
	c := fake.NewClientset()
	_, err := Run(context.Background(), Config{
		Load: Load{Target: Target{URL: "http://127.0.0.1:1/"}, Rate: 1, Duration: time.Second},
		Kube: c, Namespace: ns, Rollout: &RolloutAction{Deployment: "nope"},
	})
	if err == nil || !strings.Contains(err.Error(), "deployment shop/nope not found") {
		t.Fatalf("error %v", err)
	}
}
