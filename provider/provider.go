// Package provider is zerodrop's public provider API, version v1: what the
// controller asks of a load balancer. Register a target so that it gets no
// balanced request before the LB's own health checks passed, drain it,
// deregister it, and report the LB's verdict on every target of a pool, per
// LB instance.
//
// The interface is small on purpose (external-dns's Provider is the model),
// and stateless between calls: every call carries what the provider needs
// (the pool and every target the controller knows in it, with addresses),
// and the controller owns all memory (epochs, reload times, drain starts,
// address-to-pod identity). A provider may cache (connections, a snapshot
// read in the same cycle), but a provider built afresh must answer every
// call the same way. That makes a provider callable over the wire: the
// package zerodrop.dev/zerodrop/provider/adapter serves any Provider over
// HTTP, and provider/remote is the client the controller uses for a
// LoadBalancer of provider "external".
//
// What a load balancer can and cannot do is declared, not assumed: see
// Capabilities. The conformance kit (provider/providertest) checks every
// promise of this contract against a real LB.
package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Version is the version of this API and of the adapter protocol.
const Version = "v1"

// TargetID names a target inside a pool. The controller builds it from the
// binding and the pod; a provider whose LB keeps names (Identity ByName)
// uses it as the LB's own name for the target and restricts its characters
// (HAProxy: letters, digits, '-', '_', '.', ':'); one that identifies
// targets by address (Identity ByAddress) maps addresses back to IDs with
// Pool.Known.
type TargetID string

// HealthCheck is how the LB checks a target. Zero fields take the
// provider's defaults.
type HealthCheck struct {
	// Interval between two checks.
	Interval time.Duration
	// Rise is the number of consecutive passed checks that make a target
	// healthy; Fall the number of failed ones that make it unhealthy.
	Rise, Fall int
	// Port is checked instead of the target's port when non-zero.
	Port int
}

// Target is one endpoint (a pod's IP and port) in a pool.
type Target struct {
	ID   TargetID
	IP   string
	Port int
	// Check overrides the provider's health-check defaults for this target.
	Check HealthCheck
}

// Addr returns "ip:port".
func (t Target) Addr() string { return net.JoinHostPort(t.IP, strconv.Itoa(t.Port)) }

// Validate reports a missing ID, an IP that does not parse or a port out of
// range.
func (t Target) Validate() error {
	if t.ID == "" {
		return fmt.Errorf("target %s: empty ID", t.Addr())
	}
	if net.ParseIP(t.IP) == nil {
		return fmt.Errorf("target %s: IP %q does not parse", t.ID, t.IP)
	}
	if t.Port < 1 || t.Port > 65535 {
		return fmt.Errorf("target %s: port %d out of range", t.ID, t.Port)
	}
	if t.Check.Port < 0 || t.Check.Port > 65535 || t.Check.Rise < 0 || t.Check.Fall < 0 || t.Check.Interval < 0 {
		return fmt.Errorf("target %s: health check %+v out of range", t.ID, t.Check)
	}
	return nil
}

// Health is the LB's verdict on a target, in the words of AWS's target
// health states so that users of both recognise them.
type Health string

// Target health states.
const (
	// HealthUnknown: the LB reported something the provider cannot map.
	HealthUnknown Health = "Unknown"
	// HealthInitial: registered, health checks not passed yet; the target
	// gets no balanced request.
	HealthInitial Health = "Initial"
	// HealthHealthy: the LB balances requests to the target.
	HealthHealthy Health = "Healthy"
	// HealthUnhealthy: the last health checks failed; no balanced request.
	HealthUnhealthy Health = "Unhealthy"
	// HealthDraining: no new balanced request, but sessions still open.
	HealthDraining Health = "Draining"
	// HealthDrained: no new request and no session left.
	HealthDrained Health = "Drained"
)

// TargetStatus is one instance's view of one target.
type TargetStatus struct {
	Health Health
	// Reason is the LB's own short word for the state, e.g. HAProxy's
	// check status "L7OK", "L4CON", "L7STS", or "DRAIN", "MAINT".
	Reason string
	// Message is the LB's longer text, e.g. "Layer7 wrong status: HTTP
	// status check returned code <503>" or "2/3 checks passed".
	Message string
	// Addr is the address the LB has for the target ("ip:port").
	Addr string
	// Sessions is the number of sessions (in-flight requests or open
	// connections) the LB has on the target now.
	Sessions int64
	// Selected counts how often the LB picked the target for a request
	// (HAProxy's lbtot): diagnostic only, the controller does not read it.
	Selected int64
	// CheckPassed is set by a provider with PromotionExplicit for a target
	// that passed the LB's own checks but is not in rotation yet: the
	// controller then calls Enable. (Healthy implies it.)
	CheckPassed bool
}

