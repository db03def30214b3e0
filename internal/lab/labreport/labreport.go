// Package labreport writes the HTML of a `zerodrop lab run`: verify's
// report of every scenario run (its timeline of requests, failures, pod and
// endpoint events) and an index page with the scenario table linking to
// them. A fault campaign (`--campaign N`) gets a page per rollout instead,
// each verify's report of that rollout's window, and a section of the
// index: the summary by fault and the list of rollouts, linking to them.
// Every page is self-contained: it can be opened from disk, mailed or
// published as a CI artifact.
package labreport

import (
	"bytes"
	"fmt"
	"html/template"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"zerodrop.dev/zerodrop/internal/lab"
	"zerodrop.dev/zerodrop/internal/verify"
)

// IndexFile is the name of the index page in the directory.
const IndexFile = "index.html"

// Page is one scenario run's entry on the index.
type Page struct {
	Result lab.Result
	// File is the run's report, relative to the directory; "" when the run
	// has no report (Result.Report unset).
	File string
	// Campaign is the run's section of the index when it is a fault
	// campaign (Result.FaultCycle set), nil otherwise.
	Campaign *Campaign
}

// Campaign is a fault campaign's section of the index.
type Campaign struct {
	// Anchor is the section's id on the index.
	Anchor string
	// Faults are the summary by fault (lab.Result.SummaryByFault), every
	// fault of the cycle in its order.
	Faults []FaultRow
	// Rollouts are the campaign's rollouts in order.
	Rollouts []RolloutRow
}

// FaultRow is one fault's line of a campaign's summary.
type FaultRow struct {
	lab.FaultSummary
	// Promise is the fault's promise (lab.Fault.Promise), "" for a fault
	// without one.
	Promise string
	// Links are the fault's rollouts.
	Links []RolloutRow
}

// RolloutRow is one rollout of a campaign.
type RolloutRow struct {
	lab.RolloutRecord
	// File is its page, relative to the directory; "" when it has no
	// report.
	File string
}

// Broken reports whether the rollout broke its fault's promise, or (for a
// fault without one) failed a request, left something stuck or in
// HAProxy, or ended in an error.
func (r RolloutRow) Broken() bool {
	if r.Promise != "" {
		return r.Promise != "kept"
	}
	return r.Failed > 0 || len(r.StuckGates) > 0 || len(r.Leftovers) > 0 || r.Error != ""
}

// WriteHTML writes one report per result that has one (Result.Report) into
// dir, named after the run ("zerodrop+kill.html"), one per rollout of a
// campaign that has them (RolloutRecord.Report) into a directory named
// after the run ("zerodrop+campaign/rollout-007-lbdown.html", the number
// padded to the campaign's width), and the index page (IndexFile) with the
// scenario table and each campaign's section linking to them. It creates
// dir and returns the index's path.
func WriteHTML(dir string, results []lab.Result, kubernetes string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("html report directory: %w", err)
	}
	pages := make([]Page, len(results))
	used := map[string]bool{IndexFile: true}
	for i, r := range results {
		pages[i].Result = r
		name := fileName(r.Name(), used)
		if len(r.FaultCycle) > 0 {
			c, err := writeCampaign(dir, strings.TrimSuffix(name, ".html"), r)
			if err != nil {
				return "", err
			}
			pages[i].Campaign = c
		}
		if r.Report == nil {
			continue
		}
		var b bytes.Buffer
		if err := verify.WriteHTML(&b, r.Report); err != nil {
			return "", fmt.Errorf("html report of %s: %w", r.Name(), err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return "", fmt.Errorf("html report of %s: %w", r.Name(), err)
		}
		pages[i].File = name
	}
	var b bytes.Buffer
	if err := indexTemplate.Execute(&b, indexData{Pages: pages, Kubernetes: kubernetes, Written: time.Now()}); err != nil {
		return "", fmt.Errorf("html index: %w", err)
	}
	index := filepath.Join(dir, IndexFile)
	if err := os.WriteFile(index, b.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("html index: %w", err)
	}
	return index, nil
}

