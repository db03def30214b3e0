package verify

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Defaults for Config's zero fields.
const (
	DefaultWarmup = 2 * time.Second
	DefaultSettle = 5 * time.Second
)

// Config is one verify run: load against a target, optionally while a
// rollout runs, watched through the Kubernetes API.
type Config struct {
	// Load is the load to send. Its Duration bounds the whole run; with a
	// Rollout the run ends earlier, Settle after the rollout completed.
	Load Load
	// Streams are further loads sent beside Load for as long as it runs
	// (their Duration and Requests are Load's), e.g. a POST stream whose
	// cut connections no client retry can hide. The report counts every
	// stream apart (Report.Streams) as well as together.
	Streams []Stream
	// Kube is the cluster to watch; nil runs load only.
	Kube kubernetes.Interface
	// Namespace of the pods, EndpointSlices, Events and Deployment.
	Namespace string
	// Selector selects the pods to watch. Empty means the selector of the
	// Deployment (Rollout's or WatchDeployment).
	Selector string
	// Service limits EndpointSlices to one Service's (see Watch.Service).
	Service string
	// Rollout, when set, is started Warmup after the load starts; the run
	// ends Settle after it completed and its old pods are gone.
	Rollout *RolloutAction
	// WatchDeployment names a Deployment to watch (selector, Events) when
	// someone else drives the rollout; the run then lasts Load.Duration.
	WatchDeployment string
	// Warmup is the load before the rollout starts (DefaultWarmup when 0;
	// negative means none).
	Warmup time.Duration
	// Settle is the load after the rollout (DefaultSettle when 0; negative
	// means none).
	Settle time.Duration
	// Bucket is the timeline resolution (DefaultBucket when 0).
	Bucket time.Duration
	// MaxFailures is what the verdict tolerates (zero value: no failure).
	MaxFailures Threshold
	// OnResult, when set, sees every result (e.g. to write them all out).
	// It runs on the results' path: keep it fast.
	OnResult func(Result)
	// OnEvent, when set, sees every event as it is recorded.
	OnEvent func(Event)
	// OnProgress, when set, is called every ProgressInterval with a snapshot.
	OnProgress func(Progress)
	// ProgressInterval defaults to 250 ms.
	ProgressInterval time.Duration
}

func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

func (c *Config) deployment() string {
	if c.Rollout != nil {
		return c.Rollout.Deployment
	}
	return c.WatchDeployment
}

