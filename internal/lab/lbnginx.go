package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	labnginx "zerodrop.dev/zerodrop/internal/lab/nginx"
	"zerodrop.dev/zerodrop/internal/lab/nginxsync"
	"zerodrop.dev/zerodrop/internal/lab/proc"
	"zerodrop.dev/zerodrop/internal/nginxproc"
	pnginx "zerodrop.dev/zerodrop/provider/nginx"
)

// The lab's NGINX instances: started by Up beside HAProxy, one upstream
// (BackendName) in an include file and one frontend each. NGINX open source
// has no runtime API: whoever fills the upstream (the baseline syncer
// nginxsync, or zerodrop's NGINX provider behind the adapter) rewrites the
// file and reloads the master.

// startNGINX starts instance i and records it.
func (l *Lab) startNGINX(ctx context.Context, i int) error {
	name := fmt.Sprintf("nginx-%d", i)
	in, err := labnginx.Start(ctx, labnginx.Config{
		Dir:     filepath.Join(l.Dir, name),
		Pools:   []labnginx.Pool{{Name: BackendName}},
		Workers: NGINXWorkers,
		// Longer than the scenarios' slow requests (6 s): a reload does
		// not cut them.
		ShutdownTimeout: NGINXShutdownTimeout,
		// A request sent to a pod whose address is gone fails after
		// 2.5 s instead of 60 s; a lost SYN to a live pod is retransmitted
		// within it (NGINXConnectTimeout).
		ConnectTimeout: NGINXConnectTimeout,
		Logger:         l.log,
	})
	if err != nil {
		return fmt.Errorf("lab: %s: %w", name, err)
	}
	l.NGINX = append(l.NGINX, in)
	exe, _ := exec.LookPath("nginx")
	l.updateState(func(s *State) {
		s.NGINX = append(s.NGINX, NGINXState{
			Name: name, Frontend: in.Addr(), Pool: BackendName,
			UpstreamFile: in.UpstreamFile(), PidFile: in.PidFile(), Master: in.MasterPID(), Exe: exe,
			Config: in.ConfigPath(), ErrorLog: in.ErrorLog(), ShutdownTimeout: in.ShutdownTimeout(),
		})
	})
	l.recordNGINXPids()
	return nil
}

// recordNGINXPids records every NGINX master and its live workers (every
// reload forks new ones), and forgets workers that have exited.
func (l *Lab) recordNGINXPids() {
	if len(l.NGINX) == 0 {
		return
	}
	type named struct {
		name string
		pid  int
	}
	var live []named
	for _, in := range l.NGINX {
		live = append(live, named{"nginx-master", in.MasterPID()})
		ws, _ := in.Workers()
		for _, w := range ws {
			live = append(live, named{"nginx-worker", w.PID})
		}
	}
	l.updateState(func(s *State) {
		bin := ""
		if len(s.NGINX) > 0 {
			bin = s.NGINX[0].Exe
		}
		s.Processes = slices.DeleteFunc(s.Processes, func(p Proc) bool {
			return p.Name == "nginx-worker" && !proc.Alive(p.PID, p.Exe)
		})
		for _, n := range live {
			if n.pid > 0 && !slices.ContainsFunc(s.Processes, func(q Proc) bool { return q.PID == n.pid }) {
				s.Processes = append(s.Processes, Proc{Name: n.name, PID: n.pid, Exe: bin})
			}
		}
	})
}

// stopNGINXFromState stops a recorded NGINX from any process: its master
// (SIGTERM, then SIGKILL) and every worker the master had, by pid.
func stopNGINXFromState(ctx context.Context, n NGINXState) error {
	// Every child of the master: a worker forked a moment ago has no
	// title yet, and Read does not count it.
	var workers []int
	if m, err := nginxproc.Read(n.PidFile); err == nil {
		workers = nginxproc.Children(m.PID)
	}
	var errs []error
	if _, err := proc.Kill(ctx, n.Master, n.Exe, 5*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("lab: stop %s: %w", n.Name, err))
	}
	for _, pid := range workers {
		if _, err := proc.Kill(ctx, pid, n.Exe, 2*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("lab: stop %s worker %d: %w", n.Name, pid, err))
		}
	}
	return errors.Join(errs...)
}

