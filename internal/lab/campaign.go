package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/verify"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// The load's streams: the main GETs, the slow GETs, and the POST stream
// whose cut connections no client retry can hide.
const (
	StreamMain = "main"
	StreamSlow = "slow"
	StreamPost = "post"
)

// postPath and postBody are the POST stream's request: an order the app
// reads to the end before it answers.
const (
	postPath = "/orders"
	postBody = `{"order":"zerodrop-lab","items":[{"sku":"A-1","qty":1},{"sku":"B-2","qty":2}]}`
)

// StreamCount counts one stream's requests.
type StreamCount struct {
	Name     string `json:"name"`
	Method   string `json:"method"`
	Requests uint64 `json:"requests"`
	Failed   uint64 `json:"failed"`
	// FailuresByClass counts the failed requests per verify class.
	FailuresByClass map[string]uint64 `json:"failuresByClass,omitempty"`
}

// RolloutRecord is what one rollout of a run measured.
type RolloutRecord struct {
	Rollout int   `json:"rollout"`
	Fault   Fault `json:"fault,omitempty"`
	// Started is when the rollout was started; its window of the load
	// runs to the next rollout's Started (the last one's to the run's end).
	Started time.Time `json:"started"`
	// FaultEvent is what the fault did (nil for none).
	FaultEvent *FaultEvent `json:"faultEvent,omitempty"`
	// Seconds is from the restart to the last old pod gone.
	Seconds float64 `json:"seconds"`
	// Requests and Failed count every stream, scheduled from this
	// rollout's start to the next one's.
	Requests uint64        `json:"requests"`
	Failed   uint64        `json:"failed"`
	Streams  []StreamCount `json:"streams"`
	// VictimDown are the windows the fault's victim instance did not serve
	// (lbdown, lbflap: from its stop until a server of its restarted pool
	// is UP again); FailedVictimDown counts the failed requests sent
	// through the victim's own frontend meanwhile (plus a second): the
	// LB's outage, which a VIP or DNS failover, not the rollout, decides.
	VictimDown       []Window `json:"victimDown,omitempty"`
	FailedVictimDown uint64   `json:"failedVictimDown"`
	// VerdictMissing are the windows the controller could not read the
	// victim (stopped until its Runtime API answered again, or cut off by
	// partition); GatesOpenedBlind counts new pods that turned Ready
	// inside one: gates opened without every instance's verdict.
	VerdictMissing   []Window `json:"verdictMissing,omitempty"`
	GatesOpenedBlind int      `json:"gatesOpenedBlind"`
	// FailedClockJump counts the failed requests HAProxy's own handling of
	// the clock fault's forward step cost (clockJumpFailures): counted
	// apart, like the stopped victim's outage.
	FailedClockJump uint64 `json:"failedClockJump"`
	// GateReasons are the gate condition reasons new pods showed while
	// the rollout ran (PoolFull, NotRegistered, L4CON, Healthy...).
	GateReasons []string `json:"gateReasons,omitempty"`
	// Gates are the gate and drain latencies of the rollout's pods.
	Gates *GateTimings `json:"gates,omitempty"`
	// StuckGates lists the pods whose gate was not True, and the
	// terminating pods still present, once the rollout had settled.
	StuckGates []string `json:"stuckGates"`
	// Leftovers lists the servers some HAProxy instance still had for an
	// address no pod has, once the rollout had settled.
	Leftovers []string `json:"leftovers"`
	// Promise is the verdict on the fault's promise ("" for faults
	// without one): "kept", or what broke it.
	Promise string `json:"promise,omitempty"`
	Error   string `json:"error,omitempty"`
	// Report is verify's report of the rollout's window (a campaign run
	// with RunOptions.Timeline), for its HTML timeline; not in the JSON.
	Report *verify.Report `json:"-"`
}

// failure is one failed request.
type failure struct {
	// at is when it ended (scheduled + latency): a request a fault cuts
	// fails when the fault strikes, whenever it was sent (a slow request
	// may have been sent seconds before), and counts there.
	at       time.Time
	stream   string
	instance int
	class    string
}

