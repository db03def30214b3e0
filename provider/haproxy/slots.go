package haproxy

// Slot mode: servers defined in the configuration by a server-template,
//
//	server-template zd-slot 1-64 zd-slot.invalid:1 check disabled init-addr last,0.0.0.0
//
// survive a reload when HAProxy loads a server-state file (`show servers
// state` dumped right before the reload): address, admin state (maint /
// drain / ready) and operational state (UP / DOWN) come back in the new
// worker, so it serves from its first request. Dynamic servers (`add
// server`) are not in the configuration and are lost. docs/haproxy.md has
// the configuration lines and why each word is needed on 2.6.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"zerodrop.dev/zerodrop/provider"
)

// SlotPrefix is the server-template prefix that puts a backend in slot
// mode: servers named SlotPrefix followed by digits (zd-slot1, zd-slot2,
// ...) are slots the provider fills with targets instead of `add server`.
const SlotPrefix = "zd-slot"

// OrphanPrefix names, in Status, a slot whose address no known target has
// ("slot:zd-slot3"): a pod deleted while the controller was down, or a slot
// filled by hand. SetDraining and Deregister accept the ID to free it, while
// the slot is still an orphan. It is provider.OrphanPrefix.
const OrphanPrefix = provider.OrphanPrefix

// ErrNoFreeSlot is returned (wrapped) by Register in slot mode when every
// slot of the backend holds a target: add slots to the template and reload.
var ErrNoFreeSlot = errors.New("no free server-template slot")

// IsSlot reports whether a server name is a slot: SlotPrefix and digits.
func IsSlot(name string) bool {
	rest, ok := strings.CutPrefix(name, SlotPrefix)
	if !ok || rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	return true
}

// HasSlots reports whether a backend's servers include slots (slot mode).
func HasSlots(states []ServerState) bool {
	for _, s := range states {
		if IsSlot(s.Name) {
			return true
		}
	}
	return false
}

// SlotFree reports whether a slot holds no target: in maintenance with its
// IP unset (0.0.0.0, "::" or none), as the template starts it and as
// Deregister leaves it.
func SlotFree(s ServerState) bool { return s.Admin.Maint() && unsetIP(s.Addr) }

func unsetIP(ip string) bool {
	switch ip {
	case "", "-", "0.0.0.0", "::":
		return true
	}
	return false
}

func slotAddr(s ServerState) string { return net.JoinHostPort(s.Addr, strconv.Itoa(s.Port)) }

// poolBook maps the addresses of a pool's known targets to their IDs, built
// for each call from provider.Pool.Known: slots carry no target name.
type poolBook struct {
	name  string
	addrs map[string]provider.TargetID // addr -> ID; the first known target of an address
	ids   map[provider.TargetID]string // ID -> addr
}

type poolKey struct{}

// withPool puts the call's book in ctx and returns the pool's name.
func withPool(ctx context.Context, pl provider.Pool) (context.Context, string) {
	b := &poolBook{name: pl.Name, addrs: make(map[string]provider.TargetID, len(pl.Known)), ids: make(map[provider.TargetID]string, len(pl.Known))}
	known := append([]provider.Target(nil), pl.Known...)
	// Deterministic when two known targets share an address (IP reuse):
	// the smaller ID names it.
	sort.Slice(known, func(i, j int) bool { return known[i].ID < known[j].ID })
	for _, t := range known {
		if t.IP == "" || t.Port <= 0 || provider.IsOrphan(t.ID) {
			continue
		}
		if _, ok := b.addrs[t.Addr()]; !ok {
			b.addrs[t.Addr()] = t.ID
		}
		b.ids[t.ID] = t.Addr()
	}
	return context.WithValue(ctx, poolKey{}, b), pl.Name
}

// bookOf returns the call's book (an empty one outside a call).
func bookOf(ctx context.Context) *poolBook {
	if b, ok := ctx.Value(poolKey{}).(*poolBook); ok {
		return b
	}
	return &poolBook{addrs: map[string]provider.TargetID{}, ids: map[provider.TargetID]string{}}
}

// lookup returns the ID an address is known by.
func (b *poolBook) lookup(addr string) (provider.TargetID, bool) {
	id, ok := b.addrs[addr]
	return id, ok
}

// addrOf returns the address a target is known by: its own, else the one
// the call's Known has for its ID.
func addrOf(ctx context.Context, t provider.Target) string {
	if t.IP != "" && t.Port > 0 {
		return t.Addr()
	}
	return bookOf(ctx).ids[t.ID]
}

