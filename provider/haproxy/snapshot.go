package haproxy

// Reuse of the cycle's snapshot (M9). A controller cycle reads a pool's
// Status (one `show servers state` per instance among its dumps) and then
// registers, drains and deregisters the targets due. Dumping the whole
// backend again for each of those actions made a rollout of N targets cost
// O(N²) bytes; instead the actions use the servers Status read, for a short
// validity, kept current with the provider's own changes. It stays safe
// when the snapshot is stale: a slot chosen from it is checked with a
// one-row read right before it is changed (checkSlot), and the other
// commands fail safely on their own (`add server` of an existing name,
// `set server` of a missing one).

import (
	"context"
	"time"
)

// snapshotReuse is how long the servers a Status read are reused by the
// actions that follow it.
const snapshotReuse = time.Second

// cachedServers is one instance's `show servers state` of one pool.
type cachedServers struct {
	at      time.Time
	servers []ServerState
}

func cacheKey(in Instance, pool string) string { return in.Name + "\x00" + pool }

// serversOf returns the pool's servers on the instance: the last read's
// when it is younger than the reuse validity and fresh is false, else a
// new `show servers state`, which is then kept for the next actions.
func (p *Provider) serversOf(ctx context.Context, in Instance, c *Client, pool string, fresh bool) ([]ServerState, error) {
	key := cacheKey(in, pool)
	p.mu.Lock()
	if e, ok := p.servers[key]; ok && !fresh && time.Since(e.at) < p.reuse {
		out := append([]ServerState(nil), e.servers...)
		p.mu.Unlock()
		return out, nil
	}
	gen := p.serversGen[key]
	p.mu.Unlock()
	states, err := c.ShowServersState(ctx, pool)
	if err != nil {
		return nil, err
	}
	p.keepServers(in, pool, states, gen)
	return states, nil
}

// keepServers stores a read of the pool's servers unless the provider
// changed a slot since the read began (gen): the read may predate it.
func (p *Provider) keepServers(in Instance, pool string, states []ServerState, gen uint64) {
	if p.reuse <= 0 {
		return
	}
	key := cacheKey(in, pool)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.serversGen[key] != gen {
		return
	}
	p.servers[key] = cachedServers{at: time.Now(), servers: append([]ServerState(nil), states...)}
}

// serversGenOf returns the generation a read beginning now is stored under.
func (p *Provider) serversGenOf(in Instance, pool string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.serversGen[cacheKey(in, pool)]
}

// noteSlot applies a change the provider just made to a server to the kept
// snapshot, so that the next action of the cycle sees it.
func (p *Provider) noteSlot(in Instance, pool, name string, change func(*ServerState)) {
	key := cacheKey(in, pool)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serversGen[key]++
	e, ok := p.servers[key]
	if !ok {
		return
	}
	for i := range e.servers {
		if e.servers[i].Name == name {
			change(&e.servers[i])
		}
	}
}

// dropServers forgets the kept snapshot (a change failed half way: the
// next action reads afresh).
func (p *Provider) dropServers(in Instance, pool string) {
	key := cacheKey(in, pool)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serversGen[key]++
	delete(p.servers, key)
}
