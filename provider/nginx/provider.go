package nginx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"zerodrop.dev/zerodrop/internal/nginxproc"
	"zerodrop.dev/zerodrop/provider"
)

// Instance is one NGINX master process on this machine.
type Instance struct {
	// Name names the instance in statuses and errors (e.g. "nginx-a").
	Name string
	// UpstreamFile is the include file the provider owns (included inside
	// the http block of the instance's configuration). A missing file is an
	// empty one.
	UpstreamFile string
	// PidFile is the master's pid file (NGINX's `pid` directive).
	PidFile string
}

// Config configures a Provider. Zero fields take the defaults noted.
type Config struct {
	Instances []Instance
	// Binary is the nginx executable that validates a new upstream file
	// (`nginx -t` on a configuration that includes only it) before it
	// replaces the old one; default "nginx" from PATH.
	Binary string
	// SkipValidation writes without running `nginx -t` (the file is still
	// rendered from a parsed model, so its syntax is the provider's own).
	SkipValidation bool
	// LoadMargin is how much later than a write a worker must have started
	// to count as having loaded it: NGINX parses its configuration before
	// it forks the workers, so a reload that began before the write (one
	// someone else signalled) forks workers after it with the old content.
	// After each write the provider waits (up to ReloadWait) until the
	// master is seen waiting for signals, and moves the line's time there
	// if that took longer than the margin: such a reload cannot pass for
	// one that loaded the write. Default 100ms.
	LoadMargin time.Duration
	// ReloadWait bounds how long a call that reloaded waits for the new
	// workers, so that repeated calls do not reload again; Status tells the
	// rest. Default 2s.
	ReloadWait time.Duration
}

// Provider drives NGINX open-source instances through their upstream include
// files and reloads. It keeps no state between calls: the files are the
// state, and /proc says which workers loaded them.
type Provider struct {
	cfg Config
	bin string
}

// New checks the configuration and returns a Provider.
func New(cfg Config) (*Provider, error) {
	if len(cfg.Instances) == 0 {
		return nil, provider.Errorf(provider.CodeInvalid, "", "nginx provider: no instance")
	}
	seen := map[string]bool{}
	for i, in := range cfg.Instances {
		if !validName(in.Name) {
			return nil, fmt.Errorf("nginx provider: instance %d: name %q: use letters, digits, '-', '_', '.'", i, in.Name)
		}
		if seen[in.Name] {
			return nil, fmt.Errorf("nginx provider: instance %q listed twice", in.Name)
		}
		seen[in.Name] = true
		if !filepath.IsAbs(in.UpstreamFile) || !filepath.IsAbs(in.PidFile) {
			return nil, fmt.Errorf("nginx provider: instance %q: upstream file %q and pid file %q must be absolute paths", in.Name, in.UpstreamFile, in.PidFile)
		}
	}
	if cfg.Binary == "" {
		cfg.Binary = "nginx"
	}
	if cfg.LoadMargin == 0 {
		cfg.LoadMargin = 100 * time.Millisecond
	}
	if cfg.ReloadWait == 0 {
		cfg.ReloadWait = 2 * time.Second
	}
	if cfg.LoadMargin < 0 || cfg.ReloadWait < 0 {
		return nil, fmt.Errorf("nginx provider: negative duration in %+v", cfg)
	}
	p := &Provider{cfg: cfg}
	if !cfg.SkipValidation {
		bin, err := exec.LookPath(cfg.Binary)
		if err != nil {
			return nil, fmt.Errorf("nginx provider: binary %q (for `nginx -t`): %w", cfg.Binary, err)
		}
		p.bin = bin
	}
	return p, nil
}

// Capabilities says what the provider can promise. NGINX open source has no
// active health checks and no per-server connection counts: "Healthy" means
// every current worker of the instance loaded the server (it is in
// rotation, whether or not it answers), and "Drained" means no worker that
// had it is alive.
func (p *Provider) Capabilities() provider.Capabilities {
	return provider.Capabilities{
		Identity:         provider.IdentityAddress,
		Promotion:        provider.PromotionSelf,
		HealthCheckScope: provider.HealthCheckNone,
		DrainSignal:      provider.DrainStateOnly,
		Topology:         provider.TopologyInstances,
		// Upstreams are in the configuration: a reload or restart keeps
		// them.
		VolatileRuntimeState: false,
		// Old workers are counted per target (Draining until every worker
		// that had the target in rotation is gone), so the controller
		// need not wait a grace after each reload on top: that would add
		// worker_shutdown_timeout to every drain, the provider's own
		// reload included.
		ReloadGrace: 0,
		// Status reads a file and /proc: no rate limit.
		MinStatusInterval:  0,
		ActiveHealthChecks: false,
	}
}

