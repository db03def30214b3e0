// Package htmltest opens verify's HTML report (verify.WriteHTML) in a real
// browser, headless Chromium (Debian's chromium, installed by
// scripts/deps.sh) driven by chromedp, and returns what the page reports
// about its own drawing, a screenshot of the chart and every JavaScript or
// console error. Tests of the report (internal/verify) and of the lab's
// per-rollout pages (internal/lab) share it. It takes the page's bytes, not
// a verify.Report, so that verify's own tests can import it.
package htmltest

import (
	"bytes"
	"context"
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

// Chromium finds the headless browser: $ZERODROP_CHROMIUM, else Debian's
// chromium (or another build under a usual name) on PATH. Missing, the test
// skips outside CI and fails in CI (testenv.Unavailable).
func Chromium(t testing.TB) string {
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

// Drawn is what the page reports about its own rendering.
type Drawn struct {
	SVGWidth, SVGHeight float64
	// Bars counts the visible bars (non-zero size) by fill color.
	Bars map[string]int
	// Latency has the on-screen length of each latency line.
	Latency []float64
	Markers int
	// Lanes maps each pod lane to its segments' fills, left to right.
	Lanes map[string][]string
	// HitBar is the fill of the element drawn at the center of the first
	// 502 bar (fill FailColor) of the failures panel: that bar itself
	// unless covered; empty when the panel has no such bar.
	HitBar string
	// PodRowsShown counts the visible pod rows of the event list after
	// its "pod" filter was unticked.
	PodRowsShown, PodRows int
}

// FailColor is the fill of 502 bars, which HitBar looks for.
const FailColor = "#d32f2f"

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
  const panels = [...svg.querySelectorAll('g.panel')];
  const fail = panels.length > 1 ? panels[1].querySelector('rect.bar[fill="` + FailColor + `"]') : null;
  let hit = '';
  if (fail) {
    const b = fail.getBoundingClientRect();
    const el = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
    hit = el ? (el.getAttribute('fill') || el.tagName) : '';
  }
  const box2 = document.querySelector('#filters input[data-kind="pod"]');
  if (box2) box2.click();
  const rows = [...document.querySelectorAll('.events tr[data-kind="pod"]')];
  return {SVGWidth: box.width, SVGHeight: box.height, Bars: bars, Latency: latency,
    Markers: svg.querySelectorAll('line.marker').length, Lanes: lanes, HitBar: hit,
    PodRows: rows.length, PodRowsShown: rows.filter(r => r.offsetParent !== null).length};
})()`

// Render opens page (an HTML report) in headless Chromium at 1280x1000,
// waits for the chart (svg#timeline), takes a screenshot of it and
// inspects it. Every JavaScript exception, console error and browser log
// error is reported with t.Errorf; a page that does not open or draw fails
// the test. Bounded at 90 s; the browser, its profile and scratch files are
// removed before Render returns.
func Render(t testing.TB, page []byte) (Drawn, image.Image) {
	t.Helper()
	exe := Chromium(t)
	file := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(file, page, 0o644); err != nil {
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
	if err := chromedp.Do(bctx, chromedp.Navigate("file://"+file), chromedp.WaitVisible(chromedp.CSS("svg#timeline"))); err != nil {
		t.Fatalf("opening %s in %s: %v", file, exe, err)
	}
	shot, err := chromedp.Run(bctx, chromedp.Screenshot(chromedp.CSS("svg#timeline")))
	if err != nil {
		t.Fatalf("screenshot of the chart: %v", err)
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[Drawn](inspectJS))
	if err != nil {
		t.Fatalf("inspecting the chart: %v", err)
	}
	mu.Lock()
	for _, p := range problems {
		t.Errorf("browser reported %s", p)
	}
	mu.Unlock()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return got, img
}

// Pixels counts the pixels of img within 2 of the color "#rrggbb" per
// channel.
func Pixels(img image.Image, hex string) int {
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
