// Package parallel runs independent pieces of work on every core the Go
// runtime may use, for zerodrop check's large inputs: decoding documents,
// analysing workloads, rendering the report's objects.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls f(i) for every i in [0, n), on up to GOMAXPROCS goroutines, and
// returns once every call has returned. The calls may run in any order and
// at once: f must only write what belongs to its i (out[i] = ...), and the
// caller reads the results in index order, so what it makes of them does
// not depend on the schedule.
func For(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	// Each goroutine takes the next index from a counter: a channel
	// hand-off per item woke goroutines (futex calls, context switches)
	// thousands of times on large inputs.
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}
