package verify

// This file renders the HTML report in a real browser: headless Chromium
// (Debian's chromium, installed by scripts/deps.sh), driven by chromedp.
// It skips outside CI when Chromium is missing and fails in CI.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/verify/htmltest"
)

// rolloutReport records a rolling update of two pods, 10 s at 100 req/s:
// web-old-a and web-old-b serve from the start; web-new-c is created at 1 s
// and Ready at 2 s; web-old-a is deleted at 3.6 s and gone at 6 s, and the
// requests scheduled from 4.0 s to 4.5 s get 502 (5 buckets), two of them
// a connection reset instead.
func rolloutReport(t *testing.T) *Report {
	t.Helper()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	rec := NewRecorder(t0, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for _, e := range []Event{
		{Time: at(0), Kind: EventPod, Object: "pod/web-old-a", Type: PodPresent, Detail: "phase=Running ContainersReady=True Ready=True"},
		{Time: at(0), Kind: EventPod, Object: "pod/web-old-b", Type: PodPresent, Detail: "phase=Running ContainersReady=True Ready=True"},
		{Time: at(0.9), Kind: EventRollout, Object: "deployment/web", Type: RolloutStart, Detail: "restart deployment/web"},
		{Time: at(1), Kind: EventPod, Object: "pod/web-new-c", Type: PodCreated, Detail: "phase=Pending"},
		{Time: at(2), Kind: EventPod, Object: "pod/web-new-c", Type: PodCondition, Detail: "Ready=True"},
		{Time: at(2.1), Kind: EventEndpoint, Object: "pod/web-new-c", Type: EndpointAdded, Detail: "ready=true serving=true terminating=false"},
		{Time: at(3.6), Kind: EventPod, Object: "pod/web-old-a", Type: PodDeleting, Detail: "grace 30s"},
		{Time: at(3.7), Kind: EventPod, Object: "pod/web-old-a", Type: PodCondition, Detail: "Ready=False"},
		{Time: at(6), Kind: EventPod, Object: "pod/web-old-a", Type: PodGone},
		{Time: at(6.1), Kind: EventRollout, Object: "deployment/web", Type: RolloutClean, Detail: "no old pod left"},
	} {
		rec.AddEvent(e)
	}
	for i := range 1000 {
		due := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		r := Result{Seq: uint64(i), Scheduled: due, Sent: due, Latency: time.Duration(1+i%5) * time.Millisecond, Code: 200, Class: ClassOK}
		switch {
		case i == 400 || i == 401:
			r.Code, r.Class, r.Error = 0, ClassReset, "read: connection reset by peer"
		case i > 401 && i < 450:
			r.Code, r.Class = 502, Class502
		}
		rec.Add(r)
	}
	rep := rec.Report()
	rep.Config = ReportConfig{Method: "GET", URL: "http://127.0.0.1:8080/", Model: "open", Rate: 100, KeepAlive: true, TimeoutMS: 5000, DurationMS: 10000, BucketMS: 100, MaxFailures: "0"}
	rep.Verdict = verdict(rep, Threshold{})
	return rep
}

// Scenario: the report of a rollout with a 502 burst after a pod's
// deletion, opened in headless Chromium. Expectation: the chart is drawn:
// a success bar per bucket, 502 and reset bars in both request panels
// (and the failures panel's red bar is what is on screen at its place),
// two latency lines of real length, a marker per event, a lane per pod
// with its states in order (the deleted pod: ready, terminating, then
// gone before the end), pixels of the bars' colors in a screenshot of the
// chart, the event filter working, and no JavaScript error or console
// error.
func TestHTMLReportDrawsInChromium(t *testing.T) {
	rep := rolloutReport(t)
	var page bytes.Buffer
	if err := WriteHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	got, img := htmltest.Render(t, page.Bytes())

	if got.SVGWidth < 1000 || got.SVGHeight < 500 {
		t.Errorf("chart laid out at %.0fx%.0f px", got.SVGWidth, got.SVGHeight)
	}
	ok, red, reset := classColor[ClassOK], classColor[Class502], classColor[ClassReset]
	if red != htmltest.FailColor {
		t.Fatalf("502 bars are %s, htmltest looks for %s", red, htmltest.FailColor)
	}
	// 95 buckets with successes (the 5 from 4.0 s failed whole); 5 with
	// 502s and 1 with resets, each in the all-requests and the failures
	// panel.
	if got.Bars[ok] != 95 || got.Bars[red] != 10 || got.Bars[reset] != 2 {
		t.Errorf("bars by color %v, want %s:95 %s:10 %s:2", got.Bars, ok, red, reset)
	}
	if got.HitBar != red {
		t.Errorf("at the first 502 bar of the failures panel the page shows %q, want the bar (%s)", got.HitBar, red)
	}
	if len(got.Latency) != 2 || got.Latency[0] < 500 || got.Latency[1] < 500 {
		t.Errorf("latency lines of on-screen length %v, want p50 and p99 across the chart", got.Latency)
	}
	if want := len(rep.Events) - 2; got.Markers != want { // the two pods present at the start are not markers
		t.Errorf("%d event markers, want %d", got.Markers, want)
	}
	starting, ready, notReady, terminating := podState[0].Color, podState[1].Color, podState[2].Color, podState[3].Color
	_ = notReady // a terminating pod stays terminating when Ready turns False
	wantLanes := map[string][]string{
		"web-old-a": {ready, terminating},
		"web-old-b": {ready},
		"web-new-c": {starting, ready},
	}
	if fmt.Sprint(got.Lanes) != fmt.Sprint(wantLanes) {
		t.Errorf("pod lanes %v, want %v", got.Lanes, wantLanes)
	}
	if got.PodRows == 0 || got.PodRowsShown != 0 {
		t.Errorf("after unticking \"pod\", %d of %d pod rows still shown", got.PodRowsShown, got.PodRows)
	}

	// The pixels: the screenshot of the chart has the bars' and lanes' colors.
	for _, c := range []string{ok, red, reset, ready, terminating, starting} {
		if n := htmltest.Pixels(img, c); n < 20 {
			t.Errorf("screenshot of the chart has %d pixels of %s, want bars of it", n, c)
		}
	}
	if t.Failed() {
		raw, _ := json.MarshalIndent(got, "", "  ")
		t.Logf("page reported: %s", raw)
	}
}
