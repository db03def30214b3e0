package node

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func lightTestPod(conds ...v1.PodCondition) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"},
		Spec: v1.PodSpec{
			Containers:     []v1.Container{{Name: "app", Image: "zerodrop-lab/app:light"}},
			ReadinessGates: []v1.PodReadinessGate{{ConditionType: gate}},
		},
		Status: v1.PodStatus{Conditions: conds},
	}
}

func statusCondition(st v1.PodStatus, t v1.PodConditionType) *v1.PodCondition {
	return findCondition(st.Conditions, t)
}

// Scenario: a light pod is reported running at its address with every
// container ready, and its Ready follows the readiness gate as the kubelet
// computes it; the gate condition itself (the controller's) is left alone.
func TestLightStatusFollowsTheGate(t *testing.T) {
	ip, host := netip.MustParseAddr("10.80.0.7"), netip.MustParseAddr("10.77.0.1")
	now := metav1.Now().Rfc3339Copy()
	for _, tc := range []struct {
		name      string
		gate      *v1.PodCondition
		wantReady v1.ConditionStatus
	}{
		{"gate condition missing", nil, v1.ConditionFalse},
		{"gate False", &v1.PodCondition{Type: gate, Status: v1.ConditionFalse, Reason: "L7STS"}, v1.ConditionFalse},
		{"gate True", &v1.PodCondition{Type: gate, Status: v1.ConditionTrue, Reason: "Healthy"}, v1.ConditionTrue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conds []v1.PodCondition
			if tc.gate != nil {
				conds = append(conds, *tc.gate)
			}
			st := lightStatus(lightTestPod(conds...), ip, host, now)
			if st.Phase != v1.PodRunning || st.PodIP != "10.80.0.7" || len(st.PodIPs) != 1 || st.HostIP != "10.77.0.1" {
				t.Fatalf("status: phase %s podIP %s podIPs %v hostIP %s", st.Phase, st.PodIP, st.PodIPs, st.HostIP)
			}
			if c := statusCondition(st, v1.ContainersReady); c == nil || c.Status != v1.ConditionTrue {
				t.Fatalf("ContainersReady = %+v, want True", c)
			}
			if c := statusCondition(st, v1.PodReady); c == nil || c.Status != tc.wantReady {
				t.Fatalf("Ready = %+v, want %s", c, tc.wantReady)
			}
			if len(st.ContainerStatuses) != 1 || !st.ContainerStatuses[0].Ready || st.ContainerStatuses[0].State.Running == nil {
				t.Fatalf("container statuses: %+v", st.ContainerStatuses)
			}
			g := statusCondition(st, gate)
			switch {
			case tc.gate == nil && g != nil:
				t.Fatalf("the light node wrote the gate condition: %+v", g)
			case tc.gate != nil && (g == nil || g.Status != tc.gate.Status || g.Reason != tc.gate.Reason):
				t.Fatalf("gate condition changed: %+v, was %+v", g, tc.gate)
			}
		})
	}
}

// Scenario: addresses come from the range in order, never its network or
// broadcast address; a pod keeps its address; a released address is taken
// again only once the rest were handed out; a full range is an error.
func TestLightAddresses(t *testing.T) {
	a := &Agent{NodeName: "light", Light: &Light{Addresses: netip.MustParsePrefix("10.80.0.0/30")}}
	l, err := newLightPods(a)
	if err != nil {
		t.Fatal(err)
	}
	first, err := l.allocate("a")
	if err != nil || first != netip.MustParseAddr("10.80.0.1") {
		t.Fatalf("first address %s, %v; want 10.80.0.1", first, err)
	}
	if again, _ := l.allocate("a"); again != first {
		t.Fatalf("pod a got %s, then %s", first, again)
	}
	second, err := l.allocate("b")
	if err != nil || second != netip.MustParseAddr("10.80.0.2") {
		t.Fatalf("second address %s, %v; want 10.80.0.2", second, err)
	}
	if _, err := l.allocate("c"); err == nil {
		t.Fatal("a /30 handed out a third address (network and broadcast are not pods')")
	}
	l.release(types.UID("a"))
	if got, err := l.allocate("c"); err != nil || got != first {
		t.Fatalf("after release: %s, %v; want %s", got, err, first)
	}
	if _, err := newLightPods(&Agent{NodeName: "x", Light: &Light{Addresses: netip.MustParsePrefix("10.80.0.0/31")}}); err == nil {
		t.Fatal("a /31 was accepted")
	}
}
