package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"zerodrop.dev/zerodrop/provider"
)

// Metrics are the controller's Prometheus series, registered on
// controller-runtime's registry (served on the manager's metrics address).
type Metrics struct {
	GateLatency      *prometheus.HistogramVec
	DrainDuration    *prometheus.HistogramVec
	GatesPending     *prometheus.GaugeVec
	GatesStuck       *prometheus.GaugeVec
	ProviderErrors   *prometheus.CounterVec
	ProviderLatency  *prometheus.HistogramVec
	InstanceRestarts *prometheus.CounterVec
	Orphans          *prometheus.GaugeVec
	OrphansFreed     *prometheus.CounterVec
	PodsUngated      *prometheus.GaugeVec
	TargetVerdicts   *prometheus.GaugeVec
	PoolReads        *prometheus.CounterVec
	VerdictEvents    *prometheus.CounterVec
	// InstanceReachable and CertificateExpiry are set by the LoadBalancer
	// reconciler and by the webhook certificate rotator.
	InstanceReachable *prometheus.GaugeVec
	CertificateExpiry *prometheus.GaugeVec
	// APIServerClockOffset is set by the process's APIClock.
	APIServerClockOffset prometheus.Gauge
}

var latencyBuckets = []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 120, 300}

// targetHealths are the values of zerodrop_targets' health label: the
// provider's verdicts and Absent.
var targetHealths = []string{string(provider.HealthInitial), string(provider.HealthHealthy), string(provider.HealthUnhealthy),
	string(provider.HealthDraining), string(provider.HealthDrained), string(provider.HealthUnknown), healthAbsent}

// healthAbsent counts targets an instance's pool does not hold.
const healthAbsent = "Absent"

// setTargetVerdicts counts the binding's live targets by each read
// instance's verdict; an instance not read loses its series (no verdict is
// known), as does a health no target has.
func (m *Metrics) setTargetVerdicts(ns, binding, lb string, pool provider.PoolStatus, plans []targetPlan) {
	for _, in := range pool.Instances {
		if in.Err != nil {
			m.TargetVerdicts.DeletePartialMatch(prometheus.Labels{"namespace": ns, "binding": binding, "loadbalancer": lb, "instance": in.Instance})
			continue
		}
		counts := map[string]int{}
		for i := range plans {
			if plans[i].State == stDone {
				continue
			}
			if st, ok := in.Targets[plans[i].Target.ID]; ok {
				counts[string(st.Health)]++
			} else {
				counts[healthAbsent]++
			}
		}
		for _, h := range targetHealths {
			if n := counts[h]; n > 0 {
				m.TargetVerdicts.WithLabelValues(ns, binding, lb, in.Instance, h).Set(float64(n))
			} else {
				m.TargetVerdicts.DeleteLabelValues(ns, binding, lb, in.Instance, h)
			}
		}
	}
}

// NewMetrics creates the series and registers them on reg (nil: the
// controller-runtime registry). Registering twice returns the error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = ctrlmetrics.Registry
	}
	m := &Metrics{
		GateLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zerodrop_gate_latency_seconds",
			Help:    "Time from a pod's ContainersReady (as first seen by the controller) to its readiness gate turning True because every load balancer instance reported the target healthy.",
			Buckets: latencyBuckets,
		}, []string{"namespace", "binding"}),
		DrainDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zerodrop_drain_duration_seconds",
			Help:    "Time from the start of a target's drain (pod deletion or endpoint terminating) to the pod being reported drained; result is drained or timeout.",
			Buckets: latencyBuckets,
		}, []string{"namespace", "binding", "result"}),
		GatesPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_gates_pending",
			Help: "Targets registered but not yet healthy on every load balancer instance (their gate is False).",
		}, []string{"namespace", "binding"}),
		GatesStuck: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_gates_stuck",
			Help: "Targets whose gate timed out (FailOpen or FailClosed) and that the load balancer still does not report healthy.",
		}, []string{"namespace", "binding"}),
		ProviderErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodrop_provider_errors_total",
			Help: "Failed provider calls by load balancer and operation (register, drain, deregister, status).",
		}, []string{"loadbalancer", "operation"}),
		ProviderLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zerodrop_provider_call_duration_seconds",
			Help:    "Duration of provider calls by load balancer and operation (each call covers every instance).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"loadbalancer", "operation"}),
		InstanceRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodrop_instance_restarts_total",
			Help: "Load balancer instances seen reloaded or restarted (runtime state lost, targets re-registered).",
		}, []string{"loadbalancer", "instance"}),
		Orphans: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_orphans",
			Help: "Entries of a pool whose address no binding of the pool knows (HAProxy slots reported as slot:<name>), as last seen by the binding that judges the pool's orphans.",
		}, []string{"loadbalancer", "pool"}),
		OrphansFreed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodrop_orphans_freed_total",
			Help: "Orphans drained and freed after --orphan-grace.",
		}, []string{"loadbalancer", "pool"}),
		PodsUngated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_pods_ungated",
			Help: "Pods a binding selects, in a namespace opted in to gates, that lack the binding's readiness gate, lack the drain hook drain.preStop asks for, or whose drain hook names a host that is not the drain Service's current ClusterIP.",
		}, []string{"namespace", "binding"}),
		TargetVerdicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_targets",
			Help: "A binding's targets by what one load balancer instance reported of each at the last pool read: health is Initial, Healthy, Unhealthy, Draining, Drained, Unknown, or Absent (not in the instance's pool). An instance the read failed on has no series. Set by the leader.",
		}, []string{"namespace", "binding", "loadbalancer", "instance", "health"}),
		PoolReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodrop_pool_status_reads_total",
			Help: "Pool status reads by the binding reconcilers of this process: result=read made a Status call to the load balancer (one call per instance), result=shared took a read another binding of the pool made less than the share window ago.",
		}, []string{"loadbalancer", "pool", "result"}),
		VerdictEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodrop_verdict_events_total",
			Help: "Events pushed by load balancer instances (providers with pushesVerdicts): kind=Verdict woke the pool's bindings for a fresh read; StreamUp and StreamDown are the event stream's state changes (down: the instance is polled).",
		}, []string{"loadbalancer", "instance", "kind"}),
		InstanceReachable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_loadbalancer_instance_reachable",
			Help: "1 when the last pool status read of the load balancer instance succeeded, 0 when it failed (the LoadBalancer's status.instances[].reachable); absent until a TargetBinding has read the instance. Set by the leader.",
		}, []string{"loadbalancer", "instance"}),
		CertificateExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_webhook_certificate_expiry_timestamp_seconds",
			Help: "When the webhook's serving certificate (self-managed mode) stops being valid, as a Unix time; set by every replica each time it checks the certificate Secret.",
		}, []string{"secret"}),
		APIServerClockOffset: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zerodrop_apiserver_clock_offset_seconds",
			Help: "The API server's clock minus this process's, estimated from the Date header of its responses (the middle of the bounds they allow, at most a second and a round trip apart). Times read from the API are anchored with the lower bound, so that no gate or drain timeout fires early.",
		}),
	}
	for _, c := range []prometheus.Collector{m.GateLatency, m.DrainDuration, m.GatesPending, m.GatesStuck,
		m.ProviderErrors, m.ProviderLatency, m.InstanceRestarts, m.Orphans, m.OrphansFreed, m.PodsUngated, m.TargetVerdicts, m.PoolReads,
		m.InstanceReachable, m.CertificateExpiry, m.VerdictEvents, m.APIServerClockOffset} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
