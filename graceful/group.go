package graceful

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDeadline is wrapped by Run's error when requests or connections were
// still open at the shutdown deadline and were closed by force.
var ErrDeadline = errors.New("shutdown deadline reached, connections closed by force")

// ErrForced is returned by Run when a second signal ended the shutdown and the
// ForceExit function returned instead of exiting.
var ErrForced = errors.New("shutdown forced by a second signal")

// GRPCServer is what Group needs of a gRPC server; *grpc.Server implements it.
type GRPCServer interface {
	Serve(net.Listener) error
	// GracefulStop stops accepting, lets running RPCs and streams finish,
	// then returns.
	GracefulStop()
	// Stop closes every connection at once.
	Stop()
}

// Group runs one or more servers (HTTP, gRPC) in one process and shuts them
// down together without dropping a request: see the package documentation for
// the phases. Create it with New, add servers, mount ReadinessHandler, call Run.
type Group struct {
	s       settings
	log     *slog.Logger
	metrics *metrics
	drain   *drainClient

	mu        sync.Mutex
	servers   []server
	notReadyF []func()
	stopF     []func()
	ran       bool

	ready    atomic.Bool
	draining atomic.Bool
	notReady chan struct{}
	stopping chan struct{}
}

// server is one HTTP or gRPC server of the group.
type server interface {
	name() string
	listen() error
	serve() error
	// stop ends the server gracefully; at the deadline it closes what is left
	// and returns how many requests/connections it cut.
	stop(deadline time.Time, force <-chan struct{}) (cut int, err error)
	close()
}

// New returns a Group configured by defaults, then opts, then the
// environment variables (see the Env constants), unless WithoutEnv is given.
func New(opts ...Option) (*Group, error) {
	s := defaultSettings()
	for _, o := range opts {
		o(&s)
	}
	if s.useEnv {
		if err := s.applyEnv(); err != nil {
			return nil, fmt.Errorf("graceful: %w", err)
		}
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("graceful: %w", err)
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.client == nil {
		s.client = &http.Client{}
	}
	m, err := newMetrics(s.registerer)
	if err != nil {
		return nil, fmt.Errorf("graceful: %w", err)
	}
	g := &Group{
		s:        s,
		log:      s.logger.With("component", "graceful"),
		metrics:  m,
		notReady: make(chan struct{}),
		stopping: make(chan struct{}),
	}
	if s.PodName != "" {
		g.log = g.log.With("pod", s.PodName)
	}
	if s.DrainURL != "" {
		g.drain = &drainClient{url: s.DrainURL, client: s.client, log: g.log, metrics: m}
	}
	return g, nil
}

// Config returns the effective configuration.
func (g *Group) Config() Config { return g.s.Config }

// AddHTTP adds an HTTP server. ln may be nil: Run then listens on srv.Addr
// (":http" when empty). AddHTTP wraps srv.Handler (to count in-flight
// requests and to answer with "Connection: close" from the signal on) and
// srv.ConnState (to track hijacked connections); set them before calling it.
// A server with TLSConfig carrying certificates is served with TLS.
func (g *Group) AddHTTP(name string, srv *http.Server, ln net.Listener) {
	h := &httpServer{g: g, n: name, srv: srv, ln: ln, conns: newConnSet()}
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	srv.Handler = h.wrap(next)
	prevState := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateHijacked {
			if tc := unwrapConn(c); tc != nil {
				h.conns.markHijacked(tc)
			}
		}
		if prevState != nil {
			prevState(c, st)
		}
	}
	g.add(h)
}

// AddGRPC adds a gRPC server serving on ln. At the stop phase it gets
// GracefulStop, and Stop when the deadline comes first. Mark its health
// service NOT_SERVING in an OnNotReady hook.
func (g *Group) AddGRPC(name string, srv GRPCServer, ln net.Listener) {
	g.add(&grpcServer{g: g, n: name, srv: srv, ln: ln})
}

func (g *Group) add(s server) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ran {
		panic("graceful: server " + s.name() + " added after Run")
	}
	g.servers = append(g.servers, s)
}

// OnNotReady registers f to run when the shutdown begins, right after
// readiness started failing: point the service's own health endpoints (gRPC
// health, a custom /ready) at failure here. f must not block for long.
func (g *Group) OnNotReady(f func()) {
	g.mu.Lock()
	g.notReadyF = append(g.notReadyF, f)
	g.mu.Unlock()
}

// OnStop registers f to run when the drain wait is over and the servers stop
// accepting: tell long-lived connections (WebSocket, SSE, gRPC streams) to
// finish here, as with http.Server.RegisterOnShutdown. Each f runs in its own
// goroutine.
func (g *Group) OnStop(f func()) {
	g.mu.Lock()
	g.stopF = append(g.stopF, f)
	g.mu.Unlock()
}