// recorder aggregates load results: totals, per-stream counts in 100 ms
// buckets (for per-rollout windows), and every failure.
type recorder struct {
	mu       sync.Mutex
	start    time.Time
	requests uint64
	failed   uint64
	byClass  map[string]uint64
	failures []failure
	buckets  map[string][]uint32 // stream -> requests per 100 ms
	samples  []FailureSample
	ok       verify.Histogram
}

const recBucket = 100 * time.Millisecond

// add counts one result of stream, sent through instance (at address
// frontend); latency percentiles are of the main stream's successful
// requests only.
func (r *recorder) add(x verify.Result, stream string, instance int, frontend string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.start.IsZero() {
		r.start = x.Scheduled
	}
	if r.buckets == nil {
		r.buckets = map[string][]uint32{}
	}
	i := max(0, int(x.Scheduled.Sub(r.start)/recBucket))
	b := r.buckets[stream]
	if i >= len(b) {
		b = append(b, make([]uint32, i-len(b)+1)...)
	}
	b[i]++
	r.buckets[stream] = b
	r.requests++
	if !x.Failed() {
		if stream == StreamMain {
			r.ok.Record(x.Latency)
		}
		return
	}
	r.failed++
	if r.byClass == nil {
		r.byClass = map[string]uint64{}
	}
	r.byClass[string(x.Class)]++
	r.failures = append(r.failures, failure{x.Scheduled.Add(x.Latency), stream, instance, string(x.Class)})
	if len(r.samples) < maxFailureSamples {
		r.samples = append(r.samples, FailureSample{
			Scheduled: x.Scheduled, Stream: stream, Frontend: frontend, Class: string(x.Class), Code: x.Code,
			LatencyMs: float64(x.Latency) / float64(time.Millisecond), Error: x.Error,
		})
	}
}

func (r *recorder) failedSoFar() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// window counts the streams' requests scheduled in [from, to) (to zero:
// no end), at the buckets' resolution, and the failures that ended in it.
func (r *recorder) window(from, to time.Time, methods map[string]string) []StreamCount {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for n := range methods {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return streamOrder(names[i]) < streamOrder(names[j]) })
	var out []StreamCount
	for _, n := range names {
		sc := StreamCount{Name: n, Method: methods[n]}
		lo := max(0, int(from.Sub(r.start)/recBucket))
		hi := len(r.buckets[n])
		if !to.IsZero() {
			hi = min(hi, max(0, int(to.Sub(r.start)/recBucket)))
		}
		for i := lo; i < hi; i++ {
			sc.Requests += uint64(r.buckets[n][i])
		}
		for _, f := range r.failures {
			if f.stream == n && !f.at.Before(from) && (to.IsZero() || f.at.Before(to)) {
				sc.Failed++
				if sc.FailuresByClass == nil {
					sc.FailuresByClass = map[string]uint64{}
				}
				sc.FailuresByClass[f.class]++
			}
		}
		out = append(out, sc)
	}
	return out
}

// failedClockJump counts the failures HAProxy's missed clock step cost
// (see clockJumpWindow): an instance that answered 504 within
// clockJumpWindow of the step missed it; its failures of
// clockJumpFailures' classes from the step to end are counted.
func (r *recorder) failedClockJump(step, end time.Time) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	missed := map[int]bool{}
	for _, f := range r.failures {
		if verify.Class(f.class) == verify.Class504 && !f.at.Before(step) && f.at.Before(step.Add(clockJumpWindow)) {
			missed[f.instance] = true
		}
	}
	var n uint64
	for _, f := range r.failures {
		if missed[f.instance] && !f.at.Before(step) && f.at.Before(end) && slices.Contains(clockJumpFailures, verify.Class(f.class)) {
			n++
		}
	}
	return n
}

// failedThrough counts the failures sent through instance that ended
// inside one of ws (each widened by slack), ws relative to base, and in
// [base, to).
func (r *recorder) failedThrough(instance int, base, to time.Time, ws []Window, slack time.Duration) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n uint64
	for _, f := range r.failures {
		if f.instance != instance || f.at.Before(base) || !to.IsZero() && !f.at.Before(to) {
			continue // another instance, or another rollout's window
		}
		for _, w := range ws {
			if !f.at.Before(base.Add(w.From-slack)) && f.at.Before(base.Add(w.To+slack)) {
				n++
				break
			}
		}
	}
	return n
}

