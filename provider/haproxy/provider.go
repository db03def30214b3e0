package haproxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// Instance is one HAProxy process of a load balancer (one of an
// active/standby pair).
type Instance struct {
	// Name identifies the instance in statuses and errors.
	Name string
	// Address of its Runtime API: a unix socket path or "host:port" (see
	// NewClient). The socket needs `level admin`.
	Address string
	// TLS, when set, secures a TCP Address with mutual TLS (see
	// Client.TLS): the client certificate HAProxy requires and the CAs
	// that verify HAProxy.
	TLS func(context.Context) (*tls.Config, error)
}

// Config configures a Provider.
type Config struct {
	Instances []Instance
	// Check holds the health-check defaults for targets that set none.
	// Zero fields take DefaultCheck's.
	Check provider.HealthCheck
	// Timeout bounds each Runtime API command; DefaultTimeout when zero.
	Timeout time.Duration
	// BreakerBackoff is how long an instance is skipped after a command
	// to it timed out: calls report its error at once instead of waiting
	// for the timeout again (see ErrInstanceSkipped). It doubles with
	// every failed probe, up to a minute. DefaultBreakerBackoff when zero;
	// negative never skips.
	BreakerBackoff time.Duration
	// Logger receives one line per change; slog.Default when nil.
	Logger *slog.Logger
	// EventRing is the `ring` whose lines Watch reads (events.go);
	// DefaultEventRing when empty. An instance without it is polled.
	EventRing string
}

// DefaultCheck is the health check used when neither the Config nor the
// Target sets one: HAProxy's own defaults (inter 2s, rise 2, fall 3).
var DefaultCheck = provider.HealthCheck{Interval: 2 * time.Second, Rise: 2, Fall: 3}

// Provider implements provider.Provider over the Runtime API of one or more
// HAProxy instances.
type Provider struct {
	instances []Instance
	clients   []*Client
	check     provider.HealthCheck
	log       *slog.Logger
	ring      string // EventRing

	mu     sync.Mutex
	warned map[string]bool // "instance/pool" warned about an IP template
	// holders maps each slot to the target this process gave it (M11).
	holders map[slotKey]slotHolder
	// servers keeps each instance's last `show servers state` of a pool
	// for the actions of the same cycle (snapshot.go); serversGen counts
	// the provider's own changes to it.
	servers    map[string]cachedServers
	serversGen map[string]uint64
	reuse      time.Duration

	// claims holds one lock per instance and pool: one slot claim at a
	// time in a backend (claim). Backends, and instances, have slots of
	// their own, so claims in different ones do not wait for each other.
	claims map[string]*sync.Mutex
}

// claim locks the slot claims of one pool on one instance and returns the
// unlock.
func (p *Provider) claim(in Instance, pool string) (unlock func()) {
	p.mu.Lock()
	m := p.claims[cacheKey(in, pool)]
	if m == nil {
		m = &sync.Mutex{}
		p.claims[cacheKey(in, pool)] = m
	}
	p.mu.Unlock()
	m.Lock()
	return m.Unlock
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Watcher  = (*Provider)(nil)
)

// New checks the configuration and returns a Provider. It does not contact
// the instances.
func New(cfg Config) (*Provider, error) {
	if len(cfg.Instances) == 0 {
		return nil, errors.New("haproxy provider: no instance configured")
	}
	p := &Provider{check: withDefaults(cfg.Check, DefaultCheck), log: cfg.Logger,
		warned: map[string]bool{}, holders: map[slotKey]slotHolder{},
		servers: map[string]cachedServers{}, serversGen: map[string]uint64{}, reuse: snapshotReuse,
		claims: map[string]*sync.Mutex{}}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.ring = cmp.Or(cfg.EventRing, DefaultEventRing)
	if err := validName("event ring", p.ring); err != nil {
		return nil, fmt.Errorf("haproxy provider: EventRing: %w", err)
	}
	seen := map[string]bool{}
	for i, in := range cfg.Instances {
		if in.Name == "" {
			in.Name = in.Address
		}
		if seen[in.Name] {
			return nil, fmt.Errorf("haproxy provider: instance %d: name %q used twice", i, in.Name)
		}
		seen[in.Name] = true
		c, err := NewClient(in.Address)
		if err != nil {
			return nil, fmt.Errorf("haproxy provider: instance %q: %w", in.Name, err)
		}
		c.Timeout = cfg.Timeout
		c.breaker = newBreaker(cfg.BreakerBackoff)
		c.TLS = in.TLS
		p.instances = append(p.instances, in)
		p.clients = append(p.clients, c)
	}
	return p, nil
}

