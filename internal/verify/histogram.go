package verify

import (
	"fmt"
	"math"
	"math/bits"
	"time"
)

// histPrecisionBits sets the histogram's resolution: every power-of-two range
// of values is split into 2^histPrecisionBits linear sub-buckets, so a bucket
// is never wider than 1/128 of its lower bound. Reporting a bucket's midpoint
// keeps the relative error of any percentile at or below 0.4 % (< 1 %).
const histPrecisionBits = 7

// exactBelow is the value below which every value has a bucket of its own.
const exactBelow = 1 << (histPrecisionBits + 1)

// Histogram counts non-negative durations in log-linear buckets with a
// bounded relative error (HdrHistogram's layout, written here because its Go
// module is not available). It stores only the range of buckets it has seen,
// so a histogram per timeline bucket stays small. Two histograms merge
// exactly. The zero value is an empty histogram ready to use; it is not safe
// for concurrent use.
type Histogram struct {
	base   int      // bucket index of counts[0]
	counts []uint64 // counts[i] is the count of bucket base+i
	total  uint64
	min    int64
	max    int64
	sum    float64
}

// histIndex returns the bucket of value v.
func histIndex(v uint64) int {
	if v < exactBelow {
		return int(v)
	}
	m := bits.Len64(v) - (histPrecisionBits + 1) // magnitude: the bucket width is 2^m
	return m<<histPrecisionBits + int(v>>uint(m))
}

// histBounds returns the smallest and largest value of bucket i.
func histBounds(i int) (lo, hi uint64) {
	m := i>>histPrecisionBits - 1
	if m <= 0 {
		return uint64(i), uint64(i)
	}
	sub := uint64(i - m<<histPrecisionBits)
	return sub << uint(m), (sub+1)<<uint(m) - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	i := histIndex(uint64(v))
	h.cover(i, i)
	h.counts[i-h.base]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += float64(v)
}

// cover grows counts so that buckets lo..hi have a slot.
func (h *Histogram) cover(lo, hi int) {
	if h.counts == nil {
		h.base = lo
		h.counts = make([]uint64, hi-lo+1, max(16, hi-lo+1))
		return
	}
	if lo < h.base {
		grown := make([]uint64, len(h.counts)+h.base-lo)
		copy(grown[h.base-lo:], h.counts)
		h.counts, h.base = grown, lo
	}
	if n := hi - h.base + 1; n > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, n-len(h.counts))...)
	}
}

// Merge adds every value recorded in o to h. The result is the histogram
// that recording both sets of values into one would have produced.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.total == 0 {
		return
	}
	h.cover(o.base, o.base+len(o.counts)-1)
	for j, c := range o.counts {
		h.counts[o.base+j-h.base] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Min returns the smallest recorded value (exact), or 0 when empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest recorded value (exact), or 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the arithmetic mean of the recorded values (exact up to
// float64 rounding), or 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Quantile returns the q-quantile (0 <= q <= 1) by the nearest-rank method:
// the smallest recorded value v such that at least q of all values are <= v,
// approximated by the midpoint of v's bucket and clamped to the exact minimum
// and maximum. It returns 0 when the histogram is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	if math.IsNaN(q) || q <= 0 {
		return time.Duration(h.min)
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for j, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histBounds(h.base + j)
			mid := int64(lo + (hi-lo)/2)
			return time.Duration(max(h.min, min(h.max, mid)))
		}
	}
	return time.Duration(h.max)
}

// String summarises the histogram for debugging.
func (h *Histogram) String() string {
	return fmt.Sprintf("n=%d min=%v p50=%v p99=%v max=%v", h.total, h.Min(), h.Quantile(0.5), h.Quantile(0.99), h.Max())
}