// slotKey names one slot of one pool on one instance.
type slotKey struct{ instance, pool, slot string }

// slotHolder is the target this process gave a slot to (or found in it and
// acted on), with the address it had then. A slot carries no target name
// in HAProxy, and an address can pass from a draining pod to a new one (IP
// reuse), so while this process lives the holder, not the address, says
// whose a slot is (M11). After a restart the address is all there is.
type slotHolder struct {
	id   provider.TargetID
	addr string
}

// holderLocked returns the holder of slot s if it still has the address it
// was given (a slot readdressed or freed behind this process's back has
// none).
func (p *Provider) holderLocked(instance, pool string, s ServerState) (provider.TargetID, bool) {
	h, ok := p.holders[slotKey{instance, pool, s.Name}]
	if !ok || SlotFree(s) || h.addr != slotAddr(s) {
		return "", false
	}
	return h.id, true
}

func (p *Provider) hold(instance, pool string, s ServerState, id provider.TargetID) {
	p.mu.Lock()
	p.holders[slotKey{instance, pool, s.Name}] = slotHolder{id: id, addr: slotAddr(s)}
	p.mu.Unlock()
}

func (p *Provider) release(instance, pool, slot string) {
	p.mu.Lock()
	delete(p.holders, slotKey{instance, pool, slot})
	p.mu.Unlock()
}

// slotIDsLocked returns the ID each in-use slot of a backend is reported
// under: its holder's while some owner still knows that ID; for a slot
// without a holder, its target's, found by address in the book, for the
// first slot with that address; OrphanPrefix + its name for any other (no
// owner knows the address or the holder any more, or a second slot holds
// the same target). Free slots are left out.
func (p *Provider) slotIDsLocked(ctx context.Context, instance, pool string, states []ServerState) map[string]provider.TargetID {
	b := bookOf(ctx)
	out := map[string]provider.TargetID{}
	claimed := map[provider.TargetID]bool{}
	// Held slots first: an address whose target holds a slot names no
	// other slot.
	for _, held := range []bool{true, false} {
		for _, s := range states {
			if !IsSlot(s.Name) || SlotFree(s) {
				continue
			}
			h, isHeld := p.holderLocked(instance, pool, s)
			if isHeld != held {
				continue
			}
			_, ok := b.ids[h]
			id := h
			if !held {
				id, ok = b.lookup(slotAddr(s))
			}
			if !ok || claimed[id] {
				id = provider.TargetID(OrphanPrefix + s.Name)
			}
			claimed[id] = true
			out[s.Name] = id
		}
	}
	return out
}

// findSlot returns the slot holding the target. For an orphan ID: the
// slot of that name while it is still an orphan (not free, address still
// unknown: a slot adopted meanwhile by a target with its address is left
// alone). Else: the slot this process gave the target, else an in-use slot
// with the target's address and no other holder. heldBy names the holder
// of a slot with the target's address that belongs to another target.
func (p *Provider) findSlot(ctx context.Context, instance string, states []ServerState, pool string, t provider.Target) (s ServerState, found bool, heldBy provider.TargetID) {
	if name, ok := strings.CutPrefix(string(t.ID), OrphanPrefix); ok {
		p.mu.Lock()
		ids := p.slotIDsLocked(ctx, instance, pool, states)
		p.mu.Unlock()
		if ids[name] != t.ID {
			return ServerState{}, false, ""
		}
		for _, s := range states {
			if s.Name == name {
				return s, true, ""
			}
		}
		return ServerState{}, false, ""
	}
	addr := addrOf(ctx, t)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range states {
		if h, ok := p.holderLocked(instance, pool, s); ok && h == t.ID {
			return s, true, ""
		}
	}
	if addr == "" {
		return ServerState{}, false, ""
	}
	for _, s := range states {
		if !IsSlot(s.Name) || unsetIP(s.Addr) || slotAddr(s) != addr {
			continue
		}
		if h, ok := p.holderLocked(instance, pool, s); ok {
			heldBy = h
			continue
		}
		return s, true, ""
	}
	return ServerState{}, false, heldBy
}

// ErrAddressHeld is returned (wrapped) by Register in slot mode while a
// slot with the target's address still belongs to another target (an IP
// reused while the old pod's slot drains): retry once that slot is freed.
var ErrAddressHeld = errors.New("address held by another target's slot")

