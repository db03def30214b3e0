package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"zerodrop.dev/zerodrop/internal/lab/proc"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// The load-balancer faults: what goes wrong on the LB side of a rollout.
// Each strikes one instance, the victim (the last HAProxy instance), and
// undoes itself.
const (
	// FaultLBDown stops the victim HAProxy (SIGTERM to its master: a hard
	// stop) when the rollout starts and starts it again FaultHold later,
	// from its configuration file and its server-state file as a restart
	// would. While it is down the controller cannot read its verdict.
	FaultLBDown Fault = "lbdown"
	// FaultLBFlap stops and starts the victim HAProxy lbFlapCycles times
	// (down lbFlapDown, up lbFlapUp) from the first old pod's deletion.
	FaultLBFlap Fault = "lbflap"
	// FaultSlowLB delays every answer of the victim's Runtime API by
	// slowLBDelay for FaultHold from the first old pod's deletion, by the
	// lab's TCP proxy between the controller and the instance's admin
	// address.
	FaultSlowLB Fault = "slowlb"
	// FaultPartition cuts the controller from the victim's Runtime API for
	// FaultHold from the first old pod's deletion: the same proxy accepts
	// connections and drops every byte both ways (a blackhole, not a
	// refusal). The victim keeps serving traffic.
	FaultPartition Fault = "partition"
	// FaultFull fills every free server-template slot of the backend on
	// every instance with a placeholder (in maintenance) when the rollout
	// starts, so the surge pod finds no slot, and frees them FaultHold
	// later.
	FaultFull Fault = "full"
)

// LBFaults are the load-balancer faults, in campaign order.
var LBFaults = []Fault{FaultLBDown, FaultLBFlap, FaultSlowLB, FaultPartition, FaultFull}

// Timings of the LB faults.
const (
	// DefaultFaultHold is how long lbdown, slowlb, partition and full last
	// (RunOptions.FaultHold): shorter than the binding's drain.timeout
	// (30 s), so a drain the fault holds up is still judged by the LB.
	DefaultFaultHold = 10 * time.Second
	lbFlapCycles     = 3
	lbFlapDown       = 2 * time.Second
	lbFlapUp         = 3 * time.Second
	slowLBDelay      = 400 * time.Millisecond
	// placeholderNet is where full's placeholders point: loopback
	// addresses nothing listens on at placeholderPort, so HAProxy's checks
	// of them are refused at once (they stay DOWN, no request goes there)
	// and no check leaves the machine.
	placeholderNet  = "127.0.99."
	placeholderPort = 1
)

// FaultPromise is what zerodrop promises under a fault, and why; the lab
// asserts it and docs/faults.md lists it.
type FaultPromise struct {
	Fault Fault `json:"fault"`
	// ZeroFailed: no request fails through an instance the fault did not
	// stop (a stopped instance's own refusals are the outage, counted
	// apart).
	ZeroFailed bool `json:"zeroFailed"`
	// NoGateOpensWithoutVerdict: no new pod turns Ready while the victim
	// cannot give its verdict (it is down or cut off).
	NoGateOpensWithoutVerdict bool   `json:"noGateOpensWithoutVerdict"`
	Promise                   string `json:"promise"`
	Why                       string `json:"why"`
	// NoDrainTimeout: no drain gate is released by drain.timeout (each
	// waits for the load balancer's drained verdict).
	NoDrainTimeout bool `json:"noDrainTimeout,omitempty"`
}