// NotReady returns a channel closed when the shutdown begins.
func (g *Group) NotReady() <-chan struct{} { return g.notReady }

// Stopping returns a channel closed when the drain wait is over; long-lived
// handlers (SSE, WebSocket) select on it to finish.
func (g *Group) Stopping() <-chan struct{} { return g.stopping }

// Ready reports whether the servers are serving and no shutdown has begun.
// A service's own readiness endpoint should fail when it is false.
func (g *Group) Ready() bool { return g.ready.Load() && !g.draining.Load() }

// ReadinessHandler returns a handler for the readiness probe: 200 while Ready,
// 503 before the servers listen and from the shutdown signal on.
func (g *Group) ReadinessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case g.draining.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "shutting down\n")
		case !g.ready.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "starting\n")
		default:
			io.WriteString(w, "ok\n")
		}
	})
}

// Run listens, serves, and on a signal, on ctx's end or when a server fails,
// shuts every server down in phases:
//
//  1. not_ready: readiness fails, OnNotReady hooks run;
//  2. drain_wait: servers keep accepting and serving (fixed, or until the
//     drain endpoint reports the pod drained);
//  3. stop: listeners close, OnStop hooks run, in-flight requests finish
//     until the deadline (signal + grace period - margin), then what is left
//     is closed;
//  4. stopped.
//
// A second signal ends the process at once (see WithForceExit). Run returns
// nil when every server stopped cleanly, an error wrapping ErrDeadline when
// something was cut, or the error of a server that failed. Run may be called
// once.
func (g *Group) Run(ctx context.Context) error {
	g.mu.Lock()
	if g.ran {
		g.mu.Unlock()
		return errors.New("graceful: Run called twice")
	}
	g.ran = true
	servers := append([]server(nil), g.servers...)
	g.mu.Unlock()
	if len(servers) == 0 {
		return errors.New("graceful: no servers added")
	}

	// Signals first, so that none arriving during startup is lost.
	sigCh := make(chan os.Signal, 4)
	if len(g.s.Signals) > 0 {
		signal.Notify(sigCh, g.s.Signals...)
		defer signal.Stop(sigCh)
	}

	for i, s := range servers {
		if err := s.listen(); err != nil {
			for _, prev := range servers[:i] {
				prev.close()
			}
			return fmt.Errorf("graceful: server %s: %w", s.name(), err)
		}
	}
	type result struct {
		s   server
		err error
	}
	results := make(chan result, len(servers))
	for _, s := range servers {
		go func() { results <- result{s, s.serve()} }()
	}
	g.ready.Store(true)
	g.log.Info("serving", "servers", len(servers))

	var cause string
	var failed error
	bySignal := false
	returned := 0
	select {
	case sig := <-sigCh:
		g.metrics.signals.Inc()
		cause = "signal " + sig.String()
		bySignal = true
	case <-ctx.Done():
		cause = "context: " + context.Cause(ctx).Error()
	case r := <-results:
		returned++
		failed = r.err
		if failed == nil {
			failed = errors.New("stopped serving")
		}
		failed = fmt.Errorf("graceful: server %s: %w", r.s.name(), failed)
		cause = failed.Error()
	}
	t0 := time.Now()
	deadline := t0.Add(g.s.GracePeriod - g.s.GraceMargin)

	// A second signal forces the end. Signals are counted, not compared with
	// the trigger: an application that cancels ctx from its own
	// signal.NotifyContext must not have its one SIGTERM counted twice.
	force := make(chan struct{})
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		seen := 0
		if bySignal {
			seen = 1
		}
		for {
			select {
			case sig := <-sigCh:
				g.metrics.signals.Inc()
				seen++
				if seen < 2 {
					continue
				}
				g.log.Warn("second signal: ending at once", "signal", sig.String(),
					"since_first", time.Since(t0).Round(time.Millisecond))
				close(force)
				g.s.forceExit()
				return
			case <-finished:
				return
			}
		}
	}()

	// Phase 1: not ready.
	g.log.Info("shutdown started", "cause", cause,
		"grace_period", g.s.GracePeriod, "deadline_in", time.Until(deadline).Round(time.Millisecond))
	phaseStart := time.Now()
	g.enter(PhaseNotReady)
	g.draining.Store(true)
	close(g.notReady)
	g.mu.Lock()
	notReadyF := append([]func(){}, g.notReadyF...)
	stopF := append([]func(){}, g.stopF...)
	g.mu.Unlock()
	for _, f := range notReadyF {
		f()
	}
	g.done(PhaseNotReady, phaseStart)

	// Phase 2: drain wait (skipped when a server failed: the process is
	// broken, and the sooner it restarts the better).
	phaseStart = time.Now()
	g.enter(PhaseDrainWait)
	outcome := "skipped"
	if failed == nil {
		outcome = g.drainWait(t0, deadline, force)
	}
	g.done(PhaseDrainWait, phaseStart, "outcome", outcome)
	if isClosed(force) {
		return g.forced(servers)
	}

	// Phase 3: stop.
	phaseStart = time.Now()
	g.enter(PhaseStop)
	close(g.stopping)
	for _, f := range stopF {
		go f()
	}
	g.log.Info("stopping servers: listeners close, in-flight requests finish",
		"deadline_in", time.Until(deadline).Round(time.Millisecond))
	type stopped struct {
		s   server
		cut int
		err error
	}
	stops := make(chan stopped, len(servers))
	for _, s := range servers {
		go func() {
			st := time.Now()
			cut, err := s.stop(deadline, force)
			g.log.Info("server stopped", "server", s.name(), "took", time.Since(st).Round(time.Millisecond), "cut", cut)
			stops <- stopped{s, cut, err}
		}()
	}
	var errs []error
	if failed != nil {
		errs = append(errs, failed)
	}
	totalCut := 0
	for range servers {
		st := <-stops
		totalCut += st.cut
		if st.cut > 0 {
			g.metrics.cut.WithLabelValues(st.s.name()).Add(float64(st.cut))
		}
		if st.err != nil {
			errs = append(errs, fmt.Errorf("server %s: %w", st.s.name(), st.err))
		}
	}
	if isClosed(force) {
		return g.forced(servers)
	}
	// Serve returns once its listener closed; collect them so none leaks.
	for returned < len(servers) {
		r := <-results
		returned++
		if r.err != nil && !isClosedErr(r.err) {
			errs = append(errs, fmt.Errorf("server %s: %w", r.s.name(), r.err))
		}
	}
	g.done(PhaseStop, phaseStart, "cut", totalCut)
	g.enter(PhaseStopped)
	if totalCut > 0 {
		errs = append(errs, fmt.Errorf("%w: %d cut after %s", ErrDeadline, totalCut,
			time.Since(t0).Round(time.Millisecond)))
	}
	err := errors.Join(errs...)
	g.log.Info("shutdown complete", "took", time.Since(t0).Round(time.Millisecond), "cut", totalCut, "err", err)
	if err != nil {
		return fmt.Errorf("graceful: %w", err)
	}
	return nil
}

