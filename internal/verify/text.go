package verify

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Reporter renders a report. WriteText, WriteJSON and WriteHTML are the
// reporters this package provides.
type Reporter func(w io.Writer, r *Report) error

// WriteJSON writes the report as indented JSON (schema: SchemaVersion,
// documented in docs/verify.md).
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a report written by WriteJSON, checking its schema version.
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	dec := json.NewDecoder(rd)
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("read verify report: %w", err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("read verify report: schema %q, this version reads %q", r.Schema, SchemaVersion)
	}
	return &r, nil
}

// fmtMS renders milliseconds readably: "850 µs", "12.3 ms", "4.20 s".
func fmtMS(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.0f µs", v*1000)
	case v < 100:
		return fmt.Sprintf("%.2g ms", v)
	case v < 1000:
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.2f s", v/1000)
}

// fmtAt renders an offset from the report's start: "12.34 s".
func fmtAt(v float64) string { return fmt.Sprintf("%.2f s", v/1000) }

// classCounts renders "http_502 40, eof 2" in FailureClasses order.
func classCounts(m map[Class]int64) string {
	var parts []string
	for _, c := range FailureClasses {
		if n := m[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, n))
		}
	}
	for _, c := range slices.Sorted(maps.Keys(m)) { // classes from a newer schema
		if !slices.Contains(FailureClasses, c) && m[c] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, m[c]))
		}
	}
	return strings.Join(parts, ", ")
}

// relative says how an event relates in time to a failure at atMS.
func relative(eventMS, atMS float64) string {
	d := (atMS - eventMS) / 1000
	if d >= 0 {
		return fmt.Sprintf("%.2f s before", d)
	}
	return fmt.Sprintf("%.2f s after", -d)
}

// WriteText writes the human summary: totals, failures by class,
// percentiles, the failure episodes with the events before each, the event
// list and the verdict.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "zerodrop verify: %s %s", c.Method, c.URL)
	if c.Model == "closed" {
		fmt.Fprintf(&b, " over %d connections (closed model)", c.Connections)
	} else {
		fmt.Fprintf(&b, " at %g/s (open model)", c.Rate)
	}
	ka := "keep-alive"
	if !c.KeepAlive {
		ka = "no keep-alive"
	}
	fmt.Fprintf(&b, ", %s, timeout %s, ran %s\n", ka, fmtMS(c.TimeoutMS), fmtMS(r.DurationMS))
	if ro := r.Rollout; ro != nil {
		fmt.Fprintf(&b, "rollout: %s: started at %s", ro.Action, fmtAt(ro.StartedAtMS))
		if ro.CompletedAtMS > 0 {
			fmt.Fprintf(&b, ", complete at %s", fmtAt(ro.CompletedAtMS))
		}
		if ro.OldGoneAtMS > 0 {
			fmt.Fprintf(&b, ", old pods gone at %s", fmtAt(ro.OldGoneAtMS))
		}
		if ro.Error != "" {
			fmt.Fprintf(&b, "; %s", ro.Error)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "requests\t%d\tok %d\tfailed %d (%.3f%%)\trate %.1f/s\n", r.Requests, r.OK, r.Failed, r.FailedPercent, r.Rate)
	if len(r.Streams) > 1 {
		for _, st := range r.Streams {
			fmt.Fprintf(tw, "  %s\t%d\tok %d\tfailed %d\t%s at %g/s %s\n", st.Name, st.Requests, st.OK, st.Failed, st.Method, st.Rate, failuresOrDash(st.Failures))
		}
	}
	l := r.Latency
	fmt.Fprintf(tw, "latency\tp50 %s\tp90 %s\tp99 %s\tp99.9 %s\tmax %s\t(from the scheduled time)\n", fmtMS(l.P50MS), fmtMS(l.P90MS), fmtMS(l.P99MS), fmtMS(l.P999MS), fmtMS(l.MaxMS))
	g := r.Lag
	fmt.Fprintf(tw, "send lag\tp50 %s\tp90 %s\tp99 %s\tp99.9 %s\tmax %s\t(load generator behind its schedule)\n", fmtMS(g.P50MS), fmtMS(g.P90MS), fmtMS(g.P99MS), fmtMS(g.P999MS), fmtMS(g.MaxMS))
	tw.Flush()

	if len(r.Failures) > 0 {
		b.WriteString("\nfailures by class\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  class\tcount\tfirst\tlast\texample")
		for _, f := range r.Failures {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\n", f.Class, f.Count, fmtAt(f.FirstAtMS), fmtAt(f.LastAtMS), truncate(f.Example, 90))
		}
		tw.Flush()
	}
	if len(r.Episodes) > 0 {
		fmt.Fprintf(&b, "\nwhen requests failed (timeline in %g ms buckets), and what happened just before\n", r.Timeline.BucketMS)
		for _, e := range r.Episodes {
			fmt.Fprintf(&b, "  %s – %s: %d failed (%s)\n", fmtAt(e.FromMS), fmtAt(e.ToMS), e.Failed, classCounts(e.Failures))
			if len(e.Preceding) == 0 && watched(r) {
				b.WriteString("      no pod, endpoint or rollout event in the 30 s before\n")
			}
			for _, ev := range e.Preceding {
				fmt.Fprintf(&b, "      %-15s %s\n", relative(ev.AtMS, e.FirstAtMS), ev.String())
			}
		}
	}
	if len(r.Events) > 0 {
		b.WriteString("\nevents\n")
		for _, ev := range r.Events {
			fmt.Fprintf(&b, "  %9s  %s\n", fmtAt(ev.AtMS), ev.String())
		}
	}
	verdict := "PASS"
	if !r.Verdict.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\nverdict: %s: %s\n", verdict, r.Verdict.Reason)
	_, err := io.WriteString(w, b.String())
	return err
}

// watched reports whether the run watched a cluster (so that the absence of
// pod events means something).
func watched(r *Report) bool {
	return r.Rollout != nil || r.Config.Selector != "" || r.Config.Service != ""
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// ProgressLine renders a live progress snapshot on one line.
func ProgressLine(p Progress) string {
	s := fmt.Sprintf("%6.1fs  sent %d  ok %d  failed %d", p.Elapsed.Seconds(), p.Requests, p.OK, p.Failed)
	if len(p.Failures) > 0 {
		s += " (" + classCounts(p.Failures) + ")"
	}
	if p.Rollout != "" {
		s += "  rollout: " + p.Rollout
	}
	return s
}

func failuresOrDash(m map[Class]int64) string {
	if len(m) == 0 {
		return ""
	}
	return "(" + classCounts(m) + ")"
}