// LBFaultPromises are the promises of LBFaults.
var LBFaultPromises = []FaultPromise{
	{FaultLBDown, true, true,
		"0 failed through the live instance; no gate opens while the victim is down: the rollout waits (FailClosed) and resumes once it is back; nothing stuck, nothing left in HAProxy",
		"a gate needs every instance's verdict and a missing one is never \"healthy\" (controller promise 4); the old pods keep serving through the live instance, and the restarted instance's pool is registered again", false},
	{FaultLBFlap, true, true,
		"0 failed through the live instance; the drain of the deleted pod waits until the flapping instance has been read again",
		"a drain verdict needs a read of every instance (promise 1); each restart is a new instance epoch and its targets are registered again", false},
	{FaultSlowLB, true, false,
		"0 failed; gates and drains only slower",
		"verdicts wait for the answers (400 ms is under the 5 s command timeout); nothing is judged on a missing one", false},
	{FaultPartition, true, true,
		"0 failed while the partition is shorter than `drain.timeout` (30 s); no gate opens on the victim's missing verdict",
		"an unreadable instance is never \"drained\" nor \"healthy\" (promises 1, 4, 13); the partitioned instance keeps sending to the deleted pod, which its drain gate keeps alive", false},
	{FaultFull, true, false,
		"0 failed; the surge pod waits with its gate False, reason `PoolFull`, then the rollout goes on",
		"a target the pool has no room for is never Ready (promise 15); `maxUnavailable: 0` keeps the old pods serving", false},
}

// Promise returns f's promise, if it has one.
func (f Fault) Promise() (FaultPromise, bool) {
	for _, p := range append(append([]FaultPromise(nil), LBFaultPromises...), ClusterFaultPromises...) {
		if p.Fault == f {
			return p, true
		}
	}
	return FaultPromise{}, false
}

// atRolloutStart reports whether f strikes when the rollout starts rather
// than at the first old pod's deletion.
func (f Fault) atRolloutStart() bool { return f == FaultLBDown || f == FaultFull }

// needsAdminProxy reports whether f needs the proxy in front of the
// victim's Runtime API (set up before the controller is started).
func (f Fault) needsAdminProxy() bool { return f == FaultSlowLB || f == FaultPartition }

// isLB reports whether f is one of LBFaults.
func (f Fault) isLB() bool {
	for _, x := range LBFaults {
		if x == f {
			return true
		}
	}
	return false
}

// checkLB reports whether the scenario can suffer the LB fault f.
func (f Fault) checkLB(t Target, k LBKind, in Integration) error {
	if !f.isLB() {
		return nil
	}
	if k != LBHAProxy {
		return fmt.Errorf("fault %s: the scenario's load balancer is %s, not HAProxy", f, k)
	}
	if (f == FaultLBDown || f == FaultLBFlap) && len(t.HAProxy) < 2 {
		return fmt.Errorf("fault %s: needs at least 2 HAProxy instances (one stays up); start the lab with --haproxy 2", f)
	}
	if f.needsAdminProxy() {
		if in.KillController == nil {
			return fmt.Errorf("fault %s: the scenario runs no controller", f)
		}
		if t.HAProxy[len(t.HAProxy)-1].AdminTLS == "" {
			return fmt.Errorf("fault %s: the lab's HAProxy has no Runtime API address (a lab from an older zerodrop: restart it)", f)
		}
	}
	return nil
}

// Window is a stretch of time a fault lasted, from the rollout's start.
type Window struct {
	From time.Duration `json:"from"`
	To   time.Duration `json:"to"`
}

// lbRig is what the LB faults of one run share: the victim, the proxy in
// front of its Runtime API, the HAProxy masters the faults started, and
// the windows the victim's verdict was missing, per rollout.
type lbRig struct {
	victim int
	proxy  *adminProxy

	mu     sync.Mutex
	blind  map[int][]Window // rollout -> windows without the victim's verdict
	outage map[int][]Window // rollout -> windows the victim did not serve
	starts []*exec.Cmd
}

// newLBRig prepares the LB faults of faults for t. When one needs the
// admin proxy, the proxy is started and t's victim reaches the controller
// through it (t is changed: call before the controller starts).
func newLBRig(t *Target, faults []Fault) (*lbRig, error) {
	r := &lbRig{victim: len(t.HAProxy) - 1, blind: map[int][]Window{}, outage: map[int][]Window{}}
	for _, f := range faults {
		if f.needsAdminProxy() && r.proxy == nil && r.victim >= 0 && t.HAProxy[r.victim].AdminTLS != "" {
			p, err := startAdminProxy(t.HAProxy[r.victim].AdminTLS)
			if err != nil {
				return nil, err
			}
			r.proxy = p
			t.HAProxy[r.victim].AdminTLS = p.Addr()
		}
	}
	return r, nil
}

