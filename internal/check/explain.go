package check

import (
	"fmt"
	"io"
	"strings"

	"zerodrop.dev/zerodrop/internal/timing"
)

// WriteExplain prints, for each served workload, the startup and termination
// timelines and the predicted failure windows (--explain), the way the seeds
// draw them: one row per event, one column per actor's state.
func WriteExplain(w io.Writer, r *Report) error {
	ew := &errWriter{w: w}
	if len(r.Explanations) == 0 {
		ew.printf("No served workload (no Service selects a Deployment, StatefulSet or DaemonSet): nothing to explain.\n")
		return ew.err
	}
	for i, e := range r.Explanations {
		if i > 0 {
			ew.printf("\n")
		}
		writeExplanation(ew, &e)
	}
	return ew.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}

func writeExplanation(w *errWriter, e *Explanation) {
	sec := timing.Sec
	w.printf("%s  (%s)\n", e.Workload, e.Source)
	p := e.Pod
	probe := "no readinessProbe"
	if p.HasReadinessProbe {
		probe = "readinessProbe passes at T+" + sec(p.ContainersReady)
	}
	w.printf("  pod: %s, minReadySeconds %s, preStop %s, terminationGracePeriodSeconds %s\n", probe, sec(p.MinReadySeconds), sec(p.PreStop), sec(p.Grace))
	a := e.Assumptions
	w.printf("  assumed: app start %s, shutdown %s, in-cluster propagation %s, longest request %s, buffer %s\n",
		sec(a.Startup), sec(a.Shutdown), sec(a.Propagation), sec(a.LongestRequest), sec(a.Buffer))
	if e.Strategy != "" {
		w.printf("  note: the timelines below model a surge rollout (each old pod deleted only after its replacement is Ready);\n        this workload's strategy deletes pods earlier (ZD104: %s)\n", e.Strategy)
	}
	for _, f := range e.Frontends {
		w.printf("\n  via %s: %s\n", f.Via, f.LB.Name)
		if f.Gate != "" {
			w.printf("  readiness gate: %s\n", f.Gate)
		}
		w.printf("\n  startup of a new pod (one step of a surge rollout: the old pod is deleted once the new one is available):\n")
		writeTimeline(w, f.Startup)
		w.printf("\n  termination of an old pod:\n")
		writeTimeline(w, f.Termination)
		if r := f.Rollout; r != nil {
			w.printf("\n  rollout of %s (maxSurge %d, maxUnavailable 0): a step every %s, last old pod deleted at T+%s; fewest healthy targets in %s: %d\n",
				plural(r.Replicas, "replica"), r.MaxSurge, timing.Sec(r.Step), timing.Sec(r.Duration), f.LB.Actor(), r.MinHealthy)
			for _, o := range r.Outages {
				w.printf("      T+%s..T+%s (%s) no healthy target: every request fails with %s; %s\n", timing.Sec(o.Start), timing.Sec(o.End), timing.Sec(o.Seconds()), o.Effect, o.Why)
			}
		}
	}
}

// writeTimeline prints the event table (time, each actor's state after the
// event, what happened) and the windows.
func writeTimeline(w *errWriter, t timing.Timeline) {
	var actors []string
	seen := map[string]bool{}
	for _, e := range t.Events {
		if !seen[e.Actor] {
			seen[e.Actor] = true
			actors = append(actors, e.Actor)
		}
	}
	state := map[string]string{}
	header := append(append([]string{"time"}, actors...), "what happened")
	rows := [][]string{header}
	for _, e := range t.Events {
		state[e.Actor] = e.State
		row := []string{"T+" + timing.Sec(e.At)}
		for _, a := range actors {
			s := state[a]
			if s == "" {
				s = "-"
			}
			row = append(row, s)
		}
		what := e.Actor + " " + e.State
		if e.Note != "" {
			what += ": " + e.Note
		}
		rows = append(rows, append(row, what))
	}
	width := make([]int, len(header))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		b.WriteString("    ")
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len(c)+2))
			}
		}
		w.printf("%s\n", strings.TrimRight(b.String(), " "))
	}
	if len(t.Windows) == 0 {
		w.printf("    predicted failure windows: none\n")
		return
	}
	w.printf("    predicted failure windows:\n")
	for _, win := range t.Windows {
		exp := "every new request fails"
		if win.Exposure == "in-flight" {
			exp = "requests in flight fail"
		}
		w.printf("      T+%s..T+%s (%s) %s: %s with %s; %s\n", timing.Sec(win.Start), timing.Sec(win.End), timing.Sec(win.Seconds()), win.Cause, exp, win.Effect, win.Why)
	}
}

// plural writes "1 replica", "3 replicas".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