// staleError makes a slot operation run once more on a fresh `show
// servers state`: the reused snapshot no longer matches the slot it chose,
// or what it found (a full backend, a held address) is to be confirmed.
type staleError struct{ error }

func (e staleError) Unwrap() error { return e.error }

// onSlots runs op on the backend's servers, from the snapshot this cycle
// already read when it is fresh (serversOf), and once more on a fresh read
// when op finds the snapshot stale. slotMode is false for a backend without
// slots; op is not run then.
func (p *Provider) onSlots(ctx context.Context, in Instance, c *Client, pool string, op func(states []ServerState) error) (slotMode bool, err error) {
	for fresh := false; ; fresh = true {
		states, err := p.serversOf(ctx, in, c, pool, fresh)
		if err != nil || !HasSlots(states) {
			return false, err
		}
		err = op(states)
		var stale staleError
		if errors.As(err, &stale) {
			if !fresh {
				continue
			}
			return true, stale.error
		}
		return true, err
	}
}

// checkSlot reads the one row of slot s (`show stat B 4 ID`, a constant
// size whatever the backend) and returns a staleError unless it still has the
// address the snapshot had (for a claim: unset, in maintenance). A slot
// chosen from a snapshot is checked right before it is changed, so a stale
// snapshot never makes the provider act on a slot that holds another
// target.
func (p *Provider) checkSlot(ctx context.Context, c *Client, pool string, s ServerState) (Stat, error) {
	st, found, err := c.ShowServerStat(ctx, pool, s.ID)
	if err != nil {
		return Stat{}, err
	}
	if !found || st.Name != s.Name {
		return Stat{}, staleError{fmt.Errorf("backend %s: slot %s (id %d) not found", pool, s.Name, s.ID)}
	}
	host, port := splitStatAddr(st.Addr)
	ip := net.ParseIP(host)
	if SlotFree(s) {
		if (unsetIP(host) || ip != nil && ip.IsUnspecified()) && st.Maint() {
			return st, nil
		}
		return Stat{}, staleError{fmt.Errorf("backend %s: slot %s is no longer free (%s, %s)", pool, s.Name, st.Addr, st.Status)}
	}
	if ip != nil && ip.Equal(net.ParseIP(s.Addr)) && port == strconv.Itoa(s.Port) {
		return st, nil
	}
	return Stat{}, staleError{fmt.Errorf("backend %s: slot %s has address %s, not %s", pool, s.Name, st.Addr, slotAddr(s))}
}

// splitStatAddr splits `show stat`'s addr column: "ip:port", an IPv6
// address with or without brackets ("[::1]:80", "::1:80"), a port mapped
// with '+', or nothing.
func splitStatAddr(addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr, ""
	}
	host, port = addr[:i], strings.TrimPrefix(addr[i+1:], "+")
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port
}

// registerSlot puts the target in a slot of backend pool: the slot that
// has its address already (a repeated call, or a registration cut short),
// else the first free one. Then the same sequence as RegisterSafely from
// step 2 (enable health, drain, health down, ready), so the slot gets no
// balanced request before `rise` passed checks. Slots take their check
// interval, rise and fall from the configuration (HAProxy cannot change
// them at runtime); the target's check port is set. A slot with the
// target's address that another target holds is never taken over
// (ErrAddressHeld).
//
// Only the choice of the slot and its claim (its address set, still in
// maintenance) hold the backend's claim lock: two targets must not pick the
// same free slot. Steps 2-5 act on a slot this process now holds for the
// target, by name, so the next target's claim need not wait for them
// (Registers of a cycle run side by side).
func (p *Provider) registerSlot(ctx context.Context, in Instance, c *Client, pool string, t provider.Target) (changed bool, err error) {
	var s ServerState
	var next bool
	func() {
		defer p.claim(in, pool)()
		_, err = p.onSlots(ctx, in, c, pool, func(states []ServerState) error {
			s, changed, next, err = p.claimSlotOn(ctx, in, c, pool, t, states)
			return err
		})
	}()
	if err != nil || !next {
		return changed, err
	}
	return true, p.checkedSlot(ctx, in, c, pool, s)
}

