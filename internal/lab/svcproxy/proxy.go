// Package svcproxy is the lab's kube-proxy: it makes Service ClusterIPs
// reachable, as kube-proxy's old userspace mode did. It watches Services and
// EndpointSlices, puts every ClusterIP on the lab's bridge as a /32 address
// (so host processes and pods, whose default route is the bridge, reach it),
// listens on ClusterIP:port for every TCP port of a Service that has
// endpoints, and copies each accepted connection to one endpoint chosen at
// random. A port without endpoints has no listener, so the kernel refuses a
// connection at once (kube-proxy REJECTs it).
//
// Userspace rather than iptables or nftables: the lab must not change the
// host's packet filter, and a proxy in Go needs no rules to clean up after a
// crash (the addresses go with the bridge). The cost is that an endpoint sees
// the proxy (the bridge's address) as the client, not the pod or process
// that connected.
package svcproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// HostAddrs puts addresses on and off the device ClusterIPs live on; the
// lab's *netns.Network (its bridge) is one.
type HostAddrs interface {
	AddHostAddr(netip.Addr) error
	RemoveHostAddr(netip.Addr) error
}

// Options configure Start.
type Options struct {
	// Client watches Services and EndpointSlices in every namespace.
	Client kubernetes.Interface
	// Addrs holds the ClusterIPs: the lab's bridge.
	Addrs HostAddrs
	// Overrides forward every TCP port of the Services named to a fixed
	// address instead of their endpoints: the lab's API server listens on
	// 127.0.0.1 and runs with --endpoint-reconciler-type=none, so the
	// `kubernetes` Service has no endpoints of its own.
	Overrides map[types.NamespacedName]netip.AddrPort
	// DialTimeout bounds each dial of an endpoint; default 2 s (longer
	// than Linux's first SYN retransmission, 1 s).
	DialTimeout time.Duration
	// Logger receives failures to set up an address or listener (Warn)
	// and, at Debug, every change of a port's endpoints and one line per
	// failed connection (Debug because rollouts change endpoints all the
	// time); nil means slog.Default().
	Logger *slog.Logger
}

// Proxy is a running service proxy. Stop it with Stop.
type Proxy struct {
	opts     Options
	log      *slog.Logger
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	factory  informers.SharedInformerFactory
	ctx      context.Context // ends at Stop: dials in flight give up
	cancel   context.CancelFunc
	kick     chan struct{}
	done     chan struct{} // the sync loop ended
	accepts  sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
	lastErr  string // the last application's error, "" if it succeeded (run's goroutine only)

	mu        sync.Mutex
	frontends map[netip.AddrPort]*frontend
	addrs     map[netip.Addr]bool // on the bridge
	ports     []ServicePort       // the last plan applied, with Listening set
	conns     map[net.Conn]struct{}
	stopped   bool
}

// frontend is one ClusterIP:port listener.
type frontend struct {
	key      string
	ln       net.Listener
	backends atomic.Pointer[[]netip.AddrPort]
	conns    atomic.Int64 // connections forwarded
	failures atomic.Int64 // dials that failed
}

