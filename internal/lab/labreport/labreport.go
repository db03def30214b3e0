// Package labreport writes the HTML of a `zerodrop lab run`: verify's
// report of every scenario run (its timeline of requests, failures, pod and
// endpoint events) and an index page with the scenario table linking to
// them. Every page is self-contained: it can be opened from disk, mailed
// or published as a CI artifact.
package labreport

import (
	"bytes"
	"fmt"
	"html/template"
	"maps"
	"net/url"
	"os"
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
}

// WriteHTML writes one report per result that has one (Result.Report) into
// dir, named after the run ("zerodrop+kill.html"), and the index page
// (IndexFile) with the scenario table linking to them. It creates dir and
// returns the index's path.
func WriteHTML(dir string, results []lab.Result, kubernetes string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("html report directory: %w", err)
	}
	pages := make([]Page, len(results))
	used := map[string]bool{IndexFile: true}
	for i, r := range results {
		pages[i].Result = r
		if r.Report == nil {
			continue
		}
		name := fileName(r.Name(), used)
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
	"href": func(file string) string { return url.PathEscape(file) },
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
}).Parse(indexHTML))

const indexHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zerodrop lab run</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #212121; max-width: 1180px; }
h1 { font-size: 20px; margin: 0 0 4px; }
table { border-collapse: collapse; margin-top: 12px; }
td, th { padding: 3px 12px 3px 0; text-align: left; vertical-align: top; }
th { font-weight: 600; border-bottom: 1px solid #ccc; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr.failed td.failed { color: #c62828; font-weight: 600; }
.muted { color: #757575; }
</style>
</head>
<body>
<h1>zerodrop lab run</h1>
<div class="muted">{{len .Pages}} scenario run(s){{if .Kubernetes}} on Kubernetes {{.Kubernetes}}{{end}} · written {{.Written.Format "2006-01-02 15:04:05 MST"}}.
Each scenario's page shows its timeline: requests by outcome, failures by class, latency, and the pod, endpoint and rollout events.</div>
<table id="scenarios">
<tr><th>scenario</th><th class="num">rollouts</th><th class="num">requests</th><th class="num">failed</th><th class="num">failed/rollout</th><th>failures by class</th><th class="num">rollout time</th><th class="num">p50</th><th class="num">p99</th><th>what it does</th></tr>
{{range .Pages}}{{$r := .Result}}<tr{{if $r.Failed}} class="failed"{{end}}>
<td>{{if .File}}<a href="{{href .File}}">{{$r.Name}}</a>{{else}}{{$r.Name}} <span class="muted">(no timeline)</span>{{end}}</td>
<td class="num">{{$r.Rollouts}}</td><td class="num">{{$r.Requests}}</td><td class="num failed">{{$r.Failed}}</td>
<td class="num">{{perRollout $r.FailedPerRollout}}</td><td>{{byClass $r.FailuresByClass}}</td><td class="num">{{rolloutTime $r}}</td>
<td class="num">{{printf "%.1f" $r.LatencyP50ms}} ms</td><td class="num">{{printf "%.1f" $r.LatencyP99ms}} ms</td><td class="muted">{{$r.Summary}}</td>
</tr>
{{end}}</table>
<p class="muted">failed/rollout counts the failed requests from each rollout's start to the next one's. Latency: the main stream's successful requests.</p>
</body>
</html>
`