// claimSlotOn finds or claims the target's slot (the first part of
// registerSlot, under the claim lock). next says whether steps 2-5 are to
// follow on s; changed, whether the claim changed the slot.
func (p *Provider) claimSlotOn(ctx context.Context, in Instance, c *Client, pool string, t provider.Target, states []ServerState) (s ServerState, changed, next bool, err error) {
	s, found, heldBy := p.findSlot(ctx, in.Name, states, pool, t)
	if !found && heldBy != "" {
		err := fmt.Errorf("register %s (%s) in backend %s: a slot with that address still belongs to target %s until it is freed: %w",
			t.ID, t.Addr(), pool, heldBy, ErrAddressHeld)
		return s, false, false, staleError{err} // confirmed on a fresh read
	}
	if found {
		if _, err := p.checkSlot(ctx, c, pool, s); err != nil {
			return s, false, false, err
		}
		p.hold(in.Name, pool, s, t.ID)
	} else {
		n := 0
		for _, st := range states {
			if !IsSlot(st.Name) {
				continue
			}
			n++
			if !found && SlotFree(st) {
				s, found = st, true
			}
		}
		if !found {
			return s, false, false, staleError{fmt.Errorf("register %s (%s) in backend %s: all %d slots (%s1..%s%d) hold targets: %w",
				t.ID, t.Addr(), pool, n, SlotPrefix, SlotPrefix, n, ErrNoFreeSlot)}
		}
		if s.CheckState&0x02 == 0 {
			// Without `check` a slot would be UP the moment it leaves
			// maintenance: no safe registration possible.
			return s, false, false, fmt.Errorf("backend %s: slot %s has no health check configured (add `check` to the server-template line)", pool, s.Name)
		}
		if _, err := p.checkSlot(ctx, c, pool, s); err != nil {
			return s, false, false, err
		}
		chk := withDefaults(t.Check, p.check)
		port := chk.Port
		if port == 0 {
			port = t.Port // a reused slot may carry its last target's check port
		}
		// The claim: the slot stays in maintenance whatever of it fails.
		var claim Batch
		claim.SetServerAddr(pool, s.Name, t.IP, t.Port)
		claim.SetServerCheckPort(pool, s.Name, port)
		ok, err := c.Run(ctx, &claim)
		if ok < 1 {
			p.dropServers(in, pool)
			return s, true, false, err
		}
		s.Addr, s.Port = t.IP, t.Port
		p.hold(in.Name, pool, s, t.ID)
		p.noteSlot(in, pool, s.Name, func(x *ServerState) { x.Addr, x.Port = t.IP, t.Port })
		if err != nil {
			return s, true, false, err
		}
		p.log.Info("haproxy: target takes slot", "instance", in.Name, "pool", pool, "slot", s.Name, "target", t.ID, "addr", t.Addr())
		s.Admin |= AdminForcedMaint // claimed from maintenance: finish from step 2
		changed = true
	}
	switch {
	case s.Admin.Maint(), s.Admin.Drain():
		return s, changed, true, nil
	}
	return s, changed, false, nil // in rotation or checked towards it
}

// checkedSlot runs steps 2-5 on the target's slot s (in maintenance, or in
// drain: cut short between steps 3 and 4, whose counter may be an unearned
// `rise`, so 4-5 are redone). Steps 2-4 go in one line (every subset of
// them leaves the slot out of balanced traffic: in maintenance or drain),
// step 5 in the next, sent only once step 4 reset the check counter.
func (p *Provider) checkedSlot(ctx context.Context, in Instance, c *Client, pool string, s ServerState) error {
	var checked Batch
	if s.Admin.Maint() {
		if s.CheckState&CheckStateEnabled == 0 {
			checked.EnableHealth(pool, s.Name)
		}
		checked.SetServerState(pool, s.Name, StateDrain)
	}
	checked.SetServerHealth(pool, s.Name, HealthDown)
	if _, err := c.Run(ctx, &checked); err != nil {
		p.dropServers(in, pool)
		return err
	}
	err := c.SetServerState(ctx, pool, s.Name, StateReady)
	p.noteSlot(in, pool, s.Name, func(x *ServerState) {
		x.Admin &^= AdminForcedMaint | AdminConfigMaint | AdminForcedDrain
		x.CheckState |= CheckStateEnabled
	})
	return err
}