func withDefaults(c, d provider.HealthCheck) provider.HealthCheck {
	if c.Interval <= 0 {
		c.Interval = d.Interval
	}
	if c.Rise <= 0 {
		c.Rise = d.Rise
	}
	if c.Fall <= 0 {
		c.Fall = d.Fall
	}
	if c.Port == 0 {
		c.Port = d.Port
	}
	return c
}

// Instances returns the configured instances.
func (p *Provider) Instances() []Instance { return append([]Instance(nil), p.instances...) }

// each runs fn on every instance in parallel and joins the errors, each a
// *provider.Error naming the instance, with the code the error means.
func (p *Provider) each(fn func(in Instance, c *Client) error) error {
	errs := make([]error, len(p.clients))
	var wg sync.WaitGroup
	for i := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(p.instances[i], p.clients[i]); err != nil {
				errs[i] = &provider.Error{Code: codeOf(err), Instance: p.instances[i].Name, Message: err.Error(), Cause: err}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// codeOf maps an HAProxy error onto the provider API's codes.
func codeOf(err error) provider.Code {
	var pe *provider.Error
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		return pe.Code
	case errors.Is(err, ErrNoFreeSlot):
		return provider.CodePoolFull
	case errors.Is(err, ErrNoSuchBackend):
		return provider.CodeNotFound
	case errors.Is(err, ErrInstanceSkipped), errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded):
		return provider.CodeUnreachable
	}
	var ce *CommandError
	if errors.As(err, &ce) {
		return provider.CodeInternal
	}
	return provider.CodeUnreachable // dial, TLS handshake, framing: the instance did not answer as HAProxy
}

// Capabilities declares what HAProxy does (docs/providers.md).
func (p *Provider) Capabilities() provider.Capabilities {
	return provider.Capabilities{
		Identity:             provider.IdentityName, // dynamic servers; slots are found by address from Pool.Known
		Promotion:            provider.PromotionSelf,
		HealthCheckScope:     provider.HealthCheckPerTarget,
		DrainSignal:          provider.DrainSessions,
		Topology:             provider.TopologyInstances,
		VolatileRuntimeState: true,
		ReloadGrace:          DefaultReloadGrace,
		HealthCheckDefaults:  DefaultCheck,
		ActiveHealthChecks:   true,
		PushesVerdicts:       true, // from the event ring, when the instances have it (events.go)
	}
}

// DefaultReloadGrace is how long after a reload HAProxy's previous worker
// may still serve the connections it had: set hard-stop-after at most this
// (or set the LoadBalancer's spec.reloadGrace to yours). The Runtime API
// reaches only the new worker, so for this long after the worker's start
// (Status reports it as StartedAt, from `show info` Uptime_sec) no target
// counts as drained from the instance: a pod told it is drained could
// otherwise cut requests the old worker still sends it. A fresh start of
// HAProxy is treated as a reload too (no old worker can be told apart).
const DefaultReloadGrace = 30 * time.Second

// Enable does nothing: HAProxy puts a registered server in rotation by
// itself once its checks pass (PromotionSelf).
func (p *Provider) Enable(ctx context.Context, pool provider.Pool, t provider.Target) error {
	return nil
}

// serverOptions renders a target's health check as `add server` keywords.
func (p *Provider) serverOptions(t provider.Target) ServerOptions {
	chk := withDefaults(t.Check, p.check)
	o := ServerOptions{Check: true, Inter: chk.Interval, Rise: chk.Rise, Fall: chk.Fall}
	if chk.Port != 0 {
		o.Extra = []string{"port", strconv.Itoa(chk.Port)}
	}
	return o
}