func streamOrder(name string) int {
	switch name {
	case StreamMain:
		return 0
	case StreamSlow:
		return 1
	case StreamPost:
		return 2
	}
	return 3
}

// fill writes the totals and the failures per rollout window: rollout i
// owns the failures that ended from its start to the next rollout's start
// (the last one to the end of the run); failures before the first rollout
// are counted in the totals only.
func (r *recorder) fill(res *Result, marks []time.Time, methods map[string]string) {
	res.Streams = r.window(time.Time{}, time.Time{}, methods)
	r.mu.Lock()
	defer r.mu.Unlock()
	res.Requests, res.Failed = r.requests, r.failed
	for k, v := range r.byClass {
		res.FailuresByClass[k] = v
	}
	res.FailureSamples = append([]FailureSample(nil), r.samples...)
	res.FailedPerRollout = make([]uint64, len(marks))
	for _, f := range r.failures {
		i := sort.Search(len(marks), func(i int) bool { return marks[i].After(f.at) }) - 1
		if i >= 0 {
			res.FailedPerRollout[i]++
		}
	}
	if r.ok.Count() > 0 {
		res.LatencyP50ms = float64(r.ok.Quantile(0.50)) / float64(time.Millisecond)
		res.LatencyP99ms = float64(r.ok.Quantile(0.99)) / float64(time.Millisecond)
	}
}

// loadStream is one stream of a run's load.
type loadStream struct {
	name    string
	method  string
	path    string
	body    []byte
	rate    float64
	timeout time.Duration
}

// streams are the run's load streams.
func (o RunOptions) streams() []loadStream {
	ss := []loadStream{{name: StreamMain, method: http.MethodGet, path: "/", rate: o.Rate, timeout: 5 * time.Second}}
	if o.SlowRate > 0 {
		ss = append(ss, loadStream{name: StreamSlow, method: http.MethodGet, path: "/slow?sleep=" + o.SlowLatency.String(), rate: o.SlowRate, timeout: o.SlowLatency + 10*time.Second})
	}
	if o.PostRate > 0 {
		ss = append(ss, loadStream{name: StreamPost, method: http.MethodPost, path: postPath, body: []byte(postBody), rate: o.PostRate, timeout: 5 * time.Second})
	}
	return ss
}

// faultFor is the fault of rollout i (from 1).
func (o RunOptions) faultFor(i int) Fault {
	if len(o.Faults) > 0 {
		return o.Faults[(i-1)%len(o.Faults)]
	}
	return o.Fault
}

// gateWatch records the gate condition reasons of the namespace's new
// (not yet Ready) pods while a rollout runs.
type gateWatch struct {
	mu      sync.Mutex
	reasons map[string]bool
	done    chan struct{}
}

func watchGateReasons(ctx context.Context, t Target, ns string) *gateWatch {
	g := &gateWatch{reasons: map[string]bool{}, done: make(chan struct{})}
	gate := corev1.PodConditionType(zv1.GateConditionType(BindingName))
	go func() {
		defer close(g.done)
		for sleepCtx(ctx, 250*time.Millisecond) {
			pods, err := t.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				continue
			}
			g.mu.Lock()
			for _, p := range pods.Items {
				for _, c := range p.Status.Conditions {
					if c.Type == gate && c.Reason != "" {
						g.reasons[c.Reason] = true
					}
				}
			}
			g.mu.Unlock()
		}
	}()
	return g
}