// drainSlot sets the target's slot to drain; false when the backend has no
// slots (dynamic mode). A slot in maintenance is left there, also when only
// the slot's own row, read right before the change, says so (another
// process began to free it after this one's snapshot): in HAProxy, `state
// drain` takes a server out of maintenance.
func (p *Provider) drainSlot(ctx context.Context, in Instance, c *Client, pool string, t provider.Target) (slotMode bool, err error) {
	if provider.IsOrphan(t.ID) {
		// Not while a Register may be adopting the slot by its address.
		defer p.claim(in, pool)()
	}
	return p.onSlots(ctx, in, c, pool, func(states []ServerState) error {
		s, found, _ := p.findSlot(ctx, in.Name, states, pool, t)
		if !found || s.Admin.Maint() || s.Admin.Drain() {
			return nil
		}
		st, err := p.checkSlot(ctx, c, pool, s)
		if err != nil {
			return err
		}
		if st.Maint() {
			// Put in maintenance since the snapshot (another process
			// freeing it): out of rotation already, and `state drain`
			// would make it UP again.
			p.noteSlot(in, pool, s.Name, func(x *ServerState) { x.Admin |= AdminForcedMaint })
			return nil
		}
		if !provider.IsOrphan(t.ID) {
			p.hold(in.Name, pool, s, t.ID)
		}
		if err := c.SetServerState(ctx, pool, s.Name, StateDrain); err != nil {
			return err
		}
		p.noteSlot(in, pool, s.Name, func(x *ServerState) { x.Admin |= AdminForcedDrain })
		return nil
	})
}

// freeSlot puts the target's slot in maintenance and, once HAProxy has no
// session on it, unsets its address so the slot is free for the next
// target; false when the backend has no slots (dynamic mode). A slot this
// process gave another target is never freed for this one.
func (p *Provider) freeSlot(ctx context.Context, in Instance, c *Client, pool string, t provider.Target) (slotMode bool, err error) {
	if provider.IsOrphan(t.ID) {
		// Not while a Register may be adopting the slot by its address.
		defer p.claim(in, pool)()
	}
	return p.onSlots(ctx, in, c, pool, func(states []ServerState) error {
		s, found, _ := p.findSlot(ctx, in.Name, states, pool, t)
		if !found {
			return nil
		}
		if _, err := p.checkSlot(ctx, c, pool, s); err != nil {
			return err
		}
		if !provider.IsOrphan(t.ID) {
			p.hold(in.Name, pool, s, t.ID)
		}
		if !s.Admin.Maint() {
			if err := c.SetServerState(ctx, pool, s.Name, StateMaint); err != nil {
				return err
			}
			p.noteSlot(in, pool, s.Name, func(x *ServerState) { x.Admin |= AdminForcedMaint })
		}
		st, err := p.checkSlot(ctx, c, pool, s) // sessions, after maintenance
		if err != nil {
			return err
		}
		if st.Sessions+st.QueueCurrent > 0 {
			return fmt.Errorf("backend %s slot %s (%s): %d session(s), %d queued: %w",
				pool, s.Name, slotAddr(s), st.Sessions, st.QueueCurrent, provider.ErrTargetBusy)
		}
		if err := c.SetServerAddr(ctx, pool, s.Name, "0.0.0.0", max(s.Port, 1)); err != nil {
			p.dropServers(in, pool)
			return err
		}
		p.release(in.Name, pool, s.Name)
		p.noteSlot(in, pool, s.Name, func(x *ServerState) { x.Addr, x.Port = "0.0.0.0", max(s.Port, 1) })
		p.log.Info("haproxy: slot freed", "instance", in.Name, "pool", pool, "slot", s.Name, "target", t.ID, "addr", slotAddr(s))
		return nil
	})
}

// slotTargets renames the slots of a Status snapshot to target IDs: a free
// slot is left out, a slot with a known address is reported under its
// target's ID, any other under OrphanPrefix + its name (slotIDsLocked).
func (p *Provider) slotTargets(ctx context.Context, instance, pool string, snap Snapshot, targets map[provider.TargetID]provider.TargetStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := p.slotIDsLocked(ctx, instance, pool, snap.Servers)
	for _, s := range snap.Servers {
		if !IsSlot(s.Name) {
			continue
		}
		ts, ok := targets[provider.TargetID(s.Name)]
		delete(targets, provider.TargetID(s.Name))
		id, inUse := ids[s.Name]
		if !ok || !inUse {
			continue
		}
		if s.FQDN == "" && !p.warned[instance+"/"+pool] {
			p.warned[instance+"/"+pool] = true
			p.log.Warn("haproxy: slot has an IP address in the configuration: a reload loses the address set at runtime (the template needs a host name and `init-addr last,0.0.0.0`)",
				"instance", instance, "pool", pool, "slot", s.Name)
		}
		ts.Addr = slotAddr(s)
		if _, taken := targets[id]; taken {
			// A server configured under the target's name: not this slot.
			id = provider.TargetID(OrphanPrefix + s.Name)
		}
		targets[id] = ts
	}
}