// Start watches Services and EndpointSlices, waits until it has seen them
// all (ctx bounds that wait), applies them once and returns; the proxy then
// follows every change until Stop. An address or listener it cannot set up
// is logged and retried every second rather than failing Start.
func Start(ctx context.Context, opts Options) (*Proxy, error) {
	if opts.Client == nil || opts.Addrs == nil {
		return nil, errors.New("svcproxy: Options.Client and Options.Addrs are required")
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		opts: opts, log: opts.Logger, ctx: runCtx, cancel: cancel,
		kick: make(chan struct{}, 1), done: make(chan struct{}),
		frontends: map[netip.AddrPort]*frontend{}, addrs: map[netip.Addr]bool{}, conns: map[net.Conn]struct{}{},
	}
	p.factory = informers.NewSharedInformerFactory(opts.Client, 0)
	svcInf := p.factory.Core().V1().Services()
	sliceInf := p.factory.Discovery().V1().EndpointSlices()
	p.services, p.slices = svcInf.Lister(), sliceInf.Lister()
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.kickSync() },
		UpdateFunc: func(any, any) { p.kickSync() },
		DeleteFunc: func(any) { p.kickSync() },
	}
	for _, inf := range []cache.SharedIndexInformer{svcInf.Informer(), sliceInf.Informer()} {
		if _, err := inf.AddEventHandler(kick); err != nil {
			cancel()
			return nil, fmt.Errorf("svcproxy: %w", err)
		}
	}
	p.factory.Start(runCtx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced) {
		close(p.done)
		p.Stop()
		return nil, fmt.Errorf("svcproxy: Services and EndpointSlices not synced: %w", orStopped(ctx.Err()))
	}
	// A first application that fails (another lab on this machine holds
	// a ClusterIP:port) does not fail the lab: the loop retries it and
	// says so.
	p.report(p.apply())
	go p.run()
	return p, nil
}

func orStopped(err error) error {
	if err == nil {
		return errors.New("informers stopped")
	}
	return err
}

func (p *Proxy) kickSync() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run applies every change; a failed application (an address or a
// listener) is retried every second until it succeeds.
func (p *Proxy) run() {
	defer close(p.done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		case <-retry.C:
		}
		if err := p.apply(); err != nil {
			retry.Reset(time.Second)
			p.report(err)
		} else {
			p.report(nil)
		}
	}
}

// report logs a failed application at Warn when it fails anew or with
// another error, and at Debug while it keeps failing the same way (it is
// retried every second).
func (p *Proxy) report(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch {
	case msg == p.lastErr && err != nil:
		p.log.Debug("svcproxy: apply still failing; retrying in 1s", "err", err)
	case err != nil:
		p.log.Warn("svcproxy: apply failed; retrying every second", "err", err)
	case p.lastErr != "":
		p.log.Info("svcproxy: apply succeeded after failing", "was", p.lastErr)
	}
	p.lastErr = msg
}

// apply brings addresses and listeners in line with the cluster: new
// addresses first (a listener needs its address), then listeners opened,
// updated or closed, then addresses no Service holds removed.
func (p *Proxy) apply() error {
	services, err := p.services.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("svcproxy: list services: %w", err)
	}
	endpointSlices, err := p.slices.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("svcproxy: list endpointslices: %w", err)
	}
	ports, addrs := Plan(services, endpointSlices, p.opts.Overrides)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	var errs []error
	add, remove := diff(p.addrs, addrs)
	for _, a := range add {
		if err := p.opts.Addrs.AddHostAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("svcproxy: add ClusterIP %s: %w", a, err))
			continue
		}
		p.addrs[a] = true
	}
	want := map[netip.AddrPort]bool{}
	for i := range ports {
		sp := &ports[i]
		if len(sp.Backends) == 0 || !p.addrs[sp.Frontend.Addr()] {
			continue
		}
		want[sp.Frontend] = true
		f := p.frontends[sp.Frontend]
		if f == nil {
			ln, err := net.Listen("tcp4", sp.Frontend.String())
			if err != nil {
				errs = append(errs, fmt.Errorf("svcproxy: %s: listen on %s: %w", sp.Key(), sp.Frontend, err))
				continue
			}
			f = &frontend{key: sp.Key(), ln: ln}
			p.frontends[sp.Frontend] = f
		}
		old := f.backends.Load()
		if old == nil || !slices.Equal(*old, sp.Backends) {
			p.log.Debug("svcproxy: serving", "service", sp.Key(), "frontend", sp.Frontend, "endpoints", sp.Backends, "terminating", sp.Terminating, "override", sp.Override)
		}
		b := slices.Clone(sp.Backends)
		f.backends.Store(&b)
		if old == nil {
			// Accept only once the backends are stored.
			p.accepts.Add(1)
			go p.accept(f)
		}
		sp.Listening = true
	}
	for ap, f := range p.frontends {
		if !want[ap] {
			p.log.Debug("svcproxy: refusing (no endpoints or Service gone)", "service", f.key, "frontend", ap)
			f.ln.Close()
			delete(p.frontends, ap)
		}
	}
	for _, a := range remove {
		if err := p.opts.Addrs.RemoveHostAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("svcproxy: remove ClusterIP %s: %w", a, err))
			continue
		}
		delete(p.addrs, a)
	}
	p.ports = ports
	return errors.Join(errs...)
}

