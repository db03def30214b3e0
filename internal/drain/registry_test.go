package drain

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// startWaiters starts one goroutine per pod that waits the way a held drain
// request does: wake at a change, build the answer, wait again, until stop
// is closed. It returns the number of wake-ups so far.
func startWaiters(r *Registry, pods []types.NamespacedName, stop <-chan struct{}) *atomic.Int64 {
	h := &Handler{Drains: r}
	bindings := []string{"web-edge"}
	var wakes atomic.Int64
	var started sync.WaitGroup
	for _, pod := range pods {
		started.Add(1)
		go func() {
			first := true
			for {
				ch, done := r.Changed(pod)
				if first {
					started.Done()
					first = false
				}
				_ = h.verdict(pod, bindings)
				select {
				case <-ch:
					wakes.Add(1)
					done()
				case <-stop:
					done()
					return
				}
			}
		}()
	}
	started.Wait()
	return &wakes
}

func podKeys(prefix string, n int) []types.NamespacedName {
	out := make([]types.NamespacedName, n)
	for i := range out {
		out[i] = types.NamespacedName{Namespace: "shop", Name: fmt.Sprintf("%s-%d", prefix, i)}
	}
	return out
}

// TestUnrelatedChangesWakeNoWaiter: a verdict change of one pod wakes the
// requests held for that pod, not those of every other pod (M10).
func TestUnrelatedChangesWakeNoWaiter(t *testing.T) {
	r := NewRegistry()
	stop := make(chan struct{})
	defer close(stop)
	held := podKeys("held", 50)
	wakes := startWaiters(r, held, stop)
	for i, pod := range podKeys("other", 100) {
		r.Report(pod, "web-edge", State{Reason: "Draining", Message: fmt.Sprintf("%d session(s) left", i)})
	}
	time.Sleep(50 * time.Millisecond)
	if n := wakes.Load(); n != 0 {
		t.Fatalf("100 changes of other pods woke the held requests %d times, want 0", n)
	}
	r.Report(held[0], "web-edge", State{Drained: true, Reason: "Drained"})
	deadline := time.Now().Add(5 * time.Second)
	for wakes.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := wakes.Load(); n != 1 {
		t.Fatalf("a change of %s woke %d waiters, want exactly its own 1", held[0], n)
	}
}

// BenchmarkUnrelatedChanges: 2,000 held requests and 100 verdict changes
// of other pods; reports the allocations the changes cause, all goroutines
// included (go test -run XXX -bench UnrelatedChanges ./internal/drain/).
func BenchmarkUnrelatedChanges(b *testing.B) {
	for b.Loop() {
		r := NewRegistry()
		stop := make(chan struct{})
		wakes := startWaiters(r, podKeys("held", 2000), stop)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		for i, pod := range podKeys("other", 100) {
			r.Report(pod, "web-edge", State{Reason: "Draining", Message: fmt.Sprintf("%d session(s) left", i)})
			// Changes come one reconcile cycle apart, not in one burst.
			time.Sleep(2 * time.Millisecond)
		}
		// Let the woken goroutines run before counting.
		for last := int64(-1); last != wakes.Load(); {
			last = wakes.Load()
			time.Sleep(20 * time.Millisecond)
		}
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		close(stop)
		b.ReportMetric(float64(after.Mallocs-before.Mallocs), "allocs/100changes")
		b.ReportMetric(float64(wakes.Load()), "wakeups")
		b.ReportMetric(float64(elapsed.Milliseconds()), "ms/100changes")
	}
}

// TestWaitersLeaveNoChannel: a pod nobody waits for any more keeps no
// wake-up channel, whether or not its verdict ever changed.
func TestWaitersLeaveNoChannel(t *testing.T) {
	r := NewRegistry()
	pod := types.NamespacedName{Namespace: "shop", Name: "web-1"}
	_, done1 := r.Changed(pod)
	_, done2 := r.Changed(pod)
	done1()
	done2()
	ch, done3 := r.Changed(pod)
	r.Report(pod, "web-edge", State{Reason: "Draining"})
	<-ch
	done3()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.changed) != 0 {
		t.Fatalf("registry keeps %d wake-up channels after every waiter left, want 0", len(r.changed))
	}
}