// stop waits for the watch to end (its ctx cancelled) and returns the
// reasons seen, sorted.
func (g *gateWatch) stop() []string {
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.reasons))
	for r := range g.reasons {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// settledState lists, once a rollout has settled, the pods whose gate is
// not True (or that are still terminating) and the servers an HAProxy
// instance has for an address no pod of the namespace has.
func settledState(ctx context.Context, t Target, ns string, gated bool) (stuck, leftovers []string, err error) {
	pods, err := t.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return nil, nil, err
	}
	gate := corev1.PodConditionType(zv1.GateConditionType(BindingName))
	ips := map[string]bool{}
	stuck, leftovers = []string{}, []string{}
	for _, p := range pods.Items {
		if p.Status.PodIP != "" {
			ips[p.Status.PodIP] = true
		}
		if p.DeletionTimestamp != nil {
			stuck = append(stuck, p.Name+" (terminating)")
			continue
		}
		if !gated {
			continue
		}
		if why := gateStuck(&p, gate); why != "" {
			stuck = append(stuck, p.Name+" ("+why+")")
		}
	}
	for _, h := range t.HAProxy {
		c, err := hapi.NewClient(h.Socket)
		if err != nil {
			return stuck, leftovers, err
		}
		states, err := c.ShowServersState(ctx, h.Backend)
		if err != nil {
			return stuck, leftovers, fmt.Errorf("%s: %w", h.Name, err)
		}
		for _, s := range states {
			if hapi.IsSlot(s.Name) && hapi.SlotFree(s) {
				continue
			}
			if !ips[s.Addr] {
				leftovers = append(leftovers, fmt.Sprintf("%s/%s %s", h.Name, s.Name, s.Addr))
			}
		}
	}
	return stuck, leftovers, nil
}

// gateStuck says why a settled pod of a gated scenario is stuck, or "": a
// pod that carries the gate is stuck while the gate is not True; a pod
// admitted without it (the webhook was down: reported as ungated, not
// stuck) while it is not Ready.
func gateStuck(p *corev1.Pod, gate corev1.PodConditionType) string {
	carries := false
	for _, g := range p.Spec.ReadinessGates {
		carries = carries || g.ConditionType == gate
	}
	want, why := gate, "gate not True"
	if !carries {
		want, why = corev1.PodReady, "ungated and not Ready"
	}
	for _, c := range p.Status.Conditions {
		if c.Type == want && c.Status == corev1.ConditionTrue {
			return ""
		}
	}
	return why
}

// judge checks a rollout's record against its fault's promise, and the
// promises every rollout of a gated scenario keeps: nothing stuck, nothing
// left in HAProxy.
func (rec *RolloutRecord) judge() {
	p, ok := rec.Fault.Promise()
	if !ok {
		return
	}
	var broken []string
	if p.ZeroFailed {
		if n := rec.Failed - rec.FailedVictimDown - rec.FailedClockJump; n > 0 {
			broken = append(broken, fmt.Sprintf("%d failed requests", n))
		}
	}
	if bound, ok := rec.lossBound(); ok && rec.Failed > bound {
		broken = append(broken, fmt.Sprintf("%d failed requests, more than the bound %d", rec.Failed, bound))
	}
	if p.NoGateOpensWithoutVerdict && rec.GatesOpenedBlind > 0 {
		broken = append(broken, fmt.Sprintf("%d gates opened without the victim's verdict", rec.GatesOpenedBlind))
	}
	if ev := rec.FaultEvent; p.NoDrainTimeout && ev != nil && ev.Cluster != nil {
		// The leader's Events and the serve processes' verdicts are about
		// the same pods: the larger count.
		if n := max(ev.Cluster.DrainTimeouts, ev.Cluster.HooksReleasedByTimeout); n > 0 {
			broken = append(broken, fmt.Sprintf("%d drain gates released by drain.timeout", n))
		}
	}
	broken = append(broken, rec.leftBehind()...)
	if rec.Error != "" {
		broken = append(broken, rec.Error)
	}
	if len(broken) == 0 {
		rec.Promise = "kept"
		return
	}
	rec.Promise = "broken: " + strings.Join(broken, "; ")
}

// leftBehind is what every rollout must not leave, whatever its fault
// promises: stuck gates, servers left in HAProxy, a fault that failed.
func (rec *RolloutRecord) leftBehind() []string {
	var broken []string
	if len(rec.StuckGates) > 0 {
		broken = append(broken, "stuck: "+strings.Join(rec.StuckGates, ", "))
	}
	if len(rec.Leftovers) > 0 {
		broken = append(broken, "left in HAProxy: "+strings.Join(rec.Leftovers, ", "))
	}
	if rec.FaultEvent != nil && rec.FaultEvent.Err != "" {
		broken = append(broken, "fault: "+rec.FaultEvent.Err)
	}
	return broken
}