// Run sends the load, drives and watches the rollout when configured, and
// returns the report with its verdict. The error is non-nil when the run
// could not be carried out (bad configuration, cluster unreachable, the
// rollout could not be started); a rollout that does not complete in time or
// fails is a failed verdict, not an error. When ctx is cancelled the load
// stops, and the report of what happened so far is returned with ctx's error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Load.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.validateStreams(); err != nil {
		return nil, err
	}
	if (cfg.Rollout != nil || cfg.WatchDeployment != "" || cfg.Selector != "") && cfg.Kube == nil {
		return nil, errors.New("verify: a rollout or a pod selector needs a Kubernetes client")
	}
	if cfg.Rollout != nil && cfg.Load.Duration <= 0 {
		return nil, errors.New("verify: a rollout needs a load duration to bound it")
	}
	rec := NewRecorder(time.Now(), cfg.Bucket)
	warmup, settle := orDefault(cfg.Warmup, DefaultWarmup), orDefault(cfg.Settle, DefaultSettle)

	sink := rec.AddEvent
	if cfg.OnEvent != nil {
		sink = func(e Event) {
			rec.AddEvent(e)
			cfg.OnEvent(e)
		}
	}
	var watcher *Watcher
	selector := cfg.Selector
	if cfg.Kube != nil {
		if selector == "" && cfg.deployment() != "" {
			s, err := DeploymentSelector(ctx, cfg.Kube, cfg.Namespace, cfg.deployment())
			if err != nil {
				return nil, err
			}
			selector = s
		}
		if selector != "" || cfg.Service != "" {
			w, err := StartWatch(ctx, Watch{Client: cfg.Kube, Namespace: cfg.Namespace, Selector: selector,
				Service: cfg.Service, Deployment: cfg.deployment()}, sink)
			if err != nil {
				return nil, err
			}
			watcher = w
			defer w.Stop()
		}
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	results, err := attackAll(loadCtx, cfg)
	if err != nil {
		return nil, err
	}
	loadStart := time.Now()
	sink(Event{Time: loadStart, Kind: EventLoad, Object: "load", Type: LoadStart, Detail: cfg.describeLoad()})
	loadEnd := loadStart.Add(cfg.Load.Duration)

	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for r := range results {
			rec.Add(r)
			if cfg.OnResult != nil {
				cfg.OnResult(r)
			}
		}
	}()
	if cfg.OnProgress != nil {
		iv := cfg.ProgressInterval
		if iv <= 0 {
			iv = 250 * time.Millisecond
		}
		go func() {
			t := time.NewTicker(iv)
			defer t.Stop()
			for {
				select {
				case <-consumed:
					return
				case <-t.C:
					cfg.OnProgress(rec.Progress())
				}
			}
		}()
	}

	var rollout *RolloutReport
	var runErr error
	if cfg.Rollout != nil {
		rollout, runErr = driveRollout(loadCtx, cfg, rec, sink, watcher, warmup, settle, loadEnd)
		stopLoad()
	}
	<-consumed
	sink(Event{Time: time.Now(), Kind: EventLoad, Object: "load", Type: LoadEnd})

	rep := rec.Report()
	rep.Config = cfg.reportConfig(selector, warmup, settle)
	rep.Streams = cfg.streamStats(rep.Streams)
	rep.Rollout = rollout
	rep.Verdict = verdict(rep, cfg.MaxFailures)
	if runErr == nil && ctx.Err() != nil {
		runErr = fmt.Errorf("verify interrupted: %w", ctx.Err())
		rep.Verdict = Verdict{Pass: false, ExitCode: 1, Reason: "interrupted before the end: " + rep.Verdict.Reason}
	}
	return rep, runErr
}

// driveRollout waits out the warmup, starts the rollout, waits for it to
// complete and its old pods to go, then waits out the settle time. Rollout
// failures and timeouts land in the RolloutReport; the error is for a
// rollout that could not be started.
func driveRollout(ctx context.Context, cfg Config, rec *Recorder, sink func(Event), w *Watcher, warmup, settle time.Duration, loadEnd time.Time) (*RolloutReport, error) {
	// Nothing of the rollout outlives the load.
	ctx, cancelAll := context.WithDeadline(ctx, loadEnd)
	defer cancelAll()
	act := *cfg.Rollout
	rr := &RolloutReport{Deployment: act.Deployment, Action: act.String()}
	obj := "deployment/" + act.Deployment
	if !sleepCtx(ctx, warmup) {
		rr.Error = "load ended before the rollout started"
		return rr, nil
	}
	gen, err := act.Apply(ctx, cfg.Kube, cfg.Namespace)
	if err != nil {
		rr.Error = err.Error()
		return rr, err
	}
	started := time.Now()
	rr.StartedAtMS = ms(started.Sub(rec.Start()))
	sink(Event{Time: started, Kind: EventRollout, Object: obj, Type: RolloutStart, Detail: act.String(), Message: fmt.Sprintf("generation %d", gen)})

	waitCtx := ctx
	var last string
	err = WaitRollout(waitCtx, cfg.Kube, cfg.Namespace, act.Deployment, gen, func(d *appsv1.Deployment) {
		s := d.Status
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		line := fmt.Sprintf("updated %d/%d ready %d available %d total %d", s.UpdatedReplicas, want, s.ReadyReplicas, s.AvailableReplicas, s.Replicas)
		if line != last && d.Generation >= gen {
			last = line
			sink(Event{Time: time.Now(), Kind: EventRollout, Object: obj, Type: RolloutStep, Detail: line})
		}
	})
	if err != nil {
		rr.Error = err.Error()
		typ := RolloutFailed
		sink(Event{Time: time.Now(), Kind: EventRollout, Object: obj, Type: typ, Message: err.Error()})
		return rr, nil
	}
	done := time.Now()
	rr.CompletedAtMS = ms(done.Sub(rec.Start()))
	sink(Event{Time: done, Kind: EventRollout, Object: obj, Type: RolloutDone, Detail: "successfully rolled out"})

	// kubectl says "complete" while old pods may still be terminating, and
	// that is when requests drop: wait until they are gone.
	if w != nil {
		replicas := 1
		if d, err := cfg.Kube.AppsV1().Deployments(cfg.Namespace).Get(ctx, act.Deployment, metav1.GetOptions{}); err == nil && d.Spec.Replicas != nil {
			replicas = int(*d.Spec.Replicas)
		}
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if total, terminating := w.Pods(); terminating == 0 && total <= replicas {
				break
			}
			select {
			case <-waitCtx.Done():
				rr.Error = "old pods still terminating when the load ended"
				return rr, nil
			case <-t.C:
			}
		}
		gone := time.Now()
		rr.OldGoneAtMS = ms(gone.Sub(rec.Start()))
		sink(Event{Time: gone, Kind: EventRollout, Object: obj, Type: RolloutClean, Detail: "no old pod left"})
	}
	rr.Complete = true
	sleepCtx(ctx, settle)
	return rr, nil
}

