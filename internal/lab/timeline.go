package lab

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"zerodrop.dev/zerodrop/internal/verify"
)

// timeline records a scenario run as verify records a run of its own, so
// that the run has verify's report and HTML timeline: one report of the
// whole run, or, in a campaign (RunOptions.Faults), one per rollout, cut at
// the rollouts' starts as the records' counts are (a 100-rollout campaign
// gets 100 pages of one rollout each, not one page of hours). A nil
// *timeline (RunOptions.Timeline unset) records nothing.
type timeline struct {
	whole *verify.Recorder // the whole run; nil in a campaign
	watch *verify.Watcher

	mu sync.Mutex
	// windows are a campaign's rollouts, from each one's start on, in
	// order.
	windows []*window
	// pods is what the watch last said of each pod, so that a rollout's
	// window opens with the pods then present (their lanes).
	pods map[string]podLook
}

// window is one campaign rollout's part of the timeline: its recorder
// while results and events may still arrive, then its report (a
// recorder's per-bucket latency histograms, kept for a 100-rollout
// campaign, would weigh hundreds of MB).
type window struct {
	start time.Time
	rec   *verify.Recorder
	rep   *verify.Report
}

// frozenBehind is how many rollouts after a window it is closed: one
// rollout later no request of its window is still in flight (the slow
// stream's timeout is 16 s, a rollout and its settling take longer).
const frozenBehind = 2

// podLook is a pod's state as its lane shows it.
type podLook struct{ ready, terminating bool }

// startTimeline starts recording at start: it watches the scenario's pods
// (app=web), the endpoints of its Service and the Kubernetes Events of its
// namespace.
func startTimeline(ctx context.Context, t Target, o RunOptions, start time.Time) (*timeline, error) {
	if !o.Timeline {
		return nil, nil
	}
	tl := &timeline{pods: map[string]podLook{}}
	if len(o.Faults) == 0 {
		tl.whole = verify.NewRecorder(start, 0)
	}
	w, err := verify.StartWatch(ctx, verify.Watch{Client: t.Client, Namespace: o.Namespace, Selector: "app=web", Service: "web", Deployment: "web"}, tl.event)
	if err != nil {
		return nil, fmt.Errorf("lab: watch namespace %s for the timeline: %w", o.Namespace, err)
	}
	tl.watch = w
	return tl, nil
}

// windowAt is the recorder of the campaign window that holds at (nil
// before the first rollout, or when that window is closed). tl.mu is held.
func (tl *timeline) windowAt(at time.Time) *verify.Recorder {
	i := sort.Search(len(tl.windows), func(i int) bool { return tl.windows[i].start.After(at) }) - 1
	if i < 0 {
		return nil
	}
	return tl.windows[i].rec
}

