package haproxy

import (
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// The ring lines HAProxy 2.6 wrote in this package's real-HAProxy tests
// (format timed), and what each reports.
func TestParseEventLine(t *testing.T) {
	for _, tc := range []struct {
		line        string
		kind        provider.EventKind
		pool, entry string
		health      provider.Health
	}{
		{"<5>2026-12-06T23:57:55.094118+00:00 Server app/s1 is UP, reason: Layer7 check passed, code: 200, check duration: 0ms. 1 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
			provider.EventVerdict, "app", "s1", provider.HealthHealthy},
		{"<1>2026-12-06T23:57:56.646578+00:00 Server app/zd-slot3 is DOWN, reason: Layer4 connection problem, info: \"Connection refused\", check duration: 0ms. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
			provider.EventVerdict, "app", "zd-slot3", provider.HealthUnhealthy},
		{"<5>2026-12-06T23:57:54.990952+00:00 Health check for server app/shop.web-1 succeeded, reason: Layer7 check passed, code: 200, check duration: 0ms, status: 1/3 DOWN.",
			provider.EventCheck, "app", "shop.web-1", ""},
		{"<5>2026-12-06T23:57:54.990952+00:00 Server be_web/t1 is going DOWN for maintenance. 1 active and 0 backup servers left.",
			provider.EventAdmin, "be_web", "t1", ""},
		{"<5>2026-12-06T23:57:54.990952+00:00 Server app/t1 is DOWN, changed from CLI. 0 active and 0 backup servers left.",
			provider.EventAdmin, "app", "t1", ""},
		{"<5>2026-12-06T23:57:54.990952+00:00 Server app/t1 is UP/READY (leaving forced maintenance).",
			provider.EventAdmin, "app", "t1", ""},
		{"<0>2026-12-06T23:57:39.295341+00:00 backend app has no server available!", "", "", "", ""},
	} {
		ts, ev, ok := parseEventLine("a", tc.line)
		if ts.IsZero() {
			t.Errorf("%q: no timestamp", tc.line)
		}
		if ok != (tc.kind != "") || ev.Kind != tc.kind || ev.Pool != tc.pool || ev.Entry != tc.entry || ev.Health != tc.health {
			t.Errorf("%q: got ok=%v %s %s/%s %s, want %s %s/%s %s", tc.line, ok, ev.Kind, ev.Pool, ev.Entry, ev.Health, tc.kind, tc.pool, tc.entry, tc.health)
		}
	}
	if !stopLine.MatchString("<4>2026-12-07T00:24:14.785956+00:00 Proxy app stopped (cumulated conns: FE: 0, BE: 0).") {
		t.Error("the old worker's soft-stop line is not recognised")
	}
}

// A reconnect replays the ring: lines up to the mark (the last line
// received, all lines of its microsecond) are skipped, later ones kept.
func TestRingMarkSkipsWhatWasReceived(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var m ringMark
	m.set(t0, "a")
	m.set(t0, "b")
	for _, tc := range []struct {
		ts   time.Time
		line string
		seen bool
	}{
		{t0.Add(-time.Microsecond), "x", true},
		{t0, "a", true},
		{t0, "b", true},
		{t0, "c", false}, // same microsecond, not received
		{t0.Add(time.Microsecond), "a", false},
		{time.Time{}, "untimed", false},
	} {
		if got := m.seen(tc.ts, tc.line); got != tc.seen {
			t.Errorf("seen(%s, %q) = %v, want %v", tc.ts, tc.line, got, tc.seen)
		}
	}
	if lineTime("<5>1 2026-12-07T00:00:00.000001+00:00 host haproxy 1 - - msg").IsZero() {
		t.Error("rfc5424 timestamp not read")
	}
	if !lineTime("<5>Dec  7 00:00:00 haproxy[1]: msg").IsZero() {
		t.Error("an rfc3164 line has no precise timestamp, want zero")
	}
}

// The check that decides a verdict announces the verdict line; HAProxy
// 2.6 sometimes holds that line back from a `-w` stream (events.go,
// ringReader), and a dump of the ring then delivers it, once: the stream
// delivering it late is skipped. A stop line in a dump does not end the
// stream's view of the ring (only the stream's own stop line does).
func TestAnnouncedVerdictIsCaughtUpOnce(t *testing.T) {
	const (
		check1 = "<5>2026-12-07T02:59:07.362498+00:00 Health check for server app/tb succeeded, reason: Layer7 check passed, code: 200, check duration: 0ms, status: 2/3 DOWN."
		check2 = "<5>2026-12-07T02:59:07.463918+00:00 Health check for server app/tb succeeded, reason: Layer7 check passed, code: 200, check duration: 0ms, status: 2/2 UP."
		up     = "<5>2026-12-07T02:59:07.464230+00:00 Server app/tb is UP. 2 active and 0 backup servers online. 0 sessions requeued, 0 total in queue."
		stop   = "<4>2026-12-07T02:59:08.000000+00:00 Proxy app stopped (cumulated conns: FE: 0, BE: 0)."
		fail   = "<5>2026-12-07T02:59:09.154354+00:00 Health check for server app/tb failed, reason: Layer7 wrong status, code: 503, info: \"Service Unavailable\", check duration: 0ms, status: 0/3 DOWN."
	)
	var got []provider.Event
	r := &ringReader{instance: "i", fn: func(ev provider.Event) { got = append(got, ev) }}
	r.handle(check1, false)
	if r.awaiting() {
		t.Fatal("a check that does not reach rise announces a verdict")
	}
	r.handle(check2, false)
	if !r.awaiting() {
		t.Fatal("the check that reaches rise does not announce the UP line")
	}
	// The dump: the ring up to now (what the stream had, then the line it
	// held back, then a stop line the stream must meet itself).
	for _, l := range []string{check1, check2, up, stop} {
		if !r.handle(l, true) {
			break
		}
	}
	if r.awaiting() {
		t.Error("still awaiting after the dump delivered the UP line")
	}
	if !r.handle(up, false) { // the stream, late
		t.Fatal("a late line ended the stream")
	}
	var verdicts int
	for _, ev := range got {
		if ev.Kind == provider.EventVerdict {
			verdicts++
		}
	}
	if len(got) != 3 || verdicts != 1 {
		t.Errorf("events %+v: want check, check, verdict, each once", got)
	}
	if r.handle(stop, false) {
		t.Error("the stream's stop line did not end the stream")
	}
	if !r.mark.at.IsZero() {
		t.Error("the mark survived the reload")
	}
	r.handle(fail, false)
	if !r.awaiting() {
		t.Error("the check that reaches fall does not announce the DOWN line")
	}
	for _, l := range []string{
		"<5>2026-12-07T02:59:07.053028+00:00 Health check for server app/ta failed, reason: Layer7 wrong status, code: 503, check duration: 0ms, status: 1/2 UP.",
		"<5>2026-12-07T02:59:06.747433+00:00 Health check for server app/ta succeeded, reason: Layer7 check passed, code: 200, check duration: 0ms, status: 1/3 DOWN.",
		up,
	} {
		if turnsVerdict(l) {
			t.Errorf("turnsVerdict(%q) = true, want false", l)
		}
	}
}