// writeCampaign writes a page per rollout of campaign r that has a report
// into dir/sub and returns the campaign's section of the index.
func writeCampaign(dir, sub string, r lab.Result) (*Campaign, error) {
	// No "+" in the anchor: html/template would escape it in the link.
	c := &Campaign{Anchor: "campaign-" + strings.ReplaceAll(sub, "+", "-")}
	width := len(fmt.Sprint(max(r.Rollouts, len(r.PerRollout))))
	for _, rec := range r.PerRollout {
		row := RolloutRow{RolloutRecord: rec}
		if rec.Report != nil {
			row.File = path.Join(sub, fmt.Sprintf("rollout-%0*d-%s.html", width, rec.Rollout, lab.FaultName(rec.Fault)))
		}
		c.Rollouts = append(c.Rollouts, row)
	}
	if len(c.Rollouts) > 0 {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("html report of %s: %w", r.Name(), err)
		}
	}
	for i, row := range c.Rollouts {
		if row.File == "" {
			continue
		}
		// Links from dir/sub: back to the campaign's section, and the
		// rollouts before and after that have a page.
		links := []verify.HTMLLink{{Text: "↑ " + r.Name() + " (all rollouts, by fault)", Href: "../" + IndexFile + "#" + c.Anchor}}
		for j := i - 1; j >= 0; j-- {
			if p := c.Rollouts[j]; p.File != "" {
				links = append(links, verify.HTMLLink{Text: fmt.Sprintf("← rollout %d (%s)", p.Rollout, lab.FaultName(p.Fault)), Href: href(path.Base(p.File))})
				break
			}
		}
		for _, n := range c.Rollouts[i+1:] {
			if n.File != "" {
				links = append(links, verify.HTMLLink{Text: fmt.Sprintf("rollout %d (%s) →", n.Rollout, lab.FaultName(n.Fault)), Href: href(path.Base(n.File))})
				break
			}
		}
		title := fmt.Sprintf("%s rollout %d/%d: %s", r.Name(), row.Rollout, r.Rollouts, lab.FaultName(row.Fault))
		var b bytes.Buffer
		if err := verify.WriteHTMLPage(&b, row.Report, verify.HTMLPage{Title: title, Links: links}); err != nil {
			return nil, fmt.Errorf("html report of %s rollout %d: %w", r.Name(), row.Rollout, err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(row.File)), b.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("html report of %s rollout %d: %w", r.Name(), row.Rollout, err)
		}
	}
	byNumber := map[int]RolloutRow{}
	for _, row := range c.Rollouts {
		byNumber[row.Rollout] = row
	}
	for _, s := range r.SummaryByFault() {
		f := FaultRow{FaultSummary: s}
		if p, ok := s.Fault.Promise(); ok {
			f.Promise = p.Promise
		}
		for _, n := range s.RolloutNumbers {
			f.Links = append(f.Links, byNumber[n])
		}
		c.Faults = append(c.Faults, f)
	}
	return c, nil
}

// href escapes a path relative to the directory, segment by segment.
func href(file string) string {
	parts := strings.Split(file, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// fileName names a run's page after the run, made safe for any file system
// and unique among the pages already named.
func fileName(run string, used map[string]bool) string {
	base := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '+', r == '_', r == '.':
			return r
		}
		return '_'
	}, run)
	name := base + ".html"
	for n := 2; used[name]; n++ {
		name = fmt.Sprintf("%s-%d.html", base, n)
	}
	used[name] = true
	return name
}

type indexData struct {
	Pages      []Page
	Kubernetes string
	Written    time.Time
}

var indexTemplate = template.Must(template.New("index").Funcs(template.FuncMap{
	"href":  href,
	"fault": lab.FaultName,
	"perRollout": func(xs []uint64) string {
		if len(xs) == 0 {
			return "-"
		}
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = fmt.Sprint(x)
		}
		return strings.Join(s, " ")
	},
	"byClass": func(m map[string]uint64) string {
		if len(m) == 0 {
			return "-"
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
		return strings.Join(parts, " ")
	},
	"rolloutTime": func(r lab.Result) string { return r.RolloutDuration().Round(100 * time.Millisecond).String() },
	// failed counts a rollout's failed requests of one method.
	"failed": func(rec lab.RolloutRecord, method string) uint64 {
		var n uint64
		for _, st := range rec.Streams {
			if st.Method == method {
				n += st.Failed
			}
		}
		return n
	},
	"sec":  func(s float64) string { return fmt.Sprintf("%.1f s", s) },
	"join": func(xs []string) string { return strings.Join(xs, ", ") },
}).Parse(indexHTML))

const indexHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zerodrop lab run</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #212121; max-width: 1280px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 4px; }
h3 { font-size: 14px; margin: 20px 0 4px; }
table { border-collapse: collapse; margin-top: 12px; }
td, th { padding: 3px 12px 3px 0; text-align: left; vertical-align: top; }
th { font-weight: 600; border-bottom: 1px solid #ccc; }
td.num, th.num { text-align: right; white-space: nowrap; }
th.wrap { white-space: normal; max-width: 6em; }
th.group { text-align: center; border-bottom: 1px solid #ccc; }
tr.failed td.failed, td.bad, a.bad { color: #c62828; font-weight: 600; }
td.good { color: #2e7d32; }
tr.unreached td { color: #9e9e9e; }
.muted { color: #757575; }
.small { font-size: 12px; }
dt { font-weight: 600; margin-top: 6px; }
dd { margin-left: 16px; }
</style>
</head>
<body>
<h1>zerodrop lab run</h1>
<div class="muted">{{len .Pages}} scenario run(s){{if .Kubernetes}} on Kubernetes {{.Kubernetes}}{{end}} · written {{.Written.Format "2006-01-02 15:04:05 MST"}}.
Each scenario's page shows its timeline: requests by outcome, failures by class, latency, and the pod, endpoint and rollout events; a fault campaign has a page per rollout.</div>
<table id="scenarios">
<tr><th>scenario</th><th class="num">rollouts</th><th class="num">requests</th><th class="num">failed</th><th class="num">failed/rollout</th><th>failures by class</th><th class="num">rollout time</th><th class="num">p50</th><th class="num">p99</th><th>what it does</th></tr>
{{range .Pages}}{{$r := .Result}}<tr{{if $r.Failed}} class="failed"{{end}}>
<td>{{if .File}}<a href="{{href .File}}">{{$r.Name}}</a>{{else if .Campaign}}<a href="#{{.Campaign.Anchor}}">{{$r.Name}}</a>{{else}}{{$r.Name}} <span class="muted">(no timeline)</span>{{end}}</td>
<td class="num">{{$r.Rollouts}}</td><td class="num">{{$r.Requests}}</td><td class="num failed">{{$r.Failed}}</td>
<td class="num">{{perRollout $r.FailedPerRollout}}</td><td>{{byClass $r.FailuresByClass}}</td><td class="num">{{rolloutTime $r}}</td>
<td class="num">{{printf "%.1f" $r.LatencyP50ms}} ms</td><td class="num">{{printf "%.1f" $r.LatencyP99ms}} ms</td><td class="muted">{{$r.Summary}}</td>
</tr>
{{end}}</table>
<p class="muted">failed/rollout counts the failed requests from each rollout's start to the next one's. Latency: the main stream's successful requests.</p>
{{range .Pages}}{{$r := .Result}}{{with .Campaign}}
<h2 id="{{.Anchor}}">{{$r.Name}}: {{len .Rollouts}} of {{$r.Rollouts}} rollouts, by fault</h2>
<div class="muted">One deployed scenario ({{$r.Scenario}}) rolled again and again, each rollout under the next fault of the cycle. A rollout's counts run from its start to the next one's; its page is verify's timeline of that window, with the fault's start and end marked.</div>
<table class="faults">
<tr><th rowspan="2">fault</th><th rowspan="2">rollouts</th><th rowspan="2" class="num">requests</th><th colspan="5" class="group">failed requests</th><th rowspan="2" class="wrap">promise kept</th><th rowspan="2" class="num wrap">gates opened blind</th><th rowspan="2" class="num">stuck</th><th rowspan="2" class="num wrap">left in LB</th><th colspan="2" class="group">rollout time</th></tr>
<tr><th class="num">all</th><th class="num">GET</th><th class="num">POST</th><th class="num wrap">through live instances</th><th class="num wrap">through the stopped instance</th><th class="num">median</th><th class="num">max</th></tr>
{{range .Faults}}{{if .Rollouts}}<tr>
<td>{{fault .Fault}}</td>
<td>{{.Rollouts}}: {{range $i, $l := .Links}}{{if $i}} {{end}}{{if $l.File}}<a href="{{href $l.File}}"{{if $l.Broken}} class="bad"{{end}}>#{{$l.Rollout}}</a>{{else}}#{{$l.Rollout}}{{end}}{{end}}</td>
<td class="num">{{.Requests}}</td><td class="num">{{.Failed}}</td><td class="num">{{.FailedGet}}</td><td class="num">{{.FailedPost}}</td>
<td class="num{{if .FailedLive}} bad{{end}}">{{.FailedLive}}</td><td class="num">{{if .VictimStopped}}{{.FailedVictimDown}}{{else}}–{{end}}</td>
<td{{if .Judged}}{{if .PromiseKept}} class="good">yes{{else}} class="bad">no: {{.Broken}} of {{.Rollouts}} broken{{end}}{{else}} class="muted" title="no promise the lab judges for this fault">–{{end}}</td>
<td class="num{{if .GatesOpenedBlind}} bad{{end}}">{{.GatesOpenedBlind}}</td><td class="num{{if .Stuck}} bad{{end}}">{{.Stuck}}</td><td class="num{{if .Leftovers}} bad{{end}}">{{.Leftovers}}</td>
<td class="num">{{sec .MedianRolloutSec}}</td><td class="num">{{sec .MaxRolloutSec}}</td>
</tr>
{{else}}<tr class="unreached"><td>{{fault .Fault}}</td><td colspan="13">not reached: the campaign ended first</td></tr>
{{end}}{{end}}</table>
<p class="muted small">Promise kept: – for a fault without a promise the lab judges (lab.LBFaultPromises). GET and POST split the failed requests by stream (the GETs, the slow GETs and the POSTs no client retries). Through the stopped instance: sent through the victim's own frontend while it was stopped and until its pool was UP again, plus 1 s (lbdown, lbflap): the LB's outage, which a VIP failover decides; the rest went through live instances. Gates opened blind: new pods that turned Ready while the victim's verdict was missing. Stuck: pods whose gate was not True, or still terminating, once the rollout settled; left in LB: servers an HAProxy instance still had for an address no pod has. Rollout: from the restart to the last old pod gone.</p>
<h3>The promises</h3>
<dl class="small">{{range .Faults}}{{if .Promise}}<dt>{{fault .Fault}}</dt><dd>{{.Promise}}</dd>{{end}}{{end}}</dl>
<p class="muted small">The rollouts of a fault without a promise here are judged on their pages against zero failed requests, nothing stuck and nothing left in HAProxy.</p>
<h3>Every rollout</h3>
<table class="rollouts">
<tr><th class="num">rollout</th><th>fault</th><th>started</th><th class="num">took</th><th class="num">requests</th><th class="num">failed GET</th><th class="num">failed POST</th><th class="num">through the stopped instance</th><th class="num">gates opened blind</th><th>gate reasons</th><th>verdict</th></tr>
{{range .Rollouts}}<tr>
<td class="num">{{if .File}}<a href="{{href .File}}"{{if .Broken}} class="bad"{{end}}>#{{.Rollout}}</a>{{else}}#{{.Rollout}}{{end}}</td>
<td>{{fault .Fault}}</td><td class="num">{{.Started.Format "15:04:05"}}</td><td class="num">{{sec .Seconds}}</td><td class="num">{{.Requests}}</td>
<td class="num">{{failed .RolloutRecord "GET"}}</td><td class="num">{{failed .RolloutRecord "POST"}}</td>
<td class="num">{{if .VictimDown}}{{.FailedVictimDown}}{{else}}–{{end}}</td><td class="num">{{.GatesOpenedBlind}}</td>
<td class="small">{{join .GateReasons}}</td>
<td class="small{{if .Broken}} bad{{end}}">{{if .Promise}}promise {{.Promise}}{{else if .Broken}}{{if .Error}}{{.Error}}{{else}}{{.Failed}} failed{{if .StuckGates}}; stuck: {{join .StuckGates}}{{end}}{{if .Leftovers}}; left in HAProxy: {{join .Leftovers}}{{end}}{{end}}{{else}}0 failed, nothing stuck or left{{end}}</td>
</tr>
{{end}}</table>
{{end}}{{end}}
</body>
</html>
`