// close stops the proxy. The HAProxy masters the faults restarted keep
// running as the lab's instances (Lab.Close and `lab down` stop them by
// their pid file).
func (r *lbRig) close() {
	if r == nil {
		return
	}
	if r.proxy != nil {
		r.proxy.Close()
	}
}

func (r *lbRig) addBlind(rollout int, w Window) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blind[rollout] = append(r.blind[rollout], w)
}

func (r *lbRig) addOutage(rollout int, w Window) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outage[rollout] = append(r.outage[rollout], w)
}

func (r *lbRig) blindWindows(rollout int) []Window {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Window(nil), r.blind[rollout]...)
}

func (r *lbRig) outageWindows(rollout int) []Window {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Window(nil), r.outage[rollout]...)
}

// bounce stops the victim, waits down, starts it again and waits until it
// serves; it records the window without its verdict (until its Runtime API
// answers) and the outage (until a server of its backend is UP again: a
// restarted instance answers 503 until its pool is registered and checked).
func (r *lbRig) bounce(ctx context.Context, t Target, down time.Duration, rollout int, start time.Time) error {
	h := &t.HAProxy[r.victim]
	from := time.Since(start)
	if err := stopHAProxy(ctx, *h); err != nil {
		return err
	}
	sleepCtx(ctx, down)
	err := r.startHAProxy(context.WithoutCancel(ctx), h)
	r.addBlind(rollout, Window{from, time.Since(start)})
	if err == nil {
		err = waitServing(context.WithoutCancel(ctx), *h, 30*time.Second)
	}
	r.addOutage(rollout, Window{from, time.Since(start)})
	return err
}

