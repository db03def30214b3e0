package verify

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
)

// DefaultBucket is the timeline's default resolution.
const DefaultBucket = 100 * time.Millisecond

// episodeGap joins failure stretches separated by less than this.
const episodeGap = time.Second

// episodeLookback bounds how far before an episode a preceding event may be.
const episodeLookback = 30 * time.Second

// classIndex maps a failure class to its slot in per-bucket arrays.
var classIndex = func() map[Class]int {
	m := make(map[Class]int, len(FailureClasses))
	for i, c := range FailureClasses {
		m[c] = i
	}
	return m
}()

type bucketAgg struct {
	firstFail    time.Time // scheduled time of the bucket's first failure
	firstFailEnd time.Time // when that request ended
	ok           int64
	failures     [len(failureClassesArray)]int64
	latency      Histogram
}

type classAgg struct {
	count       int64
	first, last time.Time
	example     string
}

// Recorder folds results and events into a Report. It is safe for
// concurrent use: the load's results and the watchers' events arrive from
// different goroutines.
type Recorder struct {
	mu        sync.Mutex
	start     time.Time
	bucket    time.Duration
	buckets   []bucketAgg
	classes   [len(failureClassesArray)]classAgg
	latency   Histogram
	lag       Histogram
	ok        int64
	failed    int64
	firstSent time.Time
	lastSent  time.Time
	lastEnd   time.Time
	samples   []Result
	events    []Event
	rolloutSt string
	streams   map[string]*StreamStats
}

// NewRecorder returns a recorder whose time zero is start and whose timeline
// has buckets of the given width (DefaultBucket when zero).
func NewRecorder(start time.Time, bucket time.Duration) *Recorder {
	if bucket <= 0 {
		bucket = DefaultBucket
	}
	return &Recorder{start: start, bucket: bucket}
}

// Start returns the recorder's time zero.
func (r *Recorder) Start() time.Time { return r.start }

// Add records one request.
func (r *Recorder) Add(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := int(res.Scheduled.Sub(r.start) / r.bucket)
	if i < 0 {
		i = 0
	}
	if i >= len(r.buckets) {
		r.buckets = append(r.buckets, make([]bucketAgg, i-len(r.buckets)+1)...)
	}
	b := &r.buckets[i]
	b.latency.Record(res.Latency)
	r.latency.Record(res.Latency)
	r.lag.Record(res.Lag())
	if r.firstSent.IsZero() || res.Sent.Before(r.firstSent) {
		r.firstSent = res.Sent
	}
	if res.Sent.After(r.lastSent) {
		r.lastSent = res.Sent
	}
	if end := res.Scheduled.Add(res.Latency); end.After(r.lastEnd) {
		r.lastEnd = end
	}
	st := r.stream(res.Stream)
	st.Requests++
	if !res.Failed() {
		b.ok++
		r.ok++
		st.OK++
		return
	}
	r.failed++
	st.Failed++
	if st.Failures == nil {
		st.Failures = map[Class]int64{}
	}
	st.Failures[res.Class]++
	if b.firstFail.IsZero() || res.Scheduled.Before(b.firstFail) {
		b.firstFail, b.firstFailEnd = res.Scheduled, res.Scheduled.Add(res.Latency)
	}
	ci, known := classIndex[res.Class]
	if !known {
		ci = classIndex[ClassOther]
	}
	b.failures[ci]++
	c := &r.classes[ci]
	if c.count == 0 || res.Scheduled.Before(c.first) {
		c.first = res.Scheduled
	}
	if c.count == 0 {
		c.example = res.Error
		if c.example == "" {
			c.example = "HTTP " + strconv.Itoa(res.Code)
		}
	}
	if res.Scheduled.After(c.last) {
		c.last = res.Scheduled
	}
	c.count++
	if len(r.samples) < MaxSamples {
		r.samples = append(r.samples, res)
	}
}

// stream returns the counts of the named stream ("" is MainStream).
func (r *Recorder) stream(name string) *StreamStats {
	if name == "" {
		name = MainStream
	}
	if r.streams == nil {
		r.streams = map[string]*StreamStats{}
	}
	s := r.streams[name]
	if s == nil {
		s = &StreamStats{Name: name}
		r.streams[name] = s
	}
	return s
}

// AddEvent records one event; AtMS is filled in from Time.
func (r *Recorder) AddEvent(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.AtMS = ms(e.Time.Sub(r.start))
	r.events = append(r.events, e)
	if e.Kind == EventRollout {
		r.rolloutSt = e.Type + " " + e.Detail
	}
}

// Progress is a live snapshot for a progress line.
type Progress struct {
	Elapsed  time.Duration
	Requests int64
	OK       int64
	Failed   int64
	// Failures counts failures per class (only classes seen).
	Failures map[Class]int64
	// Rollout is the last rollout event ("progress 2/3 updated ..."), or "".
	Rollout string
}

// Progress returns a snapshot of the counts so far.
func (r *Recorder) Progress() Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Progress{Elapsed: time.Since(r.start), Requests: r.ok + r.failed, OK: r.ok, Failed: r.failed, Rollout: r.rolloutSt}
	for i, c := range r.classes {
		if c.count > 0 {
			if p.Failures == nil {
				p.Failures = make(map[Class]int64)
			}
			p.Failures[FailureClasses[i]] = c.count
		}
	}
	return p
}