// drainWait runs phase 2 and returns its outcome.
func (g *Group) drainWait(t0, deadline time.Time, force <-chan struct{}) string {
	capUntil := deadline.Add(-g.s.ShutdownReserve)
	if g.drain == nil {
		until := t0.Add(g.s.DrainWait)
		if until.After(capUntil) {
			g.log.Warn("drain wait cut short to keep the shutdown reserve before the deadline",
				"drain_wait", g.s.DrainWait, "grace_period", g.s.GracePeriod,
				"margin", g.s.GraceMargin, "reserve", g.s.ShutdownReserve)
			until = capUntil
		}
		g.log.Info("drain wait: serving while the data paths stop sending", "mode", "fixed",
			"wait", time.Until(until).Round(time.Millisecond))
		if d := time.Until(until); d > 0 {
			timer := time.NewTimer(d)
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-force:
				return DrainInterrupted
			}
		}
		return DrainFixed
	}
	if g.s.DrainMaxWait > 0 {
		capUntil = minTime(capUntil, t0.Add(g.s.DrainMaxWait))
	}
	if capUntil.Before(t0) {
		capUntil = t0
	}
	plan := drainPlan{
		signal:     t0,
		fixedUntil: minTime(t0.Add(g.s.DrainWait), capUntil),
		minUntil:   minTime(t0.Add(g.s.DrainMinWait), capUntil),
		capUntil:   capUntil,
	}
	g.log.Info("drain wait: serving until the drain endpoint reports the pod drained", "mode", "exact",
		"url", g.s.DrainURL, "cap", capUntil.Sub(t0).Round(time.Millisecond),
		"fallback", plan.fixedUntil.Sub(t0).Round(time.Millisecond))
	return g.drain.waitExact(plan, force)
}

func (g *Group) forced(servers []server) error {
	for _, s := range servers {
		s.close()
	}
	g.enter(PhaseStopped)
	return fmt.Errorf("graceful: %w", ErrForced)
}

func (g *Group) enter(phase string) { g.metrics.enter(phase) }

