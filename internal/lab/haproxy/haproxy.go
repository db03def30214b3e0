// Package haproxy runs a real HAProxy process for the lab and the tests: a
// generated configuration (one frontend per backend on loopback, HTTP
// health checks, a Runtime API socket at level admin), master-worker mode so
// that Reload behaves like `systemctl reload haproxy`, and Stop that leaves
// no process behind.
//
// Reloading loses every server added through the Runtime API (HAProxy only
// keeps what its configuration file says); that is the situation zerodrop's
// controller and the baseline syncer must repair.
package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"zerodrop.dev/zerodrop/internal/lab/proc"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// Check is a backend's health check (HAProxy's `option httpchk` and
// `default-server inter/rise/fall`).
type Check struct {
	// HTTPPath is requested with GET; a 2xx or 3xx answer passes. Empty
	// means a TCP connect check.
	HTTPPath string
	// Interval between checks (HAProxy's inter). Default 1s.
	Interval time.Duration
	// Rise and Fall: consecutive passes/failures that flip the server.
	// Defaults 3 and 2 (AWS ALB's 30s x 5 healthy / 2 unhealthy, scaled
	// down so that a lab run takes minutes).
	Rise, Fall int
	// Timeout of one check (HAProxy's `timeout check`). Default Interval.
	Timeout time.Duration
}

// Server is a server written in the configuration file (it survives reloads).
type Server struct {
	Name string
	Addr string // ip:port
	// NoCheck disables health checks for this server.
	NoCheck bool
}

// Backend is one pool with its own frontend.
type Backend struct {
	// Name of the backend (and, prefixed with "fe_", of its frontend).
	Name string
	// Listen is the frontend's address; default 127.0.0.1 on a free port.
	Listen string
	// Balance is the algorithm; default roundrobin. Dynamic servers need a
	// dynamic one (roundrobin, leastconn, first, random).
	Balance string
	Check   Check
	// Servers from the configuration; dynamic ones are added at runtime.
	Servers []Server
	// Slots, when > 0, adds that many server-template slots (SlotPrefix1
	// .. SlotPrefixN) that the provider fills instead of adding dynamic
	// servers; with the server-state file they survive a reload.
	Slots int
}

// SlotPrefix is the server-template prefix of Backend.Slots, the one the
// HAProxy provider detects.
const SlotPrefix = hapi.SlotPrefix

// SlotTemplate is the server-template line for n slots. Each word matters on
// HAProxy 2.6 (docs/haproxy.md): a host name, because `init-addr last` (take
// the address from the server-state file) applies only to servers with one
// (an IP address in the template is what a reload restores: the slot's
// port and state come back, its IP does not); a non-zero port, because port
// 0 means "the client's port" and that mapping flag survives the reload
// while the port does not; `init-addr last,0.0.0.0` so a slot without a
// saved address has an IPv4 family that `set server addr` can change (none
// leaves it unset and the CLI refuses); `disabled` so new slots start in
// maintenance; `check` for the health checks (inter/rise/fall from
// default-server).
func SlotTemplate(n int) string {
	return fmt.Sprintf("server-template %s 1-%d %s.invalid:1 check disabled init-addr last,0.0.0.0", SlotPrefix, n, SlotPrefix)
}