// Enable does nothing: NGINX sends to a server as soon as a worker loads it
// (PromotionSelf).
func (p *Provider) Enable(ctx context.Context, pool provider.Pool, t provider.Target) error {
	return nil
}

// Register adds `server ip:port;` to the pool on every instance and reloads
// the instances whose workers did not load it yet. NGINX sends requests to
// it as soon as a worker loaded it: there is no health check to pass first.
func (p *Provider) Register(ctx context.Context, pool provider.Pool, t provider.Target) error {
	if err := checkTarget(pool, t); err != nil {
		return err
	}
	addr := targetAddr(t)
	return p.each(ctx, func(in Instance) error {
		return p.edit(ctx, in, pool.Name, func(f *File, now time.Duration) (bool, *Server) {
			u := f.Pool(pool.Name)
			if u == nil {
				f.Pools = append(f.Pools, Upstream{Name: pool.Name})
				u = &f.Pools[len(f.Pools)-1]
			}
			s := u.Server(addr)
			if s == nil {
				u.Servers = append(u.Servers, Server{Addr: addr, ID: string(t.ID), Since: now})
				return true, &u.Servers[len(u.Servers)-1]
			}
			changed := false
			if s.Down {
				s.Down, s.Since, changed = false, now, true
			}
			if s.ID != string(t.ID) {
				s.ID, changed = string(t.ID), true
			}
			return changed, s
		})
	})
}

// SetDraining marks the target `down` on every instance and reloads: new
// workers send it nothing, old ones finish what they hold. Absent targets
// are ignored.
func (p *Provider) SetDraining(ctx context.Context, pool provider.Pool, t provider.Target) error {
	addr, skip, err := p.actOn(pool, t)
	if err != nil || skip {
		return err
	}
	return p.each(ctx, func(in Instance) error {
		return p.edit(ctx, in, pool.Name, func(f *File, now time.Duration) (bool, *Server) {
			return markDown(f, pool.Name, addr, now)
		})
	})
}

// Deregister removes the target once no worker that had it is alive. Before
// that it marks it down (reloading if needed) and returns an error wrapping
// provider.ErrTargetBusy. Absent targets are ignored.
func (p *Provider) Deregister(ctx context.Context, pool provider.Pool, t provider.Target) error {
	addr, skip, err := p.actOn(pool, t)
	if err != nil || skip {
		return err
	}
	return p.each(ctx, func(in Instance) error {
		var busy error
		err := p.edit(ctx, in, pool.Name, func(f *File, now time.Duration) (bool, *Server) {
			u := f.Pool(pool.Name)
			if u == nil || u.Server(addr) == nil {
				return false, nil
			}
			s := u.Server(addr)
			if !s.Down {
				busy = provider.Errorf(provider.CodeBusy, in.Name, "pool %s: %s was in rotation; marked down, NGINX reloaded", pool.Name, addr)
				return markDown(f, pool.Name, addr, now)
			}
			m, rerr := nginxproc.Read(in.PidFile)
			if rerr != nil {
				busy = provider.Errorf(provider.CodeUnreachable, in.Name, "cannot tell whether a worker still has %s: %w", addr, rerr)
				return false, s
			}
			st := serverStatus(*s, m, p.cfg.LoadMargin)
			if st.Health != provider.HealthDrained {
				busy = provider.Errorf(provider.CodeBusy, in.Name, "pool %s: %s: %s", pool.Name, addr, st.Message)
				return false, s
			}
			u.Remove(addr)
			// Down in every running worker already: no reload needed.
			return true, nil
		})
		if err != nil {
			return err
		}
		return busy
	})
}