// verdict judges verify's report of a rollout's window as the rollout's
// record was judged: against its fault's promise when it has one, else
// against zero failed requests, nothing stuck, nothing left in HAProxy and
// a fault that did what it should.
func (rec *RolloutRecord) verdict(rep *verify.Report) verify.Verdict {
	bound, bounded := rec.lossBound()
	switch {
	case rec.Promise == "kept" && rec.Failed > 0 && bounded:
		what := "what a lost node's pods served and were sent until the LB's checks took them out"
		if rec.Fault == FaultServe {
			what = "what the pod whose drain hook was cut was serving when its app exited"
		}
		return verify.Verdict{Pass: true, Reason: fmt.Sprintf("promise kept: %d of %d requests failed, within the fault's bound of %d (%s)",
			rec.Failed, rec.Requests, bound, what)}
	case rec.Promise == "kept" && rec.Failed > 0 && rec.FailedClockJump > 0:
		return verify.Verdict{Pass: true, Reason: fmt.Sprintf("promise kept: %d of %d requests failed, every one HAProxy's own at the clock step (an instance that missed the step timed out what it held, counted apart)",
			rec.Failed, rec.Requests)}
	case rec.Promise == "kept" && rec.Failed > 0:
		return verify.Verdict{Pass: true, Reason: fmt.Sprintf("promise kept: %d of %d requests failed, every one through the stopped instance while it was down (the LB's outage, counted apart)",
			rec.Failed, rec.Requests)}
	case rec.Promise == "kept":
		return verify.Verdict{Pass: true, Reason: fmt.Sprintf("promise kept: all %d requests succeeded", rec.Requests)}
	case rec.Promise != "":
		return verify.Verdict{Pass: false, ExitCode: 1, Reason: "promise " + rec.Promise}
	}
	v := verify.Judge(rep, verify.Threshold{})
	var broken []string
	broken = append(broken, rec.leftBehind()...)
	if len(broken) > 0 {
		v.Pass, v.ExitCode = false, 1
		v.Reason += "; " + strings.Join(broken, "; ")
	}
	return v
}

// FaultSummary sums a run's rollouts of one fault.
type FaultSummary struct {
	Fault Fault `json:"fault"`
	// Rollouts counts the rollouts that suffered the fault; RolloutNumbers
	// are theirs (RolloutRecord.Rollout), in order. A fault of the
	// campaign's cycle that no rollout reached has none.
	Rollouts       int    `json:"rollouts"`
	RolloutNumbers []int  `json:"rolloutNumbers"`
	Requests       uint64 `json:"requests"`
	// Failed splits into FailedGet and FailedPost by the streams' method,
	// and into FailedVictimDown (sent through the stopped instance while it
	// was down: the LB's outage) and FailedLive (the rest).
	Failed           uint64 `json:"failed"`
	FailedGet        uint64 `json:"failedGet"`
	FailedPost       uint64 `json:"failedPost"`
	FailedVictimDown uint64 `json:"failedVictimDown"`
	FailedLive       uint64 `json:"failedLive"`
	// VictimStopped: some rollout recorded a window in which the fault's
	// victim instance was stopped, so FailedVictimDown means something.
	VictimStopped    bool `json:"victimStopped"`
	GatesOpenedBlind int  `json:"gatesOpenedBlind"`
	Stuck            int  `json:"stuck"`
	Leftovers        int  `json:"leftovers"`
	// Kept and Broken count the rollouts judged against the fault's
	// promise; both are 0 for a fault without one.
	Kept             int     `json:"kept"`
	Broken           int     `json:"broken"`
	MedianRolloutSec float64 `json:"medianRolloutSeconds"`
	MaxRolloutSec    float64 `json:"maxRolloutSeconds"`
}

// Judged reports whether the fault's rollouts were judged against a
// promise (Fault.Promise).
func (s FaultSummary) Judged() bool { return s.Kept+s.Broken > 0 }

// PromiseKept reports whether they were, and every one kept it.
func (s FaultSummary) PromiseKept() bool { return s.Judged() && s.Broken == 0 }