// sleepCtx sleeps d or until ctx is done, reporting whether it slept fully.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Judge gives the verdict on a report of a run that allowed max failures:
// what Run puts in Report.Verdict, for reports built by other drivers (the
// lab's scenarios).
func Judge(rep *Report, max Threshold) Verdict { return verdict(rep, max) }

func verdict(rep *Report, max Threshold) Verdict {
	switch {
	case rep.Requests == 0:
		return Verdict{Pass: false, ExitCode: 1, Reason: "no request was sent"}
	case rep.Rollout != nil && !rep.Rollout.Complete:
		reason := "the rollout did not complete"
		if rep.Rollout.Error != "" {
			reason += ": " + rep.Rollout.Error
		}
		return Verdict{Pass: false, ExitCode: 1, Reason: reason}
	case !max.Allows(rep.Failed, rep.Requests):
		return Verdict{Pass: false, ExitCode: 1, Reason: fmt.Sprintf("%d of %d requests failed (%.3f%%), more than the %s allowed", rep.Failed, rep.Requests, rep.FailedPercent, max)}
	case rep.Failed > 0:
		return Verdict{Pass: true, Reason: fmt.Sprintf("%d of %d requests failed (%.3f%%), within the %s allowed", rep.Failed, rep.Requests, rep.FailedPercent, max)}
	}
	return Verdict{Pass: true, Reason: fmt.Sprintf("all %d requests succeeded", rep.Requests)}
}

func (l *Load) describe() string {
	if l.Rate > 0 {
		return fmt.Sprintf("%s %s at %g/s (open model)", l.method(), l.Target.URL, l.Rate)
	}
	return fmt.Sprintf("%s %s over %d connections (closed model)", l.method(), l.Target.URL, l.Connections)
}

func (l *Load) method() string {
	if l.Target.Method == "" {
		return "GET"
	}
	return l.Target.Method
}

func (c *Config) reportConfig(selector string, warmup, settle time.Duration) ReportConfig {
	rc := ReportConfig{
		Method: c.Load.method(), URL: c.Load.Target.URL, Model: "open", Rate: c.Load.Rate,
		Connections: c.Load.Connections, KeepAlive: !c.Load.DisableKeepAlive,
		TimeoutMS: ms(c.Load.timeout()), DurationMS: ms(c.Load.Duration),
		Namespace: c.Namespace, Selector: selector, Service: c.Service,
		BucketMS: ms(orDefault(c.Bucket, DefaultBucket)), MaxFailures: c.MaxFailures.String(),
	}
	if c.Load.Connections > 0 {
		rc.Model = "closed"
	} else {
		rc.MaxWorkers = c.Load.maxWorkers()
	}
	if c.Rollout != nil {
		rc.Rollout = c.Rollout.String()
		rc.WarmupMS, rc.SettleMS = ms(warmup), ms(settle)
	}
	return rc
}