// event records one event in the recorder of its time.
func (tl *timeline) event(e verify.Event) {
	if tl.whole != nil {
		tl.whole.AddEvent(e)
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	tl.mu.Lock()
	if e.Kind == verify.EventPod {
		tl.look(e)
	}
	rec := tl.windowAt(e.Time)
	tl.mu.Unlock()
	if rec != nil {
		rec.AddEvent(e)
	}
}

// look follows a pod's state through its events. tl.mu is held.
func (tl *timeline) look(e verify.Event) {
	p, seen := tl.pods[e.Object]
	switch {
	case e.Type == verify.PodPresent || e.Type == verify.PodCreated:
		p = podLook{ready: strings.Contains(e.Detail, "Ready=True"), terminating: strings.Contains(e.Detail, verify.PodTerminating)}
	case !seen:
		return
	case e.Type == verify.PodGone:
		delete(tl.pods, e.Object)
		return
	case e.Type == verify.PodDeleting:
		p.terminating = true
	case e.Type == verify.PodCondition && e.Detail == "Ready=True":
		p.ready = true
	case e.Type == verify.PodCondition && e.Detail == "Ready=False":
		p.ready = false
	}
	tl.pods[e.Object] = p
}

// add records one request of stream: every request of the main and POST
// streams, only the failures of the slow stream (its successes would set
// every bucket's p99 to the slow latency).
func (tl *timeline) add(r verify.Result, stream string) {
	if tl == nil || stream == StreamSlow && !r.Failed() {
		return
	}
	r.Stream = stream
	rec := tl.whole
	if rec == nil {
		tl.mu.Lock()
		rec = tl.windowAt(r.Scheduled)
		tl.mu.Unlock()
		if rec == nil {
			return // before the first rollout: the settle time
		}
	}
	rec.Add(r)
}

// openRollout starts a campaign rollout's window at start; it opens with
// the pods then present, as verify's own watch opens with them.
func (tl *timeline) openRollout(start time.Time) {
	if tl == nil || tl.whole != nil {
		return
	}
	rec := verify.NewRecorder(start, 0)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, obj := range slices.Sorted(maps.Keys(tl.pods)) {
		p := tl.pods[obj]
		detail := "Ready=False"
		if p.ready {
			detail = "Ready=True"
		}
		if p.terminating {
			detail += " " + verify.PodTerminating
		}
		rec.AddEvent(verify.Event{Time: start, Kind: verify.EventPod, Object: obj, Type: verify.PodPresent, Detail: detail})
	}
	tl.windows = append(tl.windows, &window{start: start, rec: rec})
	if n := len(tl.windows) - 1 - frozenBehind; n >= 0 {
		tl.windows[n].close()
	}
}

// close turns the window's recorder into its report. tl.mu is held.
func (w *window) close() {
	if w.rec != nil {
		w.rep, w.rec = w.rec.Report(), nil
	}
}

// rollout records a step of the scenario's rollouts.
func (tl *timeline) rollout(at time.Time, typ, detail, message string) {
	if tl == nil {
		return
	}
	tl.event(verify.Event{Time: at, Kind: verify.EventRollout, Object: "deployment/web", Type: typ, Detail: detail, Message: message})
}

// The lab's own event types on the timeline (besides verify.RolloutFault
// and verify.RolloutFaultEnd): the windows in which the fault's victim
// instance was stopped or unreadable.
const (
	eventVictimDown     = "victim_down"
	eventVictimUp       = "victim_up"
	eventVerdictMissing = "verdict_missing"
	eventVerdictBack    = "verdict_back"
)

// fault records the fault injected in a rollout that started at start: when
// it struck and when it was undone.
func (tl *timeline) fault(start time.Time, ev FaultEvent) {
	if tl == nil {
		return
	}
	tl.rollout(start.Add(ev.At), verify.RolloutFault, fmt.Sprintf("fault %s strikes (rollout %d)", ev.Kind, ev.Rollout), "")
	tl.rollout(start.Add(ev.At+ev.Took), verify.RolloutFaultEnd, fmt.Sprintf("fault %s over after %s", ev.Kind, ev.Took.Round(time.Millisecond)), ev.Err)
}

// faultWindows records the windows of a rollout (started at start) in
// which the fault's victim instance did not serve, or its verdict was
// missing.
func (tl *timeline) faultWindows(start time.Time, rec RolloutRecord, victim string) {
	if tl == nil {
		return
	}
	for _, w := range rec.VictimDown {
		tl.rollout(start.Add(w.From), eventVictimDown, victim+" stopped: does not serve", "")
		tl.rollout(start.Add(w.To), eventVictimUp, victim+" serves again (a server of its pool is UP)", "")
	}
	for _, w := range rec.VerdictMissing {
		tl.rollout(start.Add(w.From), eventVerdictMissing, "the controller cannot read "+victim, "")
		tl.rollout(start.Add(w.To), eventVerdictBack, "the controller reads "+victim+" again", "")
	}
}

// stop ends the watch; report may still be called.
func (tl *timeline) stop() {
	if tl != nil && tl.watch != nil {
		tl.watch.Stop()
		tl.watch = nil
	}
}

// report builds verify's report of the run, judged against zero failed
// requests (the promise the lab measures), and in a campaign one report
// per rollout (RolloutRecord.Report), judged as its record was.
func (tl *timeline) report(res *Result, frontends []string, o RunOptions) {
	if tl == nil {
		return
	}
	tl.stop()
	urls := make([]string, len(frontends))
	for i, fe := range frontends {
		urls[i] = "http://" + fe + "/"
	}
	config := func(duration time.Duration, rollout string) verify.ReportConfig {
		return verify.ReportConfig{
			Method: "GET", URL: strings.Join(urls, " "), Model: "open", Rate: o.Rate, KeepAlive: true,
			TimeoutMS: 5000, DurationMS: float64(duration.Milliseconds()),
			Namespace: o.Namespace, Selector: "app=web", Service: "web",
			Rollout: rollout, BucketMS: float64(verify.DefaultBucket.Milliseconds()), MaxFailures: "0",
		}
	}
	if tl.whole != nil {
		rep := tl.whole.Report()
		rep.Config = config(res.Ended.Sub(res.Started), fmt.Sprintf("%s: %d x restart deployment/web", res.Name(), res.Rollouts))
		countStreams(rep, res.Streams, o)
		rep.Verdict = verify.Judge(rep, verify.Threshold{})
		res.Report = rep
		return
	}
	tl.mu.Lock()
	for _, w := range tl.windows {
		w.close()
	}
	windows := slices.Clone(tl.windows)
	tl.mu.Unlock()
	for i := range res.PerRollout {
		if i >= len(windows) {
			break
		}
		rec := &res.PerRollout[i]
		rep := windows[i].rep
		end := res.Ended
		if i+1 < len(windows) {
			end = windows[i+1].start
		}
		action := fmt.Sprintf("rollout %d/%d of %s: restart deployment/web, fault %s", rec.Rollout, res.Rollouts, res.Name(), FaultName(rec.Fault))
		rep.Config = config(end.Sub(rec.Started), action)
		rep.Rollout = &verify.RolloutReport{Deployment: "web", Action: action, Complete: rec.Error == "", Error: rec.Error}
		if rec.Error == "" {
			rep.Rollout.OldGoneAtMS = rec.Seconds * 1000
		}
		countStreams(rep, rec.Streams, o)
		rep.Verdict = rec.verdict(rep)
		rec.Report = rep
	}
}

// countStreams puts the lab's own counts of the report's window into its
// summary: every request of every stream (the timeline holds only the slow
// stream's failures), failures counted where they ended, as the run's
// table and records count them.
func countStreams(rep *verify.Report, counts []StreamCount, o RunOptions) {
	load := map[string]loadStream{}
	for _, s := range o.streams() {
		load[s.name] = s
	}
	rep.Streams = []verify.StreamStats{}
	rep.Requests, rep.Failed = 0, 0
	for _, c := range counts {
		st := verify.StreamStats{Name: c.Name, Method: c.Method, URL: load[c.Name].path, Rate: load[c.Name].rate,
			Requests: int64(c.Requests), Failed: int64(c.Failed), OK: int64(c.Requests - min(c.Requests, c.Failed))}
		for class, n := range c.FailuresByClass {
			if st.Failures == nil {
				st.Failures = map[verify.Class]int64{}
			}
			st.Failures[verify.Class(class)] = int64(n)
		}
		rep.Streams = append(rep.Streams, st)
		rep.Requests += st.Requests
		rep.Failed += st.Failed
	}
	rep.OK = max(0, rep.Requests-rep.Failed)
	rep.FailedPercent = 0
	if rep.Requests > 0 {
		rep.FailedPercent = float64(rep.Failed) * 100 / float64(rep.Requests)
	}
}

// victimName is the name of the LB faults' victim instance ("" for none).
func (r *lbRig) victimName(t Target) string {
	if r == nil || r.victim < 0 || r.victim >= len(t.HAProxy) {
		return ""
	}
	return t.HAProxy[r.victim].Name
}
