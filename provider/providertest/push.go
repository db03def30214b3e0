package providertest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// pushSlack is how much later than the poll that first saw a verdict its
// pushed event may arrive: a pushed verdict is of use only when it comes
// no later than polling would have brought it.
const pushSlack = 250 * time.Millisecond

// pushLog collects what a Watch reported, with arrival times.
type pushLog struct {
	mu     sync.Mutex
	events []pushed
}

type pushed struct {
	ev provider.Event
	at time.Time
}

func (l *pushLog) add(ev provider.Event) {
	l.mu.Lock()
	l.events = append(l.events, pushed{ev, time.Now()})
	l.mu.Unlock()
}

func (l *pushLog) snapshot() []pushed {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]pushed(nil), l.events...)
}

// streamGrace is how long the kit waits for an instance whose stream is
// down to come up: the first reconnections of a watch.
const streamGrace = 3 * time.Second

// streams returns each instance's last stream event (StreamUp or
// StreamDown).
func (l *pushLog) streams() map[string]provider.Event {
	last := map[string]provider.Event{}
	for _, p := range l.snapshot() {
		switch p.ev.Kind {
		case provider.EventStreamUp, provider.EventStreamDown:
			last[p.ev.Instance] = p.ev
		}
	}
	return last
}

// streamsUp returns the instances whose last stream event is StreamUp.
func (l *pushLog) streamsUp() []string {
	var up []string
	for in, ev := range l.streams() {
		if ev.Kind == provider.EventStreamUp {
			up = append(up, in)
		}
	}
	sort.Strings(up)
	return up
}

func keys(m map[string]provider.Event) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// firstVerdict returns, per instance, the first verdict event of health h
// on pool at or after since. Any entry counts: an event names the LB's own
// entry, which need not be the target's ID (HAProxy's server-template
// slots), and the kit's target is the only one of the pool that changes.
func (l *pushLog) firstVerdict(pool string, h provider.Health, since time.Time) map[string]pushed {
	out := map[string]pushed{}
	for _, p := range l.snapshot() {
		ev := p.ev
		if ev.Kind != provider.EventVerdict || ev.Pool != pool || ev.Health != h || p.at.Before(since) {
			continue
		}
		if _, seen := out[ev.Instance]; !seen {
			out[ev.Instance] = p
		}
	}
	return out
}

// VerdictsPushed: a provider that declares PushesVerdicts implements
// provider.Watcher, reports every instance's stream state (an instance
// whose stream stays down, with a reason, skips the promise: its verdicts
// are polled, as the contract allows), and, with every stream up, pushes the
// LB's verdict on a kit target, on every instance, no later than polling
// Status every cycle sees it (within pushSlack): Healthy once its checks
// pass, and Unhealthy once they fail (with ActiveHealthChecks).
func checkVerdictsPushed(ctx context.Context, k *run) verdict {
	if !k.caps.PushesVerdicts {
		return skipped("the provider does not declare PushesVerdicts: its verdicts are polled")
	}
	p, err := k.provider(ctx)
	if err != nil {
		return broken("%v", err)
	}
	w, ok := p.(provider.Watcher)
	if !ok {
		return broken("the provider declares PushesVerdicts but does not implement provider.Watcher")
	}
	log := &pushLog{}
	wctx, stop := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- w.Watch(wctx, log.add) }()
	defer func() { stop(); <-watched }()

	// Every instance's stream up (a remote provider reports its link to
	// the adapter as one more).
	st, err := k.status(ctx, p, k.h.Pool)
	if err != nil {
		return broken("Status: %v", err)
	}
	var instances []string
	for _, in := range st.Instances {
		instances = append(instances, in.Instance)
	}
	if err := poll(ctx, k.h.Timeout, 10*time.Millisecond, func() (bool, string) {
		reported := log.streams()
		missing := missingFrom(instances, keys(reported))
		return len(missing) == 0, fmt.Sprintf("Watch reported no stream state for instance(s) %s", strings.Join(missing, ", "))
	}); err != nil {
		return broken("%v", err)
	}
	// A stream down with a reason is the contract kept (the controller
	// polls that instance), but nothing to check a push on: give it the
	// first reconnections, then say why.
	_ = poll(ctx, streamGrace, 10*time.Millisecond, func() (bool, string) {
		return len(missingFrom(instances, log.streamsUp())) == 0, ""
	})
	if down := missingFrom(instances, log.streamsUp()); len(down) > 0 {
		reported := log.streams()
		var why []string
		for _, in := range down {
			ev := reported[in]
			if ev.Err == nil {
				return broken("instance %s: stream reported down without a reason", in)
			}
			why = append(why, fmt.Sprintf("%s: %v", in, ev.Err))
		}
		return skipped("the provider declares PushesVerdicts, but the stream of %s is down (the controller polls it): %s", strings.Join(down, ", "), strings.Join(why, "; "))
	}

	tg, err := k.target(true)
	if err != nil {
		return broken("%v", err)
	}
	start := time.Now()
	if err := k.register(ctx, p, k.h.Pool, tg.t); err != nil {
		return broken("Register: %v", err)
	}
	up, err := k.pushedBeforePolled(ctx, p, log, tg.t.ID, provider.HealthHealthy, start, instances)
	if err != nil {
		return broken("%v", err)
	}
	if !k.caps.ActiveHealthChecks {
		return kept("every instance's stream up; Healthy pushed from %d instance(s): %s", len(instances), up)
	}
	tg.passing.Store(false)
	start = time.Now()
	down, err := k.pushedBeforePolled(ctx, p, log, tg.t.ID, provider.HealthUnhealthy, start, instances)
	if err != nil {
		return broken("%v", err)
	}
	return kept("every instance's stream up; Healthy pushed: %s; Unhealthy pushed: %s", up, down)
}