func markDown(f *File, pool, addr string, now time.Duration) (bool, *Server) {
	u := f.Pool(pool)
	if u == nil {
		return false, nil
	}
	s := u.Server(addr)
	if s == nil {
		return false, nil
	}
	if s.Down {
		return false, s
	}
	s.Down, s.Since = true, now
	return true, s
}

// actOn returns the address a drain or deregistration acts on. An orphan's
// synthetic ID carries the address; it is left alone (skip) once a known
// target has that address again.
func (p *Provider) actOn(pool provider.Pool, t provider.Target) (addr string, skip bool, err error) {
	if !validName(pool.Name) {
		return "", false, provider.Errorf(provider.CodeInvalid, "", "nginx provider: pool name %q: use letters, digits, '-', '_', '.'", pool.Name)
	}
	if provider.IsOrphan(t.ID) {
		addr = canonicalAddr(strings.TrimPrefix(string(t.ID), provider.OrphanPrefix))
		for _, k := range pool.Known {
			if k.IP != "" && targetAddr(k) == addr {
				return addr, true, nil
			}
		}
		return addr, false, nil
	}
	if err := t.Validate(); err != nil {
		return "", false, provider.Errorf(provider.CodeInvalid, "", "nginx provider: %w", err)
	}
	return targetAddr(t), false, nil
}

func checkTarget(pool provider.Pool, t provider.Target) error {
	if !validName(pool.Name) {
		return provider.Errorf(provider.CodeInvalid, "", "nginx provider: pool name %q: use letters, digits, '-', '_', '.'", pool.Name)
	}
	if err := t.Validate(); err != nil {
		return provider.Errorf(provider.CodeInvalid, "", "nginx provider: %w", err)
	}
	if !validID(string(t.ID)) || provider.IsOrphan(t.ID) {
		return provider.Errorf(provider.CodeInvalid, "", "nginx provider: target ID %q: printable ASCII without spaces, '#', '=', ';', quotes or braces, not starting with %q", t.ID, provider.OrphanPrefix)
	}
	return nil
}

func targetAddr(t provider.Target) string { return canonicalAddr(t.Addr()) }