// Config describes the HAProxy to run. Zero fields take the defaults noted.
type Config struct {
	// Binary is the haproxy executable; default "haproxy" from PATH.
	Binary string
	// Dir holds the configuration, socket, pid file and log; default a new
	// temporary directory that Stop removes.
	Dir string
	// Backends: default one backend named "app".
	Backends []Backend
	// MaxConn is the global maxconn; default 4096.
	MaxConn int
	// Timeouts; defaults connect 1s, client 30s, server 30s.
	TimeoutConnect, TimeoutClient, TimeoutServer time.Duration
	// Retries is HAProxy's `retries` (connection attempts after a failed
	// connect, same server unless Redispatch). 0 means HAProxy's default, 3;
	// set -1 for none. Retries hide refused connections from clients, so
	// a lab that counts failures must say which it used.
	Retries int
	// Redispatch adds `option redispatch`: the last retry goes to another
	// server. Off by default, as in HAProxy.
	Redispatch bool
	// HardStopAfter bounds how long an old worker keeps serving open
	// connections after a reload or stop; default 5s.
	HardStopAfter time.Duration
	// StartTimeout bounds Start and Reload; default 15s.
	StartTimeout time.Duration
	// Logger receives lifecycle lines; slog.Default when nil.
	Logger *slog.Logger
	// AdminTLS, when set, serves the Runtime API on 127.0.0.1 (a free port,
	// Instance.AdminTLSAddr) over TLS, to clients with a certificate signed
	// by AdminTLS.CA only: a TCP frontend that terminates mutual TLS in
	// front of the admin unix socket (docs/haproxy.md). The unix socket
	// stays, for the lab's own reloads.
	AdminTLS *AdminTLS
	// Metrics serves HAProxy's built-in Prometheus exporter on 127.0.0.1
	// (a free port, Instance.MetricsAddr), at /metrics.
	Metrics bool
	// AdminTLSHosts are more addresses the mutual-TLS Runtime API listens
	// on, on the same port as on 127.0.0.1 (the lab's bridge address, so
	// that controller pods in their own network namespaces reach it;
	// Instance.AdminTLSAddrOn). AdminTLS.Cert must name them.
	AdminTLSHosts []string
	// NoEventRing leaves out the ring that every backend logs its server
	// verdicts to (hapi.DefaultEventRing, read by the provider's Watch):
	// an HAProxy configured without it, polled only.
	NoEventRing bool
}

// AdminTLS is the PEM-encoded material of a mutual-TLS Runtime API socket.
type AdminTLS struct {
	// Cert and Key are HAProxy's serving certificate and key.
	Cert, Key []byte
	// CA verifies client certificates.
	CA []byte
}

// The lab's health-check defaults: ALB's 30 s x 5 / 2 scaled down so a run
// takes minutes. The baseline syncer adds servers with the same settings.
const (
	DefaultCheckInterval = time.Second
	DefaultCheckRise     = 3
	DefaultCheckFall     = 2
)