// injectLB runs the LB fault o's fault; it returns what went wrong ("" when
// it was injected and undone).
func (r *lbRig) inject(ctx context.Context, t Target, f Fault, hold time.Duration, rollout int, start time.Time) string {
	since := func() time.Duration { return time.Since(start) }
	switch f {
	case FaultLBDown:
		return errString(r.bounce(ctx, t, hold, rollout, start))
	case FaultLBFlap:
		for i := range lbFlapCycles {
			if err := r.bounce(ctx, t, lbFlapDown, rollout, start); err != nil {
				return fmt.Sprintf("flap %d: %v", i+1, err)
			}
			if i+1 < lbFlapCycles {
				sleepCtx(ctx, lbFlapUp)
			}
		}
		return ""
	case FaultSlowLB, FaultPartition:
		if r.proxy == nil {
			return "no admin proxy in front of the victim (the run did not set it up)"
		}
		from := since()
		if f == FaultSlowLB {
			r.proxy.set(proxyDelay, slowLBDelay)
		} else {
			r.proxy.set(proxyBlackhole, 0)
		}
		sleepCtx(ctx, hold)
		r.proxy.set(proxyPass, 0)
		if f == FaultPartition {
			r.addBlind(rollout, Window{from, since()})
		}
		return ""
	case FaultFull:
		filled, err := fillSlots(ctx, t.HAProxy)
		if err != nil {
			return err.Error()
		}
		sleepCtx(ctx, hold)
		return errString(freePlaceholders(context.WithoutCancel(ctx), t.HAProxy, filled))
	}
	return fmt.Sprintf("fault %s is not a load-balancer fault", f)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// stopHAProxy stops an instance as a crash or `systemctl stop` would:
// SIGTERM to the master (HAProxy's hard stop), and waits until it is gone.
func stopHAProxy(ctx context.Context, h HAProxyState) error {
	if !proc.Alive(h.Master, h.Exe) {
		return fmt.Errorf("stop %s: master %d does not run %s", h.Name, h.Master, h.Exe)
	}
	if _, err := proc.Kill(ctx, h.Master, h.Exe, 10*time.Second); err != nil {
		return fmt.Errorf("stop %s: %w", h.Name, err)
	}
	// The workers exit with their master; the Runtime API stops answering.
	c, err := hapi.NewClient(h.Socket)
	if err != nil {
		return err
	}
	c.Timeout = 200 * time.Millisecond
	return pollUntil(ctx, 20*time.Millisecond, func() bool {
		_, err := c.ShowInfo(ctx)
		return err != nil
	})
}

// startHAProxy starts a stopped instance again from its configuration file
// (same frontend and sockets) and records the new master's pid in h. The
// server-state file is emptied first, as the lab's own start does: it is
// for reloads, and a cold start that loads the one the last reload saved
// brings back slots of pods long gone, UP (a campaign run measured 299 and
// 4,399 failed requests through the restarted instance that way, after
// reload faults; docs/faults.md).
func (r *lbRig) startHAProxy(ctx context.Context, h *HAProxyState) error {
	dir := filepath.Dir(h.Config)
	if h.StateFile != "" {
		if err := os.WriteFile(h.StateFile, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("start %s: %w", h.Name, err)
		}
	}
	logf, err := os.OpenFile(h.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", h.Name, err)
	}
	defer logf.Close()
	os.Remove(h.Socket)
	cmd := exec.Command(h.Exe, "-W", "-db", "-f", h.Config, "-p", filepath.Join(dir, "haproxy.pid"))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", h.Name, err)
	}
	go cmd.Wait() // reap it whenever it ends
	r.mu.Lock()
	r.starts = append(r.starts, cmd)
	r.mu.Unlock()
	h.Master = cmd.Process.Pid
	c, err := hapi.NewClient(h.Socket)
	if err != nil {
		return err
	}
	c.Timeout = time.Second
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pollUntil(wctx, 20*time.Millisecond, func() bool {
		_, err := c.ShowInfo(wctx)
		return err == nil
	}); err != nil {
		return fmt.Errorf("start %s: the Runtime API does not answer: %w\n%s", h.Name, err, proc.TailFile(h.Log, 2000))
	}
	return nil
}

