package haproxy

import "time"

// SetSnapshotReuse sets how long the servers a Status read are reused by
// the actions that follow (0: every action reads the backend afresh, as
// before the reuse), so a test can compare both in one run.
func SetSnapshotReuse(p *Provider, d time.Duration) { p.reuse = d }
