package labreport

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"zerodrop.dev/zerodrop/internal/lab"
	"zerodrop.dev/zerodrop/internal/verify"
)

// recordedCampaign reads testdata/campaign-lbfaults.json.gz: a real run of
// the lab's TestLBFaultCampaignKeepsEveryPromise (zerodrop, 2 HAProxy
// instances, 1,000 GET/s + POSTs, one rollout under each LB fault),
// recorded with ZERODROP_RECORD_CAMPAIGN, each rollout with verify's
// report of its window.
func recordedCampaign(t *testing.T) lab.Result {
	t.Helper()
	f, err := os.Open("testdata/campaign-lbfaults.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Result  lab.Result       `json:"result"`
		Reports []*verify.Report `json:"reports"`
	}
	if err := json.NewDecoder(z).Decode(&rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Reports) != len(rec.Result.PerRollout) || len(rec.Reports) == 0 {
		t.Fatalf("recording holds %d rollouts and %d reports", len(rec.Result.PerRollout), len(rec.Reports))
	}
	for i := range rec.Result.PerRollout {
		rec.Result.PerRollout[i].Report = rec.Reports[i]
	}
	return rec.Result
}

// tableRow is one row of an HTML table: its cells' text and its links.
type tableRow struct {
	cells []string
	links []string
}

// tableRows returns the rows of the page's tables of class class.
func tableRows(t *testing.T, page []byte, class string) []tableRow {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("page does not parse: %v", err)
	}
	attr := func(n *html.Node, key string) string {
		for _, a := range n.Attr {
			if a.Key == key {
				return a.Val
			}
		}
		return ""
	}
	var text func(n *html.Node) string
	text = func(n *html.Node) string {
		if n.Type == html.TextNode {
			return n.Data
		}
		var b strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			b.WriteString(text(c))
		}
		return b.String()
	}
	var rows []tableRow
	var walk func(n *html.Node, in bool, r *tableRow)
	walk = func(n *html.Node, in bool, r *tableRow) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "table":
				in = attr(n, "class") == class
			case "tr":
				if in {
					rows = append(rows, tableRow{})
					r = &rows[len(rows)-1]
				}
			case "td", "th":
				if r != nil {
					r.cells = append(r.cells, strings.TrimSpace(text(n)))
				}
			case "a":
				if r != nil {
					r.links = append(r.links, attr(n, "href"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, in, r)
		}
	}
	walk(doc, false, nil)
	return rows
}

