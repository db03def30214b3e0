package lab

import (
	"context"
	"fmt"
	"strings"
	"time"

	"zerodrop.dev/zerodrop/internal/verify"
)

// timeline records a scenario run as verify records a run of its own, so
// that the run has verify's report and HTML timeline. A nil *timeline
// (RunOptions.Timeline unset) records nothing.
type timeline struct {
	rec   *verify.Recorder
	watch *verify.Watcher
}

// startTimeline starts recording at start: it watches the scenario's pods
// (app=web), the endpoints of its Service and the Kubernetes Events of its
// namespace.
func startTimeline(ctx context.Context, t Target, o RunOptions, start time.Time) (*timeline, error) {
	if !o.Timeline {
		return nil, nil
	}
	tl := &timeline{rec: verify.NewRecorder(start, 0)}
	w, err := verify.StartWatch(ctx, verify.Watch{Client: t.Client, Namespace: o.Namespace, Selector: "app=web", Service: "web", Deployment: "web"}, tl.rec.AddEvent)
	if err != nil {
		return nil, fmt.Errorf("lab: watch namespace %s for the timeline: %w", o.Namespace, err)
	}
	tl.watch = w
	return tl, nil
}

// add records one request: every request of the main stream, only the
// failures of the slow stream.
func (tl *timeline) add(r verify.Result, slow bool) {
	if tl == nil || (slow && !r.Failed()) {
		return
	}
	tl.rec.Add(r)
}

// rollout records a step of the scenario's rollouts.
func (tl *timeline) rollout(at time.Time, typ, detail, message string) {
	if tl == nil {
		return
	}
	tl.rec.AddEvent(verify.Event{Time: at, Kind: verify.EventRollout, Object: "deployment/web", Type: typ, Detail: detail, Message: message})
}

// fault records the fault injected in a rollout that started at start.
func (tl *timeline) fault(start time.Time, ev FaultEvent) {
	if tl == nil {
		return
	}
	detail := fmt.Sprintf("fault %s in rollout %d (took %s)", ev.Kind, ev.Rollout, ev.Took.Round(time.Millisecond))
	tl.rec.AddEvent(verify.Event{Time: start.Add(ev.At), Kind: verify.EventRollout, Object: "deployment/web", Type: "fault", Detail: detail, Message: ev.Err})
}

// stop ends the watch; report may still be called.
func (tl *timeline) stop() {
	if tl != nil && tl.watch != nil {
		tl.watch.Stop()
		tl.watch = nil
	}
}

// report builds verify's report of the run, judged against zero failed
// requests: the promise the lab measures.
func (tl *timeline) report(res Result, frontends []string, o RunOptions) *verify.Report {
	if tl == nil {
		return nil
	}
	tl.stop()
	rep := tl.rec.Report()
	urls := make([]string, len(frontends))
	for i, fe := range frontends {
		urls[i] = "http://" + fe + "/"
	}
	rep.Config = verify.ReportConfig{
		Method: "GET", URL: strings.Join(urls, " "), Model: "open", Rate: o.Rate, KeepAlive: true,
		TimeoutMS: 5000, DurationMS: float64(res.Ended.Sub(res.Started).Milliseconds()),
		Namespace: o.Namespace, Selector: "app=web", Service: "web",
		Rollout:  fmt.Sprintf("%s: %d x restart deployment/web", res.Name(), res.Rollouts),
		BucketMS: float64(verify.DefaultBucket.Milliseconds()), MaxFailures: "0",
	}
	rep.Verdict = verify.Judge(rep, verify.Threshold{})
	return rep
}