// each runs fn on every instance at once and joins the errors.
func (p *Provider) each(ctx context.Context, fn func(Instance) error) error {
	errs := make([]error, len(p.cfg.Instances))
	var wg sync.WaitGroup
	for i, in := range p.cfg.Instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(in)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// edit changes an instance's upstream file under its lock: mutate reports
// whether it changed the file and returns the server the caller needs
// loaded (nil for none). The file is validated and replaced atomically; then,
// if a current worker has not loaded that server's line, the master is sent
// SIGHUP once the load margin has passed, and edit waits (ReloadWait at most)
// for the new workers. The file is written even when the master is not
// running: it is what NGINX loads when it starts.
func (p *Provider) edit(ctx context.Context, in Instance, pool string, mutate func(*File, time.Duration) (bool, *Server)) error {
	unlock, err := lockFile(ctx, in.UpstreamFile+".lock")
	if errors.Is(err, os.ErrNotExist) {
		// The directory is gone: the instance is not installed here (or
		// its volume is not mounted), not a fault of the provider.
		return provider.Errorf(provider.CodeUnreachable, in.Name, "upstream file %s: its directory does not exist: %w", in.UpstreamFile, err)
	}
	if err != nil {
		return provider.Errorf(provider.CodeInternal, in.Name, "%w", err)
	}
	defer unlock()
	f, err := readFile(in.UpstreamFile)
	if err != nil {
		return provider.Errorf(provider.CodeInternal, in.Name, "%w", err)
	}
	boot, err := nginxproc.BootID()
	if err != nil {
		return provider.Errorf(provider.CodeInternal, in.Name, "%w", err)
	}
	if f.Boot != boot {
		// Written before the last boot: every running worker loaded it.
		for i := range f.Pools {
			for j := range f.Pools[i].Servers {
				f.Pools[i].Servers[j].Since = 0
			}
		}
		f.Boot = boot
	}
	now := nginxproc.Now()
	changed, want := mutate(f, now)
	if changed {
		if err := p.validate(ctx, in, f.Render()); err != nil {
			return err
		}
		// The margin counts from the write, not from before `nginx -t`:
		// the lines changed now get the time of the write.
		written := nginxproc.Now()
		for i := range f.Pools {
			for j := range f.Pools[i].Servers {
				if f.Pools[i].Servers[j].Since == now {
					f.Pools[i].Servers[j].Since = written
				}
			}
		}
		if err := writeAtomic(in.UpstreamFile, f.Render()); err != nil {
			return provider.Errorf(provider.CodeInternal, in.Name, "%w", err)
		}
		if err := p.proveSince(ctx, in, f, written); err != nil {
			return err
		}
	}
	var loadAfter time.Duration
	if want != nil && want.Since != 0 {
		loadAfter = want.Since + p.cfg.LoadMargin
	}
	if want == nil {
		return nil
	}
	m, err := nginxproc.Read(in.PidFile)
	if err != nil {
		return unreachable(in, err)
	}
	if loaded(m, loadAfter) {
		return nil
	}
	if !changed {
		// A repeat call: the line was written by an earlier call, whose
		// reload may still be under way (a busy master takes its time to
		// parse and fork). Give it ReloadWait before reloading again; a
		// reload that was lost (the master was down, or the caller
		// crashed between the write and the signal) is repaired after.
		if m, err = p.waitLoaded(ctx, in, m.PID, loadAfter); err != nil || loaded(m, loadAfter) {
			return err
		}
		if reloadUnderWay(m, loadAfter) {
			return nil
		}
	}
	// Workers forked from now on must start after loadAfter, truncation to
	// a tick included.
	if err := sleepUntil(ctx, loadAfter+2*nginxproc.Tick); err != nil {
		return provider.Errorf(provider.CodeInternal, in.Name, "%w", err)
	}
	// The pid may have been reused since it was read: read it again.
	if m, err = nginxproc.ReadPID(m.PID); err != nil {
		return unreachable(in, err)
	}
	// A SIGHUP still pending (the master has not taken it yet) reloads
	// after this write anyway: a second one would be merged with it.
	if !nginxproc.SignalPending(m.PID, syscall.SIGHUP) {
		if err := syscall.Kill(m.PID, syscall.SIGHUP); err != nil {
			return provider.Errorf(provider.CodeUnreachable, in.Name, "reload (SIGHUP to master %d from %s): %w", m.PID, in.PidFile, err)
		}
	}
	// Not an error when the wait ends first: the master may be busy or
	// the reload may have failed; Status says which workers run what.
	_, err = p.waitLoaded(ctx, in, m.PID, loadAfter)
	return err
}

// proveSince makes the load margin a proof for the lines just written at
// the given time: a reload someone else signalled before the write may be
// parsing the old file still and fork its workers more than the margin
// later. The master takes no signal and starts no reload outside
// sigsuspend, so once it is seen idle there every generation it forks
// parsed after the write. If it was seen idle within the margin, the lines'
// Since already says so; if it was busy longer (a slow parse on a loaded
// machine), their Since moves to when it was seen idle (a rewrite of the
// comments only), and a worker counts as having loaded them only if it
// started after that. A master busy for longer than ReloadWait leaves the
// last time it was seen, and the margin is a bound again.
func (p *Provider) proveSince(ctx context.Context, in Instance, f *File, written time.Duration) error {
	m, err := nginxproc.Read(in.PidFile)
	if err != nil {
		return nil // no master: the next one parses the file as it is
	}
	deadline := time.Now().Add(p.cfg.ReloadWait)
	for !nginxproc.Idle(m.PID) && time.Now().Before(deadline) && nginxproc.Alive(m.PID) {
		select {
		case <-ctx.Done():
			return provider.Errorf(provider.CodeUnreachable, in.Name, "waiting for the master to finish a reload: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	// Read after the master was seen idle: it was idle at or before seen.
	seen := nginxproc.Now()
	if seen <= written+p.cfg.LoadMargin {
		return nil
	}
	for i := range f.Pools {
		for j := range f.Pools[i].Servers {
			if f.Pools[i].Servers[j].Since == written {
				f.Pools[i].Servers[j].Since = seen
			}
		}
	}
	if err := writeAtomic(in.UpstreamFile, f.Render()); err != nil {
		return provider.Errorf(provider.CodeInternal, in.Name, "%w", err)
	}
	return nil
}

// reloadUnderWay reports whether the master is reloading after the given
// time: a SIGHUP it has not taken yet, or workers of a new generation
// beside old ones it has not told to shut down yet.
func reloadUnderWay(m nginxproc.Master, after time.Duration) bool {
	for _, w := range m.Current() {
		if w.Started >= after {
			return true
		}
	}
	return nginxproc.SignalPending(m.PID, syscall.SIGHUP)
}

// loaded reports whether the master has workers and every one that accepts
// connections started after the given time.
func loaded(m nginxproc.Master, after time.Duration) bool {
	cur := m.Current()
	return len(cur) > 0 && allLoaded(cur, after)
}

// waitLoaded polls the master for at most ReloadWait until its current
// workers all started after the given time; it returns the last read.
func (p *Provider) waitLoaded(ctx context.Context, in Instance, pid int, after time.Duration) (nginxproc.Master, error) {
	deadline := time.Now().Add(p.cfg.ReloadWait)
	for {
		m, err := nginxproc.ReadPID(pid)
		if err != nil {
			return m, unreachable(in, err)
		}
		if loaded(m, after) || !time.Now().Before(deadline) {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return m, provider.Errorf(provider.CodeUnreachable, in.Name, "waiting for the reload: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func allLoaded(ws []nginxproc.Worker, after time.Duration) bool {
	for _, w := range ws {
		if w.Started < after {
			return false
		}
	}
	return true
}

func sleepUntil(ctx context.Context, boot time.Duration) error {
	d := boot - nginxproc.Now()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Status reads the pool's servers from each instance's upstream file and
// says, from the workers' start times, which of them each instance's workers
// have loaded.
func (p *Provider) Status(ctx context.Context, pool provider.Pool) (provider.PoolStatus, error) {
	known := map[string]provider.TargetID{}
	for _, k := range pool.Known {
		if k.IP != "" {
			known[targetAddr(k)] = k.ID
		}
	}
	ps := provider.PoolStatus{Pool: pool.Name, Instances: make([]provider.InstanceStatus, len(p.cfg.Instances))}
	var wg sync.WaitGroup
	for i, in := range p.cfg.Instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps.Instances[i] = p.instanceStatus(in, pool.Name, known)
		}()
	}
	wg.Wait()
	var errs []error
	for _, in := range ps.Instances {
		if in.Err != nil {
			errs = append(errs, in.Err)
		}
	}
	return ps, errors.Join(errs...)
}

func (p *Provider) instanceStatus(in Instance, pool string, known map[string]provider.TargetID) provider.InstanceStatus {
	st := provider.InstanceStatus{Instance: in.Name}
	f, err := readFile(in.UpstreamFile)
	if err != nil {
		st.Err = provider.Errorf(provider.CodeInternal, in.Name, "%w", err)
		return st
	}
	m, err := nginxproc.Read(in.PidFile)
	if err != nil {
		st.Err = unreachable(in, err)
		return st
	}
	boot, err := nginxproc.BootID()
	if err != nil {
		st.Err = provider.Errorf(provider.CodeInternal, in.Name, "%w", err)
		return st
	}
	cur := m.Current()
	var newest time.Duration
	for _, w := range cur {
		newest = max(newest, w.Started)
	}
	st.Epoch = fmt.Sprintf("%d/%d", m.PID, newest.Milliseconds())
	if len(cur) > 0 {
		st.StartedAt = nginxproc.Wall(cur[0].Started)
	}
	st.Targets = map[provider.TargetID]provider.TargetStatus{}
	u := f.Pool(pool)
	if u == nil {
		return st
	}
	for _, s := range u.Servers {
		if s.Placeholder {
			continue
		}
		if f.Boot != boot {
			s.Since = 0 // written before the last boot: loaded long ago
		}
		id, ok := known[s.Addr]
		if !ok {
			id = provider.TargetID(provider.OrphanPrefix + s.Addr)
		}
		st.Targets[id] = serverStatus(s, m, p.cfg.LoadMargin)
	}
	return st
}

// serverStatus is one instance's verdict on one server line, from which of
// the master's workers loaded the line's present state (started at least
// margin after it was written).
func serverStatus(s Server, m nginxproc.Master, margin time.Duration) provider.TargetStatus {
	after := s.Since + margin
	if s.Since == 0 {
		after = 0
	}
	var stale, old []int
	for _, w := range m.Workers {
		if w.Started >= after {
			continue
		}
		old = append(old, w.PID)
		if !w.ShuttingDown {
			stale = append(stale, w.PID)
		}
	}
	cur := len(m.Current())
	ts := provider.TargetStatus{Addr: s.Addr}
	switch {
	case !s.Down && cur == 0:
		ts.Health, ts.Reason = provider.HealthInitial, "NoWorkers"
		ts.Message = fmt.Sprintf("master %d has no worker process", m.PID)
	case !s.Down && len(stale) > 0:
		ts.Health, ts.Reason = provider.HealthInitial, "ReloadPending"
		ts.Message = fmt.Sprintf("%d of %d worker(s) started before the server was written (pids %s): reload pending or failed (see the error log)", len(stale), cur, pids(stale))
	case !s.Down:
		ts.Health, ts.Reason = provider.HealthHealthy, "Loaded"
		ts.Message = fmt.Sprintf("loaded by all %d worker(s); no health check (NGINX open source)", cur)
	case len(stale) > 0:
		// Marked down in the file, but the running workers still balance
		// to it: not draining yet.
		ts.Health, ts.Reason = provider.HealthHealthy, "DrainPending"
		ts.Message = fmt.Sprintf("marked down, but %d worker(s) started before that (pids %s) still send to it: reload pending or failed (see the error log)", len(stale), pids(stale))
	case len(old) > 0:
		ts.Health, ts.Reason = provider.HealthDraining, "OldWorkers"
		ts.Message = fmt.Sprintf("%d old worker(s) that had it in rotation (pids %s) are finishing their connections (until worker_shutdown_timeout)", len(old), pids(old))
	default:
		ts.Health, ts.Reason = provider.HealthDrained, "Down"
		ts.Message = "marked down in every worker; no worker that had it is alive"
	}
	return ts
}

func pids(ps []int) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

func readFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("upstream file: %w", err)
	}
	return ParseFile(path, b)
}

// validate runs `nginx -t` on a configuration that includes only the new
// upstream file: it catches what the renderer cannot (a parameter NGINX
// refuses, a host name that does not resolve).
func (p *Provider) validate(ctx context.Context, in Instance, text []byte) error {
	if p.cfg.SkipValidation {
		return nil
	}
	dir, err := os.MkdirTemp("", "zerodrop-nginx-t-")
	if err != nil {
		return provider.Errorf(provider.CodeInternal, in.Name, "validate: %w", err)
	}
	defer os.RemoveAll(dir)
	up := filepath.Join(dir, "upstreams.conf")
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(up, text, 0o644); err != nil {
		return provider.Errorf(provider.CodeInternal, in.Name, "validate: %w", err)
	}
	wrapper := fmt.Sprintf("pid %s/nginx.pid;\nevents {}\nhttp {\n    include %s;\n}\n", dir, up)
	if err := os.WriteFile(conf, []byte(wrapper), 0o644); err != nil {
		return provider.Errorf(provider.CodeInternal, in.Name, "validate: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.bin, "-t", "-q", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(strings.ReplaceAll(string(out), up, in.UpstreamFile))
		return provider.Errorf(provider.CodeInternal, in.Name, "`nginx -t` refused the new %s, left unchanged: %s: %w", in.UpstreamFile, msg, err)
	}
	return nil
}

// writeAtomic replaces path with data (temporary file, fsync, rename), so
// that NGINX parses the old file or the new one, never half of one.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// lockFile takes an exclusive flock on path (created if missing), so that
// two providers (an old and a new leader) do not interleave their edits.
func lockFile(ctx context.Context, path string) (func(), error) {
	fd, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(fd.Fd()), syscall.LOCK_UN)
				fd.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			fd.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			fd.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// unreachable wraps a failure to read or signal an instance's master.
func unreachable(in Instance, err error) error {
	return provider.Errorf(provider.CodeUnreachable, in.Name, "%w", err)
}