// waitServing waits until the instance's backend has a server UP whose
// last check passed.
func waitServing(ctx context.Context, h HAProxyState, limit time.Duration) error {
	c, err := hapi.NewClient(h.Socket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := pollUntil(ctx, 50*time.Millisecond, func() bool {
		states, err := c.ShowServersState(ctx, h.Backend)
		if err != nil {
			return false
		}
		for _, s := range states {
			if s.Up() && !s.Admin.Maint() && s.CheckResult == hapi.CheckPassed {
				return true
			}
		}
		return false
	}); err != nil {
		return fmt.Errorf("%s serves no server %s after its restart: %w", h.Name, limit, err)
	}
	return nil
}

// fillSlots takes every free slot of the backend on every instance with a
// placeholder: a server in rotation (state ready) whose checks fail, as a
// server another tool added would be. (In maintenance, a placeholder is an
// orphan already out of rotation everywhere, which the controller frees at
// once: the pool would never be full.) It returns the slots it took per
// instance.
func fillSlots(ctx context.Context, hs []HAProxyState) (map[string][]string, error) {
	filled := map[string][]string{}
	for _, h := range hs {
		c, err := hapi.NewClient(h.Socket)
		if err != nil {
			return filled, err
		}
		states, err := c.ShowServersState(ctx, h.Backend)
		if err != nil {
			return filled, fmt.Errorf("fill %s: %w", h.Name, err)
		}
		for _, s := range states {
			if !hapi.IsSlot(s.Name) || !hapi.SlotFree(s) {
				continue
			}
			ip := fmt.Sprintf("%s%d", placeholderNet, s.ID%250+1)
			// Into rotation DOWN, as the provider registers a target: a
			// server leaving maintenance would be UP until its first
			// check, and requests sent to it would fail.
			for _, step := range []func() error{
				func() error { return c.SetServerAddr(ctx, h.Backend, s.Name, ip, placeholderPort) },
				func() error { return c.SetServerCheckPort(ctx, h.Backend, s.Name, placeholderPort) },
				func() error { return c.EnableHealth(ctx, h.Backend, s.Name) },
				func() error { return c.SetServerState(ctx, h.Backend, s.Name, hapi.StateDrain) },
				func() error { return c.SetServerHealth(ctx, h.Backend, s.Name, hapi.HealthDown) },
				func() error { return c.SetServerState(ctx, h.Backend, s.Name, hapi.StateReady) },
			} {
				if err := step(); err != nil {
					return filled, fmt.Errorf("fill %s/%s: %w", h.Name, s.Name, err)
				}
			}
			filled[h.Name] = append(filled[h.Name], s.Name)
		}
	}
	return filled, nil
}

// freePlaceholders frees the slots fillSlots took that still hold a
// placeholder (the controller may have freed them as orphans already).
func freePlaceholders(ctx context.Context, hs []HAProxyState, filled map[string][]string) error {
	var errs []error
	for _, h := range hs {
		c, err := hapi.NewClient(h.Socket)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		states, err := c.ShowServersState(ctx, h.Backend)
		if err != nil {
			errs = append(errs, fmt.Errorf("free %s: %w", h.Name, err))
			continue
		}
		mine := map[string]bool{}
		for _, n := range filled[h.Name] {
			mine[n] = true
		}
		for _, s := range states {
			if !mine[s.Name] || len(s.Addr) < len(placeholderNet) || s.Addr[:len(placeholderNet)] != placeholderNet {
				continue
			}
			if !s.Admin.Maint() {
				if err := c.SetServerState(ctx, h.Backend, s.Name, hapi.StateMaint); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			if err := c.SetServerAddr(ctx, h.Backend, s.Name, "0.0.0.0", max(s.Port, 1)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// proxyMode is what the admin proxy does with the bytes it carries.
type proxyMode int

const (
	proxyPass      proxyMode = iota // forward at once
	proxyDelay                      // forward the instance's answers late
	proxyBlackhole                  // read and drop everything, both ways
)

// adminProxy is a TCP proxy the lab places between the controller and one
// HAProxy instance's Runtime API (mutual TLS passes through it untouched).
type adminProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  proxyMode
	delay time.Duration
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startAdminProxy(target string) (*adminProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lab: admin proxy: %w", err)
	}
	p := &adminProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's address, which the controller is given instead of
// the instance's.
func (p *adminProxy) Addr() string { return p.ln.Addr().String() }

func (p *adminProxy) set(m proxyMode, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode, p.delay = m, delay
}

func (p *adminProxy) current() (proxyMode, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay
}

func (p *adminProxy) track(c net.Conn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.conns == nil {
		return false // closed
	}
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *adminProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c, true) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.track(c, false)
			defer c.Close()
			p.carry(c)
		}()
	}
}

// carry joins the controller's connection c to the instance. In blackhole
// mode nothing reaches the instance and nothing comes back, also on
// connections opened before.
func (p *adminProxy) carry(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(up, true) {
		up.Close()
		return
	}
	defer p.track(up, false)
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, answers bool) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				mode, delay := p.current()
				switch {
				case mode == proxyBlackhole:
					n = 0
				case mode == proxyDelay && answers:
					time.Sleep(delay)
				}
				if n > 0 {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						return
					}
				}
			}
			if err != nil {
				// A close passes on, but not through a blackhole: the
				// instance giving up on a silent client must not look
				// like an answer.
				if mode, _ := p.current(); errors.Is(err, io.EOF) && mode != proxyBlackhole {
					if tc, ok := dst.(*net.TCPConn); ok {
						tc.CloseWrite()
					}
				}
				return
			}
		}
	}
	go pipe(up, c, false)
	go pipe(c, up, true)
	<-done
	<-done
}

// Close stops accepting and closes every connection.
func (p *adminProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