func (c *Config) defaults() {
	if c.Binary == "" {
		c.Binary = "haproxy"
	}
	if len(c.Backends) == 0 {
		c.Backends = []Backend{{Name: "app"}}
	}
	if c.MaxConn == 0 {
		c.MaxConn = 4096
	}
	if c.TimeoutConnect == 0 {
		c.TimeoutConnect = time.Second
	}
	if c.TimeoutClient == 0 {
		c.TimeoutClient = 30 * time.Second
	}
	if c.TimeoutServer == 0 {
		c.TimeoutServer = 30 * time.Second
	}
	if c.Retries == 0 {
		c.Retries = 3
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.HardStopAfter == 0 {
		c.HardStopAfter = 5 * time.Second
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.Balance == "" {
			b.Balance = "roundrobin"
		}
		if b.Check.Interval == 0 {
			b.Check.Interval = DefaultCheckInterval
		}
		if b.Check.Rise == 0 {
			b.Check.Rise = DefaultCheckRise
		}
		if b.Check.Fall == 0 {
			b.Check.Fall = DefaultCheckFall
		}
		if b.Check.Timeout == 0 {
			b.Check.Timeout = b.Check.Interval
		}
	}
}

func (c *Config) validate() error {
	seen := map[string]bool{}
	for i, b := range c.Backends {
		if !validName(b.Name) {
			return fmt.Errorf("haproxy config: backend %d: name %q: use letters, digits, '-', '_', '.'", i, b.Name)
		}
		if seen[b.Name] {
			return fmt.Errorf("haproxy config: backend %q defined twice", b.Name)
		}
		seen[b.Name] = true
		switch b.Balance {
		case "roundrobin", "leastconn", "first", "random":
		default:
			return fmt.Errorf("haproxy config: backend %q: balance %q is not dynamic (roundrobin, leastconn, first, random): runtime servers need one", b.Name, b.Balance)
		}
		if strings.ContainsAny(b.Check.HTTPPath, " \t\n\r#\"'\\") {
			return fmt.Errorf("haproxy config: backend %q: check path %q contains whitespace, quotes or '#'", b.Name, b.Check.HTTPPath)
		}
		if b.Check.Rise < 1 || b.Check.Fall < 1 || b.Check.Interval < time.Millisecond {
			return fmt.Errorf("haproxy config: backend %q: check %+v out of range", b.Name, b.Check)
		}
		for _, s := range b.Servers {
			if !validName(s.Name) {
				return fmt.Errorf("haproxy config: backend %q: server name %q invalid", b.Name, s.Name)
			}
			if _, _, err := net.SplitHostPort(s.Addr); err != nil {
				return fmt.Errorf("haproxy config: backend %q: server %q: address %q: %w", b.Name, s.Name, s.Addr, err)
			}
		}
		if b.Slots < 0 || b.Slots > 10000 {
			return fmt.Errorf("haproxy config: backend %q: slots %d out of range 0..10000", b.Name, b.Slots)
		}
		if b.Listen != "" {
			if _, _, err := net.SplitHostPort(b.Listen); err != nil {
				return fmt.Errorf("haproxy config: backend %q: listen %q: %w", b.Name, b.Listen, err)
			}
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

var cfgTemplate = template.Must(template.New("haproxy.cfg").Funcs(template.FuncMap{
	"slots": SlotTemplate,
	"ms": func(d time.Duration) int64 {
		if d < time.Millisecond {
			return 1
		}
		return d.Milliseconds()
	},
}).Parse(`# Generated by zerodrop's lab; edits are lost.
global
    # level admin: add/del server; expose-fd listeners: the master hands the
    # listening sockets to the new worker on reload (no refused connection).
    stats socket {{.Socket}} mode 600 level admin expose-fd listeners
    stats timeout 30s
    maxconn {{.MaxConn}}
    hard-stop-after {{ms .HardStopAfter}}ms
{{- if .StateFile}}
    # Reload writes "show servers state" here first; the new worker loads
    # it: slots keep address, maint/drain/ready and UP/DOWN.
    server-state-file {{.StateFile}}
{{- end}}

defaults
    mode http
    timeout connect {{ms .TimeoutConnect}}ms
    timeout client {{ms .TimeoutClient}}ms
    timeout server {{ms .TimeoutServer}}ms
    retries {{.Retries}}
    # On a reload the old worker would close its idle client connections;
    # a POST written on one at that moment fails, and no client resends a
    # POST. With this option they wait for one more request and close after
    # its answer (until hard-stop-after). docs/faults.md: 12 of 20 POSTs
    # failed without it, 0 with it.
    option idle-close-on-response
{{- if .StateFile}}
    load-server-state-from-file global
{{- end}}
{{- if .Redispatch}}
    option redispatch
{{- end}}
{{- if not .NoEventRing}}

# Server verdicts ("Server app/s1 is UP") go to this ring; the controller
# reads them as they happen with "show events {{.Ring}} -w" (docs/haproxy.md).
ring {{.Ring}}
    format timed
    maxlen 1024
    size 1048576
{{- end}}
{{- if .MetricsAddr}}

# HAProxy's built-in Prometheus exporter (haproxy_server_*, haproxy_backend_*).
frontend prometheus
    bind {{.MetricsAddr}}
    http-request use-service prometheus-exporter if { path /metrics }
    no log
{{- end}}
{{- if .TLSAddr}}

# The Runtime API over mutual TLS: only a client certificate signed by the
# CA in admin-ca.pem gets through to the admin socket. (HAProxy 2.6 accepts
# "ssl" on a "stats socket" line but serves plaintext there: a TLS
# frontend in front of the local socket is what works.)
frontend runtime_api_tls
    mode tcp
    # An HTTP option from defaults; HAProxy warns about it in TCP mode.
    no option idle-close-on-response
    bind {{.TLSAddr}} ssl crt {{.TLSCert}} ca-file {{.TLSCA}} verify required
{{- range .TLSMore}}
    bind {{.}} ssl crt {{$.TLSCert}} ca-file {{$.TLSCA}} verify required
{{- end}}
    default_backend runtime_api

backend runtime_api
    mode tcp
    # static-rr: HAProxy refuses "add server" here, so no TargetBinding
    # naming this backend can slip a server in front of the admin socket.
    balance static-rr
    server admin unix@{{.Socket}}
{{- end}}
{{range .Backends}}
frontend fe_{{.Name}}
    bind {{.Listen}}
    default_backend {{.Name}}

backend {{.Name}}
    balance {{.Balance}}
{{- if .Check.HTTPPath}}
    option httpchk GET {{.Check.HTTPPath}}
{{- end}}
    timeout check {{ms .Check.Timeout}}ms
    # Runtime servers do not inherit default-server: add them with their own
    # "check inter .. rise .. fall ..".
    default-server inter {{ms .Check.Interval}}ms rise {{.Check.Rise}} fall {{.Check.Fall}}
{{- if not $.NoEventRing}}
    option log-health-checks
    log ring@{{$.Ring}} local0
{{- end}}
{{- range .Servers}}
    server {{.Name}} {{.Addr}}{{if not .NoCheck}} check{{end}}
{{- end}}
{{- if gt .Slots 0}}
    {{slots .Slots}}
{{- end}}
{{end}}`))

type cfgData struct {
	Config
	Socket    string
	StateFile string
	// TLSAddr, TLSCert and TLSCA: the mutual-TLS socket (Config.AdminTLS).
	TLSAddr, TLSCert, TLSCA string
	// TLSMore: the same socket on Config.AdminTLSHosts.
	TLSMore []string
	// MetricsAddr: the Prometheus exporter's frontend (Config.Metrics).
	MetricsAddr string
}

// Ring is the event ring's name (hapi.DefaultEventRing).
func (cfgData) Ring() string { return hapi.DefaultEventRing }

// Render returns the configuration file Start would write, for a Config
// whose frontends all have a Listen address, without a server-state file.
func Render(cfg Config, socket string) ([]byte, error) {
	return render(cfgData{Config: cfg, Socket: socket})
}

func render(d cfgData) ([]byte, error) {
	cfg := d.Config
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for _, b := range cfg.Backends {
		if b.Listen == "" {
			return nil, fmt.Errorf("haproxy config: backend %q: no listen address", b.Name)
		}
	}
	var buf bytes.Buffer
	d.Config = cfg
	if err := cfgTemplate.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("haproxy config: %w", err)
	}
	return buf.Bytes(), nil
}

// Instance is a running HAProxy (master process and its current worker).
type Instance struct {
	cfg     Config
	want    []Backend // as asked, before free ports were picked
	dir     string
	ownDir  bool
	cfgPath string
	logPath string
	socket  string
	tlsAddr string // the mutual-TLS socket's address (Config.AdminTLS)
	metrics string // the Prometheus exporter's address (Config.Metrics)
	state   string // server-state file
	client  *hapi.Client
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the master exits
	exitErr error

	mu      sync.Mutex
	info    hapi.Info
	workers map[int]bool // every worker pid seen, for Stop's check
	stopped bool
}

// Start writes the configuration and runs HAProxy in master-worker mode. It
// returns once the worker answers on the Runtime API; on failure nothing is
// left running.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("haproxy: binary %q: %w (run `make deps`)", cfg.Binary, err)
	}
	cfg.Binary = bin
	in := &Instance{cfg: cfg, want: cfg.Backends, dir: cfg.Dir, workers: map[int]bool{}}
	if in.dir == "" {
		in.dir, err = os.MkdirTemp("", "zerodrop-haproxy-")
		if err != nil {
			return nil, fmt.Errorf("haproxy: %w", err)
		}
		in.ownDir = true
	} else if err := os.MkdirAll(in.dir, 0o755); err != nil {
		return nil, fmt.Errorf("haproxy: %w", err)
	}
	// A free port picked here can be taken before haproxy binds it; retry
	// with new ports when that happens.
	for attempt := 1; ; attempt++ {
		err = in.start(ctx)
		if err == nil {
			return in, nil
		}
		if attempt >= 3 || !errors.Is(err, errBind) {
			if in.ownDir {
				os.RemoveAll(in.dir)
			}
			return nil, err
		}
	}
}

var errBind = errors.New("cannot bind")

func (in *Instance) start(ctx context.Context) error {
	cfg := in.cfg
	cfg.Backends = append([]Backend(nil), in.want...)
	var blank []int
	for i := range cfg.Backends {
		if cfg.Backends[i].Listen == "" {
			blank = append(blank, i)
		}
	}
	want := len(blank)
	if cfg.AdminTLS != nil {
		want++
	}
	if cfg.Metrics {
		want++
	}
	if want > 0 {
		ports, err := proc.FreePorts(want)
		if err != nil {
			return fmt.Errorf("haproxy: %w", err)
		}
		for j, i := range blank {
			cfg.Backends[i].Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[j]))
		}
		next := len(blank)
		if cfg.AdminTLS != nil {
			in.tlsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[next]))
			next++
		}
		if cfg.Metrics {
			in.metrics = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[next]))
		}
	}
	in.socket = filepath.Join(in.dir, "admin.sock")
	in.cfgPath = filepath.Join(in.dir, "haproxy.cfg")
	in.logPath = filepath.Join(in.dir, "haproxy.log")
	in.state = filepath.Join(in.dir, "server-state")
	d := cfgData{Config: cfg, Socket: in.socket, StateFile: in.state, MetricsAddr: in.metrics}
	if t := cfg.AdminTLS; t != nil {
		// HAProxy's crt file holds the certificate and its key.
		d.TLSAddr, d.TLSCert, d.TLSCA = in.tlsAddr, filepath.Join(in.dir, "admin.pem"), filepath.Join(in.dir, "admin-ca.pem")
		for _, h := range cfg.AdminTLSHosts {
			d.TLSMore = append(d.TLSMore, in.AdminTLSAddrOn(h))
		}
		pem := append(append(append([]byte(nil), t.Cert...), '\n'), t.Key...)
		if err := os.WriteFile(d.TLSCert, pem, 0o600); err != nil {
			return fmt.Errorf("haproxy: %w", err)
		}
		if err := os.WriteFile(d.TLSCA, t.CA, 0o644); err != nil {
			return fmt.Errorf("haproxy: %w", err)
		}
	}
	text, err := render(d)
	if err != nil {
		return err
	}
	// A state file with only its version line: HAProxy warns about a
	// missing or empty one; a stale one from an earlier run in the same
	// directory must not bring back its servers.
	if err := os.WriteFile(in.state, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	if err := os.WriteFile(in.cfgPath, text, 0o644); err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	logf, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	defer logf.Close() // the child has its own copy
	os.Remove(in.socket)
	// -W: master-worker (reload = SIGUSR2 to the master, as systemd does);
	// -db: stay in the foreground so the master is our child.
	cmd := exec.Command(cfg.Binary, "-W", "-db", "-f", in.cfgPath, "-p", filepath.Join(in.dir, "haproxy.pid"))
	cmd.Dir = in.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a Ctrl-C to the lab does not reach haproxy before
	// the lab stops it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("haproxy: start %s: %w", cfg.Binary, err)
	}
	in.cmd = cmd
	in.exited = make(chan struct{})
	go func() {
		in.exitErr = cmd.Wait()
		close(in.exited)
	}()
	in.cfg.Backends = cfg.Backends // remember the chosen ports
	in.client, _ = hapi.NewClient(in.socket)
	in.client.Timeout = 2 * time.Second
	info, err := in.waitWorker(ctx, 0)
	if err == nil {
		err = in.waitMasterSignals(ctx)
	}
	if err != nil {
		in.kill()
		if strings.Contains(in.logTail(), "cannot bind") {
			return fmt.Errorf("haproxy: %w: %v", errBind, err)
		}
		return err
	}
	in.mu.Lock()
	in.info = info
	in.workers[info.Pid] = true
	in.mu.Unlock()
	in.cfg.Logger.Info("haproxy: started", "master", cmd.Process.Pid, "worker", info.Pid, "version", info.Version, "socket", in.socket, "frontend", in.Addr())
	return nil
}

