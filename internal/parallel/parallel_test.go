package parallel

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// Scenario: 10,000 items on every core, on one, and none at all.
// Expectation: f runs exactly once for each index, and For returns only
// after all of them.
func TestFor_CallsEachIndexOnce(t *testing.T) {
	for _, procs := range []int{1, 4} {
		old := runtime.GOMAXPROCS(procs)
		for _, n := range []int{0, 1, 10_000} {
			calls := make([]atomic.Int32, n)
			For(n, func(i int) { calls[i].Add(1) })
			for i := range calls {
				if c := calls[i].Load(); c != 1 {
					t.Fatalf("GOMAXPROCS %d, n %d: index %d called %d times, want 1", procs, n, i, c)
				}
			}
		}
		runtime.GOMAXPROCS(old)
	}
}
