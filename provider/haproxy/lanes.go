package haproxy

// Lanes: who gets the next of an instance's MaxConns connections.
//
// A rollout's Registers (five commands each, slot claims included) fill
// every connection of an instance, and a command that waits for one used
// to wait behind every command queued before it. Among those waiters two
// kinds are urgent (issue 12): a drain, because every request the load
// balancer still sends a pod being deleted may fail, and the pool read a
// gate waits for, because the pod's Ready waits on it. At 1,000 pods they
// queued behind Registers for hundreds of milliseconds (drain p99 790 ms
// against a goal of 50). So a command waits in the lane of the provider
// call it belongs to (set on its context by the provider's method, so
// the provider API does not change), and a freed connection goes to the
// first waiter of the most urgent lane: drains, then reads, then the rest,
// first come first served within a lane.
//
// Starvation: a lane's first waiter is passed by at most maxPassed
// commands of more urgent lanes; then it has the next free connection.
// Every command holds its connection for at most its timeout (the
// Client's, DefaultTimeout by default), so a queued Register always gets a
// connection within a bounded time, however many drains keep arriving.

import (
	"container/list"
	"context"
	"sync"
)

// lane is how urgent a Runtime API command is when it waits for a
// connection. The zero value is the least urgent.
type lane int8

const (
	// laneBulk: registrations (their slot claims and the reads they
	// make) and anything not marked.
	laneBulk lane = iota
	// laneRead: a pool's status read (Provider.Status), which gates and
	// drain verdicts wait for.
	laneRead
	// laneDrain: taking a target out of rotation (Provider.SetDraining,
	// Provider.Deregister: with drain disabled it is the removal itself).
	laneDrain

	numLanes
)

func (l lane) String() string {
	switch l {
	case laneBulk:
		return "bulk"
	case laneRead:
		return "read"
	case laneDrain:
		return "drain"
	}
	return "lane?"
}

// maxPassed is how many commands of more urgent lanes may pass the first
// waiter of a lane before it has the next free connection: while drains
// keep coming, at least one connection in maxPassed+1 still goes to the
// Registers.
const maxPassed = 8

type laneKey struct{}

// withLane returns ctx with the lane its commands wait in; it replaces
// any lane ctx had (a provider method decides for all its commands).
func withLane(ctx context.Context, l lane) context.Context {
	return context.WithValue(ctx, laneKey{}, l)
}

// laneOf returns the lane of ctx's commands: laneBulk when none is set.
func laneOf(ctx context.Context) lane {
	l, _ := ctx.Value(laneKey{}).(lane)
	return l
}

// connQueue hands out one instance's MaxConns connection slots by lane.
// The zero value has every slot free.
type connQueue struct {
	mu   sync.Mutex
	held int // slots in use; there are waiters only when held == MaxConns
	// waits holds each lane's waiters (*connWaiter), first come first.
	waits [numLanes]list.List
	// passed counts, per lane, the slots given to more urgent lanes since
	// this lane last had one while it had waiters.
	passed [numLanes]int
}

type connWaiter struct {
	granted chan struct{} // closed when a slot is handed to the waiter
}

// acquire waits for a slot in lane l, within ctx. Each successful
// acquire must be followed by one release.
func (q *connQueue) acquire(ctx context.Context, l lane) error {
	q.mu.Lock()
	if q.held < MaxConns {
		q.held++
		q.mu.Unlock()
		return nil
	}
	w := &connWaiter{granted: make(chan struct{})}
	e := q.waits[l].PushBack(w)
	q.mu.Unlock()
	select {
	case <-w.granted:
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	select {
	case <-w.granted:
		// Handed a slot as the context ended: pass it on.
		q.mu.Unlock()
		q.release()
	default:
		q.waits[l].Remove(e)
		if q.waits[l].Len() == 0 {
			q.passed[l] = 0
		}
		q.mu.Unlock()
	}
	return ctx.Err()
}

// release frees a slot: it goes to the next waiter (next), if any.
func (q *connQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	l, ok := q.next()
	if !ok {
		q.held--
		return
	}
	w := q.waits[l].Remove(q.waits[l].Front()).(*connWaiter)
	close(w.granted) // the slot changes hands: held stays
}

// next picks the lane whose first waiter has the free slot: a lane passed
// maxPassed times (the least urgent first), else the most urgent lane with
// a waiter. ok is false when nobody waits.
func (q *connQueue) next() (l lane, ok bool) {
	l = -1
	for i := laneBulk; i < numLanes; i++ {
		if q.waits[i].Len() > 0 && q.passed[i] >= maxPassed {
			l = i
			break
		}
	}
	if l < 0 {
		for i := numLanes - 1; i >= laneBulk; i-- {
			if q.waits[i].Len() > 0 {
				l = i
				break
			}
		}
	}
	if l < 0 {
		return 0, false
	}
	for i := laneBulk; i < l; i++ {
		if q.waits[i].Len() > 0 {
			q.passed[i]++
		}
	}
	q.passed[l] = 0
	return l, true
}

// waiting returns how many commands wait in lane l.
func (q *connQueue) waiting(l lane) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waits[l].Len()
}
