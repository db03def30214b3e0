package verify

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

//go:embed report.html.tmpl
var htmlTemplate string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms": fmtMS, "at": fmtAt, "classes": classCounts,
	"eventKinds": func() []EventKind { return []EventKind{EventPod, EventEndpoint, EventKube, EventRollout, EventLoad} },
}).Parse(htmlTemplate))

// classColor gives each outcome a fixed color in the chart and the legend.
var classColor = map[Class]string{
	ClassOK:      "#4caf50",
	Class502:     "#d32f2f",
	Class503:     "#f57c00",
	Class504:     "#7b1fa2",
	Class5xx:     "#c2185b",
	Class4xx:     "#fbc02d",
	ClassRefused: "#1976d2",
	ClassReset:   "#0097a7",
	ClassEOF:     "#5d4037",
	ClassTimeout: "#455a64",
	ClassOther:   "#9e9e9e",
}

// faultColor marks a fault's start and end.
const faultColor = "#8e24aa"

// eventColor colors an event marker by what it means for traffic.
func eventColor(e Event) string {
	switch {
	case e.Kind == EventRollout && (e.Type == RolloutFault || e.Type == RolloutFaultEnd):
		return faultColor
	case e.Type == PodDeleting || e.Type == PodGone || e.Type == EndpointGone || e.Type == RolloutFailed:
		return "#d32f2f"
	case strings.HasSuffix(e.Detail, "=False") || strings.Contains(e.Detail, "ready=false"):
		return "#f57c00"
	case strings.HasSuffix(e.Detail, "=True") || e.Type == EndpointAdded || e.Type == PodCreated:
		return "#388e3c"
	case e.Kind == EventRollout || e.Kind == EventLoad:
		return "#1565c0"
	}
	return "#757575"
}

// Chart geometry, in SVG user units.
const (
	chartW     = 1100.0
	chartLeft  = 64.0
	chartRight = 16.0
	plotW      = chartW - chartLeft - chartRight
	panelH     = 130.0
	panelGap   = 40.0
	chartTop   = 40.0
	laneH      = 14.0
	laneGap    = 3.0
	// maxLanes bounds the pod lanes drawn (10 rollouts of 3 replicas are
	// 33 pods).
	maxLanes = 60
)

// buildLanes follows each watched pod through its events: from when it was
// first seen (present at the start, or created) to when it was gone (or the
// end of the chart), colored by state.
func buildLanes(r *Report, x func(float64) float64, spanMS float64, top float64) (lanes []podLane, more int) {
	type life struct {
		lane  int
		state int
		since float64
		gone  bool
	}
	pods := map[string]*life{}
	var segs [][]svgRect
	var names []string
	cut := func(l *life, atMS float64) {
		if atMS > l.since {
			y := top + float64(l.lane)*(laneH+laneGap)
			st := podState[l.state]
			segs[l.lane] = append(segs[l.lane], svgRect{X: x(l.since), Y: y, W: x(atMS) - x(l.since), H: laneH, Color: st.Color,
				Title: fmt.Sprintf("%s %s %s–%s", names[l.lane], st.Name, fmtAt(l.since), fmtAt(atMS))})
		}
		l.since = atMS
	}
	for _, e := range r.Events {
		if e.Kind != EventPod {
			continue
		}
		l := pods[e.Object]
		if l == nil {
			if e.Type != PodPresent && e.Type != PodCreated {
				continue // a pod first seen leaving: nothing to draw
			}
			if len(names) == maxLanes {
				more++
				pods[e.Object] = &life{lane: -1}
				continue
			}
			l = &life{lane: len(names), since: math.Max(e.AtMS, 0)}
			pods[e.Object] = l
			names = append(names, strings.TrimPrefix(e.Object, "pod/"))
			segs = append(segs, nil)
			if strings.Contains(e.Detail, "Ready=True") {
				l.state = 1
			}
			if strings.Contains(e.Detail, PodTerminating) {
				l.state = 3
			}
			continue
		}
		if l.lane < 0 || l.gone {
			continue
		}
		next := l.state
		switch {
		case e.Type == PodGone:
			cut(l, e.AtMS)
			l.gone = true
			continue
		case e.Type == PodDeleting:
			next = 3
		case l.state == 3:
		case e.Type == PodCondition && e.Detail == "Ready=True":
			next = 1
		case e.Type == PodCondition && e.Detail == "Ready=False" && l.state == 1:
			next = 2
		}
		if next != l.state {
			cut(l, e.AtMS)
			l.state = next
		}
	}
	for _, l := range pods {
		if l.lane >= 0 && !l.gone {
			cut(l, spanMS)
		}
	}
	for i, name := range names {
		y := top + float64(i)*(laneH+laneGap)
		lanes = append(lanes, podLane{Pod: name, Segs: segs[i]})
		if len(segs[i]) > 0 {
			lanes[i].Label = svgText{X: segs[i][0].X + 3, Y: y + laneH - 3.5, Text: name, Anchor: "start"}
		}
	}
	return lanes, more
}

type svgRect struct {
	X, Y, W, H float64
	Color      string
	Title      string
}

