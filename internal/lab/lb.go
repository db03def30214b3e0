package lab

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"zerodrop.dev/zerodrop/internal/lab/syncer"
	hapi "zerodrop.dev/zerodrop/internal/provider/haproxy"
)

// startSyncer runs the baseline syncer for ns/svc on every HAProxy instance
// of the target, with the lab's health-check settings. The returned stop
// function ends it and waits for it.
func startSyncer(ctx context.Context, t Target, ns, svc string, log *slog.Logger) (func(), error) {
	var sockets []string
	for _, h := range t.HAProxy {
		sockets = append(sockets, h.Socket)
	}
	s, err := syncer.New(syncer.Config{
		Client: t.Client, Namespace: ns, Service: svc, Port: "http", Backend: BackendName,
		Instances: sockets,
		Check:     hapi.ServerOptions{Inter: t.Check.Interval, Rise: t.Check.Rise, Fall: t.Check.Fall},
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: syncer for %s/%s: %w", ns, svc, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(sctx); err != nil && sctx.Err() == nil {
			log.Error("syncer stopped", "service", ns+"/"+svc, "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// waitServersUp waits until the app backend of every instance has n servers
// that are UP, not in maintenance, and whose last health check passed (the
// baseline syncer marks a new server UP before any check: UP alone does not
// mean the app listens).
func waitServersUp(ctx context.Context, hs []HAProxyState, n int) error {
	for _, h := range hs {
		c, err := hapi.NewClient(h.Socket)
		if err != nil {
			return fmt.Errorf("lab: haproxy %s: %w", h.Name, err)
		}
		var last string
		for {
			states, err := c.ShowServersState(ctx, h.Backend)
			up := 0
			if err == nil {
				for _, s := range states {
					if s.Up() && !s.Admin.Maint() && s.CheckResult == hapi.CheckPassed {
						up++
					}
				}
				last = fmt.Sprintf("%d of %d servers up", up, len(states))
			} else {
				last = err.Error()
			}
			if err == nil && up == n && len(states) == n {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("lab: haproxy %s backend %s: want %d servers up, have %s: %w", h.Name, h.Backend, n, last, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// reloadHAProxy reloads one lab instance from any process.
func reloadHAProxy(ctx context.Context, h HAProxyState) error {
	return fmt.Errorf("lab: reload %s: not wired yet", h.Name)
}
