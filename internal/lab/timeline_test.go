package lab

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/verify"
)

// Scenario: a campaign's timeline over two rollouts (lbdown, then none),
// fed as the run feeds it: pods web-a and web-b Ready before the first
// rollout, the first rollout replacing web-a under lbdown with 3 GETs
// refused through the stopped instance, web-b deleted just before the
// second rollout, one POST cut in it. Expectation: one verify report per
// rollout, of that rollout's window only (requests by their scheduled
// time, events by theirs, nothing from before the first rollout); each
// window opens with the pods then present and their state (web-b
// terminating in the second); the fault's start and end are marked; the
// summary holds the record's counts per stream; each verdict is the
// record's (promise kept despite the victim's refusals; a cut POST fails
// the plain rollout).
func TestCampaignTimelineCutsAReportPerRollout(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tl := &timeline{pods: map[string]podLook{}}
	pod := func(s float64, name, typ, detail string) {
		tl.event(verify.Event{Time: at(s), Kind: verify.EventPod, Object: "pod/" + name, Type: typ, Detail: detail})
	}
	// Load from 0 s to 20 s: 100 GET/s, 10 POST/s, 1 slow GET/s; the
	// refused GETs at 5 s, the cut POST at 15 s.
	load := func(from, to float64) {
		for ms := int(from * 1000); ms < int(to*1000); ms += 10 {
			due := t0.Add(time.Duration(ms) * time.Millisecond)
			r := verify.Result{Scheduled: due, Sent: due, Latency: 2 * time.Millisecond, Code: 200, Class: verify.ClassOK}
			if ms >= 5000 && ms < 5030 {
				r.Code, r.Class = 0, verify.ClassRefused
			}
			tl.add(r, StreamMain)
			if ms%100 == 0 {
				p := r
				p.Code, p.Class = 200, verify.ClassOK
				if ms == 15000 {
					p.Code, p.Class = 0, verify.ClassEOF
				}
				tl.add(p, StreamPost)
			}
			if ms%1000 == 0 {
				s := r
				s.Code, s.Class, s.Latency = 200, verify.ClassOK, 6*time.Second
				tl.add(s, StreamSlow) // a success: not on the timeline
			}
		}
	}
	pod(0, "web-a", verify.PodPresent, "phase=Running ContainersReady=True Ready=True")
	pod(0, "web-b", verify.PodPresent, "phase=Running ContainersReady=True Ready=True")
	load(0, 2)

	tl.openRollout(at(2))
	tl.rollout(at(2), verify.RolloutStart, "rollout 1/2: restart", "")
	pod(2.5, "web-c", verify.PodCreated, "phase=Pending")
	pod(4, "web-c", verify.PodCondition, "Ready=True")
	pod(4.1, "web-a", verify.PodDeleting, "grace 30s")
	tl.fault(at(2), FaultEvent{Rollout: 1, Kind: FaultLBDown, At: 0, Took: 5 * time.Second})
	pod(7, "web-a", verify.PodGone, "")
	load(2, 11)
	pod(10.5, "web-b", verify.PodDeleting, "grace 30s")

	tl.openRollout(at(11))
	tl.rollout(at(11), verify.RolloutStart, "rollout 2/2: restart", "")
	load(11, 20)

	o := RunOptions{Rate: 100, SlowRate: 1, SlowLatency: 6 * time.Second, PostRate: 10, Namespace: "zd-zerodrop"}
	counts := func(get, post, slow uint64, getFail, postFail uint64) []StreamCount {
		sc := []StreamCount{{Name: StreamMain, Method: "GET", Requests: get, Failed: getFail}, {Name: StreamSlow, Method: "GET", Requests: slow},
			{Name: StreamPost, Method: "POST", Requests: post, Failed: postFail}}
		if getFail > 0 {
			sc[0].FailuresByClass = map[string]uint64{"refused": getFail}
		}
		if postFail > 0 {
			sc[2].FailuresByClass = map[string]uint64{"eof": postFail}
		}
		return sc
	}
	res := Result{Scenario: "zerodrop", Rollouts: 2, FaultCycle: []Fault{FaultLBDown, FaultNone}, Started: t0, Ended: at(20),
		PerRollout: []RolloutRecord{
			{Rollout: 1, Fault: FaultLBDown, Started: at(2), Seconds: 6, Requests: 999, Failed: 3, FailedVictimDown: 3,
				Streams: counts(900, 90, 9, 3, 0), Promise: "kept", StuckGates: []string{}, Leftovers: []string{}},
			{Rollout: 2, Started: at(11), Seconds: 5, Requests: 999, Failed: 1, Streams: counts(900, 90, 9, 0, 1), StuckGates: []string{}, Leftovers: []string{}},
		}}
	tl.report(&res, []string{"127.0.0.1:8080", "127.0.0.1:8081"}, o)
	if res.Report != nil {
		t.Error("a campaign got a report of the whole run; want one per rollout only")
	}
	first, second := res.PerRollout[0].Report, res.PerRollout[1].Report
	if first == nil || second == nil {
		t.Fatalf("reports %v %v, want one per rollout", first, second)
	}

	// Each window holds its own requests only: 9 s and 9 s of 100 GET/s
	// and 10 POST/s on the chart (the slow stream's successes left out).
	onChart := func(r *verify.Report) (n int64) {
		for _, b := range r.Timeline.Buckets {
			n += b.OK + b.Failed
		}
		return n
	}
	if !first.Start.Equal(at(2)) || onChart(first) != 990 || !second.Start.Equal(at(11)) || onChart(second) != 990 {
		t.Errorf("windows: start %s with %d requests charted, start %s with %d; want 2 s and 11 s, 990 each",
			first.Start.Sub(t0), onChart(first), second.Start.Sub(t0), onChart(second))
	}
	// The summary holds the record's counts, stream by stream.
	if first.Requests != 999 || first.Failed != 3 || len(first.Streams) != 3 || first.Streams[2].Name != StreamPost || first.Streams[2].Method != "POST" ||
		first.Streams[2].URL != postPath || first.Streams[0].Failures[verify.ClassRefused] != 3 {
		t.Errorf("first summary: %d requests, %d failed, streams %+v; want the record's 999, 3 refused GETs", first.Requests, first.Failed, first.Streams)
	}

	events := func(r *verify.Report) string {
		var b strings.Builder
		for _, e := range r.Events {
			b.WriteString(e.Object + " " + e.Type + " " + e.Detail + "\n")
		}
		return b.String()
	}
	ev1, ev2 := events(first), events(second)
	for _, want := range []string{
		"pod/web-a present Ready=True\n", "pod/web-b present Ready=True\n", "pod/web-c created", "pod/web-a gone",
		"deployment/web fault fault lbdown strikes", "deployment/web fault_end fault lbdown over after 5s", "pod/web-b deleting",
	} {
		if !strings.Contains(ev1, want) {
			t.Errorf("first window's events lack %q:\n%s", want, ev1)
		}
	}
	if strings.Contains(ev1, "rollout 2/2") {
		t.Errorf("first window holds the second rollout's events:\n%s", ev1)
	}
	for _, want := range []string{"pod/web-b present Ready=True terminating\n", "pod/web-c present Ready=True\n", "rollout 2/2"} {
		if !strings.Contains(ev2, want) {
			t.Errorf("second window's events lack %q:\n%s", want, ev2)
		}
	}
	if strings.Contains(ev2, "web-a") || strings.Contains(ev2, "lbdown") {
		t.Errorf("second window holds what was gone before it:\n%s", ev2)
	}
	for _, e := range first.Events {
		if e.Type == verify.RolloutFault && e.AtMS != 0 || e.Type == verify.RolloutFaultEnd && e.AtMS != 5000 {
			t.Errorf("fault marker %s at %.0f ms; want the start at 0 and the end at 5000", e.Type, e.AtMS)
		}
	}

	if v := first.Verdict; !v.Pass || !strings.Contains(v.Reason, "promise kept: 3 of 999 requests failed, every one through the stopped instance") {
		t.Errorf("first verdict %+v; want a pass: the promise was kept", v)
	}
	if v := second.Verdict; v.Pass || !strings.Contains(v.Reason, "1 of 999 requests failed") {
		t.Errorf("second verdict %+v; want a failure: a POST was cut", v)
	}

	// verify's renderer draws the second window's lanes from its opening
	// state: web-b terminating from the start, web-c ready.
	var page bytes.Buffer
	if err := verify.WriteHTML(&page, second); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"web-b terminating 0.00 s", "web-c ready 0.00 s"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("second page's lanes lack %q", want)
		}
	}
}

