package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/lab/syncer"
	"zerodrop.dev/zerodrop/internal/webhook"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
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
			if err == nil {
				up, servers := 0, 0
				for _, s := range states {
					if hapi.IsSlot(s.Name) && hapi.SlotFree(s) {
						continue // an empty slot is not a server
					}
					servers++
					if s.Up() && !s.Admin.Maint() && s.CheckResult == hapi.CheckPassed {
						up++
					}
				}
				if up == n && servers == n {
					break
				}
				last = fmt.Sprintf("%d of %d servers up", up, servers)
			} else if last == "" || ctx.Err() == nil {
				// Keep the last state seen when the deadline cuts a call.
				last = err.Error()
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

// reloadHAProxy reloads one lab instance from any process: the servers'
// state is saved to the server-state file, then the master gets SIGUSR2
// (what `systemctl reload` does with HAProxy's seamless-reload practice).
func reloadHAProxy(ctx context.Context, h HAProxyState) error {
	if h.Master == 0 || h.StateFile == "" {
		return fmt.Errorf("lab: reload %s: the lab's state records no master pid or state file (a lab from an older zerodrop: restart it)", h.Name)
	}
	if err := haproxy.ReloadMaster(ctx, h.Master, h.Exe, h.Socket, h.StateFile); err != nil {
		return fmt.Errorf("lab: reload %s: %w", h.Name, err)
	}
	return nil
}

// clearBackend removes every server a scenario left in the backend on every
// instance (a scenario that ends mid-way must not leave targets for the
// next one): maintenance first, then runtime servers are deleted and slots
// freed.
func clearBackend(ctx context.Context, hs []HAProxyState) error {
	var errs []error
	for _, h := range hs {
		c, err := hapi.NewClient(h.Socket)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		states, err := c.ShowServersState(ctx, h.Backend)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, s := range states {
			slot := hapi.IsSlot(s.Name)
			if slot && hapi.SlotFree(s) {
				continue
			}
			if !s.Admin.Maint() {
				if err := c.SetServerState(ctx, h.Backend, s.Name, hapi.StateMaint); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			if slot {
				// Free the slot for the next run (the provider's own way).
				if err := c.SetServerAddr(ctx, h.Backend, s.Name, "0.0.0.0", max(s.Port, 1)); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			if err := c.DelServer(ctx, h.Backend, s.Name); err != nil && !errors.Is(err, hapi.ErrNoSuchServer) {
				// Other configuration-file servers cannot be deleted;
				// maintenance is enough.
				continue
			}
		}
	}
	return errors.Join(errs...)
}

// AdminTLSSecret is the Secret (in ControllerNamespace) with the client
// certificate zerodrop-controller presents to the lab's HAProxy instances:
// the name config/ grants the controller's roles.
const AdminTLSSecret = "zerodrop-haproxy-client"

// issueAdminTLS issues the lab's Runtime API certificates: a CA, HAProxy's
// serving certificate for 127.0.0.1 and the hosts given, and a client pair
// written to dir as tls.crt, tls.key and ca.crt (the Secret's keys).
func issueAdminTLS(dir string, hosts ...string) (*haproxy.AdminTLS, string, error) {
	m, err := webhook.IssueMutualTLS(time.Now(), 7*24*time.Hour, append([]string{"127.0.0.1"}, hosts...), "zerodrop-controller")
	if err != nil {
		return nil, "", fmt.Errorf("lab: Runtime API certificates: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("lab: Runtime API certificates: %w", err)
	}
	for name, b := range map[string][]byte{"tls.crt": m.ClientCert, "tls.key": m.ClientKey, "ca.crt": m.CA} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, "", fmt.Errorf("lab: Runtime API certificates: %w", err)
		}
	}
	return &haproxy.AdminTLS{Cert: m.ServerCert, Key: m.ServerKey, CA: m.CA}, dir, nil
}

// adminTLSSecret is the Secret holding the client pair issueAdminTLS wrote
// to dir.
func adminTLSSecret(dir string) (*corev1.Secret, error) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: AdminTLSSecret, Namespace: ControllerNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{},
	}
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("lab: Runtime API client certificate: %w", err)
		}
		s.Data[name] = b
	}
	return s, nil
}