// Register adds the target on every instance in the safe order (see
// RegisterSafely). On an instance whose backend has server-template slots
// (SlotPrefix) the target takes a slot instead of a dynamic server; a full
// backend is an error wrapping ErrNoFreeSlot.
func (p *Provider) Register(ctx context.Context, pl provider.Pool, t provider.Target) error {
	if err := t.Validate(); err != nil {
		return provider.Errorf(provider.CodeInvalid, "", "%w", err)
	}
	ctx, pool := withPool(ctx, pl)
	ctx = withLane(ctx, laneBulk) // behind drains and reads (lanes.go)
	opts := p.serverOptions(t)
	return p.each(func(in Instance, c *Client) error {
		states, err := p.serversOf(ctx, in, c, pool, false)
		if err != nil {
			return err
		}
		var did bool
		if HasSlots(states) {
			did, err = p.registerSlot(ctx, in, c, pool, t)
		} else {
			did, err = RegisterSafely(ctx, c, pool, string(t.ID), t.Addr(), opts)
		}
		if err == nil && did {
			p.log.Info("haproxy: registered target", "instance", in.Name, "pool", pool, "target", t.ID, "addr", t.Addr())
		}
		return err
	})
}

// RegisterSafely adds server to backend so that it receives no balanced
// request before it has passed `rise` health checks in a row, and reports
// whether it changed anything. It is idempotent: a server already in
// rotation is left alone; one left half-registered is finished.
//
// Why this order (tests in this package prove each step against a real
// haproxy 2.6):
//
//  1. `add server ... check`: the server starts in maintenance (MAINT).
//  2. `enable health`: checks are configured and enabled.
//  3. `set server state drain`: leaving maintenance with checks enabled
//     sets the check counter to `rise`, i.e. the server is UP at once,
//     before any check (the hazard of the naive `state ready`). In drain it
//     still gets no balanced request.
//  4. `set server health down`: resets the counter to 0, DOWN. From here
//     HAProxy's own rise logic applies: `rise` passed checks in a row.
//  5. `set server state ready`: leaving drain does not touch the counter;
//     the server stays DOWN and HAProxy marks it UP by itself after `rise`
//     passed checks, with no further call (so a controller that dies here
//     leaves nothing half done).
func RegisterSafely(ctx context.Context, c *Client, backend, server, addr string, opts ServerOptions) (changed bool, err error) {
	// Steps 2-4 go in one line (every subset of them leaves the server out
	// of balanced traffic: in maintenance or drain), sent once `add server`
	// made the server, so that they never act on someone else's server of
	// that name; step 5 in the next line, once step 4 reset the counter.
	var checked Batch
	err = c.AddServer(ctx, backend, server, addr, opts)
	switch {
	case err == nil:
		checked.EnableHealth(backend, server)
		checked.SetServerState(backend, server, StateDrain)
	case errors.Is(err, ErrServerExists):
		st, found, err := findServer(ctx, c, backend, server)
		if err != nil {
			return false, err
		}
		if !found { // deleted in between: let the caller retry
			return false, fmt.Errorf("add server %s/%s: exists, then vanished: %w", backend, server, ErrNoSuchServer)
		}
		if have := net.JoinHostPort(st.Addr, strconv.Itoa(st.Port)); have != addr {
			return false, fmt.Errorf("server %s/%s has address %s, want %s: %w", backend, server, have, addr, provider.ErrConflict)
		}
		switch {
		case st.Admin.Maint():
			// Half registered (or deregistering): finish steps 2-5.
			if st.CheckState&CheckStateEnabled == 0 {
				checked.EnableHealth(backend, server)
			}
			checked.SetServerState(backend, server, StateDrain)
		case st.Admin.Drain():
			// Draining or stopped between steps 3 and 4: the counter may
			// be an unearned `rise`, so redo 4-5.
		default:
			return false, nil // in rotation or checked towards it
		}
	default:
		return false, err
	}
	checked.SetServerHealth(backend, server, HealthDown)
	if _, err := c.Run(ctx, &checked); err != nil {
		return true, err
	}
	return true, c.SetServerState(ctx, backend, server, StateReady)
}