// waitWorker polls the Runtime API until a worker other than oldPid answers.
func (in *Instance) waitWorker(ctx context.Context, oldPid int) (hapi.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		info, err := in.client.ShowInfo(ctx)
		if err == nil && info.Pid != oldPid {
			return info, nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("worker %d still answers", info.Pid)
		}
		select {
		case <-in.exited:
			return hapi.Info{}, fmt.Errorf("haproxy exited (%v); log %s:\n%s", in.exitErr, in.logPath, in.logTail())
		case <-ctx.Done():
			return hapi.Info{}, fmt.Errorf("haproxy: no new worker on %s within %s (%v); log %s:\n%s", in.socket, in.cfg.StartTimeout, last, in.logPath, in.logTail())
		case <-tick.C:
		}
	}
}

// waitMasterSignals waits until the master handles SIGUSR2. The master
// installs its signal handlers after the first worker is up; a SIGUSR2 sent
// before that is lost (seen with 2.6: Reload right after Start hung).
func (in *Instance) waitMasterSignals(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.StartTimeout)
	defer cancel()
	pid := in.cmd.Process.Pid
	const usr2 = uint64(1) << (uint(syscall.SIGUSR2) - 1)
	for {
		caught, blocked, err := signalMasks(pid)
		if err == nil && caught&usr2 != 0 && blocked&usr2 == 0 {
			return nil
		}
		select {
		case <-in.exited:
			return fmt.Errorf("haproxy exited (%v); log %s:\n%s", in.exitErr, in.logPath, in.logTail())
		case <-ctx.Done():
			return fmt.Errorf("haproxy master %d does not handle SIGUSR2 after %s", pid, in.cfg.StartTimeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// signalMasks reads a process's caught and blocked signal masks.
func signalMasks(pid int) (caught, blocked uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "SigCgt":
			caught, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		case "SigBlk":
			blocked, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, k, err)
		}
	}
	return caught, blocked, nil
}