// pushedBeforePolled polls Status every cycle until every instance
// reports the target's health h (Unhealthy: anything but Healthy, as
// Status calls a failing registered target Unhealthy or Initial), then
// requires a verdict event h from each, arrived no later than pushSlack
// after the poll that first saw it. It returns the figures: per instance,
// the event's delay after the LB's own timestamp and its lead over the
// poll.
func (k *run) pushedBeforePolled(ctx context.Context, p provider.Provider, log *pushLog, id provider.TargetID, h provider.Health, since time.Time, instances []string) (string, error) {
	polled := map[string]time.Time{}
	err := poll(ctx, k.h.Timeout, k.cycle(), func() (bool, string) {
		st, err := k.status(ctx, p, k.h.Pool)
		if err != nil {
			return false, fmt.Sprintf("Status: %v", err)
		}
		now := time.Now()
		for _, in := range st.Instances {
			ts, found := in.Targets[id]
			seen := in.Err == nil && found && (ts.Health == h || h == provider.HealthUnhealthy && ts.Health != provider.HealthHealthy)
			if _, had := polled[in.Instance]; seen && !had {
				polled[in.Instance] = now
			}
		}
		return len(polled) == len(st.Instances), fmt.Sprintf("target %s not %s on every instance: %s", id, h, instancesOf(st, id))
	})
	if err != nil {
		return "", err
	}
	// The push may trail the poll by up to pushSlack: wait that long.
	var last time.Time
	for _, at := range polled {
		if at.After(last) {
			last = at
		}
	}
	time.Sleep(time.Until(last.Add(pushSlack)))
	got := log.firstVerdict(k.h.Pool, h, since)
	var figures []string
	for _, in := range instances {
		ev, ok := got[in]
		if !ok {
			// Say whether it is late or missing: wait the timeout for it.
			_ = poll(ctx, k.h.Timeout, 10*time.Millisecond, func() (bool, string) {
				ev, ok = log.firstVerdict(k.h.Pool, h, since)[in]
				return ok, ""
			})
			if ok {
				return "", fmt.Errorf("instance %s: the %s verdict on %s was pushed %s after the poll that saw it: polling was faster (%q)", in, h, id, ev.at.Sub(polled[in]).Round(time.Millisecond), ev.ev.Message)
			}
			return "", fmt.Errorf("instance %s: Status reports %s %s, but no %s verdict event was pushed (waited %s after the poll that saw it)", in, id, h, h, k.h.Timeout)
		}
		if lag := ev.at.Sub(polled[in]); lag > pushSlack {
			return "", fmt.Errorf("instance %s: the %s verdict was pushed %s after Status reported it: polling was faster", in, h, lag.Round(time.Millisecond))
		}
		figures = append(figures, fmt.Sprintf("%s %s after the LB's timestamp, %s before the poll", in,
			ev.at.Sub(ev.ev.At).Round(100*time.Microsecond), polled[in].Sub(ev.at).Round(time.Millisecond)))
	}
	return strings.Join(figures, ", "), nil
}

// missingFrom returns the names of want that have is lacks.
func missingFrom(want, have []string) []string {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	var out []string
	for _, w := range want {
		if !set[w] {
			out = append(out, w)
		}
	}
	return out
}