// Scenario: the report of a real campaign (one rollout under each LB
// fault). Expectation: the index's campaign section has a row per fault
// with the figures of lab's summary by fault (failures split by method and
// by instance, the promise kept, gates opened blind, stuck, left in the
// LB, the rollout times), each linking to its rollout's page; every page
// is verify's timeline of that rollout alone (its pods' lanes, the fault's
// start and end marked, the record's counts and verdict), links back to
// the section and to the rollouts before and after, and stays small.
func TestWriteHTMLWritesACampaignReportFromARecordedRun(t *testing.T) {
	res := recordedCampaign(t)
	dir := filepath.Join(t.TempDir(), "html")
	index, err := WriteHTML(dir, []lab.Result{res}, "v1.35.0")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(index)
	sum := res.SummaryByFault()
	rows := tableRows(t, raw, "faults")
	if len(rows) != 2+len(sum) {
		t.Fatalf("%d rows in the table by fault, want two of headers and %d", len(rows), len(sum))
	}
	header := strings.Join(append(rows[0].cells, rows[1].cells...), "|")
	for _, col := range []string{"fault", "rollouts", "requests", "failed requests", "all", "GET", "POST", "through live instances", "through the stopped instance",
		"promise kept", "gates opened blind", "stuck", "left in LB", "rollout time", "median", "max"} {
		if !strings.Contains(header, col) {
			t.Errorf("table by fault has no column %q: %s", col, header)
		}
	}
	pages := map[string]string{} // page -> the fault whose row links it
	// The columns, in order, as the headers' two rows name them.
	columns := []string{"fault", "rollouts", "requests", "all", "GET", "POST", "through live instances", "through the stopped instance",
		"promise kept", "gates opened blind", "stuck", "left in LB", "median", "max"}
	for i, s := range sum {
		r := rows[i+2]
		victim := "–"
		if s.VictimStopped {
			victim = fmt.Sprint(s.FailedVictimDown)
		}
		want := []string{lab.FaultName(s.Fault), "", fmt.Sprint(s.Requests), fmt.Sprint(s.Failed), fmt.Sprint(s.FailedGet), fmt.Sprint(s.FailedPost),
			fmt.Sprint(s.FailedLive), victim, "yes", fmt.Sprint(s.GatesOpenedBlind), fmt.Sprint(s.Stuck), fmt.Sprint(s.Leftovers),
			fmt.Sprintf("%.1f s", s.MedianRolloutSec), fmt.Sprintf("%.1f s", s.MaxRolloutSec)}
		if len(r.cells) != len(want) {
			t.Errorf("row %s: cells %q", s.Fault, r.cells)
			continue
		}
		for j, w := range want {
			if j != 1 && r.cells[j] != w {
				t.Errorf("row %s, column %q: %q, want %q", s.Fault, columns[j], r.cells[j], w)
			}
		}
		if len(r.links) != s.Rollouts {
			t.Errorf("row %s links %v, want its %d rollout(s)", s.Fault, r.links, s.Rollouts)
		}
		for _, l := range r.links {
			pages[l] = lab.FaultName(s.Fault)
		}
	}
	// lbdown's refusals all went through the stopped instance.
	for _, s := range sum {
		if s.Fault == lab.FaultLBDown && (!s.VictimStopped || s.FailedVictimDown == 0 || s.FailedLive != 0) {
			t.Errorf("recorded lbdown: %+v; want failures through the stopped instance only", s)
		}
	}
	if rows := tableRows(t, raw, "rollouts"); len(rows) != 1+len(res.PerRollout) {
		t.Errorf("%d rows in the table of rollouts, want a header and %d", len(rows), len(res.PerRollout))
	}

	for i, rec := range res.PerRollout {
		link := fmt.Sprintf("zerodrop+campaign/rollout-%d-%s.html", rec.Rollout, rec.Fault)
		if pages[link] != string(rec.Fault) {
			t.Errorf("rollout %d: the table by fault links %v, want %s under %s", rec.Rollout, pages, link, rec.Fault)
			continue
		}
		file, _ := url.PathUnescape(link)
		page, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Error(err)
			continue
		}
		if len(page) > 1<<20 {
			t.Errorf("%s: %d bytes, want a page under 1 MiB", link, len(page))
		}
		verdict := "PASS"
		if !rec.Report.Verdict.Pass {
			verdict = "FAIL"
		}
		s := html.UnescapeString(string(page))
		for _, want := range []string{
			fmt.Sprintf("<title>zerodrop+campaign rollout %d/%d: %s: %s</title>", rec.Rollout, res.Rollouts, rec.Fault, verdict),
			`<svg id="timeline"`, `class="lane"`, "fault " + string(rec.Fault) + " strikes", "fault " + string(rec.Fault) + " over after",
			`stroke="#8e24aa"`, fmt.Sprintf("<td class=\"num\">%d</td>", rec.Requests), rec.Report.Verdict.Reason,
		} {
			if !strings.Contains(s, want) {
				t.Errorf("%s lacks %q", link, want)
			}
		}
		// Its links: back to the campaign's section, to the neighbours.
		nav := tableNav(t, page)
		want := []string{"../index.html#campaign-zerodrop-campaign"}
		if i > 0 {
			want = append(want, fmt.Sprintf("rollout-%d-%s.html", res.PerRollout[i-1].Rollout, res.PerRollout[i-1].Fault))
		}
		if i+1 < len(res.PerRollout) {
			want = append(want, fmt.Sprintf("rollout-%d-%s.html", res.PerRollout[i+1].Rollout, res.PerRollout[i+1].Fault))
		}
		if strings.Join(nav, " ") != strings.Join(want, " ") {
			t.Errorf("%s links %v, want %v", link, nav, want)
		}
		for _, l := range nav[1:] {
			if _, err := os.Stat(filepath.Join(dir, "zerodrop+campaign", l)); err != nil {
				t.Errorf("%s links a missing page: %v", link, err)
			}
		}
		// Only this rollout's window: no other rollout's fault.
		for _, other := range res.PerRollout {
			if other.Rollout != rec.Rollout && strings.Contains(s, "fault "+string(other.Fault)+" strikes") {
				t.Errorf("%s shows rollout %d's fault %s", link, other.Rollout, other.Fault)
			}
		}
	}
	if !strings.Contains(html.UnescapeString(string(raw)), `<a href="#campaign-zerodrop-campaign">zerodrop+campaign</a>`) ||
		!strings.Contains(string(raw), `<h2 id="campaign-zerodrop-campaign">`) {
		t.Error("the scenario table does not link the campaign's section")
	}

	// A campaign that ended before its last fault: that fault's row says
	// so and links nothing.
	short := res
	short.PerRollout = res.PerRollout[:len(res.PerRollout)-1]
	last := res.PerRollout[len(res.PerRollout)-1].Fault
	dir2 := filepath.Join(t.TempDir(), "short")
	index2, err := WriteHTML(dir2, []lab.Result{short}, "")
	if err != nil {
		t.Fatal(err)
	}
	raw2, _ := os.ReadFile(index2)
	rows2 := tableRows(t, raw2, "faults")
	lastRow := rows2[len(rows2)-1]
	if lastRow.cells[0] != string(last) || !strings.Contains(lastRow.cells[1], "not reached") || len(lastRow.links) != 0 {
		t.Errorf("unreached %s: row %+v", last, lastRow)
	}
	if _, err := os.Stat(filepath.Join(dir2, "zerodrop+campaign", fmt.Sprintf("rollout-%d-%s.html", len(res.PerRollout), last))); err == nil {
		t.Errorf("a page for the rollout that did not run")
	}
}

// tableNav returns the hrefs of the page's nav links.
func tableNav(t *testing.T, page []byte) []string {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(n *html.Node, in bool)
	walk = func(n *html.Node, in bool) {
		if n.Type == html.ElementNode && n.Data == "nav" {
			in = true
		}
		if in && n.Type == html.ElementNode && n.Data == "a" {
			for _, a := range n.Attr {
				if a.Key == "href" {
					out = append(out, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, in)
		}
	}
	walk(doc, false)
	return out
}
