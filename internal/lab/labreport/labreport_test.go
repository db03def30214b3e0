package labreport

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"zerodrop.dev/zerodrop/internal/lab"
	"zerodrop.dev/zerodrop/internal/verify"
)

// fakeReport is verify's report of 5 s at 100 req/s in which failed of the
// requests from 2 s on got a 502, after pod web-a was deleted at 1.9 s.
func fakeReport(t0 time.Time, failed int) *verify.Report {
	rec := verify.NewRecorder(t0, 0)
	rec.AddEvent(verify.Event{Time: t0.Add(1900 * time.Millisecond), Kind: verify.EventPod, Object: "pod/web-a", Type: verify.PodDeleting, Detail: "grace 30s"})
	for i := range 500 {
		due := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		r := verify.Result{Seq: uint64(i), Scheduled: due, Sent: due, Latency: time.Millisecond, Code: 200, Class: verify.ClassOK}
		if i >= 200 && i < 200+failed {
			r.Code, r.Class = 502, verify.Class502
		}
		rec.Add(r)
	}
	rep := rec.Report()
	rep.Config = verify.ReportConfig{Method: "GET", URL: "http://127.0.0.1:8080/", Model: "open", Rate: 100, BucketMS: 100, MaxFailures: "0"}
	rep.Verdict = verify.Judge(rep, verify.Threshold{})
	return rep
}

// Scenario: a run of three scenarios, two with a timeline (one of them run
// twice) and one without. Expectation: one page per timeline, named after
// the run and never overwritten, and an index whose table has a row per
// run, linking each to its own page.
func TestWriteHTMLWritesAPagePerRunAndAnIndexLinkingThem(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	results := []lab.Result{
		{Scenario: "naive", Rollouts: 3, Requests: 500, Failed: 7, FailuresByClass: map[string]uint64{"http_502": 7}, FailedPerRollout: []uint64{7, 0, 0}, Report: fakeReport(t0, 7)},
		{Scenario: "zerodrop", Fault: lab.FaultKillController, Rollouts: 3, Requests: 500, Report: fakeReport(t0, 0)},
		{Scenario: "zerodrop", Fault: lab.FaultKillController, Rollouts: 3, Requests: 500, Report: fakeReport(t0, 0)},
		{Scenario: "drain", Rollouts: 3, Requests: 500},
	}
	dir := filepath.Join(t.TempDir(), "html")
	index, err := WriteHTML(dir, results, "v1.35.0")
	if err != nil {
		t.Fatal(err)
	}
	if index != filepath.Join(dir, IndexFile) {
		t.Errorf("index %s, want %s", index, filepath.Join(dir, IndexFile))
	}
	entries, _ := os.ReadDir(dir)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	if got, want := strings.Join(files, " "), "index.html naive.html zerodrop+kill-2.html zerodrop+kill.html"; got != want {
		t.Errorf("files %s, want %s", got, want)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "naive.html"))
	for _, want := range []string{"FAIL", "7 of 500 requests failed", `<svg id="timeline"`, "pod/web-a"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("naive.html lacks %q", want)
		}
	}
	if page, _ := os.ReadFile(filepath.Join(dir, "zerodrop+kill.html")); !bytes.Contains(page, []byte("all 500 requests succeeded")) {
		t.Error("zerodrop+kill.html lacks its verdict")
	}

	raw, _ := os.ReadFile(index)
	doc, err := html.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("index does not parse: %v", err)
	}
	// Each row of the table: its cells' text and its link.
	type row struct{ cells, link string }
	var rows []row
	var walk func(n *html.Node, r *row)
	walk = func(n *html.Node, r *row) {
		if n.Type == html.ElementNode && n.Data == "tr" {
			rows = append(rows, row{})
			r = &rows[len(rows)-1]
		}
		if r != nil && n.Type == html.TextNode {
			r.cells += n.Data
		}
		if r != nil && n.Type == html.ElementNode && n.Data == "a" {
			for _, a := range n.Attr {
				if a.Key == "href" {
					r.link = a.Val
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, r)
		}
	}
	walk(doc, nil)
	if len(rows) != 1+len(results) {
		t.Fatalf("%d table rows, want a header and %d", len(rows), len(results))
	}
	for i, want := range []struct{ name, link, text string }{
		{"naive", "naive.html", "http_502=7"},
		{"zerodrop+kill", "zerodrop+kill.html", "500"},
		{"zerodrop+kill", "zerodrop+kill-2.html", "500"},
		{"drain", "", "no timeline"},
	} {
		r := rows[i+1]
		if !strings.Contains(r.cells, want.name) || !strings.Contains(r.cells, want.text) {
			t.Errorf("row %d %q, want %s with %q", i+1, r.cells, want.name, want.text)
		}
		if target, err := url.PathUnescape(r.link); err != nil || target != want.link {
			t.Errorf("row %d links to %q, want %q", i+1, r.link, want.link)
		} else if target != "" {
			if _, err := os.Stat(filepath.Join(dir, target)); err != nil {
				t.Errorf("row %d links to a missing page: %v", i+1, err)
			}
		}
	}
	if !strings.Contains(string(raw), "Kubernetes v1.35.0") {
		t.Error("index does not say which Kubernetes ran")
	}
}

// Scenario: the directory cannot be created (a file is in the way).
// Expectation: an error naming what failed, nothing written.
func TestWriteHTMLRefusesAnUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "taken")
	os.WriteFile(file, nil, 0o644)
	if _, err := WriteHTML(filepath.Join(file, "html"), nil, ""); err == nil || !strings.Contains(err.Error(), "html report directory") {
		t.Fatalf("err = %v", err)
	}
}
