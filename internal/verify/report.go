package verify

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SchemaVersion identifies the JSON layout of Report (docs/verify.md). It
// changes when a field changes meaning or disappears; new fields may be added
// within a version.
const SchemaVersion = "zerodrop.dev/verify/v1"

// Report is everything a run measured. It is what WriteJSON writes.
type Report struct {
	// Schema is SchemaVersion.
	Schema string `json:"schema"`
	// Config echoes what was run.
	Config ReportConfig `json:"config"`
	// Start is time zero of every *_ms offset in the report.
	Start time.Time `json:"start"`
	// End is when the last request ended.
	End time.Time `json:"end"`
	// DurationMS is End - Start.
	DurationMS float64 `json:"duration_ms"`
	// Requests counts the requests sent; OK and Failed split them.
	Requests int64 `json:"requests"`
	OK       int64 `json:"ok"`
	Failed   int64 `json:"failed"`
	// FailedPercent is 100 * Failed / Requests.
	FailedPercent float64 `json:"failed_percent"`
	// Rate is the achieved request rate: requests per second between the
	// first and the last request actually sent (not scheduled), so a load
	// generator that falls behind shows here and in Lag.
	Rate float64 `json:"rate"`
	// Streams counts each load stream apart: the main stream first, then
	// Config.Streams (a POST stream beside the GETs), so failures of a
	// request no client would retry are seen on their own.
	Streams []StreamStats `json:"streams"`
	// Failures has one entry per failure class that occurred, in
	// FailureClasses order.
	Failures []ClassStats `json:"failures"`
	// Latency is measured from each request's scheduled time (see Result).
	Latency Summary `json:"latency"`
	// Lag is how late requests were sent relative to their schedule: the
	// load generator's own accuracy.
	Lag Summary `json:"lag"`
	// Timeline lines requests and events up in fixed buckets.
	Timeline Timeline `json:"timeline"`
	// Events are the pod, endpoint, Kubernetes and rollout events in time
	// order.
	Events []Event `json:"events"`
	// Episodes are the stretches of the timeline with failures, each with
	// the events that preceded it.
	Episodes []Episode `json:"episodes"`
	// Rollout is set when verify drove a rollout.
	Rollout *RolloutReport `json:"rollout,omitempty"`
	// Samples are the first failed requests (at most MaxSamples).
	Samples []Result `json:"samples"`
	// Verdict is pass or fail, with the reason.
	Verdict Verdict `json:"verdict"`
}

// MaxSamples bounds Report.Samples.
const MaxSamples = 100

// ReportConfig echoes the configuration of a run.
type ReportConfig struct {
	Method      string  `json:"method"`
	URL         string  `json:"url"`
	Model       string  `json:"model"` // "open" (constant rate) or "closed" (fixed connections)
	Rate        float64 `json:"rate,omitempty"`
	Connections int     `json:"connections,omitempty"`
	KeepAlive   bool    `json:"keepalive"`
	TimeoutMS   float64 `json:"timeout_ms"`
	DurationMS  float64 `json:"duration_ms"`
	MaxWorkers  int     `json:"max_workers,omitempty"`
	Namespace   string  `json:"namespace,omitempty"`
	Selector    string  `json:"selector,omitempty"`
	Service     string  `json:"service,omitempty"`
	Rollout     string  `json:"rollout,omitempty"`
	WarmupMS    float64 `json:"warmup_ms,omitempty"`
	SettleMS    float64 `json:"settle_ms,omitempty"`
	BucketMS    float64 `json:"bucket_ms"`
	MaxFailures string  `json:"max_failures"`
}

