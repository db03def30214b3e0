package lab

import (
	"context"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// GateTimings are the gate and drain latencies a run measured, from the
// pods' watch events and HAProxy's own counters polled every ProbeInterval.
type GateTimings struct {
	// ProbeInterval is how often each HAProxy instance was polled: the
	// resolution of every figure below.
	ProbeIntervalMs float64 `json:"probeIntervalMs"`
	// GateSamples is the number of new pods that became Ready after every
	// instance reported them UP.
	GateSamples int `json:"gateSamples"`
	// GateLatency: from the last instance reporting the pod UP to the pod
	// turning Ready (the readiness gate's own delay).
	GateLatencyP50ms float64 `json:"gateLatencyP50ms"`
	GateLatencyP99ms float64 `json:"gateLatencyP99ms"`
	// GateWait: from ContainersReady to Ready, the time a new pod spends
	// behind its gate; MinWait is the LB's own minimum (rise × interval)
	// and Extra = GateWait − MinWait.
	GateWaitP50ms float64 `json:"gateWaitP50ms"`
	MinWaitMs     float64 `json:"minWaitMs"`
	ExtraP50ms    float64 `json:"extraP50ms"`
	ExtraP99ms    float64 `json:"extraP99ms"`
	// DrainSamples is the number of deleted pods observed.
	DrainSamples int `json:"drainSamples"`
	// DrainLatency: from the pod's deletion to the last request any
	// instance sent it (0 when none came after the deletion).
	DrainLatencyP50ms float64 `json:"drainLatencyP50ms"`
	DrainLatencyP99ms float64 `json:"drainLatencyP99ms"`
}

// probeInterval is how often the probe polls each HAProxy instance.
const probeInterval = 10 * time.Millisecond

type podTimes struct {
	ip                              string
	notReadySeen                    bool // observed before it was Ready (a new pod)
	containersReady, ready, deleted time.Time
	up                              map[string]time.Time // instance -> first seen UP
	lastPick                        map[string]time.Time // instance -> last lbtot increase
	picks                           map[string]int64
}

// latencyProbe times the gates of the pods in one namespace.
type latencyProbe struct {
	mu   sync.Mutex
	pods map[string]*podTimes // by pod name
	byIP map[string]*podTimes
	wg   sync.WaitGroup
}

// startProbe watches ns's pods and polls every instance until ctx ends.
func startProbe(ctx context.Context, cs kubernetes.Interface, ns string, hs []HAProxyState) *latencyProbe {
	p := &latencyProbe{pods: map[string]*podTimes{}, byIP: map[string]*podTimes{}}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.watchPods(ctx, cs, ns) }()
	for _, h := range hs {
		c, err := hapi.NewClient(h.Socket)
		if err != nil {
			continue
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.pollLB(ctx, c, h.Name, h.Backend) }()
	}
	return p
}

func (p *latencyProbe) pod(name string) *podTimes {
	t := p.pods[name]
	if t == nil {
		t = &podTimes{up: map[string]time.Time{}, lastPick: map[string]time.Time{}, picks: map[string]int64{}}
		p.pods[name] = t
	}
	return t
}

func (p *latencyProbe) watchPods(ctx context.Context, cs kubernetes.Interface, ns string) {
	rv := ""
	for ctx.Err() == nil {
		w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			rv = ""
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			now := time.Now()
			if ev.Type == watch.Error {
				rv = ""
				break
			}
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			rv = pod.ResourceVersion
			if ev.Type == watch.Bookmark {
				continue
			}
			p.observePod(pod, now)
		}
		w.Stop()
	}
}

func (p *latencyProbe) observePod(pod *corev1.Pod, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.pod(pod.Name)
	if pod.Status.PodIP != "" && t.ip == "" {
		t.ip = pod.Status.PodIP
		p.byIP[t.ip] = t
	}
	ready := false
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready && t.ready.IsZero() {
		t.notReadySeen = true
	}
	for _, c := range pod.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case corev1.ContainersReady:
			if t.containersReady.IsZero() {
				t.containersReady = now
			}
		case corev1.PodReady:
			if t.ready.IsZero() {
				t.ready = now
			}
		}
	}
	if pod.DeletionTimestamp != nil && t.deleted.IsZero() {
		t.deleted = now
	}
}

func (p *latencyProbe) pollLB(ctx context.Context, c *hapi.Client, instance, backend string) {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		stats, err := c.ShowStat(ctx, backend)
		if err != nil {
			continue
		}
		now := time.Now()
		p.mu.Lock()
		for _, s := range stats {
			if s.Type != hapi.TypeServer || s.Addr == "" {
				continue
			}
			host, _, err := net.SplitHostPort(s.Addr)
			if err != nil {
				continue
			}
			t := p.byIP[host]
			if t == nil {
				continue
			}
			if strings.HasPrefix(s.Status, "UP") && t.up[instance].IsZero() {
				t.up[instance] = now
			}
			if prev, ok := t.picks[instance]; ok && s.Selected > prev {
				t.lastPick[instance] = now
			}
			t.picks[instance] = s.Selected
		}
		p.mu.Unlock()
	}
}

// result stops nothing; call it after ctx ended and the probe's goroutines
// returned (wait). minWait is rise × interval.
func (p *latencyProbe) result(instances []string, minWait time.Duration) *GateTimings {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	var gate, wait, extra, drain []time.Duration
	for _, t := range p.pods {
		// Only pods seen before they were Ready: the ones already Ready when
		// the probe started were deployed before it.
		if t.notReadySeen && !t.ready.IsZero() && !t.containersReady.IsZero() {
			var lastUp time.Time
			all := true
			for _, in := range instances {
				u := t.up[in]
				if u.IsZero() {
					all = false
					break
				}
				if u.After(lastUp) {
					lastUp = u
				}
			}
			if all {
				gate = append(gate, max(0, t.ready.Sub(lastUp)))
				w := t.ready.Sub(t.containersReady)
				wait = append(wait, w)
				extra = append(extra, w-minWait)
			}
		}
		if !t.deleted.IsZero() {
			var last time.Time
			for _, in := range instances {
				if l := t.lastPick[in]; l.After(last) {
					last = l
				}
			}
			drain = append(drain, max(0, last.Sub(t.deleted)))
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return &GateTimings{
		ProbeIntervalMs:   ms(probeInterval),
		GateSamples:       len(gate),
		GateLatencyP50ms:  ms(quantile(gate, 0.5)),
		GateLatencyP99ms:  ms(quantile(gate, 0.99)),
		GateWaitP50ms:     ms(quantile(wait, 0.5)),
		MinWaitMs:         ms(minWait),
		ExtraP50ms:        ms(quantile(extra, 0.5)),
		ExtraP99ms:        ms(quantile(extra, 0.99)),
		DrainSamples:      len(drain),
		DrainLatencyP50ms: ms(quantile(drain, 0.5)),
		DrainLatencyP99ms: ms(quantile(drain, 0.99)),
	}
}

// quantile is the nearest-rank quantile (0 for no samples).
func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}