// RegisterNaively adds a server the way most scripts and ingress
// controllers do: `add server ... check`, `enable health`, `set server state
// ready`. HAProxy then marks it UP at once, before any check passed, so it
// gets balanced requests while the app may not be listening yet. The lab's
// baseline syncer uses it; the tests prove the hazard.
func RegisterNaively(ctx context.Context, c *Client, backend, server, addr string, opts ServerOptions) error {
	if err := c.AddServer(ctx, backend, server, addr, opts); err != nil {
		return err
	}
	if err := c.EnableHealth(ctx, backend, server); err != nil {
		return err
	}
	return c.SetServerState(ctx, backend, server, StateReady)
}

func findServer(ctx context.Context, c *Client, backend, server string) (ServerState, bool, error) {
	states, err := c.ShowServersState(ctx, backend)
	if err != nil {
		return ServerState{}, false, err
	}
	for _, s := range states {
		if s.Name == server {
			return s, true, nil
		}
	}
	return ServerState{}, false, nil
}

// SetDraining sets the target to drain on every instance where it exists
// (its slot, found by address, in slot mode).
func (p *Provider) SetDraining(ctx context.Context, pl provider.Pool, t provider.Target) error {
	ctx, pool := withPool(ctx, pl)
	ctx = withLane(ctx, laneDrain) // before queued reads and Registers (lanes.go)
	return p.each(func(in Instance, c *Client) error {
		if slots, err := p.drainSlot(ctx, in, c, pool, t); slots || err != nil {
			return err
		}
		err := c.SetServerState(ctx, pool, string(t.ID), StateDrain)
		if errors.Is(err, ErrNoSuchServer) {
			return nil
		}
		return err
	})
}

// Deregister puts the target in maintenance and deletes it on every
// instance. HAProxy refuses to delete a server with connections; the error
// then wraps provider.ErrTargetBusy. In slot mode the slot stays in
// maintenance and, once it has no session, its address is unset: free.
func (p *Provider) Deregister(ctx context.Context, pl provider.Pool, t provider.Target) error {
	ctx, pool := withPool(ctx, pl)
	ctx = withLane(ctx, laneDrain) // before queued reads and Registers (lanes.go)
	return p.each(func(in Instance, c *Client) error {
		if slots, err := p.freeSlot(ctx, in, c, pool, t); slots || err != nil {
			return err
		}
		err := c.SetServerState(ctx, pool, string(t.ID), StateMaint)
		if errors.Is(err, ErrNoSuchServer) {
			return nil
		}
		if err != nil {
			return err
		}
		err = c.DelServer(ctx, pool, string(t.ID))
		switch {
		case err == nil:
			p.log.Info("haproxy: deregistered target", "instance", in.Name, "pool", pool, "target", t.ID)
			return nil
		case errors.Is(err, ErrNoSuchServer):
			return nil
		case errors.Is(err, ErrServerBusy):
			return fmt.Errorf("%w: %w", provider.ErrTargetBusy, err)
		}
		return err
	})
}

// Status reads the pool on every instance with one Runtime API call each.
func (p *Provider) Status(ctx context.Context, pl provider.Pool) (provider.PoolStatus, error) {
	ctx, pool := withPool(ctx, pl)
	ctx = withLane(ctx, laneRead) // before queued Registers (lanes.go)
	st := provider.PoolStatus{Pool: pool, Instances: make([]provider.InstanceStatus, len(p.clients))}
	err := p.each(func(in Instance, c *Client) error {
		i := indexOf(p.instances, in.Name)
		is := provider.InstanceStatus{Instance: in.Name}
		gen := p.serversGenOf(in, pool)
		snap, err := c.Snapshot(ctx, pool)
		if err != nil {
			is.Err = &provider.Error{Code: codeOf(err), Instance: in.Name, Message: err.Error(), Cause: err}
			st.Instances[i] = is
			return err
		}
		p.keepServers(in, pool, snap.Servers, gen) // for this cycle's actions
		is.Epoch = snap.Info.Epoch()
		if snap.Info.HasUptime() {
			// HAProxy's own word, so it holds across a controller restart
			// (M6). Uptime counts whole seconds, so this is at or after
			// the true start: the grace never ends early.
			is.StartedAt = time.Now().Add(-snap.Info.Uptime)
		}
		is.Targets = TargetStatuses(snap)
		if HasSlots(snap.Servers) {
			p.slotTargets(ctx, in.Name, pool, snap, is.Targets)
		}
		st.Instances[i] = is
		return nil
	})
	return st, err
}

