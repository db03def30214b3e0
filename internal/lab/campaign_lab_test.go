package lab

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Scenario: a short fault campaign — one rollout under each load-balancer
// fault (lbdown, lbflap, slowlb, partition, full), in one deployed zerodrop
// scenario with two HAProxy instances under 1,000 requests/s of GETs plus
// a POST stream — keeps every fault's promise: no failed request (but the
// stopped instance's own refusals), no gate opened while an instance's
// verdict was missing, no gate stuck, no server left in HAProxy.
func TestLBFaultCampaignKeepsEveryPromise(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lab run")
	}
	ctx, l, opts := controllerLab(t)

	res, err := Run(ctx, l.Target(), ZerodropScenario, RunOptions{
		Rollouts: len(LBFaults), Faults: LBFaults, Rate: 1000, Replicas: 3, Settle: 2 * time.Second, Logger: opts.Logger,
		Progress: testWriter{t},
	})
	var sb strings.Builder
	PrintCampaign(&sb, res)
	t.Logf("campaign:\n%s", sb.String())
	if raw, jerr := json.Marshal(res.PerRollout); jerr == nil {
		t.Logf("per rollout: %s", raw)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(res.PerRollout) != len(LBFaults) {
		t.Fatalf("%d rollouts recorded, want %d", len(res.PerRollout), len(LBFaults))
	}
	for i, rec := range res.PerRollout {
		if rec.Fault != LBFaults[i] {
			t.Errorf("rollout %d suffered %q, want %q", rec.Rollout, rec.Fault, LBFaults[i])
		}
		if rec.Promise != "kept" {
			t.Errorf("rollout %d (%s): promise %s", rec.Rollout, rec.Fault, rec.Promise)
		}
		var post *StreamCount
		for j := range rec.Streams {
			if rec.Streams[j].Name == StreamPost {
				post = &rec.Streams[j]
			}
		}
		if post == nil || post.Requests < 100 {
			t.Errorf("rollout %d (%s): POST stream %+v, want at least 100 POSTs", rec.Rollout, rec.Fault, post)
		}
		switch rec.Fault {
		case FaultLBDown, FaultLBFlap, FaultPartition:
			if len(rec.VerdictMissing) == 0 {
				t.Errorf("rollout %d (%s): no window without the victim's verdict recorded", rec.Rollout, rec.Fault)
			}
		case FaultFull:
			if !containsString(rec.GateReasons, "PoolFull") {
				t.Errorf("rollout %d (full): gate reasons %v, want PoolFull while no slot was free", rec.Rollout, rec.GateReasons)
			}
		}
	}
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