// SummaryByFault sums r's rollouts per fault: every fault of the run's
// cycle (FaultCycle) in its order, those no rollout reached with zero
// rollouts, then any other fault in the order it first struck.
func (r Result) SummaryByFault() []FaultSummary {
	var out []FaultSummary
	idx := map[Fault]int{}
	row := func(f Fault) *FaultSummary {
		i, ok := idx[f]
		if !ok {
			i = len(out)
			idx[f] = i
			out = append(out, FaultSummary{Fault: f, RolloutNumbers: []int{}})
		}
		return &out[i]
	}
	for _, f := range r.FaultCycle {
		row(f)
	}
	secs := map[Fault][]float64{}
	for _, rec := range r.PerRollout {
		s := row(rec.Fault)
		s.Rollouts++
		s.RolloutNumbers = append(s.RolloutNumbers, rec.Rollout)
		s.Requests += rec.Requests
		s.Failed += rec.Failed
		for _, st := range rec.Streams {
			switch st.Method {
			case http.MethodPost:
				s.FailedPost += st.Failed
			case http.MethodGet:
				s.FailedGet += st.Failed
			}
		}
		s.FailedVictimDown += rec.FailedVictimDown
		s.FailedLive += rec.Failed - min(rec.Failed, rec.FailedVictimDown)
		s.VictimStopped = s.VictimStopped || len(rec.VictimDown) > 0
		s.GatesOpenedBlind += rec.GatesOpenedBlind
		s.Stuck += len(rec.StuckGates)
		s.Leftovers += len(rec.Leftovers)
		switch {
		case rec.Promise == "kept":
			s.Kept++
		case rec.Promise != "":
			s.Broken++
		}
		s.MaxRolloutSec = max(s.MaxRolloutSec, rec.Seconds)
		secs[rec.Fault] = append(secs[rec.Fault], rec.Seconds)
	}
	for i := range out {
		out[i].MedianRolloutSec = median(secs[out[i].Fault])
	}
	return out
}

// median is the middle of xs (the mean of the two middle ones for an even
// count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// FaultName is how tables name a fault: "none" for no fault.
func FaultName(f Fault) string {
	if f == FaultNone {
		return "none"
	}
	return string(f)
}

// PrintCampaign writes the per-fault summary of a run's rollouts and the
// rollouts whose promise broke.
func PrintCampaign(w io.Writer, r Result) {
	fmt.Fprintf(w, "\n%s: %d rollouts by fault\n", r.Scenario, len(r.PerRollout))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\trollouts\trequests\tfailed\tfailed GET\tfailed POST\tvictim down\tblind gates\tstuck\tleftovers\tpromise kept\trollout median\tmax\t")
	var unreached []string
	for _, s := range r.SummaryByFault() {
		if s.Rollouts == 0 {
			unreached = append(unreached, FaultName(s.Fault))
			continue
		}
		kept := "-"
		if s.Judged() {
			kept = fmt.Sprintf("%d/%d", s.Kept, s.Kept+s.Broken)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.1fs\t%.1fs\t\n", FaultName(s.Fault), s.Rollouts, s.Requests, s.Failed, s.FailedGet, s.FailedPost,
			s.FailedVictimDown, s.GatesOpenedBlind, s.Stuck, s.Leftovers, kept, s.MedianRolloutSec, s.MaxRolloutSec)
	}
	tw.Flush()
	if len(unreached) > 0 {
		fmt.Fprintf(w, "  not reached (the campaign ended first): %s\n", strings.Join(unreached, ", "))
	}
	for _, rec := range r.PerRollout {
		if strings.HasPrefix(rec.Promise, "broken") {
			fmt.Fprintf(w, "  rollout %d (%s): %s\n", rec.Rollout, rec.Fault, rec.Promise)
		}
	}
}