func (p *Proxy) accept(f *frontend) {
	defer p.accepts.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("svcproxy: accept", "service", f.key, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go p.forward(f, c.(*net.TCPConn))
	}
}

// forward connects the client to one endpoint, trying the others in random
// order when a dial fails; when none answers the client is reset.
func (p *Proxy) forward(f *frontend, client *net.TCPConn) {
	backends := *f.backends.Load()
	d := net.Dialer{Timeout: p.opts.DialTimeout}
	for _, b := range order(backends, rand.Perm) {
		c, err := d.DialContext(p.ctx, "tcp4", b.String())
		if err != nil {
			f.failures.Add(1)
			p.log.Debug("svcproxy: dial endpoint failed", "service", f.key, "endpoint", b, "client", client.RemoteAddr(), "err", err)
			continue
		}
		f.conns.Add(1)
		p.splice(client, c.(*net.TCPConn))
		return
	}
	p.log.Debug("svcproxy: connection reset: no endpoint answered", "service", f.key, "endpoints", backends, "client", client.RemoteAddr())
	reset(client)
}

// reset closes c with an RST rather than a FIN, so the client sees a
// refusal rather than an empty answer.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// splice copies both ways until both directions end, passing half-closes
// on; an error in either direction resets both connections.
func (p *Proxy) splice(client, upstream *net.TCPConn) {
	if !p.track(client, upstream) {
		reset(client)
		upstream.Close()
		return
	}
	defer p.untrack(client, upstream)
	var wg sync.WaitGroup
	copyHalf := func(dst, src *net.TCPConn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			reset(dst)
			reset(src)
			return
		}
		_ = dst.CloseWrite()
	}
	wg.Add(2)
	go copyHalf(upstream, client)
	go copyHalf(client, upstream)
	wg.Wait()
	client.Close()
	upstream.Close()
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// Endpoints returns what the proxy serves now: every TCP Service port with
// its endpoints, whether it listens, and its counters.
func (p *Proxy) Endpoints() []ServicePort {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ServicePort, len(p.ports))
	for i, sp := range p.ports {
		sp.Backends = slices.Clone(sp.Backends)
		if f := p.frontends[sp.Frontend]; f != nil && sp.Listening {
			sp.Connections, sp.DialFailures = f.conns.Load(), f.failures.Load()
		}
		out[i] = sp
	}
	return out
}

// Addrs returns the ClusterIPs the proxy has put on the bridge.
func (p *Proxy) Addrs() []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []netip.Addr
	for a := range p.addrs {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Stop closes every listener and forwarded connection and removes every
// ClusterIP it added. It is idempotent.
func (p *Proxy) Stop() error {
	p.stopOnce.Do(func() {
		p.cancel()
		<-p.done
		p.factory.Shutdown()
		p.mu.Lock()
		p.stopped = true
		for ap, f := range p.frontends {
			f.ln.Close()
			delete(p.frontends, ap)
		}
		for c := range p.conns {
			c.Close()
		}
		var errs []error
		for a := range p.addrs {
			if err := p.opts.Addrs.RemoveHostAddr(a); err != nil {
				errs = append(errs, fmt.Errorf("svcproxy: remove ClusterIP %s: %w", a, err))
			}
			delete(p.addrs, a)
		}
		p.mu.Unlock()
		p.accepts.Wait()
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}
