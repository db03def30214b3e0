package provider

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func pool(instances ...InstanceStatus) PoolStatus {
	return PoolStatus{Pool: "app", Instances: instances}
}

func inst(name string, targets map[TargetID]TargetStatus) InstanceStatus {
	return InstanceStatus{Instance: name, Targets: targets}
}

func TestHealthyNeedsEveryInstanceToAgree(t *testing.T) {
	healthy := TargetStatus{Health: HealthHealthy, Reason: "L7OK"}
	initial := TargetStatus{Health: HealthInitial, Reason: "L7OK", Message: "1/3 checks passed"}
	cases := []struct {
		name       string
		st         PoolStatus
		ok         bool
		reason     string
		msgMention string
	}{
		{"no instance", pool(), false, "NoInstance", ""},
		{"healthy on both", pool(inst("a", map[TargetID]TargetStatus{"t": healthy}), inst("b", map[TargetID]TargetStatus{"t": healthy})), true, "Healthy", "2 instance"},
		{"still checking on b", pool(inst("a", map[TargetID]TargetStatus{"t": healthy}), inst("b", map[TargetID]TargetStatus{"t": initial})), false, "L7OK", "b: Initial: 1/3"},
		{"missing on a (reloaded)", pool(inst("a", nil), inst("b", map[TargetID]TargetStatus{"t": healthy})), false, "NotRegistered", "a:"},
		{"b unreachable", pool(inst("a", map[TargetID]TargetStatus{"t": healthy}), InstanceStatus{Instance: "b", Err: errors.New("dial: refused")}), false, "InstanceUnreachable", "refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason, msg := tc.st.Healthy("t")
			if ok != tc.ok || reason != tc.reason || !strings.Contains(msg, tc.msgMention) {
				t.Fatalf("got %v %q %q; want %v %q mentioning %q", ok, reason, msg, tc.ok, tc.reason, tc.msgMention)
			}
		})
	}
}

func TestDrainedCountsAbsentAndDrainedOnly(t *testing.T) {
	draining := TargetStatus{Health: HealthDraining, Sessions: 2}
	drained := TargetStatus{Health: HealthDrained}
	cases := []struct {
		name     string
		st       PoolStatus
		ok       bool
		sessions int64
	}{
		{"drained on a, gone on b", pool(inst("a", map[TargetID]TargetStatus{"t": drained}), inst("b", nil)), true, 0},
		{"sessions left on b", pool(inst("a", map[TargetID]TargetStatus{"t": drained}), inst("b", map[TargetID]TargetStatus{"t": draining})), false, 2},
		{"still healthy (drain not applied)", pool(inst("a", map[TargetID]TargetStatus{"t": {Health: HealthHealthy}})), false, 0},
		{"unreachable instance cannot vouch", pool(inst("a", nil), InstanceStatus{Instance: "b", Err: errors.New("x")}), false, 0},
		{"no instance", pool(), false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, sessions := tc.st.Drained("t")
			if ok != tc.ok || sessions != tc.sessions {
				t.Fatalf("got %v, %d; want %v, %d", ok, sessions, tc.ok, tc.sessions)
			}
		})
	}
}

func TestPoolStatusHelpers(t *testing.T) {
	now := time.Now()
	st := pool(
		InstanceStatus{Instance: "a", StartedAt: now.Add(-time.Second), Targets: map[TargetID]TargetStatus{"y": {}, "x": {}}},
		InstanceStatus{Instance: "b", Err: errors.New("timeout")},
		inst("c", map[TargetID]TargetStatus{"z": {}}),
	)
	if got := st.Targets(); !reflect.DeepEqual(got, []TargetID{"x", "y", "z"}) {
		t.Errorf("Targets() = %v", got)
	}
	if got := st.StartedWithin(now, 2*time.Second); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("StartedWithin(2s) = %v, want [a]", got)
	}
	if got := st.StartedWithin(now, time.Second); len(got) != 0 {
		t.Errorf("StartedWithin(1s) = %v, want none: a started exactly 1s ago", got)
	}
	if err := st.Err(); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("Err() = %v", err)
	}
	if s := st.String(); !strings.Contains(s, "b: error(timeout)") {
		t.Errorf("String() = %q", s)
	}
}

func TestTargetValidate(t *testing.T) {
	good := Target{ID: "pod-a", IP: "10.0.0.1", Port: 8080}
	if err := good.Validate(); err != nil || good.Addr() != "10.0.0.1:8080" {
		t.Fatalf("valid target: %v, %s", err, good.Addr())
	}
	if v6 := (Target{ID: "p", IP: "fd00::1", Port: 80}); v6.Addr() != "[fd00::1]:80" {
		t.Fatalf("IPv6 addr %s", v6.Addr())
	}
	for _, bad := range []Target{
		{IP: "10.0.0.1", Port: 80},
		{ID: "p", IP: "10.0.0", Port: 80},
		{ID: "p", IP: "10.0.0.1", Port: 0},
		{ID: "p", IP: "10.0.0.1", Port: 80, Check: HealthCheck{Rise: -1}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
}

// Scenario: the controller tells "the target is on no instance" from "no
// instance could say": AllRead needs every instance read, NoneRead is true
// when not one was (also for a load balancer without instances).
func TestPoolStatusReadHelpers(t *testing.T) {
	down := InstanceStatus{Instance: "b", Err: errors.New("timeout")}
	for _, c := range []struct {
		name              string
		st                PoolStatus
		allRead, noneRead bool
	}{
		{"no instance", pool(), false, true},
		{"every instance read", pool(inst("a", nil), inst("c", nil)), true, false},
		{"one of two read", pool(inst("a", nil), down), false, false},
		{"none read", pool(down, down), false, true},
	} {
		if got := c.st.AllRead(); got != c.allRead {
			t.Errorf("%s: AllRead() = %v", c.name, got)
		}
		if got := c.st.NoneRead(); got != c.noneRead {
			t.Errorf("%s: NoneRead() = %v", c.name, got)
		}
	}
}
