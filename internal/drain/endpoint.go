package drain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// Endpoint serves the drain endpoint while a controller-runtime manager
// runs (a manager.Runnable): on the leader only in the all role
// (LeaderOnly), on every replica in the serve role.
type Endpoint struct {
	Addr       string
	Handler    http.Handler
	Log        *slog.Logger
	LeaderOnly bool
	// MaxConns caps the open connections (0: no cap). Each costs memory
	// whether it is held, idle or still sending its headers; beyond the cap
	// new connections wait in the kernel's accept queue.
	MaxConns int

	mu  sync.Mutex
	srv *http.Server
}

// Start listens and serves until ctx ends.
func (d *Endpoint) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", d.Addr)
	if err != nil {
		return fmt.Errorf("drain endpoint listen %s: %w", d.Addr, err)
	}
	if d.MaxConns > 0 {
		ln = netutil.LimitListener(ln, d.MaxConns)
	}
	srv := NewServer(d.Handler)
	d.mu.Lock()
	d.srv = srv
	d.mu.Unlock()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	d.Log.Info("drain endpoint listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (d *Endpoint) NeedLeaderElection() bool { return d.LeaderOnly }

// Listening is a readyz check: the drain endpoint accepts requests.
func (d *Endpoint) Listening(*http.Request) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv == nil {
		return errors.New("drain endpoint not started")
	}
	return nil
}

// Quiesce ends the drain endpoint gently: it keeps accepting requests for
// delay (the Service takes a moment to stop routing new preStop requests
// here), then stops accepting and waits up to timeout for the held
// requests to be answered. The drain-only reconciler keeps running
// meanwhile, so those answers are real verdicts.
func (d *Endpoint) Quiesce(delay, timeout time.Duration) {
	d.mu.Lock()
	srv := d.srv
	d.mu.Unlock()
	if srv == nil {
		return
	}
	d.Log.Info("drain endpoint stopping: answering held requests first", "delay", delay, "timeout", timeout)
	time.Sleep(delay)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		d.Log.Warn("drain endpoint stopped with requests still held", "err", err)
	}
}