// Scenario: a campaign's third rollout starts. Expectation: the first
// rollout's window is closed into its report (its recorder's histograms
// freed), the second still records; a request of the first window that
// ends only now is left out, not counted in another window.
func TestCampaignTimelineClosesAWindowTwoRolloutsLater(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	tl := &timeline{pods: map[string]podLook{}}
	ok := func(at time.Time) verify.Result {
		return verify.Result{Scheduled: at, Sent: at, Latency: time.Millisecond, Code: 200, Class: verify.ClassOK}
	}
	tl.openRollout(t0)
	tl.add(ok(t0.Add(time.Second)), StreamMain)
	tl.openRollout(t0.Add(30 * time.Second))
	if tl.windows[0].rec == nil {
		t.Fatal("the first window closed one rollout later; want it open until the rollout after")
	}
	tl.openRollout(t0.Add(60 * time.Second))
	if w := tl.windows[0]; w.rec != nil || w.rep == nil || w.rep.Requests != 1 {
		t.Fatalf("first window %+v; want closed into a report of its 1 request", w)
	}
	if tl.windows[1].rec == nil || tl.windows[2].rec == nil {
		t.Fatal("the second or third window closed too early")
	}
	tl.add(ok(t0.Add(2*time.Second)), StreamMain) // late
	if got := tl.windows[0].rep.Requests; got != 1 {
		t.Errorf("first window's report has %d requests after a late one, want 1", got)
	}
	if tl.windows[1].rec.Report().Requests != 0 {
		t.Error("a late request of the first window landed in the second")
	}
}
