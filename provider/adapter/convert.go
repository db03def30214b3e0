package adapter

import (
	"errors"
	"sort"
	"strings"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// FromCapabilities converts capabilities to the wire.
func FromCapabilities(c provider.Capabilities) Capabilities {
	return Capabilities{
		Identity: string(c.Identity), Promotion: string(c.Promotion), HealthCheckScope: string(c.HealthCheckScope),
		DrainSignal: string(c.DrainSignal), Topology: string(c.Topology), VolatileRuntimeState: c.VolatileRuntimeState,
		ReloadGrace: Duration(c.ReloadGrace), MinStatusInterval: Duration(c.MinStatusInterval),
		HealthCheckDefaults: fromCheck(c.HealthCheckDefaults), ActiveHealthChecks: c.ActiveHealthChecks,
		PushesVerdicts: c.PushesVerdicts,
	}
}

// ToCapabilities converts capabilities from the wire.
func ToCapabilities(c Capabilities) provider.Capabilities {
	return provider.Capabilities{
		Identity: provider.Identity(c.Identity), Promotion: provider.Promotion(c.Promotion),
		HealthCheckScope: provider.HealthCheckScope(c.HealthCheckScope), DrainSignal: provider.DrainSignal(c.DrainSignal),
		Topology: provider.Topology(c.Topology), VolatileRuntimeState: c.VolatileRuntimeState,
		ReloadGrace: time.Duration(c.ReloadGrace), MinStatusInterval: time.Duration(c.MinStatusInterval),
		HealthCheckDefaults: toCheck(c.HealthCheckDefaults), ActiveHealthChecks: c.ActiveHealthChecks,
		PushesVerdicts: c.PushesVerdicts,
	}
}

func fromCheck(h provider.HealthCheck) HealthCheck {
	return HealthCheck{Interval: Duration(h.Interval), Rise: h.Rise, Fall: h.Fall, Port: h.Port}
}

func toCheck(h HealthCheck) provider.HealthCheck {
	return provider.HealthCheck{Interval: time.Duration(h.Interval), Rise: h.Rise, Fall: h.Fall, Port: h.Port}
}

// FromTarget converts a target to the wire; a zero health check is left out.
func FromTarget(t provider.Target) Target {
	w := Target{ID: string(t.ID), IP: t.IP, Port: t.Port}
	if t.Check != (provider.HealthCheck{}) {
		c := fromCheck(t.Check)
		w.Check = &c
	}
	return w
}

// ToTarget converts a target from the wire.
func ToTarget(t Target) provider.Target {
	pt := provider.Target{ID: provider.TargetID(t.ID), IP: t.IP, Port: t.Port}
	if t.Check != nil {
		pt.Check = toCheck(*t.Check)
	}
	return pt
}

// FromTargets converts targets to the wire.
func FromTargets(ts []provider.Target) []Target {
	out := make([]Target, len(ts))
	for i, t := range ts {
		out[i] = FromTarget(t)
	}
	return out
}

// ToPool builds the provider's Pool from the path's name and the known
// targets.
func ToPool(name string, known []Target) provider.Pool {
	p := provider.Pool{Name: name, Known: make([]provider.Target, len(known))}
	for i, t := range known {
		p.Known[i] = ToTarget(t)
	}
	return p
}

// FromPoolStatus converts a pool status to the wire; targets are sorted by
// ID.
func FromPoolStatus(s provider.PoolStatus) PoolStatus {
	out := PoolStatus{Pool: s.Pool, Instances: make([]InstanceStatus, 0, len(s.Instances))}
	for _, in := range s.Instances {
		w := InstanceStatus{Instance: in.Instance, Epoch: in.Epoch}
		if in.Err != nil {
			e := FromError(in.Err)[0]
			if e.Instance == "" {
				e.Instance = in.Instance
			}
			w.Error = &e
		}
		if !in.StartedAt.IsZero() {
			at := in.StartedAt.UTC()
			w.StartedAt = &at
		}
		for id, ts := range in.Targets {
			w.Targets = append(w.Targets, TargetStatus{ID: string(id), Health: string(ts.Health), Reason: ts.Reason,
				Message: ts.Message, Addr: ts.Addr, Sessions: ts.Sessions, Selected: ts.Selected})
		}
		sort.Slice(w.Targets, func(i, j int) bool { return w.Targets[i].ID < w.Targets[j].ID })
		out.Instances = append(out.Instances, w)
	}
	return out
}

// ToPoolStatus converts a pool status from the wire and joins the
// instances' errors, as Provider.Status returns them.
func ToPoolStatus(s PoolStatus) (provider.PoolStatus, error) {
	out := provider.PoolStatus{Pool: s.Pool, Instances: make([]provider.InstanceStatus, 0, len(s.Instances))}
	var errs []error
	for _, w := range s.Instances {
		in := provider.InstanceStatus{Instance: w.Instance, Epoch: w.Epoch}
		if w.StartedAt != nil {
			in.StartedAt = *w.StartedAt
		}
		if w.Error != nil {
			e := ToError(*w.Error)
			if e.Instance == "" {
				e.Instance = w.Instance
			}
			in.Err = e
			errs = append(errs, e)
		} else {
			in.Targets = make(map[provider.TargetID]provider.TargetStatus, len(w.Targets))
			for _, t := range w.Targets {
				in.Targets[provider.TargetID(t.ID)] = provider.TargetStatus{Health: provider.Health(t.Health), Reason: t.Reason,
					Message: t.Message, Addr: t.Addr, Sessions: t.Sessions, Selected: t.Selected}
			}
		}
		out.Instances = append(out.Instances, in)
	}
	return out, errors.Join(errs...)
}

// FromError flattens err into wire errors (provider.Errors); nil for nil.
func FromError(err error) []Error {
	var out []Error
	for _, e := range provider.Errors(err) {
		msg := e.Message
		if msg == "" {
			msg = strings.TrimPrefix(e.Error(), e.Instance+": ")
		}
		out = append(out, Error{Code: string(e.Code), Instance: e.Instance, Message: msg})
	}
	return out
}

// providerCodes are the codes of the provider API; a code outside them
// (from a newer adapter) reads as Internal.
var providerCodes = map[provider.Code]bool{
	provider.CodeBusy: true, provider.CodeConflict: true, provider.CodePoolFull: true, provider.CodeUnreachable: true,
	provider.CodeNotFound: true, provider.CodeInvalid: true, provider.CodeInternal: true,
}

// ToError converts a wire error to a *provider.Error, so that errors.Is
// matches the provider's sentinels (provider.ErrTargetBusy, ...). The
// wire-only codes map to the code the controller should act on: a refused
// credential or version makes the adapter unusable, as if unreachable; a
// request too large is Invalid; an unknown code is Internal, with the code
// kept in the message.
func ToError(w Error) *provider.Error {
	c := provider.Code(w.Code)
	msg := w.Message
	switch {
	case providerCodes[c]:
	case w.Code == CodeUnauthenticated || w.Code == CodeNotAcceptable:
		c, msg = provider.CodeUnreachable, w.Code+": "+msg
	case w.Code == CodeTooLarge:
		c, msg = provider.CodeInvalid, w.Code+": "+msg
	default:
		c, msg = provider.CodeInternal, w.Code+": "+msg
	}
	return &provider.Error{Code: c, Instance: w.Instance, Message: msg}
}

// ToErrors joins wire errors into one error; nil when there is none.
func ToErrors(ws []Error) error {
	errs := make([]error, len(ws))
	for i, w := range ws {
		errs[i] = ToError(w)
	}
	return errors.Join(errs...)
}