func indexOf(ins []Instance, name string) int {
	for i, in := range ins {
		if in.Name == name {
			return i
		}
	}
	panic("haproxy provider: unknown instance " + name) // unreachable: names come from p.instances
}

// TargetStatuses maps a backend snapshot to the provider's target states.
func TargetStatuses(snap Snapshot) map[provider.TargetID]provider.TargetStatus {
	admin := make(map[string]ServerState, len(snap.Servers))
	for _, s := range snap.Servers {
		admin[s.Name] = s
	}
	out := make(map[provider.TargetID]provider.TargetStatus, len(snap.Servers))
	for _, s := range snap.Stats {
		if s.Type != TypeServer {
			continue
		}
		ss, ok := admin[s.Name]
		out[provider.TargetID(s.Name)] = targetStatus(s, ss, ok)
	}
	return out
}

func targetStatus(s Stat, ss ServerState, haveState bool) provider.TargetStatus {
	ts := provider.TargetStatus{Addr: s.Addr, Sessions: s.Sessions + s.QueueCurrent, Selected: s.Selected}
	msg := s.CheckDesc
	if s.LastCheck != "" && s.LastCheck != s.CheckDesc {
		if msg != "" {
			msg += ": "
		}
		msg += s.LastCheck
	}
	idle := ts.Sessions == 0
	switch {
	case s.Maint() || haveState && ss.Admin.Maint():
		ts.Reason = "MAINT"
		ts.Health = provider.HealthDrained
		if !idle {
			ts.Health = provider.HealthDraining
		}
		ts.Message = "in maintenance"
	case haveState && ss.Admin.Drain() || s.Status == "DRAIN" || len(s.Status) > 5 && s.Status[:6] == "DRAIN ":
		ts.Reason = "DRAIN"
		ts.Health = provider.HealthDrained
		if !idle {
			ts.Health = provider.HealthDraining
		}
		ts.Message = fmt.Sprintf("draining, %d session(s) open", ts.Sessions)
	case haveState && ss.Oper == OperStopping || len(s.Status) >= 4 && s.Status[:4] == "NOLB":
		// Up but refusing new balanced traffic (e.g. disable-on-404).
		ts.Health = provider.HealthUnhealthy
		ts.Reason = "NOLB"
		ts.Message = msg
	case haveState && ss.Up() || !haveState && len(s.Status) >= 2 && s.Status[:2] == "UP" || s.Status == "no check":
		ts.Health = provider.HealthHealthy
		ts.Reason = s.CheckStatus
		if ts.Reason == "" {
			ts.Reason = "UP"
		}
		ts.Message = msg
	case len(s.Status) >= 4 && s.Status[:4] == "DOWN":
		ts.Reason = s.CheckStatus
		if ts.Reason == "" {
			ts.Reason = "DOWN"
		}
		failed := haveState && ss.CheckResult == CheckFailed
		if !haveState {
			failed = s.CheckStatus != "" && s.CheckStatus != "INI" && s.CheckStatus != "UNK" && !checkPassed(s.CheckStatus)
		}
		if failed {
			ts.Health = provider.HealthUnhealthy
			ts.Message = msg
		} else {
			ts.Health = provider.HealthInitial
			ts.Message = fmt.Sprintf("%d/%d checks passed", s.CheckHealth, s.CheckRise)
		}
	default:
		ts.Health = provider.HealthUnknown
		ts.Reason = s.Status
		ts.Message = msg
	}
	return ts
}

// checkPassed reports whether a check status is a pass.
func checkPassed(status string) bool {
	switch status {
	case "L4OK", "L6OK", "L7OK", "L7OKC":
		return true
	}
	return false
}