// Reload does what a reload script should: it saves `show servers state`
// (every backend) to the server-state file, then makes the master re-read
// the configuration and start a new worker (SIGUSR2, what `systemctl reload
// haproxy` does in master-worker mode), and waits until the new worker
// answers on the Runtime API. The new worker loads the state file:
// server-template slots keep their address and state; every server added
// at runtime (`add server`) is gone.
func (in *Instance) Reload(ctx context.Context) error {
	in.mu.Lock()
	old := in.info.Pid
	stopped := in.stopped
	in.mu.Unlock()
	if stopped {
		return errors.New("haproxy: reload after stop")
	}
	if err := SaveServerState(ctx, in.client, in.state); err != nil {
		return fmt.Errorf("haproxy: reload: %w", err)
	}
	if err := in.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return fmt.Errorf("haproxy: reload: signal master %d: %w", in.cmd.Process.Pid, err)
	}
	info, err := in.waitWorker(ctx, old)
	if err == nil {
		err = in.waitMasterSignals(ctx)
	}
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	in.mu.Lock()
	in.info = info
	in.workers[info.Pid] = true
	in.mu.Unlock()
	in.cfg.Logger.Info("haproxy: reloaded", "master", in.cmd.Process.Pid, "old_worker", old, "worker", info.Pid)
	return nil
}

