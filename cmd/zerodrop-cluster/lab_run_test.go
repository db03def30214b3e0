package main

import (
	"strings"
	"testing"

	"zerodrop.dev/zerodrop/internal/lab"
)

// Scenario: --scenario reads NAME[+FAULT][:K] lists; "all" is the four
// baselines, zerodrop with at least 10 rollouts, zerodrop under each
// fault, and the two NGINX scenarios; bad names, faults and counts are refused with the item named.
func TestParseRuns(t *testing.T) {
	runs, err := parseRuns("all")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range runs {
		s := r.scenario.Name
		if r.fault != lab.FaultNone {
			s += "+" + string(r.fault)
		}
		if r.rollouts > 0 {
			s += ":" + string(rune('0'+r.rollouts/10)) + string(rune('0'+r.rollouts%10))
		}
		got = append(got, s)
	}
	if want := "naive,readiness,prestop,drain,zerodrop:10,zerodrop+reload,zerodrop+reloadall,zerodrop+kill,zerodrop-installed,nginx-naive,zerodrop-nginx"; strings.Join(got, ",") != want {
		t.Errorf("all = %s, want %s", strings.Join(got, ","), want)
	}
	for _, bad := range []string{"nope", "zerodrop+explode", "zerodrop:0", "zerodrop:x", "naive:101"} {
		_, err := parseRuns(bad)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("parseRuns(%q) = %v, want an error naming it", bad, err)
		}
	}
}

// Scenario: --campaign takes one scenario without a fault or count, and a
// count in range; the cycle is a plain rollout then every fault.
func TestLabRunCampaignFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--campaign", "5", "--scenario", "zerodrop+kill"}, "--campaign: give one scenario"},
		{[]string{"--campaign", "5", "--scenario", "naive,zerodrop"}, "--campaign: give one scenario"},
		{[]string{"--campaign", "-1"}, "--campaign -1: want 1..1000"},
		{[]string{"--campaign", "2", "--fault-hold", "-1s"}, "--fault-hold -1s"},
	} {
		cmd := newLabRunCmd()
		cmd.SetArgs(tc.args)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lab run %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	cycle := campaignFaults()
	if cycle[0] != lab.FaultNone || len(cycle) != len(lab.Faults)+1 {
		t.Errorf("campaign cycle %v, want none then every fault", cycle)
	}
	for _, f := range lab.LBFaults {
		if !strings.Contains(scenarioHelp(), "  "+string(f)+" ") {
			t.Errorf("lab run's help does not describe fault %s", f)
		}
	}
}