// window is result for the pods of one rollout, while the probe runs: new
// pods that turned ContainersReady, and pods deleted, in [from, to).
func (p *latencyProbe) window(instances []string, minWait time.Duration, from, to time.Time) *GateTimings {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := func(t time.Time) bool { return !t.IsZero() && !t.Before(from) && t.Before(to) }
	var gate, wait, extra, drain []time.Duration
	for _, t := range p.pods {
		if t.notReadySeen && !t.ready.IsZero() && in(t.containersReady) {
			var lastUp time.Time
			all := true
			for _, i := range instances {
				u := t.up[i]
				if u.IsZero() {
					all = false
					break
				}
				lastUp = later(lastUp, u)
			}
			if all {
				gate = append(gate, max(0, t.ready.Sub(lastUp)))
				w := t.ready.Sub(t.containersReady)
				wait = append(wait, w)
				extra = append(extra, w-minWait)
			}
		}
		if in(t.deleted) {
			var last time.Time
			for _, i := range instances {
				last = later(last, t.lastPick[i])
			}
			drain = append(drain, max(0, last.Sub(t.deleted)))
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return &GateTimings{
		ProbeIntervalMs: ms(probeInterval), GateSamples: len(gate),
		GateLatencyP50ms: ms(quantile(gate, 0.5)), GateLatencyP99ms: ms(quantile(gate, 0.99)),
		GateWaitP50ms: ms(quantile(wait, 0.5)), MinWaitMs: ms(minWait),
		ExtraP50ms: ms(quantile(extra, 0.5)), ExtraP99ms: ms(quantile(extra, 0.99)),
		DrainSamples: len(drain), DrainLatencyP50ms: ms(quantile(drain, 0.5)), DrainLatencyP99ms: ms(quantile(drain, 0.99)),
	}
}

// readyDuring counts the new pods that turned Ready inside one of ws
// (relative to base).
func (p *latencyProbe) readyDuring(base time.Time, ws []Window) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, t := range p.pods {
		if !t.notReadySeen || t.ready.IsZero() {
			continue
		}
		for _, w := range ws {
			if t.ready.After(base.Add(w.From)) && t.ready.Before(base.Add(w.To)) {
				n++
				break
			}
		}
	}
	return n
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// finish fills the record once its rollout has settled (or failed with
// err): the fault's windows, the gate figures, what is stuck or left over,
// and provisional counts (recount takes them again when the window closes).
func (rec *RolloutRecord) finish(ctx context.Context, t Target, r *recorder, probe *latencyProbe, rig *lbRig, s Scenario, o RunOptions,
	lbNames []string, minWait time.Duration, start time.Time, methods map[string]string, err error) {
	if err != nil {
		rec.Error = err.Error()
	}
	now := time.Now()
	rec.VictimDown = rig.outageWindows(rec.Rollout)
	rec.VerdictMissing = rig.blindWindows(rec.Rollout)
	if probe != nil {
		rec.Gates = probe.window(lbNames, minWait, start, now)
		rec.GatesOpenedBlind = probe.readyDuring(start, rec.VerdictMissing)
	}
	if s.lb() == LBHAProxy {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		stuck, left, serr := settledState(sctx, t, o.Namespace, s.ExternalLB)
		cancel()
		rec.StuckGates, rec.Leftovers = stuck, left
		if serr != nil && rec.Error == "" {
			rec.Error = "reading what is left: " + serr.Error()
		}
	}
	rec.recount(r, start, now, methods, rig, rec.VictimDown)
}

// recount takes the record's counts over [from, to) and judges its
// promise.
func (rec *RolloutRecord) recount(r *recorder, from, to time.Time, methods map[string]string, rig *lbRig, down []Window) {
	rec.Streams = r.window(from, to, methods)
	rec.Requests, rec.Failed = 0, 0
	for _, st := range rec.Streams {
		rec.Requests += st.Requests
		rec.Failed += st.Failed
	}
	rec.FailedVictimDown = 0
	if rig != nil && (rec.Fault == FaultLBDown || rec.Fault == FaultLBFlap) {
		rec.FailedVictimDown = r.failedThrough(rig.victim, from, to, down, time.Second)
	}
	rec.FailedClockJump = 0
	if ev := rec.FaultEvent; ev != nil && ev.Cluster != nil && ev.Cluster.StepAt > 0 {
		c := ev.Cluster
		rec.FailedClockJump = r.failedClockJump(from.Add(c.StepAt), from.Add(max(c.StepBackAt, c.StepAt)+time.Second))
	}
	rec.judge()
}

func faultLabel(f Fault) string {
	if f == "" {
		return ""
	}
	return " (" + string(f) + ")"
}

func promiseLabel(p string) string {
	if p == "" {
		return ""
	}
	return "; promise " + p
}