type svgLine struct {
	X1, Y1, X2, Y2 float64
	Color          string
	Title          string
	Dash           bool
}

type svgText struct {
	X, Y   float64
	Text   string
	Anchor string
}

type svgPanel struct {
	Title  string
	Y      float64
	Ticks  []svgText
	Grid   []svgLine
	Rects  []svgRect
	Lines  []string // polyline points
	Colors []string
	Labels []svgText
}

// podLane is one pod's life on the timeline: a segment per state.
type podLane struct {
	Pod   string
	Label svgText
	Segs  []svgRect
}

// podState colors a pod's lane: the states that decide whether it should
// get traffic.
var podState = []struct{ Name, Color string }{
	{"starting", "#cfd8dc"},    // created, not Ready yet
	{"ready", "#a5d6a7"},       // Ready=True
	{"not ready", "#ffcc80"},   // Ready=False after having been Ready
	{"terminating", "#ef9a9a"}, // deletionTimestamp set: preStop, SIGTERM
}

type chart struct {
	W, H      float64
	Panels    []svgPanel
	Lanes     []podLane
	LanesY    float64
	MoreLanes int
	States    []svgRect
	Markers   []svgLine
	XTicks    []svgText
	XGrid     []svgLine
	Legend    []svgRect
	NumEvents int
}

// niceMax rounds a chart's maximum up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func buildChart(r *Report) chart {
	tl := r.Timeline
	n := len(tl.Buckets)
	spanMS := math.Max(float64(n)*tl.BucketMS, r.DurationMS)
	if !(spanMS > 0) || math.IsInf(spanMS, 0) { // a hand-edited or corrupt JSON report
		spanMS = 1
	}
	x := func(atMS float64) float64 { return chartLeft + plotW*atMS/spanMS }
	bw := plotW * tl.BucketMS / spanMS
	c := chart{W: chartW, H: chartTop + 3*(panelH+panelGap) + 10}

	// Panel 1: every request, stacked; panel 2: failures only, on their own
	// scale so a handful of drops is visible next to thousands of successes.
	var maxAll, maxFail, maxLat, minLat float64
	minLat = math.Inf(1)
	for _, b := range tl.Buckets {
		maxAll = math.Max(maxAll, float64(b.OK+b.Failed))
		maxFail = math.Max(maxFail, float64(b.Failed))
		if b.OK+b.Failed > 0 {
			maxLat = math.Max(maxLat, b.P99MS)
			if b.P50MS > 0 {
				minLat = math.Min(minLat, b.P50MS)
			}
		}
	}
	maxAll, maxFail = niceMax(maxAll), niceMax(maxFail)
	perBucket := fmt.Sprintf(" per %g ms", tl.BucketMS)
	all := svgPanel{Title: "requests" + perBucket + " (by outcome)", Y: chartTop}
	fail := svgPanel{Title: "failed requests" + perBucket + " (by class)", Y: chartTop + panelH + panelGap}
	lat := svgPanel{Title: "latency per bucket: p50 (blue) and p99 (red), log scale, from the scheduled time", Y: chartTop + 2*(panelH+panelGap)}
	for _, p := range []*svgPanel{&all, &fail} {
		max := maxAll
		if p == &fail {
			max = maxFail
		}
		for i := 0; i <= 4; i++ {
			y := p.Y + panelH - panelH*float64(i)/4
			p.Grid = append(p.Grid, svgLine{X1: chartLeft, Y1: y, X2: chartLeft + plotW, Y2: y})
			p.Ticks = append(p.Ticks, svgText{X: chartLeft - 6, Y: y + 4, Text: fmt.Sprintf("%g", max*float64(i)/4), Anchor: "end"})
		}
	}
	for _, b := range tl.Buckets {
		if b.OK+b.Failed == 0 {
			continue
		}
		bx := x(b.AtMS)
		title := fmt.Sprintf("%s–%s: ok %d", fmtAt(b.AtMS), fmtAt(b.AtMS+tl.BucketMS), b.OK)
		if b.Failed > 0 {
			title += ", failed " + classCounts(b.Failures)
		}
		title += fmt.Sprintf("; p50 %s, p99 %s", fmtMS(b.P50MS), fmtMS(b.P99MS))
		y := all.Y + panelH
		h := panelH * float64(b.OK) / maxAll
		all.Rects = append(all.Rects, svgRect{X: bx, Y: y - h, W: bw, H: h, Color: classColor[ClassOK], Title: title})
		y -= h
		fy := fail.Y + panelH
		for _, cl := range FailureClasses {
			k := b.Failures[cl]
			if k == 0 {
				continue
			}
			h := panelH * float64(k) / maxAll
			all.Rects = append(all.Rects, svgRect{X: bx, Y: y - h, W: bw, H: h, Color: classColor[cl], Title: title})
			y -= h
			fh := panelH * float64(k) / maxFail
			fail.Rects = append(fail.Rects, svgRect{X: bx, Y: fy - fh, W: math.Max(bw, 1.5), H: fh, Color: classColor[cl], Title: title})
			fy -= fh
		}
	}
	if maxFail <= 1 && len(fail.Rects) == 0 {
		fail.Labels = append(fail.Labels, svgText{X: chartLeft + plotW/2, Y: fail.Y + panelH/2, Text: "no failed request", Anchor: "middle"})
	}

	// Panel 3: latency on a log scale between the decades around the data.
	if maxLat > 0 && !math.IsInf(minLat, 1) {
		lo := math.Pow(10, math.Floor(math.Log10(minLat)))
		hi := math.Pow(10, math.Ceil(math.Log10(maxLat)))
		if hi <= lo {
			hi = lo * 10
		}
		ly := func(v float64) float64 {
			v = math.Max(v, lo)
			return lat.Y + panelH - panelH*math.Log10(v/lo)/math.Log10(hi/lo)
		}
		for d := lo; d <= hi*1.0001; d *= 10 {
			lat.Grid = append(lat.Grid, svgLine{X1: chartLeft, Y1: ly(d), X2: chartLeft + plotW, Y2: ly(d)})
			lat.Ticks = append(lat.Ticks, svgText{X: chartLeft - 6, Y: ly(d) + 4, Text: fmtMS(d), Anchor: "end"})
		}
		for _, q := range []struct {
			color string
			get   func(Bucket) float64
		}{{"#1565c0", func(b Bucket) float64 { return b.P50MS }}, {"#d32f2f", func(b Bucket) float64 { return b.P99MS }}} {
			var pts []string
			for _, b := range tl.Buckets {
				if b.OK+b.Failed == 0 {
					continue
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(b.AtMS)+bw/2, ly(q.get(b))))
			}
			lat.Lines = append(lat.Lines, strings.Join(pts, " "))
			lat.Colors = append(lat.Colors, q.color)
		}
	}
	c.Panels = []svgPanel{all, fail, lat}

	// Pod lanes under the latency panel, when pods were watched.
	bottom := lat.Y + panelH
	c.LanesY = bottom + panelGap
	c.Lanes, c.MoreLanes = buildLanes(r, x, spanMS, c.LanesY)
	if len(c.Lanes) > 0 {
		bottom = c.LanesY + float64(len(c.Lanes))*(laneH+laneGap) - laneGap
		c.H = bottom + 30
	}
	for _, st := range podState {
		c.States = append(c.States, svgRect{Color: st.Color, Title: st.Name})
	}

	// Time axis under the last panel, grid through all.
	step := niceMax(spanMS / 10)
	for i := 0; i <= 20 && float64(i)*step <= spanMS; i++ {
		t := float64(i) * step
		c.XTicks = append(c.XTicks, svgText{X: x(t), Y: bottom + 16, Text: fmt.Sprintf("%g s", t/1000), Anchor: "middle"})
		c.XGrid = append(c.XGrid, svgLine{X1: x(t), Y1: chartTop, X2: x(t), Y2: bottom})
	}
	// One marker per event across every panel; the tooltip says what it is.
	for _, e := range r.Events {
		if e.Type == PodPresent {
			continue
		}
		c.Markers = append(c.Markers, svgLine{X1: x(e.AtMS), Y1: 8, X2: x(e.AtMS), Y2: bottom,
			Color: eventColor(e), Title: fmtAt(e.AtMS) + "  " + e.String(), Dash: e.Kind == EventEndpoint || e.Kind == EventKube})
	}
	c.NumEvents = len(c.Markers)
	for _, cl := range append([]Class{ClassOK}, FailureClasses...) {
		c.Legend = append(c.Legend, svgRect{Color: classColor[cl], Title: string(cl)})
	}
	return c
}

