package timing

import (
	"fmt"
	"math"
	"slices"
)

// Rollout summarises a whole rolling update as one LB sees it.
type Rollout struct {
	Replicas int     `json:"replicas"`
	MaxSurge int     `json:"maxSurge"`
	Step     float64 `json:"step"`     // seconds from a new pod's creation to the deletion of an old one
	Duration float64 `json:"duration"` // until the last old pod is deleted
	// Outages are the spans during which the LB has no healthy target at
	// all: every request fails (seed 000: 502s in 28 of 28 deployments).
	Outages []Window `json:"outages,omitempty"`
	// MinHealthy is the fewest healthy targets the LB has during the
	// rollout (replicas at best).
	MinHealthy int `json:"minHealthy"`
}

// SimulateRollout plays a rolling update of replicas pods with maxSurge
// (>= 1) and maxUnavailable 0 behind lb: each batch of maxSurge new pods is
// created, the same number of old pods is deleted when they become
// available (Startup's "old pod deleted" time), the LB stops sending to an
// old pod D after its deletion and starts sending to a new one when it marks
// it healthy. It counts the LB's healthy targets over time.
//
// Without a gate, when the LB's check time exceeds the rollout step, the old
// targets run out before the first new one is healthy: a full outage.
func SimulateRollout(p Pod, lb LB, a Assumptions, replicas, maxSurge int) Rollout {
	return RolloutOf(Startup(p, lb, a), p, lb, replicas, maxSurge)
}

// RolloutOf is SimulateRollout given the pod's startup timeline
// (Startup(p, lb, a)), for callers that already have it.
func RolloutOf(st Timeline, p Pod, lb LB, replicas, maxSurge int) Rollout {
	if replicas < 1 {
		replicas = 1
	}
	if maxSurge < 1 {
		maxSurge = 1
	}
	var avail, healthy float64
	for _, e := range st.Events {
		if e.Actor == "Deployment" && e.State == "old pod deleted" {
			avail = e.At
		}
	}
	healthy = avail
	actor := lb.Actor()
	for _, e := range st.Events {
		if e.Actor == actor && (e.State == "healthy" || e.State == "sending to new pod") {
			healthy = e.At
		}
	}
	r := Rollout{Replicas: replicas, MaxSurge: maxSurge, Step: avail, MinHealthy: replicas}
	type change struct {
		at    float64
		delta int
	}
	cs := make([]change, 0, 2*replicas)
	for k := 0; k < replicas; k++ {
		created := float64(k/maxSurge) * avail
		cs = append(cs, change{created + healthy, +1})                                              // new pod k healthy
		cs = append(cs, change{created + avail + lb.StopSending(math.Min(p.PreStop, p.Grace)), -1}) // old pod k no longer used
		r.Duration = math.Max(r.Duration, created+avail)
	}
	// At equal times count removals first: the conservative order.
	slices.SortFunc(cs, func(a, b change) int {
		if c := cmpFloat(a.at, b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	n := replicas
	start := -1.0
	for _, c := range cs {
		n += c.delta
		if n < r.MinHealthy {
			r.MinHealthy = n
		}
		if n == 0 && start < 0 {
			start = c.at
		}
		if n > 0 && start >= 0 {
			if c.at > start {
				r.Outages = append(r.Outages, Window{Start: start, End: c.at, Cause: CauseStartupGap, Actor: lb.Actor(), Exposure: "new", Effect: "502/503",
					Why: fmt.Sprintf("all %d old targets are gone and no new one is healthy yet: a step takes %s, a new target is healthy %s after its pod is created", replicas, Sec(avail), Sec(healthy))})
			}
			start = -1
		}
	}
	return r
}