// InstanceStatus is one LB instance's view of a pool.
type InstanceStatus struct {
	// Instance names the LB instance (e.g. "haproxy-a").
	Instance string
	// Err is set when the instance could not be read; Targets is then nil.
	// It wraps an *Error whose Code says why (Unreachable, most often).
	Err error
	// Epoch identifies the LB process; it changes on reload and restart.
	// The controller compares it with the epoch it saw before: a change
	// on a provider with VolatileRuntimeState means the instance lost
	// what was registered at runtime.
	Epoch string
	// StartedAt is when the instance's current process (or worker
	// generation) started serving, as the LB itself reports it (HAProxy:
	// now minus `show info` Uptime_sec); zero when the LB does not say.
	// Until StartedAt plus the LoadBalancer's reload grace, a previous
	// process may still serve connections it accepted before a reload,
	// invisible in Targets, so the controller counts no target drained
	// from this instance meanwhile.
	StartedAt time.Time
	// Targets holds every target of the pool on this instance, including
	// ones configured statically in the LB.
	Targets map[TargetID]TargetStatus
}

// PoolStatus is a pool's state on every instance of a load balancer.
type PoolStatus struct {
	Pool      string
	Instances []InstanceStatus
}

// Healthy reports whether every instance was read and reports the target
// Healthy. When not, reason and message say why, from the first instance that
// does not agree, named in the message.
func (s PoolStatus) Healthy(id TargetID) (ok bool, reason, message string) {
	if len(s.Instances) == 0 {
		return false, "NoInstance", "the load balancer has no instance"
	}
	for _, in := range s.Instances {
		if in.Err != nil {
			return false, "InstanceUnreachable", fmt.Sprintf("%s: %v", in.Instance, in.Err)
		}
		ts, found := in.Targets[id]
		if !found {
			return false, "NotRegistered", fmt.Sprintf("%s: target %s is not registered in pool %s", in.Instance, id, s.Pool)
		}
		if ts.Health != HealthHealthy {
			msg := fmt.Sprintf("%s: %s", in.Instance, ts.Health)
			if ts.Message != "" {
				msg += ": " + ts.Message
			}
			return false, ts.Reason, msg
		}
	}
	return true, "Healthy", fmt.Sprintf("healthy on %d instance(s)", len(s.Instances))
}

// Drained reports whether every instance was read and sends the target no
// traffic: absent or Drained everywhere. Sessions is the total of sessions
// still open on instances not drained. It does not know about a previous
// process that may still send after a reload: the controller also waits
// for StartedWithin to be empty.
func (s PoolStatus) Drained(id TargetID) (ok bool, sessions int64) {
	ok = len(s.Instances) > 0
	for _, in := range s.Instances {
		if in.Err != nil {
			ok = false
			continue
		}
		ts, found := in.Targets[id]
		if !found || ts.Health == HealthDrained {
			continue
		}
		ok = false
		sessions += ts.Sessions
	}
	return ok, sessions
}

// AllRead reports whether the pool has instances and every one of them was
// read. Only then does the absence of a target mean it is on no instance.
func (s PoolStatus) AllRead() bool {
	for _, in := range s.Instances {
		if in.Err != nil {
			return false
		}
	}
	return len(s.Instances) > 0
}

// NoneRead reports whether no instance was read: the pool has no instance,
// or every instance has Err.
func (s PoolStatus) NoneRead() bool {
	for _, in := range s.Instances {
		if in.Err == nil {
			return false
		}
	}
	return true
}

// StartedWithin lists the instances whose current process started less
// than grace before now (InstanceStatus.StartedAt): a previous process may
// still serve there.
func (s PoolStatus) StartedWithin(now time.Time, grace time.Duration) []string {
	var out []string
	for _, in := range s.Instances {
		if in.Err == nil && !in.StartedAt.IsZero() && now.Sub(in.StartedAt) < grace {
			out = append(out, in.Instance)
		}
	}
	return out
}