// SaveServerState writes `show servers state` (every backend) to path,
// through a temporary file and a rename so HAProxy never reads half a file:
// the line a reload script runs right before the reload
// (`echo "show servers state" | socat stdio SOCKET > FILE`).
func SaveServerState(ctx context.Context, c *hapi.Client, path string) error {
	answer, err := c.Raw(ctx, "show servers state")
	if err != nil {
		return fmt.Errorf("save server state: %w", err)
	}
	if !strings.HasPrefix(answer, "1\n") {
		return fmt.Errorf("save server state from %s: answer does not start with format version 1: %.80q", c, answer)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(answer), 0o644); err != nil {
		return fmt.Errorf("save server state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save server state: %w", err)
	}
	return nil
}

// ReloadMaster reloads an HAProxy that another process started (the lab's
// recorded master pid, executable, Runtime API socket and state file): it
// saves the server state to stateFile, sends SIGUSR2 to masterPID after
// checking that the pid still runs exe (pids are reused; proc.Alive) and
// that the master handles SIGUSR2, then waits until a new worker answers on
// socket (bounded by ctx, and 15 s when ctx has no deadline).
func ReloadMaster(ctx context.Context, masterPID int, exe, socket, stateFile string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	if !proc.Alive(masterPID, exe) {
		return fmt.Errorf("haproxy reload: pid %d does not run %s", masterPID, exe)
	}
	c, err := hapi.NewClient(socket)
	if err != nil {
		return fmt.Errorf("haproxy reload: %w", err)
	}
	c.Timeout = 2 * time.Second
	before, err := c.ShowInfo(ctx)
	if err != nil {
		return fmt.Errorf("haproxy reload: %w", err)
	}
	const usr2 = uint64(1) << (uint(syscall.SIGUSR2) - 1)
	if caught, blocked, err := signalMasks(masterPID); err != nil || caught&usr2 == 0 || blocked&usr2 != 0 {
		return fmt.Errorf("haproxy reload: master %d does not handle SIGUSR2 now (masks %x/%x, %v)", masterPID, caught, blocked, err)
	}
	if stateFile != "" {
		if err := SaveServerState(ctx, c, stateFile); err != nil {
			return fmt.Errorf("haproxy reload: %w", err)
		}
	}
	if err := syscall.Kill(masterPID, syscall.SIGUSR2); err != nil {
		return fmt.Errorf("haproxy reload: signal master %d: %w", masterPID, err)
	}
	for {
		info, err := c.ShowInfo(ctx)
		if err == nil && info.Pid != before.Pid {
			return nil
		}
		if !proc.Alive(masterPID, exe) {
			return fmt.Errorf("haproxy reload: master %d exited", masterPID)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("haproxy reload: no new worker on %s after SIGUSR2 to %d (old worker %d): %w", socket, masterPID, before.Pid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StateFile returns the server-state file Reload writes and HAProxy loads.
func (in *Instance) StateFile() string { return in.state }

// Binary returns the haproxy executable's resolved path.
func (in *Instance) Binary() string { return in.cfg.Binary }

// Stop terminates the master, which stops its workers, waits for all of them
// and removes the directory if Start created it. It is safe to call twice.
func (in *Instance) Stop() error {
	in.mu.Lock()
	if in.stopped {
		in.mu.Unlock()
		return nil
	}
	in.stopped = true
	workers := make([]int, 0, len(in.workers))
	for pid := range in.workers {
		workers = append(workers, pid)
	}
	in.mu.Unlock()
	var errs []error
	// SIGTERM: the master stops the workers at once (hard stop) and exits.
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(10 * time.Second):
		errs = append(errs, fmt.Errorf("haproxy master %d ignored SIGTERM for 10s; killed", in.cmd.Process.Pid))
		in.kill()
	}
	// Workers exit when their master does; wait for each pid we saw.
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range workers {
		for in.isOurProcess(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				errs = append(errs, fmt.Errorf("haproxy worker %d outlived its master; killed", pid))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if in.ownDir {
		if err := os.RemoveAll(in.dir); err != nil {
			errs = append(errs, err)
		}
	}
	in.cfg.Logger.Info("haproxy: stopped", "master", in.cmd.Process.Pid)
	return errors.Join(errs...)
}

// kill ends the master and the workers we know by SIGKILL and waits for the
// master.
func (in *Instance) kill() {
	_ = in.cmd.Process.Kill()
	<-in.exited
	in.mu.Lock()
	defer in.mu.Unlock()
	for pid := range in.workers {
		if in.isOurProcess(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// isOurProcess reports whether pid is alive and an haproxy run on our
// configuration (pids are reused; never signal a stranger).
func (in *Instance) isOurProcess(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if proc.Zombie(pid) {
		return false // dead; its parent has not reaped it yet
	}
	return bytes.Contains(cmdline, []byte(in.cfgPath))
}

// Pids returns the master's pid and the current worker's.
func (in *Instance) Pids() (master, worker int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cmd.Process.Pid, in.info.Pid
}

// Alive reports whether pid is one of this instance's processes and still
// running (for tests that check Stop).
func (in *Instance) Alive(pid int) bool { return in.isOurProcess(pid) }

// Socket returns the Runtime API's unix socket path.
func (in *Instance) Socket() string { return in.socket }

// AdminTLSAddr returns the mutual-TLS Runtime API's host:port, or "" when
// Config.AdminTLS was not set.
func (in *Instance) AdminTLSAddr() string { return in.tlsAddr }

// MetricsAddr returns the Prometheus exporter's host:port (its path is
// /metrics), or "" without Config.Metrics.
func (in *Instance) MetricsAddr() string { return in.metrics }

// AdminTLSAddrOn returns the mutual-TLS Runtime API's address on host (one
// of Config.AdminTLSHosts): AdminTLSAddr's port on that host, or "" when
// there is no such socket.
func (in *Instance) AdminTLSAddrOn(host string) string {
	if in.tlsAddr == "" {
		return ""
	}
	_, port, _ := net.SplitHostPort(in.tlsAddr)
	return net.JoinHostPort(host, port)
}

// Client returns a Runtime API client for this instance.
func (in *Instance) Client() *hapi.Client { return in.client }

// Addr returns the first backend's frontend address (host:port).
func (in *Instance) Addr() string { return in.cfg.Backends[0].Listen }

// FrontendAddr returns the frontend address of the named backend.
func (in *Instance) FrontendAddr(backend string) (string, error) {
	for _, b := range in.cfg.Backends {
		if b.Name == backend {
			return b.Listen, nil
		}
	}
	return "", fmt.Errorf("haproxy: no backend %q", backend)
}

// Backends returns the backends as configured, with their listen addresses.
func (in *Instance) Backends() []Backend { return append([]Backend(nil), in.cfg.Backends...) }

// Dir returns the directory holding the configuration, socket and log.
func (in *Instance) Dir() string { return in.dir }

// ConfigPath returns the generated configuration file.
func (in *Instance) ConfigPath() string { return in.cfgPath }

// LogPath returns the file receiving HAProxy's stdout and stderr.
func (in *Instance) LogPath() string { return in.logPath }

func (in *Instance) logTail() string { return proc.TailFile(in.logPath, 2048) }

// StopDir stops an HAProxy that Start ran with Config.Dir = dir, from its
// pid file, for `zerodrop lab down` after the process that started it died.
// It signals only a process whose command line names dir's configuration
// (pids are reused). A missing pid file or process is not an error.
func StopDir(dir string) error {
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	b, err := os.ReadFile(filepath.Join(dir, "haproxy.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("haproxy: pid file %s: %q is not a pid", filepath.Join(dir, "haproxy.pid"), strings.TrimSpace(string(b)))
	}
	ours := func() bool {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err == nil && bytes.Contains(cmdline, []byte(cfgPath))
	}
	if !ours() {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for ours() {
		if proc.Zombie(pid) {
			return nil // exited; its parent (gone or not ours) reaps it
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("haproxy master %d ignored SIGTERM for 10s; killed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