type htmlData struct {
	R       *Report
	Page    HTMLPage
	Chart   chart
	Verdict string
	Colors  map[Class]string
	EvColor func(Event) string
	Watched bool
	Faults  bool
}

// HTMLPage is what a report's page says around the report when it is one
// of several (the lab's campaign: a page per rollout).
type HTMLPage struct {
	// Title replaces the page's title and heading ("zerodrop verify").
	Title string
	// Links are shown above the heading (back to an index, the previous
	// and the next page).
	Links []HTMLLink
}

// HTMLLink is one link of HTMLPage.Links.
type HTMLLink struct {
	Text string
	Href string
}

// WriteHTML writes a self-contained HTML report: summary, the timeline chart
// (inline SVG: requests by outcome, failures by class, latency, with a
// marker per event), the failure episodes and the event list. It fetches
// nothing from the network.
func WriteHTML(w io.Writer, r *Report) error { return WriteHTMLPage(w, r, HTMLPage{}) }

// WriteHTMLPage writes the report as WriteHTML does, with page's title and
// links.
func WriteHTMLPage(w io.Writer, r *Report, page HTMLPage) error {
	v := "PASS"
	if !r.Verdict.Pass {
		v = "FAIL"
	}
	faults := false
	for _, e := range r.Events {
		faults = faults || eventColor(e) == faultColor
	}
	return reportTemplate.Execute(w, htmlData{R: r, Page: page, Chart: buildChart(r), Verdict: v, Colors: classColor, EvColor: eventColor, Watched: watched(r), Faults: faults})
}