// ClassStats counts the failures of one class.
type ClassStats struct {
	Class Class `json:"class"`
	Count int64 `json:"count"`
	// FirstAtMS and LastAtMS are the scheduled times of the first and the
	// last request that failed this way.
	FirstAtMS float64   `json:"first_at_ms"`
	LastAtMS  float64   `json:"last_at_ms"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
	// Example is the error text (or status) of the first such failure.
	Example string `json:"example"`
}

// Summary describes a distribution of durations, in milliseconds.
type Summary struct {
	Count  uint64  `json:"count"`
	MinMS  float64 `json:"min_ms"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func summarize(h *Histogram) Summary {
	return Summary{
		Count: h.Count(), MinMS: ms(h.Min()), MeanMS: ms(h.Mean()),
		P50MS: ms(h.Quantile(0.5)), P90MS: ms(h.Quantile(0.9)), P99MS: ms(h.Quantile(0.99)),
		P999MS: ms(h.Quantile(0.999)), MaxMS: ms(h.Max()),
	}
}

// Timeline is the run cut into buckets of BucketMS milliseconds; bucket i
// covers [i*BucketMS, (i+1)*BucketMS) after Start. A request belongs to the
// bucket of its scheduled time.
type Timeline struct {
	BucketMS float64  `json:"bucket_ms"`
	Buckets  []Bucket `json:"buckets"`
}

// Bucket is one slice of the timeline.
type Bucket struct {
	AtMS     float64         `json:"at_ms"`
	OK       int64           `json:"ok"`
	Failed   int64           `json:"failed"`
	Failures map[Class]int64 `json:"failures,omitempty"`
	// FirstFailureAtMS is the scheduled time of the bucket's first failed
	// request; 0 when none failed.
	FirstFailureAtMS float64 `json:"first_failure_at_ms,omitempty"`
	// FirstFailureEndMS is when that request ended (failed).
	FirstFailureEndMS float64 `json:"first_failure_end_ms,omitempty"`
	// Latency percentiles of the requests of this bucket, failed ones
	// included (a timeout is latency too); 0 when the bucket is empty.
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
}

// Episode is a stretch of the timeline with failures (gaps shorter than
// episodeGap joined), with the pod and endpoint events just before it: the
// likely cause.
type Episode struct {
	FromMS float64 `json:"from_ms"`
	ToMS   float64 `json:"to_ms"`
	// FirstAtMS is the scheduled time of the episode's first failed request.
	FirstAtMS float64 `json:"first_at_ms"`
	// FirstEndMS is when that request ended: the client saw the failure.
	FirstEndMS float64         `json:"first_end_ms"`
	Failed     int64           `json:"failed"`
	Failures   map[Class]int64 `json:"failures"`
	// Preceding are the last pod, endpoint and rollout events observed
	// before the first failure ended (within 30 s), nearest first.
	Preceding []Event `json:"preceding"`
}

// RolloutReport describes the rollout verify drove.
type RolloutReport struct {
	Deployment string `json:"deployment"`
	Action     string `json:"action"`
	// StartedAtMS is when the Deployment was patched.
	StartedAtMS float64 `json:"started_at_ms"`
	// CompletedAtMS is when kubectl rollout status would have said
	// "successfully rolled out"; OldGoneAtMS when the last old pod was gone.
	// Both are 0 when that did not happen.
	CompletedAtMS float64 `json:"completed_at_ms,omitempty"`
	OldGoneAtMS   float64 `json:"old_gone_at_ms,omitempty"`
	Complete      bool    `json:"complete"`
	Error         string  `json:"error,omitempty"`
}

// Verdict is the pass/fail outcome for CI.
type Verdict struct {
	Pass bool `json:"pass"`
	// ExitCode is what the CLI exits with: 0 pass, 1 fail.
	ExitCode int    `json:"exit_code"`
	Reason   string `json:"reason"`
}

// Threshold is the number of failures a run may have and still pass: a count
// or a percentage of the requests.
type Threshold struct {
	Count   int64
	Percent float64
	// IsPercent selects Percent over Count.
	IsPercent bool
}

// ParseThreshold parses "0", "12" (a count) or "0.5%" (a percentage).
func ParseThreshold(s string) (Threshold, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(f >= 0 && f <= 100) { // also rejects NaN
			return Threshold{}, fmt.Errorf("max failures %q: want a count like 3 or a percentage between 0%% and 100%%", s)
		}
		return Threshold{Percent: f, IsPercent: true}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return Threshold{}, fmt.Errorf("max failures %q: want a count like 3 or a percentage like 0.1%%", s)
	}
	return Threshold{Count: n}, nil
}

// String renders the threshold as ParseThreshold reads it.
func (t Threshold) String() string {
	if t.IsPercent {
		return strconv.FormatFloat(t.Percent, 'f', -1, 64) + "%"
	}
	return strconv.FormatInt(t.Count, 10)
}

// Allows reports whether failed out of requests stays within the threshold.
func (t Threshold) Allows(failed, requests int64) bool {
	if t.IsPercent {
		if requests == 0 {
			return true
		}
		return float64(failed)*100/float64(requests) <= t.Percent
	}
	return failed <= t.Count
}
