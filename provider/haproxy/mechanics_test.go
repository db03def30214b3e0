package haproxy_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// TestMechanicsOfDynamicServers pins down, on the installed haproxy, the
// state transitions the safe registration order relies on. The probe's
// health endpoint hangs and `timeout check` is long, so during the test no
// health check ever completes: any UP seen here was not earned by a check.
func TestMechanicsOfDynamicServers(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{{
		Name:  "app",
		Check: lab.Check{HTTPPath: "/ready", Interval: testInter, Rise: testRise, Fall: testFall, Timeout: time.Minute},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	c := in.Client()
	hanging := startProbe(t, "hanging")
	hanging.hangReady.Store(true)
	opts := hapi.ServerOptions{Check: true, Inter: testInter, Rise: testRise, Fall: testFall}

	state := func(name string) (hapi.ServerState, hapi.Stat) {
		t.Helper()
		snap, err := c.Snapshot(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		var ss hapi.ServerState
		var st hapi.Stat
		for _, s := range snap.Servers {
			if s.Name == name {
				ss = s
			}
		}
		for _, s := range snap.Stats {
			if s.Name == name {
				st = s
			}
		}
		if ss.Name == "" || st.Name == "" {
			t.Fatalf("server %s not in snapshot %+v", name, snap)
		}
		return ss, st
	}

	t.Run("add server: starts in maintenance, checks not enabled", func(t *testing.T) {
		if err := c.AddServer(ctx, "app", "safe", hanging.addr, opts); err != nil {
			t.Fatal(err)
		}
		ss, st := state("safe")
		if !ss.Admin.Maint() || st.Status != "MAINT" || ss.CheckState&hapi.CheckStateEnabled != 0 {
			t.Fatalf("after add: admin %#x status %q check state %#x; want maintenance, checks disabled", ss.Admin, st.Status, ss.CheckState)
		}
	})
	t.Run("enable health: still in maintenance", func(t *testing.T) {
		if err := c.EnableHealth(ctx, "app", "safe"); err != nil {
			t.Fatal(err)
		}
		ss, st := state("safe")
		if !ss.Admin.Maint() || ss.Up() || ss.CheckState&hapi.CheckStateEnabled == 0 {
			t.Fatalf("after enable health: admin %#x oper %d status %q check state %#x", ss.Admin, ss.Oper, st.Status, ss.CheckState)
		}
	})
	t.Run("state drain: leaving maintenance makes it UP with health=rise, no check passed", func(t *testing.T) {
		if err := c.SetServerState(ctx, "app", "safe", hapi.StateDrain); err != nil {
			t.Fatal(err)
		}
		ss, st := state("safe")
		if !ss.Up() || !ss.Admin.Drain() || ss.CheckHealth != testRise || !strings.HasPrefix(st.Status, "DRAIN") {
			t.Fatalf("after drain: oper %d admin %#x health %d status %q; want UP, drain, health %d", ss.Oper, ss.Admin, ss.CheckHealth, st.Status, testRise)
		}
	})
	t.Run("health down: DOWN, counter reset to 0", func(t *testing.T) {
		if err := c.SetServerHealth(ctx, "app", "safe", hapi.HealthDown); err != nil {
			t.Fatal(err)
		}
		ss, st := state("safe")
		if ss.Up() || ss.CheckHealth != 0 {
			t.Fatalf("after health down: oper %d health %d status %q; want DOWN, 0", ss.Oper, ss.CheckHealth, st.Status)
		}
	})
	t.Run("state ready: leaving drain keeps it DOWN until rise checks pass", func(t *testing.T) {
		if err := c.SetServerState(ctx, "app", "safe", hapi.StateReady); err != nil {
			t.Fatal(err)
		}
		ss, st := state("safe")
		if ss.Up() || ss.Admin != 0 || ss.CheckHealth != 0 || st.Status != "DOWN" {
			t.Fatalf("after ready: oper %d admin %#x health %d status %q; want DOWN, no admin flag, 0", ss.Oper, ss.Admin, ss.CheckHealth, st.Status)
		}
	})
	t.Run("naive order (add, enable health, state ready): UP at once, no check passed", func(t *testing.T) {
		if err := hapi.RegisterNaively(ctx, c, "app", "naive", hanging.addr, opts); err != nil {
			t.Fatal(err)
		}
		ss, st := state("naive")
		if !ss.Up() || ss.CheckHealth != testRise || !strings.HasPrefix(st.Status, "UP") {
			t.Fatalf("after naive ready: oper %d health %d status %q; want UP with health=rise", ss.Oper, ss.CheckHealth, st.Status)
		}
		if checks, _ := hanging.counts(); checks != 0 {
			t.Fatalf("%d checks completed; the probe was supposed to hang them all", checks)
		}
	})
	t.Run("del server: refused outside maintenance, done in it", func(t *testing.T) {
		if err := c.DelServer(ctx, "app", "naive"); !errors.Is(err, hapi.ErrNotInMaintenance) {
			t.Fatalf("del server in ready state: %v, want ErrNotInMaintenance", err)
		}
		if err := c.SetServerState(ctx, "app", "naive", hapi.StateMaint); err != nil {
			t.Fatal(err)
		}
		if err := c.DelServer(ctx, "app", "naive"); err != nil {
			t.Fatal(err)
		}
		if err := c.SetServerState(ctx, "app", "naive", hapi.StateReady); !errors.Is(err, hapi.ErrNoSuchServer) {
			t.Fatalf("set state on a deleted server: %v, want ErrNoSuchServer", err)
		}
	})
}

// A quirk worth knowing: a dynamic server added in maintenance is health
// checked as soon as `enable health` runs, although it stays in
// maintenance (a server put into maintenance later has its checks paused).
// Its counter climbs to rise+fall-1 there; leaving maintenance then sets it
// to `rise` anyway, which is why RegisterSafely resets it with `health down`.
func TestDynamicServerInMaintenanceIsCheckedAfterEnableHealth(t *testing.T) {
	in, _ := startHAProxy(t)
	c := in.Client()
	ctx := context.Background()
	pr := startProbe(t, "pod-a")
	opts := hapi.ServerOptions{Check: true, Inter: testInter, Rise: testRise, Fall: testFall}
	if err := c.AddServer(ctx, "app", "pod-a", pr.addr, opts); err != nil {
		t.Fatal(err)
	}
	if err := c.EnableHealth(ctx, "app", "pod-a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		checks, _ := pr.counts()
		return checks >= testRise, "checks so far: " + strconv.Itoa(checks)
	})
	ss, found, err := findServerState(ctx, c, "pod-a")
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if !ss.Admin.Maint() || ss.Up() {
		t.Fatalf("server left maintenance by itself: %+v", ss)
	}
	if _, balanced := pr.counts(); balanced != 0 {
		t.Fatalf("%d balanced requests to a server in maintenance", balanced)
	}
}

func findServerState(ctx context.Context, c *hapi.Client, name string) (hapi.ServerState, bool, error) {
	states, err := c.ShowServersState(ctx, "app")
	if err != nil {
		return hapi.ServerState{}, false, err
	}
	for _, s := range states {
		if s.Name == name {
			return s, true, nil
		}
	}
	return hapi.ServerState{}, false, nil
}
