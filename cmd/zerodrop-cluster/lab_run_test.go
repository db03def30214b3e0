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
	if want := "naive,readiness,prestop,drain,zerodrop:10,zerodrop+reload,zerodrop+reloadall,zerodrop+kill,nginx-naive,zerodrop-nginx"; strings.Join(got, ",") != want {
		t.Errorf("all = %s, want %s", strings.Join(got, ","), want)
	}
	for _, bad := range []string{"nope", "zerodrop+explode", "zerodrop:0", "zerodrop:x", "naive:101"} {
		_, err := parseRuns(bad)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("parseRuns(%q) = %v, want an error naming it", bad, err)
		}
	}
}