// Err joins the errors of the instances that could not be read.
func (s PoolStatus) Err() error {
	var errs []error
	for _, in := range s.Instances {
		if in.Err != nil {
			errs = append(errs, in.Err)
		}
	}
	return errors.Join(errs...)
}

// Targets returns the IDs present on any instance, sorted.
func (s PoolStatus) Targets() []TargetID {
	seen := map[TargetID]bool{}
	for _, in := range s.Instances {
		for id := range in.Targets {
			seen[id] = true
		}
	}
	out := make([]TargetID, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// String summarises the status for logs: "pool app: a: t1=Healthy ...".
func (s PoolStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pool %s:", s.Pool)
	for _, in := range s.Instances {
		fmt.Fprintf(&b, " %s:", in.Instance)
		if in.Err != nil {
			fmt.Fprintf(&b, " error(%v)", in.Err)
			continue
		}
		ids := make([]string, 0, len(in.Targets))
		for id := range in.Targets {
			ids = append(ids, string(id))
		}
		sort.Strings(ids)
		for _, id := range ids {
			ts := in.Targets[TargetID(id)]
			fmt.Fprintf(&b, " %s=%s(%s,scur=%d)", id, ts.Health, ts.Reason, ts.Sessions)
		}
	}
	return b.String()
}

// Pool is what every call names: the pool (HAProxy: the backend) and every
// target the controller knows in it, from every TargetBinding that shares
// the pool, with its address: the pods it observes and those it still
// drains or deregisters after they are gone. A provider whose LB identifies
// targets by address maps them back to IDs with Known alone; an LB entry
// whose address no known target has is an orphan (OrphanPrefix).
type Pool struct {
	Name  string
	Known []Target
}

// Provider drives every instance of one load balancer. Every method is
// idempotent, acts on all instances, and takes everything it needs as
// arguments (see the package doc); an error names the instances that
// failed, and the others have been changed. Errors wrap an *Error whose
// Code the controller acts on.
type Provider interface {
	// Capabilities declares what the LB does; constant for a provider.
	Capabilities() Capabilities
	// Register adds the target to the pool so that it receives no balanced
	// request before it has passed the LB's health checks (Rise in a row).
	// With PromotionSelf the LB then puts it in rotation by itself; with
	// PromotionExplicit it stays out until Enable. A target already
	// registered is left alone. A pool without room returns an error
	// wrapping ErrPoolFull.
	Register(ctx context.Context, pool Pool, t Target) error
	// Enable puts a registered target that the LB reports healthy in
	// rotation (PromotionExplicit); providers with PromotionSelf return
	// nil. Absent targets are an error.
	Enable(ctx context.Context, pool Pool, t Target) error
	// SetDraining takes the target out of rotation: no new balanced
	// request; open sessions continue. Absent targets are ignored.
	SetDraining(ctx context.Context, pool Pool, t Target) error
	// Deregister removes the target. While the LB may still send to it
	// (sessions remain) it returns an error wrapping ErrTargetBusy and the
	// target stays out of rotation. Absent targets are ignored.
	Deregister(ctx context.Context, pool Pool, t Target) error
	// Status reads the pool on every instance in one call per instance.
	// The returned error joins the per-instance errors (also in
	// InstanceStatus.Err); the status of the other instances is valid.
	Status(ctx context.Context, pool Pool) (PoolStatus, error)
}

// Lifecycle is implemented by providers that hold resources or serve (an
// xDS server, a client with a session): the controller calls Start once
// before the first call (a Start error fails the build, retried next
// cycle) and Close when the LoadBalancer is gone or edited (the provider
// is then replaced). A call already in flight may still be running when
// Close is called: it may fail, but must not hang or panic.
type Lifecycle interface {
	Start(ctx context.Context) error
	Close() error
}

// OrphanPrefix starts the synthetic ID under which a provider's Status
// reports an entry of the pool that holds an address no known target has
// (HAProxy: a server-template slot, "slot:zd-slot3"): a pod deleted while
// the controller was down, a binding deleted while the controller was down,
// or a slot filled by hand. SetDraining and Deregister accept the ID, so
// that orphans can be freed; they act only while the entry is still an
// orphan (an address that became known again is left alone).
const OrphanPrefix = "slot:"

// IsOrphan reports whether id is an orphan's synthetic ID (OrphanPrefix).
func IsOrphan(id TargetID) bool { return strings.HasPrefix(string(id), OrphanPrefix) }