func (g *Group) done(phase string, start time.Time, attrs ...any) {
	took := time.Since(start)
	g.metrics.phaseSeconds.WithLabelValues(phase).Set(took.Seconds())
	g.log.Info("phase done", append([]any{"phase", phase, "took", took.Round(time.Millisecond)}, attrs...)...)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// isClosedErr reports the errors Serve returns after a stop we asked for
// (grpc.Server.Serve returns nil then).
func isClosedErr(err error) bool {
	return errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed)
}

// httpServer is an *http.Server in a Group.
type httpServer struct {
	g        *Group
	n        string
	srv      *http.Server
	ln       net.Listener
	conns    *connSet
	inflight atomic.Int64
}

func (h *httpServer) name() string { return h.n }

func (h *httpServer) listen() error {
	if h.ln == nil {
		addr := h.srv.Addr
		if addr == "" {
			addr = ":http"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		h.ln = ln
	}
	h.ln = &trackingListener{Listener: h.ln, set: h.conns}
	return nil
}

func (h *httpServer) serve() error {
	if h.srv.TLSConfig != nil && (len(h.srv.TLSConfig.Certificates) > 0 || h.srv.TLSConfig.GetCertificate != nil) {
		return h.srv.ServeTLS(h.ln, "", "")
	}
	return h.srv.Serve(h.ln)
}

// wrap counts in-flight requests and, from the signal on, answers with
// "Connection: close": a client with a kept-alive connection (kube-proxy
// pins it to this pod) then opens a new one, which the updated data path
// sends elsewhere. Closing idle connections instead would race with clients
// sending on them.
func (h *httpServer) wrap(next http.Handler) http.Handler {
	gauge := h.g.metrics.inflight.WithLabelValues(h.n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inflight.Add(1)
		gauge.Inc()
		defer func() {
			h.inflight.Add(-1)
			gauge.Dec()
		}()
		if h.g.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

func (h *httpServer) stop(deadline time.Time, force <-chan struct{}) (int, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	go func() {
		select {
		case <-force:
			cancel()
		case <-ctx.Done():
		}
	}()
	if n := h.inflight.Load(); n > 0 {
		h.g.log.Info("waiting for in-flight requests", "server", h.n, "inflight", n)
	}
	// http.Server.Shutdown closes the listener and idle connections, lets
	// active requests finish (their responses carry "Connection: close"), and
	// runs RegisterOnShutdown functions. It ignores hijacked connections:
	// they are waited for below, in parallel.
	var wg sync.WaitGroup
	var hijackCut int
	wg.Go(func() { hijackCut = h.waitHijacked(ctx) })
	err := h.srv.Shutdown(ctx)
	cut := 0
	if err != nil {
		cut = int(h.inflight.Load())
		h.g.log.Warn("deadline reached with requests in flight: closing their connections",
			"server", h.n, "inflight", cut)
		h.srv.Close()
		err = nil
	}
	wg.Wait()
	return cut + hijackCut, err
}

// waitHijacked waits until every hijacked connection is closed by its
// handler, or until ctx ends: then it closes the rest and returns their count.
func (h *httpServer) waitHijacked(ctx context.Context) int {
	logged := false
	for {
		open, changed := h.conns.hijacked()
		if len(open) == 0 {
			return 0
		}
		if !logged {
			h.g.log.Info("waiting for hijacked connections to finish", "server", h.n, "open", len(open))
			logged = true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			open, _ = h.conns.hijacked()
			if len(open) > 0 {
				h.g.log.Warn("deadline reached: closing hijacked connections", "server", h.n, "open", len(open))
			}
			for _, c := range open {
				c.Close()
			}
			return len(open)
		}
	}
}

func (h *httpServer) close() {
	h.srv.Close()
	if h.ln != nil {
		h.ln.Close() // Close does not know a listener Serve never got
	}
	open, _ := h.conns.hijacked()
	for _, c := range open {
		c.Close()
	}
}

// grpcServer is a GRPCServer in a Group.
type grpcServer struct {
	g   *Group
	n   string
	srv GRPCServer
	ln  net.Listener
}

func (s *grpcServer) name() string { return s.n }

func (s *grpcServer) listen() error {
	if s.ln == nil {
		return errors.New("gRPC server added without a listener")
	}
	return nil
}

func (s *grpcServer) serve() error { return s.srv.Serve(s.ln) }

func (s *grpcServer) stop(deadline time.Time, force <-chan struct{}) (int, error) {
	done := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
		return 0, nil
	case <-timer.C:
	case <-force:
	}
	// GracefulStop waits for every stream; a stream that ignores OnStop
	// would hold the process until SIGKILL. Stop closes them.
	s.g.log.Warn("gRPC GracefulStop did not finish by the deadline: falling back to Stop", "server", s.n)
	s.srv.Stop()
	<-done
	return 1, nil
}

func (s *grpcServer) close() {
	s.srv.Stop()
	s.ln.Close()
}
