package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// LBKind is the load balancer a scenario sends its load through: the lab's
// HAProxy instances or its NGINX instances. Every place that touches the
// load balancer (load, baseline syncer, "servers up", faults, cleanup)
// goes through the functions below.
type LBKind string

const (
	// LBHAProxy: the lab's HAProxy instances (the zero value of
	// Scenario.LB).
	LBHAProxy LBKind = "haproxy"
	// LBNGINX: the lab's NGINX instances (Options.NGINXInstances).
	LBNGINX LBKind = "nginx"
)

// lb is the scenario's load balancer.
func (s Scenario) lb() LBKind {
	if s.LB == "" {
		return LBHAProxy
	}
	return s.LB
}

// String names the kind as the progress lines do.
func (k LBKind) String() string {
	if k == LBNGINX {
		return "NGINX"
	}
	return "HAProxy"
}

// instances returns the names and frontends of the target's instances of
// kind k, and an error when it has none.
func (t Target) instances(k LBKind) (names, frontends []string, err error) {
	switch k {
	case LBNGINX:
		for _, n := range t.NGINX {
			names, frontends = append(names, n.Name), append(frontends, n.Frontend)
		}
	default:
		for _, h := range t.HAProxy {
			names, frontends = append(names, h.Name), append(frontends, h.Frontend)
		}
	}
	if len(names) == 0 {
		hint := ""
		if k == LBNGINX {
			hint = " (start the lab with --nginx N)"
		}
		return nil, nil, fmt.Errorf("lab: no %s instance to send load through%s", k, hint)
	}
	return names, frontends, nil
}

// clearPool empties the pool of every instance of kind k.
func (t Target) clearPool(ctx context.Context, k LBKind) error {
	if k == LBNGINX {
		return clearNGINXPools(ctx, t.NGINX)
	}
	return clearBackend(ctx, t.HAProxy)
}

// waitServersUp waits until every instance of kind k sends to n servers
// that pass its checks (HAProxy) or that it loaded and that answer (NGINX).
func (t Target) waitServersUp(ctx context.Context, k LBKind, n int) error {
	if k == LBNGINX {
		return waitNGINXServersUp(ctx, t.NGINX, n)
	}
	return waitServersUp(ctx, t.HAProxy, n)
}

// startBaselineSyncer runs the naive sync of kind k's instances with the
// Service's Ready endpoints.
func (t Target) startBaselineSyncer(ctx context.Context, k LBKind, ns, svc string, log *slog.Logger) (func(), error) {
	if k == LBNGINX {
		return startNGINXSyncer(ctx, t, ns, svc, log)
	}
	return startSyncer(ctx, t, ns, svc, log)
}

// reload reloads every instance of kind k, one after the other, or all at
// the same moment (one goroutine per instance, released together); it
// returns the errors joined ("" when every reload worked).
func (t Target) reload(ctx context.Context, k LBKind, atOnce bool) string {
	var reloads []func() error
	if k == LBNGINX {
		for _, n := range t.NGINX {
			reloads = append(reloads, func() error { return reloadNGINX(ctx, n) })
		}
	} else {
		for _, h := range t.HAProxy {
			reloads = append(reloads, func() error { return reloadHAProxy(ctx, h) })
		}
	}
	errs := make([]error, len(reloads))
	if !atOnce {
		for i, r := range reloads {
			if errs[i] = r(); errs[i] != nil {
				break
			}
		}
	} else {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, r := range reloads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = r()
			}()
		}
		close(start)
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return err.Error()
	}
	return ""
}
