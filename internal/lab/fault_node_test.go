package lab

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario: the node fault loses a node that runs serving pods and leaves
// two serving elsewhere if it can, else one: of the nodes that do, the one
// with the most serving pods; pods being deleted or not Ready do not count
// as serving; when every serving pod runs on one node there is no node to
// lose.
func TestNodeToLoseLeavesAServingPodElsewhere(t *testing.T) {
	pod := func(node string, ready, deleting bool) corev1.Pod {
		p := corev1.Pod{Spec: corev1.PodSpec{NodeName: node}}
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pods []corev1.Pod
		want string
	}{
		{"two left elsewhere", []corev1.Pod{pod("a", true, false), pod("b", true, false), pod("b", true, false)}, "a"},
		{"the most serving pods that leave two", []corev1.Pod{pod("a", true, false), pod("b", true, false), pod("b", true, false), pod("c", true, false), pod("c", true, false), pod("c", true, false)}, "c"},
		{"a deleted and an unready pod do not serve", []corev1.Pod{pod("a", true, false), pod("a", true, false), pod("b", true, false), pod("b", true, false), pod("b", true, true), pod("b", false, false), pod("c", true, false)}, "a"},
		{"one left when two cannot be", []corev1.Pod{pod("b", true, false), pod("a", true, false)}, "a"},
		{"every serving pod on one node", []corev1.Pod{pod("a", true, false), pod("a", true, false), pod("b", true, true)}, ""},
	} {
		got, err := nodeToLose(tc.pods)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("%s: nodeToLose = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// Scenario: the bound of the node fault is what arrives at the dead pods'
// share of the servers in rotation while HAProxy's checks take them out,
// plus what the dead pods were serving, times two; a rollout under the
// node fault keeps its promise up to that bound and breaks it above, and
// also breaks it when a gate is stuck or a server is left in HAProxy.
func TestNodeFaultIsJudgedAgainstItsBound(t *testing.T) {
	o := RunOptions{Rate: 1000, PostRate: 100, SlowRate: 20, SlowLatency: 6 * time.Second}
	// 2 of 4 servers in rotation for 3 s: 1,120/s x 0.5 x 3 s = 1,680;
	// serving at the power-off: (20/s x 6 s + 1,100/s x 20 ms) x 0.5 = 71.
	if got := NodeLossBound(o, 20*time.Millisecond, 2, 2, 4, 3*time.Second); got != 2*(1680+71) {
		t.Errorf("NodeLossBound = %d, want %d", got, 2*(1680+71))
	}
	if got := NodeLossBound(o, 20*time.Millisecond, 0, 1, 4, 3*time.Second); got != 71 {
		t.Errorf("NodeLossBound with only a draining server dead = %d, want 71 (its in-flight requests)", got)
	}
	if got := NodeLossBound(o, 20*time.Millisecond, 1, 1, 0, time.Second); got != 0 {
		t.Errorf("NodeLossBound without a server in rotation = %d, want 0", got)
	}

	rec := func(failed uint64, stuck, left []string) RolloutRecord {
		r := RolloutRecord{Fault: FaultNode, Failed: failed, StuckGates: stuck, Leftovers: left,
			FaultEvent: &FaultEvent{Kind: FaultNode, Cluster: &ClusterFaultReport{Node: &NodeFaultReport{Bound: 100, Serving: 4, ServingDead: 2}}}}
		r.judge()
		return r
	}
	if r := rec(100, []string{}, []string{}); r.Promise != "kept" {
		t.Errorf("100 failed under a bound of 100: promise %q, want kept", r.Promise)
	}
	kept := rec(100, []string{}, []string{})
	if v := kept.verdict(nil); !v.Pass || !strings.Contains(v.Reason, "within the fault's bound of 100") {
		t.Errorf("the rollout's verdict %+v, want a pass that names the bound", v)
	}
	if r := rec(101, []string{}, []string{}); !strings.Contains(r.Promise, "101 failed requests, more than the bound 100") {
		t.Errorf("101 failed under a bound of 100: promise %q, want broken", r.Promise)
	}
	if r := rec(0, []string{"web-x (gate not True)"}, []string{"haproxy-0/s1 10.77.0.9"}); !strings.Contains(r.Promise, "stuck: web-x") || !strings.Contains(r.Promise, "left in HAProxy") {
		t.Errorf("a stuck gate and a leftover server: promise %q, want broken by both", r.Promise)
	}
	noReport := RolloutRecord{Fault: FaultNode, FaultEvent: &FaultEvent{Kind: FaultNode, Err: "fault node: no node to lose"}}
	noReport.judge()
	if !strings.Contains(noReport.Promise, "broken") {
		t.Errorf("a node fault that did not strike: promise %q, want broken", noReport.Promise)
	}
}
