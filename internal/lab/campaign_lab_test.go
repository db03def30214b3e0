package lab

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/verify"
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
		Progress: testWriter{t}, Timeline: true,
	})
	recordCampaign(t, res)
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
		checkRolloutReport(t, rec)
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

// checkRolloutReport checks verify's report of a campaign rollout's window
// (RunOptions.Timeline): the record's counts, the rollout's own pods and
// events, the fault's start and end, the record's verdict.
func checkRolloutReport(t *testing.T, rec RolloutRecord) {
	t.Helper()
	rep := rec.Report
	if rep == nil {
		t.Errorf("rollout %d (%s): no report of its window", rec.Rollout, rec.Fault)
		return
	}
	if !rep.Start.Equal(rec.Started) || rep.Requests != int64(rec.Requests) || rep.Failed != int64(rec.Failed) || len(rep.Timeline.Buckets) == 0 {
		t.Errorf("rollout %d (%s): report from %s with %d requests, %d failed, %d buckets; want from %s with the record's %d, %d",
			rec.Rollout, rec.Fault, rep.Start, rep.Requests, rep.Failed, len(rep.Timeline.Buckets), rec.Started, rec.Requests, rec.Failed)
	}
	var present, deleted, faultStart, faultEnd int
	for _, e := range rep.Events {
		switch {
		case e.Type == verify.PodPresent && e.AtMS == 0:
			present++
		case e.Type == verify.PodDeleting:
			deleted++
		case e.Type == verify.RolloutFault:
			faultStart++
		case e.Type == verify.RolloutFaultEnd:
			faultEnd++
		}
	}
	// The window opens with the Deployment's 3 pods; the rollout deletes 3.
	if present < 3 || deleted < 3 || faultStart != 1 || faultEnd != 1 {
		t.Errorf("rollout %d (%s): %d pods present at the start, %d deleted, fault marked %d/%d times; want at least 3, 3 and once each",
			rec.Rollout, rec.Fault, present, deleted, faultStart, faultEnd)
	}
	if rep.Verdict.Pass != (rec.Promise == "kept") {
		t.Errorf("rollout %d (%s): verdict %+v, promise %s", rec.Rollout, rec.Fault, rep.Verdict, rec.Promise)
	}
}

// recordCampaign writes res with its rollouts' reports, gzipped JSON, to
// $ZERODROP_RECORD_CAMPAIGN when set: labreport's test renders the campaign
// report from such a recording of a real run.
func recordCampaign(t *testing.T, res Result) {
	path := os.Getenv("ZERODROP_RECORD_CAMPAIGN")
	if path == "" {
		return
	}
	rec := struct {
		Result  Result           `json:"result"`
		Reports []*verify.Report `json:"reports"`
	}{Result: res}
	for _, r := range res.PerRollout {
		rec.Reports = append(rec.Reports, r.Report)
	}
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	if err := json.NewEncoder(z).Encode(rec); err != nil {
		t.Fatal(err)
	}
	z.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded the campaign in %s (%d bytes)", path, b.Len())
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
