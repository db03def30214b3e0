package haproxy

import "time"

// SetSnapshotReuse sets how long the servers a Status read are reused by
// the actions that follow (0: every action reads the backend afresh, as
// before the reuse), so a test can compare both in one run.
func SetSnapshotReuse(p *Provider, d time.Duration) { p.reuse = d }

// RoundTrips is how many lines (Runtime API round trips) the provider's
// clients have sent, all instances together.
func RoundTrips(p *Provider) int64 {
	var n int64
	for _, c := range p.clients {
		n += c.lines.Load()
	}
	return n
}

// ClientRoundTrips is how many lines (Runtime API round trips) c has sent.
func ClientRoundTrips(c *Client) int64 { return c.lines.Load() }
