package labreport

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"zerodrop.dev/zerodrop/internal/lab"
	"zerodrop.dev/zerodrop/internal/verify"
	"zerodrop.dev/zerodrop/internal/verify/htmltest"
)

// Scenario: `zerodrop lab run --html` wrote a real campaign's pages (the
// recorded run of TestLBFaultCampaignKeepsEveryPromise) and a user opens
// each rollout's timeline in a browser (headless Chromium). Expectation:
// every page draws its chart without a JavaScript or console error: a bar
// for every bucket that carried requests, the p50 and p99 latency lines
// across the chart, a marker per event of the rollout's window (the
// rollout, each pod's steps, the fault striking and ending), a lane per pod
// the window saw arrive, each lane drawn, and a pod that arrived and turned
// Ready (or was deleted) in the window shown in more than one state; the
// screenshot has the bars' pixels.
func TestCampaignPagesDrawInChromium(t *testing.T) {
	res := recordedCampaign(t)
	dir := filepath.Join(t.TempDir(), "html")
	if _, err := WriteHTML(dir, []lab.Result{res}, "v1.35.0"); err != nil {
		t.Fatal(err)
	}
	for _, rec := range res.PerRollout {
		t.Run(string(rec.Fault), func(t *testing.T) {
			rep := rec.Report
			page, err := os.ReadFile(filepath.Join(dir, "zerodrop+campaign", "rollout-"+strconv.Itoa(rec.Rollout)+"-"+string(rec.Fault)+".html"))
			if err != nil {
				t.Fatal(err)
			}
			got, img := htmltest.Render(t, page)

			if got.SVGWidth < 1000 || got.SVGHeight < 500 {
				t.Errorf("chart laid out at %.0fx%.0f px", got.SVGWidth, got.SVGHeight)
			}
			busy, bars := 0, 0
			for _, b := range rep.Timeline.Buckets {
				if b.OK+b.Failed > 0 {
					busy++
				}
			}
			for _, n := range got.Bars {
				bars += n
			}
			if busy == 0 || bars < busy {
				t.Errorf("%d bars drawn for %d buckets that carried requests", bars, busy)
			}
			if len(got.Latency) != 2 || got.Latency[0] < 500 || got.Latency[1] < 500 {
				t.Errorf("latency lines of on-screen length %v, want p50 and p99 across the chart", got.Latency)
			}
			markers, faults := 0, 0
			arrived, moved := map[string]bool{}, map[string]bool{}
			for _, e := range rep.Events {
				if e.Type == verify.PodPresent || e.Type == verify.PodCreated {
					arrived[e.Object[len("pod/"):]] = true
				}
				if e.Type == verify.PodCreated || e.Type == verify.PodDeleting {
					moved[e.Object[len("pod/"):]] = true
				}
				if e.Type != verify.PodPresent {
					markers++
				}
				if e.Type == verify.RolloutFault || e.Type == verify.RolloutFaultEnd {
					faults++
				}
			}
			if got.Markers != markers {
				t.Errorf("%d event markers, want %d (the window's events but the pods present at its start)", got.Markers, markers)
			}
			if faults < 2 {
				t.Errorf("the window records %d fault events, want the fault striking and ending", faults)
			}
			if len(got.Lanes) != len(arrived) {
				t.Errorf("%d pod lanes %v, want one for each of the %d pods the window saw", len(got.Lanes), got.Lanes, len(arrived))
			}
			for pod, segs := range got.Lanes {
				if len(segs) == 0 {
					t.Errorf("lane of %s draws nothing", pod)
				}
				if moved[pod] && len(segs) < 2 {
					t.Errorf("lane of %s (created or deleted in the window) shows one state %v", pod, segs)
				}
			}
			// The most drawn bar color is on screen.
			top, most := "", 0
			for c, n := range got.Bars {
				if n > most {
					top, most = c, n
				}
			}
			if n := htmltest.Pixels(img, top); n < 20 {
				t.Errorf("screenshot of the chart has %d pixels of %s, the color of %d bars", n, top, most)
			}
		})
	}
}
