package v1alpha1

import "time"

// Defaults used when a field is unset. The API server applies the CRD's
// defaults too; these cover objects built in Go (tests, `zerodrop check`).
const (
	DefaultGateTimeout         = 5 * time.Minute
	DefaultDrainTimeout        = 30 * time.Second
	DefaultDeregistrationDelay = time.Duration(0)
	// DefaultCheckInterval, DefaultRise and DefaultFall are HAProxy's own
	// defaults (`inter 2s rise 2 fall 3`).
	DefaultCheckInterval = 2 * time.Second
	DefaultRise          = int32(2)
	DefaultFall          = int32(3)
)

// GateTimeout is the effective gate timeout.
func (s *TargetBindingSpec) GateTimeout() time.Duration {
	if s.Gate.Timeout == nil {
		return DefaultGateTimeout
	}
	return s.Gate.Timeout.Duration
}

// OnGateTimeout is the effective timeout policy (FailClosed when unset).
func (s *TargetBindingSpec) OnGateTimeout() OnTimeout {
	if s.Gate.OnTimeout == "" {
		return FailClosed
	}
	return s.Gate.OnTimeout
}

// DrainEnabled reports whether deleted targets are drained before removal.
func (s *TargetBindingSpec) DrainEnabled() bool {
	return s.Drain.Enabled == nil || *s.Drain.Enabled
}

// DrainTimeout is the effective drain timeout.
func (s *TargetBindingSpec) DrainTimeout() time.Duration {
	if s.Drain.Timeout == nil {
		return DefaultDrainTimeout
	}
	return s.Drain.Timeout.Duration
}

// DeregistrationDelay is the effective deregistration delay.
func (s *TargetBindingSpec) DeregistrationDelay() time.Duration {
	if s.Drain.DeregistrationDelay == nil {
		return DefaultDeregistrationDelay
	}
	return s.Drain.DeregistrationDelay.Duration
}

// PreStopHook is the effective drain hook (None when unset).
func (s *TargetBindingSpec) PreStopHook() PreStopHook {
	if s.Drain.PreStop == "" {
		return PreStopNone
	}
	return s.Drain.PreStop
}

// EffectiveHealthCheck merges a binding's health-check override over the
// load balancer's pool defaults over HAProxy's defaults, field by field.
func EffectiveHealthCheck(lb *LoadBalancerSpec, binding *TargetBindingSpec) (interval time.Duration, rise, fall int32) {
	interval, rise, fall = DefaultCheckInterval, DefaultRise, DefaultFall
	for _, hc := range []*HealthCheck{&lb.PoolDefaults.HealthCheck, binding.HealthCheck} {
		if hc == nil {
			continue
		}
		if hc.Interval != nil {
			interval = hc.Interval.Duration
		}
		if hc.Rise != nil {
			rise = *hc.Rise
		}
		if hc.Fall != nil {
			fall = *hc.Fall
		}
	}
	return interval, rise, fall
}
