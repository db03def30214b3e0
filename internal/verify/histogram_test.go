package verify

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted values: the reference
// the histogram is checked against.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	if q <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func checkQuantiles(t *testing.T, name string, h *Histogram, values []time.Duration) {
	t.Helper()
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	for _, q := range []float64{0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1} {
		got, want := h.Quantile(q), exactQuantile(sorted, q)
		relErr := math.Abs(float64(got-want)) / math.Max(float64(want), 1)
		if relErr > 0.01 {
			t.Errorf("%s: q=%v: histogram says %v, exact %v (relative error %.4f > 1%%)", name, q, got, want, relErr)
		}
	}
	if h.Min() != sorted[0] || h.Max() != sorted[len(sorted)-1] {
		t.Errorf("%s: min/max %v/%v, want exact %v/%v", name, h.Min(), h.Max(), sorted[0], sorted[len(sorted)-1])
	}
	if h.Count() != uint64(len(values)) {
		t.Errorf("%s: count %d, want %d", name, h.Count(), len(values))
	}
}

func TestHistogramQuantilesWithinOnePercentOfExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	distributions := map[string]func() time.Duration{
		// Typical HTTP latencies: log-normal around 2 ms.
		"lognormal": func() time.Duration { return time.Duration(2e6 * math.Exp(rng.NormFloat64())) },
		// Bimodal: most fast, a tail at the LB timeout.
		"bimodal": func() time.Duration {
			if rng.IntN(100) < 3 {
				return 5*time.Second + time.Duration(rng.IntN(1e6))
			}
			return time.Duration(200e3 + rng.IntN(800e3))
		},
		// Tiny values exercise the exact region below 256 ns.
		"tiny": func() time.Duration { return time.Duration(rng.IntN(600)) },
		// Spread over nine decades.
		"wide": func() time.Duration { return time.Duration(math.Pow(10, rng.Float64()*9)) },
	}
	for name, gen := range distributions {
		var h Histogram
		values := make([]time.Duration, 20000)
		for i := range values {
			values[i] = gen()
			h.Record(values[i])
		}
		checkQuantiles(t, name, &h, values)
	}
}

func TestHistogramMergeEqualsRecordingEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var a, b, all Histogram
	var values []time.Duration
	for i := range 5000 {
		// a sees small values, b large ones: merging must grow the range both ways.
		v := time.Duration(rng.IntN(1e6))
		if i%2 == 0 {
			v = time.Duration(1e8 + rng.IntN(1e9))
			b.Record(v)
		} else {
			a.Record(v)
		}
		all.Record(v)
		values = append(values, v)
	}
	var merged Histogram
	merged.Merge(&b)
	merged.Merge(&a)
	merged.Merge(nil)
	merged.Merge(&Histogram{})
	checkQuantiles(t, "merged", &merged, values)
	for _, q := range []float64{0.1, 0.5, 0.9, 0.99} {
		if merged.Quantile(q) != all.Quantile(q) {
			t.Errorf("q=%v: merged %v, recorded together %v", q, merged.Quantile(q), all.Quantile(q))
		}
	}
	if merged.Mean() != all.Mean() {
		t.Errorf("mean: merged %v, recorded together %v", merged.Mean(), all.Mean())
	}
}

func TestHistogramBucketsAreContiguousAndNarrow(t *testing.T) {
	// Every value maps to a bucket whose bounds contain it, consecutive
	// buckets touch, and no bucket is wider than 1/128 of its lower bound.
	prevHi := uint64(0)
	for i := 0; i < 40<<histPrecisionBits; i++ {
		lo, hi := histBounds(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if histIndex(lo) != i || histIndex(hi) != i {
			t.Fatalf("bucket %d [%d,%d]: bounds map to %d and %d", i, lo, hi, histIndex(lo), histIndex(hi))
		}
		if lo > 0 && float64(hi-lo)/float64(lo) > 1.0/128 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/128 of its lower bound", i, lo, hi)
		}
		prevHi = hi
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Fatalf("empty histogram: %v", h.String())
	}
	h.Record(-time.Second)
	if h.Max() != 0 || h.Count() != 1 {
		t.Fatalf("negative value should count as 0: %v", h.String())
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(1e5 + i%1e7))
	}
}
