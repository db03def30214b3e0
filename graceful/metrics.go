package graceful

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Phases of a shutdown, as logged and as the "phase" label of the metrics.
const (
	PhaseServing   = "serving"    // before the signal
	PhaseNotReady  = "not_ready"  // readiness fails, not-ready hooks run
	PhaseDrainWait = "drain_wait" // still accepting and serving, until the data paths stopped sending
	PhaseStop      = "stop"       // listeners closed, in-flight requests finish, long-lived connections told to end
	PhaseStopped   = "stopped"    // every server stopped
)

var phases = []string{PhaseServing, PhaseNotReady, PhaseDrainWait, PhaseStop, PhaseStopped}

// metrics are always created, and registered only when a Registerer is given.
type metrics struct {
	phase        *prometheus.GaugeVec
	phaseSeconds *prometheus.GaugeVec
	inflight     *prometheus.GaugeVec
	cut          *prometheus.CounterVec
	drainChecks  *prometheus.CounterVec
	signals      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_graceful_phase",
			Help: "1 for the shutdown phase the process is in (serving, not_ready, drain_wait, stop, stopped), 0 for the others.",
		}, []string{"phase"}),
		phaseSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_graceful_phase_duration_seconds",
			Help: "How long each completed shutdown phase took.",
		}, []string{"phase"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodrop_graceful_inflight_requests",
			Help: "HTTP requests being served, per server.",
		}, []string{"server"}),
		cut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodrop_graceful_cut_connections_total",
			Help: "Connections (requests, hijacked connections, gRPC servers) closed by force at the shutdown deadline, per server.",
		}, []string{"server"}),
		drainChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodrop_graceful_drain_checks_total",
			Help: "Calls to the drain endpoint by result: drained, not_drained, not_gated, error.",
		}, []string{"result"}),
		signals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zerodrop_graceful_signals_total",
			Help: "Shutdown signals received.",
		}),
	}
	for _, p := range phases {
		m.phase.WithLabelValues(p).Set(0)
	}
	m.phase.WithLabelValues(PhaseServing).Set(1)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.phase, m.phaseSeconds, m.inflight, m.cut, m.drainChecks, m.signals} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("registering graceful metrics: %w (one Group per registry)", err)
			}
			return nil, fmt.Errorf("registering graceful metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) enter(phase string) {
	for _, p := range phases {
		v := 0.0
		if p == phase {
			v = 1
		}
		m.phase.WithLabelValues(p).Set(v)
	}
}
