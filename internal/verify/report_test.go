package verify

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// syntheticReport records 10 s at 100 req/s where the requests scheduled
// between 4.0 s and 4.5 s get 502, 0.4 s after pod web-abc was deleted.
func syntheticReport(t *testing.T) *Report {
	t.Helper()
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	rec := NewRecorder(t0, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	rec.AddEvent(Event{Time: at(0), Kind: EventPod, Object: "pod/web-abc", Type: PodPresent, Detail: "Ready=True"})
	rec.AddEvent(Event{Time: at(1), Kind: EventRollout, Object: "deployment/web", Type: RolloutStart, Detail: "restart deployment/web"})
	rec.AddEvent(Event{Time: at(2.5), Kind: EventPod, Object: "pod/web-def", Type: PodCondition, Detail: "Ready=True"})
	rec.AddEvent(Event{Time: at(3.6), Kind: EventPod, Object: "pod/web-abc", Type: PodDeleting, Detail: "grace 30s"})
	rec.AddEvent(Event{Time: at(3.7), Kind: EventKube, Object: "pod/web-abc", Type: "Killing", Message: "Stopping container app"})
	rec.AddEvent(Event{Time: at(4.8), Kind: EventEndpoint, Object: "pod/web-abc", Type: EndpointMoved, Detail: "ready=false serving=false terminating=true"})
	for i := range 1000 {
		due := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		r := Result{Seq: uint64(i), Scheduled: due, Sent: due.Add(50 * time.Microsecond), Latency: time.Duration(1+i%5) * time.Millisecond, Code: 200, Class: ClassOK}
		if i >= 400 && i < 450 {
			r.Code, r.Class = 502, Class502
		}
		rec.Add(r)
	}
	rep := rec.Report()
	rep.Config = ReportConfig{Method: "GET", URL: "http://127.0.0.1:8080/", Model: "open", Rate: 100, KeepAlive: true, TimeoutMS: 5000, DurationMS: 10000, BucketMS: 100, MaxFailures: "0"}
	rep.Verdict = verdict(rep, Threshold{})
	return rep
}

func TestReportCountsClassesAndEpisodes(t *testing.T) {
	rep := syntheticReport(t)
	if rep.Requests != 1000 || rep.Failed != 50 || rep.OK != 950 {
		t.Fatalf("requests %d ok %d failed %d", rep.Requests, rep.OK, rep.Failed)
	}
	if len(rep.Failures) != 1 || rep.Failures[0].FirstAtMS != 4000 || rep.Failures[0].LastAtMS != 4490 || rep.Failures[0].Example != "HTTP 502" {
		t.Fatalf("failures %+v", rep.Failures)
	}
	if len(rep.Timeline.Buckets) != 100 || rep.Timeline.Buckets[40].Failures[Class502] != 10 || rep.Timeline.Buckets[39].Failed != 0 {
		t.Fatalf("timeline: %d buckets, bucket 40 %+v", len(rep.Timeline.Buckets), rep.Timeline.Buckets[40])
	}
	if len(rep.Episodes) != 1 {
		t.Fatalf("episodes %+v", rep.Episodes)
	}
	e := rep.Episodes[0]
	if e.FromMS != 4000 || e.ToMS != 4500 || e.Failed != 50 {
		t.Fatalf("episode %+v", e)
	}
	// Nearest first; the Kubernetes Event and the initial state are not causes.
	if len(e.Preceding) != 3 || e.Preceding[0].Type != PodDeleting || e.Preceding[1].Object != "pod/web-def" || e.Preceding[2].Type != RolloutStart {
		t.Fatalf("preceding %v", e.Preceding)
	}
	if rep.Rate < 99.9 || rep.Rate > 100.1 {
		t.Fatalf("rate %v, want 100", rep.Rate)
	}
	if rep.Verdict.Pass || rep.Verdict.ExitCode != 1 {
		t.Fatalf("verdict %+v", rep.Verdict)
	}
}

func TestVerdictThresholds(t *testing.T) {
	for _, tc := range []struct {
		max  string
		pass bool
	}{{"0", false}, {"49", false}, {"50", true}, {"4.9%", false}, {"5%", true}, {"100%", true}} {
		th, err := ParseThreshold(tc.max)
		if err != nil {
			t.Fatal(err)
		}
		rep := syntheticReport(t)
		if v := verdict(rep, th); v.Pass != tc.pass || (v.ExitCode == 0) != tc.pass {
			t.Errorf("max %s with 50 of 1000 failed: %+v", tc.max, v)
		}
	}
	for _, bad := range []string{"", "-1", "x", "101%", "1.5"} {
		if _, err := ParseThreshold(bad); err == nil || !strings.Contains(err.Error(), "max failures") {
			t.Errorf("ParseThreshold(%q): %v", bad, err)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	rep := syntheticReport(t)
	var a bytes.Buffer
	if err := WriteJSON(&a, rep); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WriteJSON(&b, back)
	if a.String() != b.String() {
		t.Fatalf("JSON changed in a round trip:\n%s\n---\n%s", a.String()[:400], b.String()[:400])
	}
	for _, field := range []string{`"schema": "zerodrop.dev/verify/v1"`, `"http_502": 10`, `"first_at_ms": 4000`, `"type": "deleting"`, `"p99_ms"`} {
		if !strings.Contains(a.String(), field) {
			t.Errorf("JSON lacks %s", field)
		}
	}
	wrong := strings.Replace(a.String(), SchemaVersion, "zerodrop.dev/verify/v0", 1)
	if _, err := ReadJSON(strings.NewReader(wrong)); err == nil || !strings.Contains(err.Error(), "v0") {
		t.Fatalf("wrong schema accepted: %v", err)
	}
	if _, err := ReadJSON(strings.NewReader("{")); err == nil {
		t.Fatal("truncated JSON accepted")
	}
}

func TestTextReportLinesFailuresUpWithEvents(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, syntheticReport(t)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"requests  1000",
		"http_502  50     4.00 s  4.49 s  HTTP 502",
		"4.00 s – 4.50 s: 50 failed (http_502 50)",
		"0.40 s before   pod/web-abc deleting grace 30s",
		"verdict: FAIL: 50 of 1000 requests failed (5.000%), more than the 0 allowed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

// externalRef matches references that would make a browser fetch something.
var externalRef = regexp.MustCompile(`(?i)^\s*(https?:)?//|^\s*(url\()?\s*https?:`)

func TestHTMLReportIsSelfContainedAndCarriesTheData(t *testing.T) {
	rep := syntheticReport(t)
	var b bytes.Buffer
	if err := WriteHTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("HTML does not parse: %v", err)
	}
	counts := map[string]int{}
	var svgEvents string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			class, fill := "", ""
			for _, a := range n.Attr {
				switch a.Key {
				case "src", "href", "action", "data", "poster", "xlink:href", "srcset":
					if externalRef.MatchString(a.Val) || strings.Contains(a.Val, "//") {
						t.Errorf("<%s %s=%q> references something outside the file", n.Data, a.Key, a.Val)
					}
				case "class":
					class = a.Val
				case "fill":
					fill = a.Val
				case "data-events":
					svgEvents = a.Val
				}
			}
			if n.Data == "link" || n.Data == "iframe" || n.Data == "img" {
				t.Errorf("<%s> element in a self-contained report", n.Data)
			}
			counts[n.Data+"."+class+"."+fill]++
			counts[n.Data+"."+class]++
		}
		if n.Type == html.ElementNode && (n.Data == "style" || n.Data == "script") && n.FirstChild != nil {
			if s := n.FirstChild.Data; strings.Contains(s, "@import") || strings.Contains(s, "url(") || strings.Contains(s, "http") || strings.Contains(s, "fetch(") {
				t.Errorf("<%s> loads something: %q", n.Data, s)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	// Every non-empty bucket has a success bar; the 5 failing buckets have a
	// 502 bar in the all-requests panel and one in the failures panel.
	if got := counts["rect.bar."+classColor[ClassOK]]; got != 100 {
		t.Errorf("%d success bars, want 100", got)
	}
	if got := counts["rect.bar."+classColor[Class502]]; got != 10 {
		t.Errorf("%d 502 bars, want 10 (5 buckets x 2 panels)", got)
	}
	if got := counts["polyline.latency"]; got != 2 {
		t.Errorf("%d latency lines, want p50 and p99", got)
	}
	// One marker per event except the initial state.
	if want := len(rep.Events) - 1; counts["line.marker"] != want || svgEvents != fmt.Sprint(want) {
		t.Errorf("%d markers (svg says %s), want %d", counts["line.marker"], svgEvents, want)
	}
	for _, want := range []string{"pod/web-abc", "deleting", "grace 30s", "Stopping container app", "FAIL"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}
