package verify

// This file renders the HTML report in a real browser: headless Chromium
// (Debian's chromium, installed by scripts/deps.sh), driven by chromedp.
// It skips outside CI when Chromium is missing and fails in CI.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"zerodrop.dev/zerodrop/internal/testenv"
)

// chromium finds the headless browser: $ZERODROP_CHROMIUM, else Debian's
// chromium (or another build under a usual name) on PATH.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ZERODROP_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Unavailable(t, "headless Chromium to render the HTML report: no chromium, chromium-browser, google-chrome or headless-shell on PATH "+
		"and ZERODROP_CHROMIUM unset (Debian: apt-get install chromium; scripts/deps.sh installs it)")
	return ""
}

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

// drawn is what the page reports about its own rendering.
type drawn struct {
	SVGWidth, SVGHeight float64
	// Bars counts the visible bars (non-zero size) by fill color.
	Bars map[string]int
	// Latency has the on-screen length of each latency line.
	Latency []float64
	Markers int
	// Lanes maps each pod lane to its segments' fills, left to right.
	Lanes map[string][]string
	// HitBar is the fill of the element drawn at the center of the first
	// 502 bar of the failures panel: that bar itself unless covered.
	HitBar string
	// PodRowsShown counts the visible pod rows of the event list after
	// its "pod" filter was unticked.
	PodRowsShown, PodRows int
}

const inspectJS = `(() => {
  const svg = document.querySelector('svg#timeline');
  const box = svg.getBoundingClientRect();
  const bars = {};
  for (const r of svg.querySelectorAll('rect.bar')) {
    const b = r.getBBox();
    if (b.width > 0 && b.height > 0) bars[r.getAttribute('fill')] = (bars[r.getAttribute('fill')] || 0) + 1;
  }
  const latency = [...svg.querySelectorAll('polyline.latency')].map(p => p.getTotalLength());
  const lanes = {};
  for (const g of svg.querySelectorAll('#pods g.lane')) {
    lanes[g.dataset.pod] = [...g.querySelectorAll('rect.pod-state')].filter(r => r.getBBox().width > 0).map(r => r.getAttribute('fill'));
  }
  const fail = [...svg.querySelectorAll('g.panel')][1].querySelector('rect.bar[fill="#d32f2f"]');
  let hit = '';
  if (fail) {
    const b = fail.getBoundingClientRect();
    const el = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
    hit = el ? (el.getAttribute('fill') || el.tagName) : '';
  }
  const box2 = document.querySelector('#filters input[data-kind="pod"]');
  box2.click();
  const rows = [...document.querySelectorAll('.events tr[data-kind="pod"]')];
  return {SVGWidth: box.width, SVGHeight: box.height, Bars: bars, Latency: latency,
    Markers: svg.querySelectorAll('line.marker').length, Lanes: lanes, HitBar: hit,
    PodRows: rows.length, PodRowsShown: rows.filter(r => r.offsetParent !== null).length};
})()`

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
	exe := chromium(t)
	rep := rolloutReport(t)
	var page bytes.Buffer
	if err := WriteHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(file, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.NoSandbox, // tests run as root in CI, where Chromium's sandbox refuses to start
		chromedp.WindowSize(1280, 1000), chromedp.UserDataDir(t.TempDir()),
		// Chromium keeps scratch files in $TMPDIR: the test's own, removed with it.
		chromedp.Env("TMPDIR="+t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	var mu sync.Mutex
	var problems []string
	err := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			problems = append(problems, fmt.Sprintf("exception at line %d: %s", d.LineNumber, msg))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value))
				}
				problems = append(problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				problems = append(problems, fmt.Sprintf("log %s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})
	if err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}

	err = chromedp.Do(bctx, chromedp.Navigate("file://"+file), chromedp.WaitVisible(chromedp.CSS("svg#timeline")))
	if err != nil {
		t.Fatalf("opening %s in %s: %v", file, exe, err)
	}
	shot, err := chromedp.Run(bctx, chromedp.Screenshot(chromedp.CSS("svg#timeline")))
	if err != nil {
		t.Fatalf("screenshot of the chart: %v", err)
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[drawn](inspectJS))
	if err != nil {
		t.Fatalf("inspecting the chart: %v", err)
	}
	mu.Lock()
	for _, p := range problems {
		t.Errorf("browser reported %s", p)
	}
	mu.Unlock()

	if got.SVGWidth < 1000 || got.SVGHeight < 500 {
		t.Errorf("chart laid out at %.0fx%.0f px", got.SVGWidth, got.SVGHeight)
	}
	ok, red, reset := classColor[ClassOK], classColor[Class502], classColor[ClassReset]
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
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	for _, c := range []string{ok, red, reset, ready, terminating, starting} {
		if n := pixels(img, c); n < 20 {
			t.Errorf("screenshot of the chart has %d pixels of %s, want bars of it", n, c)
		}
	}
	if t.Failed() {
		raw, _ := json.MarshalIndent(got, "", "  ")
		t.Logf("page reported: %s", raw)
	}
}

// pixels counts the pixels of img within 2 of the color "#rrggbb" per
// channel.
func pixels(img image.Image, hex string) int {
	var want color.RGBA
	fmt.Sscanf(hex, "#%02x%02x%02x", &want.R, &want.G, &want.B)
	near := func(a uint32, b uint8) bool { d := int(a>>8) - int(b); return d >= -2 && d <= 2 }
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r, want.R) && near(g, want.G) && near(bl, want.B) {
				n++
			}
		}
	}
	return n
}