// Report builds the report of everything recorded so far. Config, Rollout
// and Verdict are left for the caller (Run fills them).
func (r *Recorder) Report() *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &Report{
		Schema:   SchemaVersion,
		Start:    r.start,
		End:      r.lastEnd,
		Requests: r.ok + r.failed,
		OK:       r.ok,
		Failed:   r.failed,
		Latency:  summarize(&r.latency),
		Lag:      summarize(&r.lag),
		Failures: []ClassStats{},
		Samples:  slices.Clone(r.samples),
		Episodes: []Episode{},
	}
	if rep.End.IsZero() {
		rep.End = time.Now()
	}
	rep.DurationMS = ms(rep.End.Sub(r.start))
	if rep.Requests > 0 {
		rep.FailedPercent = float64(rep.Failed) * 100 / float64(rep.Requests)
	}
	if span := r.lastSent.Sub(r.firstSent); span > 0 && rep.Requests > 1 {
		rep.Rate = float64(rep.Requests-1) / span.Seconds()
	}
	if rep.Samples == nil {
		rep.Samples = []Result{}
	}
	for i, c := range r.classes {
		if c.count == 0 {
			continue
		}
		rep.Failures = append(rep.Failures, ClassStats{
			Class: FailureClasses[i], Count: c.count,
			First: c.first, Last: c.last,
			FirstAtMS: ms(c.first.Sub(r.start)), LastAtMS: ms(c.last.Sub(r.start)),
			Example: c.example,
		})
	}
	rep.Streams = []StreamStats{}
	for _, st := range r.streams {
		c := *st
		c.Failures = maps.Clone(st.Failures)
		rep.Streams = append(rep.Streams, c)
	}
	sort.Slice(rep.Streams, func(i, j int) bool {
		a, b := rep.Streams[i].Name, rep.Streams[j].Name
		return a == MainStream && b != MainStream || (a != MainStream) == (b != MainStream) && a < b
	})
	rep.Events = slices.Clone(r.events)
	sort.SliceStable(rep.Events, func(i, j int) bool { return rep.Events[i].Time.Before(rep.Events[j].Time) })
	if rep.Events == nil {
		rep.Events = []Event{}
	}
	rep.Timeline = Timeline{BucketMS: ms(r.bucket), Buckets: make([]Bucket, len(r.buckets))}
	for i := range r.buckets {
		b := &r.buckets[i]
		out := Bucket{AtMS: ms(time.Duration(i) * r.bucket), OK: b.ok}
		if !b.firstFail.IsZero() {
			out.FirstFailureAtMS = ms(b.firstFail.Sub(r.start))
			out.FirstFailureEndMS = ms(b.firstFailEnd.Sub(r.start))
		}
		for ci, n := range b.failures {
			if n > 0 {
				if out.Failures == nil {
					out.Failures = make(map[Class]int64)
				}
				out.Failures[FailureClasses[ci]] = n
				out.Failed += n
			}
		}
		if b.latency.Count() > 0 {
			out.P50MS, out.P99MS, out.MaxMS = ms(b.latency.Quantile(0.5)), ms(b.latency.Quantile(0.99)), ms(b.latency.Max())
		}
		rep.Timeline.Buckets[i] = out
	}
	rep.Episodes = episodes(rep.Timeline, rep.Events)
	return rep
}

// episodes finds the stretches of the timeline with failures and the events
// before each.
func episodes(tl Timeline, events []Event) []Episode {
	out := []Episode{}
	gap := ms(episodeGap)
	for _, b := range tl.Buckets {
		if b.Failed == 0 {
			continue
		}
		if n := len(out); n > 0 && b.AtMS-out[n-1].ToMS <= gap {
			e := &out[n-1]
			e.ToMS = b.AtMS + tl.BucketMS
			e.Failed += b.Failed
			for c, k := range b.Failures {
				e.Failures[c] += k
			}
			continue
		}
		e := Episode{FromMS: b.AtMS, ToMS: b.AtMS + tl.BucketMS, FirstAtMS: b.FirstFailureAtMS, FirstEndMS: b.FirstFailureEndMS, Failed: b.Failed, Failures: make(map[Class]int64)}
		for c, k := range b.Failures {
			e.Failures[c] = k
		}
		out = append(out, e)
	}
	for i := range out {
		out[i].Preceding = preceding(events, out[i].FirstEndMS)
	}
	return out
}

// preceding returns the likely causes of an episode: up to 4 pod, endpoint
// or rollout events observed before its first failed request ended (and
// within episodeLookback of it), nearest first. The request's end, not its
// scheduled time, is the bound: a request scheduled before a pod was deleted
// can reach the pod after, and a watch reports changes a little late.
func preceding(events []Event, endMS float64) []Event {
	out := []Event{}
	for i := len(events) - 1; i >= 0 && len(out) < 4; i-- {
		e := events[i]
		if e.AtMS < endMS-ms(episodeLookback) {
			break
		}
		if e.AtMS <= endMS && e.Kind != EventKube && e.Kind != EventLoad && e.Type != PodPresent {
			out = append(out, e)
		}
	}
	return out
}