// startNGINXSyncer runs the NGINX baseline (sync by reload, no gate) for
// ns/svc on every NGINX instance of the target. The returned function stops
// it and waits for it.
func startNGINXSyncer(ctx context.Context, t Target, ns, svc string, log *slog.Logger) (func(), error) {
	var ins []nginxsync.Instance
	for _, n := range t.NGINX {
		ins = append(ins, nginxsync.Instance{UpstreamFile: n.UpstreamFile, PidFile: n.PidFile})
	}
	s, err := nginxsync.New(nginxsync.Config{
		Client: t.Client, Namespace: ns, Service: svc, Port: "http", Pool: BackendName,
		Instances: ins, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: nginx syncer for %s/%s: %w", ns, svc, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(sctx); err != nil && sctx.Err() == nil {
			log.Error("nginx syncer stopped", "service", ns+"/"+svc, "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// waitNGINXServersUp waits until the upstream of every instance holds n
// servers in rotation and nothing else (no draining server left), every
// current worker of the master started after the file's last change (it
// loaded it), and every server answers the app's health endpoint.
func waitNGINXServersUp(ctx context.Context, ns []NGINXState, n int) error {
	for _, in := range ns {
		var last string
		for {
			ok, why := nginxServersUp(ctx, in, n)
			if ok {
				break
			}
			if last == "" || ctx.Err() == nil {
				last = why
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("lab: nginx %s upstream %s: want %d servers loaded and answering: %s: %w", in.Name, in.Pool, n, last, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// nginxServersUp checks waitNGINXServersUp's condition once and says what
// is missing.
func nginxServersUp(ctx context.Context, in NGINXState, n int) (bool, string) {
	fi, err := os.Stat(in.UpstreamFile)
	if err != nil {
		return false, err.Error()
	}
	raw, err := os.ReadFile(in.UpstreamFile)
	if err != nil {
		return false, err.Error()
	}
	f, err := pnginx.ParseFile(in.UpstreamFile, raw)
	if err != nil {
		return false, err.Error()
	}
	u := f.Pool(in.Pool)
	if u == nil {
		return false, "no upstream " + in.Pool
	}
	var addrs []string
	var since []time.Duration // per server in rotation: written at (boot clock), 0 unknown
	down := 0
	boot, _ := nginxproc.BootID()
	for _, s := range u.Servers {
		switch {
		case s.Placeholder || s.Down && s.Addr == emptyPoolPlaceholder:
		case s.Down:
			down++
		default:
			addrs = append(addrs, s.Addr)
			if f.Boot == boot {
				since = append(since, s.Since)
			} else {
				since = append(since, 0)
			}
		}
	}
	if len(addrs) != n || down > 0 {
		return false, fmt.Sprintf("%d servers in rotation, %d down", len(addrs), down)
	}
	m, err := nginxproc.Read(in.PidFile)
	if err != nil {
		return false, err.Error()
	}
	cur := m.Current()
	if len(cur) == 0 {
		return false, "no worker accepts connections"
	}
	for _, w := range cur {
		// Start times are truncated to a tick; a worker forked in the
		// same tick as the write did load it (NGINX parses before it
		// forks, and the writers reload after writing). Lines the NGINX
		// provider wrote carry their own write time (it removes a
		// drained line without a reload: the file's time would say a
		// reload is pending); the baseline's lines have the file's.
		for i, a := range addrs {
			loaded := w.Started+nginxproc.Tick >= since[i]
			if since[i] == 0 {
				loaded = !nginxproc.Wall(w.Started).Add(nginxproc.Tick).Before(fi.ModTime())
			}
			if !loaded {
				return false, fmt.Sprintf("worker %d started before server %s was written (reload pending)", w.PID, a)
			}
		}
	}
	c := http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, a := range addrs {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+appHealthPath, nil)
		resp, err := c.Do(req)
		if err != nil {
			return false, fmt.Sprintf("server %s: %v", a, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Sprintf("server %s: %s", a, resp.Status)
		}
	}
	return true, ""
}

// emptyPoolPlaceholder is the down server an empty upstream holds (NGINX
// refuses an upstream without servers), as the baseline writes it.
const emptyPoolPlaceholder = "127.0.0.1:9"

// clearNGINXPools empties the upstream of every instance (a down
// placeholder only) and reloads the instances whose file changed, so a
// scenario starts clean.
func clearNGINXPools(ctx context.Context, ns []NGINXState) error {
	var errs []error
	for _, in := range ns {
		since := nginxproc.Now()
		changed, err := nginxsync.Write(nginxsync.Instance{UpstreamFile: in.UpstreamFile, PidFile: in.PidFile},
			labnginx.RenderUpstreams([]labnginx.Pool{{Name: in.Pool}}))
		if err != nil {
			errs = append(errs, fmt.Errorf("lab: clear %s: %w", in.Name, err))
			continue
		}
		if changed {
			if err := waitFreshWorkers(ctx, in, nil, since); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// reloadNGINX reloads one lab instance from any process, as `nginx -s
// reload` does (SIGHUP to the master), and waits until none of the workers
// current before accepts connections.
func reloadNGINX(ctx context.Context, in NGINXState) error {
	m, err := nginxproc.Read(in.PidFile)
	if err != nil {
		return fmt.Errorf("lab: reload %s: %w", in.Name, err)
	}
	before := map[int]bool{}
	for _, w := range m.Current() {
		before[w.PID] = true
	}
	if err := syscall.Kill(m.PID, syscall.SIGHUP); err != nil {
		return fmt.Errorf("lab: reload %s: SIGHUP to %d: %w", in.Name, m.PID, err)
	}
	return waitFreshWorkers(ctx, in, before, 0)
}

// waitFreshWorkers waits (up to 15 s) until the master's current workers
// are none of old's (old nil: until every one started at since, on the boot
// clock, or later).
func waitFreshWorkers(ctx context.Context, in NGINXState, old map[int]bool, since time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		m, err := nginxproc.Read(in.PidFile)
		if err == nil {
			cur := m.Current()
			fresh := len(cur) > 0
			for _, w := range cur {
				if old != nil && old[w.PID] || old == nil && w.Started+nginxproc.Tick < since {
					fresh = false
				}
			}
			if fresh {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: reload %s: old workers still accept connections (configuration refused? see %s): %w", in.Name, in.ErrorLog, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
