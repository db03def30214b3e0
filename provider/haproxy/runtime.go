// Package haproxy drives HAProxy through its Runtime API (the "stats socket")
// and implements zerodrop's load-balancer provider on top of it.
//
// The Runtime API is plain text: a client connects to the unix socket or TCP
// address of a `stats socket ... level admin` line, writes one line of
// commands and reads the answer until HAProxy closes the connection. HAProxy's
// own Go client (client-native) is not used: it is not served by this
// machine's module proxy, and the handful of commands a provider needs are
// easier to audit as plain text.
//
// On a unix socket or plain TCP the Client opens one connection per command
// (HAProxy's non-interactive mode). That costs a connect per command (tens
// of microseconds on a unix socket) and buys robustness: no session state,
// no prompt parsing, no half-read answer poisoning the next command, and a
// deadline per command. Over TLS a connection costs a handshake, so TLS
// connections are kept in HAProxy's prompt mode and reused (pool.go).
package haproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultTimeout bounds one Runtime API command (connect, write, read) when
// neither the Client nor the context sets a shorter deadline.
const DefaultTimeout = 5 * time.Second

// maxAnswer bounds how much of one answer is read; a `show stat` of a few
// thousand servers is a few megabytes.
const maxAnswer = 64 << 20

// Client sends commands to one HAProxy process's Runtime API. The zero value
// is not usable; create it with NewClient. A Client is safe for concurrent use.
type Client struct {
	network string // "unix" or "tcp"
	address string
	// Timeout bounds each command; DefaultTimeout when zero.
	Timeout time.Duration
	// breaker skips the instance after a timeout (breaker.go); nil: never.
	breaker *breaker
	// TLS, when set, makes every connection a TLS one (HAProxy: a `mode
	// tcp` frontend with `bind ... ssl crt ... ca-file ... verify required`
	// in front of the admin socket; 2.6 ignores `ssl` on a `stats socket`
	// line, see docs/haproxy.md). It returns the client certificate and the CAs that verify HAProxy, and
	// is called per command so that a rotated certificate is used
	// without a new Client. The name verified defaults to the address's
	// host; TLS 1.2 is the minimum. Sessions are not resumed; connections
	// are reused (pool.go) only while TLS returns the same certificate, CA
	// pool and server name, so a new CA or certificate applies to the next
	// command.
	TLS func(context.Context) (*tls.Config, error)
	// IdleTimeout is how long a TLS connection is kept idle for the next
	// command (pool.go); DefaultIdleTimeout when zero. Keep it below
	// HAProxy's `stats timeout` and the TLS frontend's `timeout client`.
	IdleTimeout time.Duration

	pool connPool // idle prompt-mode connections (TLS only)
	// lines counts the lines sent: Runtime API round trips.
	lines atomic.Int64
	// conns hands out the MaxConns connection slots (guarded), by lane
	// (lanes.go).
	conns connQueue
}

// MaxConns is how many commands one Client sends at once, each on a
// connection of its own (an idle pooled TLS connection counts as one);
// more wait for one of them to end (within their context), in lanes
// (lanes.go). HAProxy's stats socket accepts 10 sessions (`stats
// maxconn`), shared by every process that talks to the instance; beyond
// it a connection waits, unaccepted, in the socket's backlog. With the
// chart's defaults those are the reconcile leader (MaxConns, plus its
// event stream, `show events -w`, not counted here) and two serve
// replicas, whose drain-only reconcilers read and drain too: 3 + 1 +
// 2 x 3 = 10. 4 would make 13 (and 11 in the lab, whose bench observer
// holds a stream and a read), so the lanes, not more connections, keep
// drains and reads from waiting behind Registers. The controller's own
// concurrency (workers, the calls of a cycle side by side) must not turn
// into connections.
const MaxConns = 3

// acquireConn waits for one of the MaxConns command slots, in the lane
// ctx carries (lanes.go).
func (c *Client) acquireConn(ctx context.Context) (release func(), err error) {
	if err := c.conns.acquire(ctx, laneOf(ctx)); err != nil {
		return nil, err
	}
	return c.conns.release, nil
}

// NewClient returns a client for the Runtime API at addr: a unix socket path
// ("/run/haproxy/admin.sock" or "unix:/run/...") or a TCP address
// ("tcp:127.0.0.1:9999" or "127.0.0.1:9999").
func NewClient(addr string) (*Client, error) {
	switch {
	case addr == "":
		return nil, errors.New("haproxy runtime API address is empty")
	case strings.HasPrefix(addr, "unix:"):
		return &Client{network: "unix", address: strings.TrimPrefix(addr, "unix:")}, nil
	case strings.HasPrefix(addr, "tcp:"):
		addr = strings.TrimPrefix(addr, "tcp:")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("haproxy runtime API address %q: %w", addr, err)
		}
		return &Client{network: "tcp", address: addr}, nil
	case strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "."):
		return &Client{network: "unix", address: addr}, nil
	default:
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("haproxy runtime API address %q: neither a socket path nor host:port: %w", addr, err)
		}
		return &Client{network: "tcp", address: addr}, nil
	}
}

// Address returns the socket path or TCP address this client talks to.
func (c *Client) Address() string { return c.address }

// String names the endpoint, e.g. "unix:/tmp/x/admin.sock".
func (c *Client) String() string { return c.network + ":" + c.address }

// Sentinel errors that a CommandError matches with errors.Is, so callers can
// branch on HAProxy's answer without comparing its text.
var (
	// ErrNoSuchServer: the backend exists but has no server of that name.
	ErrNoSuchServer = errors.New("no such server")
	// ErrNoSuchBackend: no backend (proxy) of that name.
	ErrNoSuchBackend = errors.New("no such backend")
	// ErrServerExists: `add server` for a name already used in the backend.
	ErrServerExists = errors.New("server already exists")
	// ErrNotInMaintenance: `del server` on a server not in maintenance.
	ErrNotInMaintenance = errors.New("server not in maintenance")
	// ErrServerBusy: `del server` while the server still has connections.
	ErrServerBusy = errors.New("server still has connections")
	// ErrPermission: the socket's level is too low for the command.
	ErrPermission = errors.New("permission denied")
	// ErrUnknownCommand: HAProxy does not know the command (old version?).
	ErrUnknownCommand = errors.New("unknown command")
	// ErrUnexpectedAnswer: the answer does not have the shape the command
	// promises (HAProxy version mismatch, or a socket that is not HAProxy).
	ErrUnexpectedAnswer = errors.New("unexpected answer")
	// ErrNotRuntimeAPI: the peer answered, but not as HAProxy's Runtime API
	// does (every answer the Client asks for starts with the empty answer
	// of "set severity-output"): a wrong address, or a TLS socket spoken to
	// in plaintext. It matches ErrUnexpectedAnswer too.
	ErrNotRuntimeAPI = fmt.Errorf("%w: not an HAProxy Runtime API", ErrUnexpectedAnswer)
)

// CommandError is a command HAProxy refused or answered unexpectedly. It
// carries the command and HAProxy's answer verbatim.
type CommandError struct {
	Endpoint string // the socket, e.g. "unix:/run/haproxy/admin.sock"
	Command  string
	Answer   string
	// Severity is the syslog severity HAProxy attached to the answer
	// (3 = error), or -1 when it attached none.
	Severity int
	kind     error
}

func (e *CommandError) Error() string {
	if errors.Is(e.kind, ErrNotRuntimeAPI) {
		// Whatever answered is not HAProxy: its bytes are not reflected
		// into statuses and logs, beyond a short printable excerpt.
		if e.Answer == "" {
			return fmt.Sprintf("haproxy %s: %q: not an HAProxy Runtime API (closed without an answer; a TLS socket reached without TLS?)", e.Endpoint, e.Command)
		}
		return fmt.Sprintf("haproxy %s: %q: not an HAProxy Runtime API (answer begins %q)", e.Endpoint, e.Command, e.Answer)
	}
	answer := strings.TrimSpace(e.Answer)
	if len(answer) > 200 {
		answer = answer[:200] + "..."
	}
	if e.kind != nil && e.kind != ErrUnexpectedAnswer && !errors.Is(e.kind, ErrUnexpectedAnswer) {
		return fmt.Sprintf("haproxy %s: %q: %s", e.Endpoint, e.Command, answer)
	}
	if e.kind != nil {
		return fmt.Sprintf("haproxy %s: %q: %v; answer: %q", e.Endpoint, e.Command, e.kind, answer)
	}
	return fmt.Sprintf("haproxy %s: %q: %q", e.Endpoint, e.Command, answer)
}

// Unwrap returns the sentinel that classifies HAProxy's answer, if any.
func (e *CommandError) Unwrap() error { return e.kind }

// classify maps HAProxy's answer text to a sentinel error. The texts are
// those of HAProxy 2.6 (src/server.c, src/cli.c).
func classify(answer string) error {
	a := strings.ToLower(answer)
	switch {
	case strings.Contains(a, "no such server"):
		return ErrNoSuchServer
	case strings.Contains(a, "no such backend"), strings.Contains(a, "no such proxy"):
		return ErrNoSuchBackend
	case strings.Contains(a, "already exists a server"):
		return ErrServerExists
	case strings.Contains(a, "only servers in maintenance mode"):
		return ErrNotInMaintenance
	case strings.Contains(a, "still has connections"):
		return ErrServerBusy
	case strings.Contains(a, "permission denied"), strings.Contains(a, "require 'operator'"), strings.Contains(a, "require 'admin'"):
		return ErrPermission
	case strings.Contains(a, "unknown command"):
		return ErrUnknownCommand
	}
	return ErrUnexpectedAnswer
}

// validCommand rejects commands that would be split or misread by HAProxy's
// line protocol: ';' separates commands, '\' escapes, a newline ends the line.
func validCommand(cmd string) error {
	if strings.TrimSpace(cmd) == "" {
		return errors.New("empty runtime API command")
	}
	if i := strings.IndexAny(cmd, ";\\\n\r\x00"); i >= 0 {
		return fmt.Errorf("runtime API command %q: character %q at offset %d is not allowed", cmd, cmd[i], i)
	}
	return nil
}

// exchange sends one line and reads the whole answer, within the Client's
// timeout and the context's deadline; cancelling ctx aborts the read.
func (c *Client) exchange(ctx context.Context, line, what string) (string, error) {
	deadline := c.deadline(ctx)
	if c.TLS != nil && c.network == "tcp" {
		return c.exchangePooled(ctx, line, what, deadline)
	}
	conn, err := c.dial(ctx, deadline)
	if err != nil {
		return "", fmt.Errorf("haproxy %s: %q: %w", c, what, err)
	}
	defer conn.Close()
	// Expire the deadline when ctx is cancelled so a blocked read returns.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := conn.SetDeadline(deadline); err != nil {
		return "", fmt.Errorf("haproxy %s: %q: %w", c, what, err)
	}
	if tc, ok := conn.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			return "", fmt.Errorf("haproxy %s: %q: TLS handshake: %w", c, what, err)
		}
	}
	c.lines.Add(1)
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", fmt.Errorf("haproxy %s: %q: write: %w", c, what, err)
	}
	buf, err := io.ReadAll(io.LimitReader(conn, maxAnswer+1))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", fmt.Errorf("haproxy %s: %q: read: %w", c, what, err)
	}
	if len(buf) > maxAnswer {
		return "", fmt.Errorf("haproxy %s: %q: answer larger than %d bytes", c, what, maxAnswer)
	}
	return string(buf), nil
}

// deadline is the end of a command sent now: the Client's timeout, or the
// context's deadline when sooner.
func (c *Client) deadline(ctx context.Context) time.Time {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return deadline
}

// dial connects to the Runtime API, through TLS when c.TLS is set (the
// handshake happens on first use, under the command's deadline). The TLS
// configuration is loaded first: a broken one never opens a connection.
func (c *Client) dial(ctx context.Context, deadline time.Time) (net.Conn, error) {
	if c.TLS == nil {
		d := net.Dialer{Deadline: deadline}
		return d.DialContext(ctx, c.network, c.address)
	}
	cfg, err := c.tlsConfig(ctx)
	if err != nil {
		return nil, err
	}
	return c.dialTLS(ctx, cfg, deadline)
}

// tlsConfig loads the TLS configuration for one connection.
func (c *Client) tlsConfig(ctx context.Context) (*tls.Config, error) {
	base, err := c.TLS(ctx)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	if base == nil {
		return nil, errors.New("TLS: no configuration")
	}
	cfg := base.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(c.address)
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.ClientSessionCache = nil
	return cfg, nil
}

// dialTLS connects and wraps the connection in TLS with cfg; the handshake
// happens on first use.
func (c *Client) dialTLS(ctx context.Context, cfg *tls.Config, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		return nil, err
	}
	return tls.Client(conn, cfg), nil
}

// severityPrefix makes HAProxy prefix messages with their syslog severity
// ("[3]: No such server."), which tells errors from informational answers
// without a list of every error text. Its own answer is one empty line.
const severityPrefix = "set severity-output number; "

// Raw sends one command and returns HAProxy's answer with its severity prefix
// removed. It fails on transport errors and on answers HAProxy marked as
// errors (severity <= 4) or as unknown commands; callers check the answer's
// shape.
func (c *Client) Raw(ctx context.Context, cmd string) (string, error) {
	if err := validCommand(cmd); err != nil {
		return "", err
	}
	raw, err := c.call(ctx, severityPrefix+cmd, cmd)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(raw, "\n") {
		return "", c.notRuntimeAPI(cmd, raw)
	}
	return c.checkAnswer(cmd, strings.TrimPrefix(raw, "\n"))
}

// notRuntimeAPI is the error for an answer without the empty line that
// "set severity-output" always prints first. It keeps at most a short
// excerpt of the answer, with anything but printable ASCII replaced by '.'.
func (c *Client) notRuntimeAPI(cmd, raw string) error {
	const max = 24
	b := []byte(raw)
	if len(b) > max {
		b = b[:max]
	}
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e {
			b[i] = '.'
		}
	}
	return &CommandError{Endpoint: c.String(), Command: cmd, Answer: string(b), Severity: -1, kind: ErrNotRuntimeAPI}
}

func (c *Client) checkAnswer(cmd, raw string) (string, error) {
	answer, sev := splitSeverity(raw)
	if sev >= 0 && sev <= 4 {
		return answer, &CommandError{Endpoint: c.String(), Command: cmd, Answer: answer, Severity: sev, kind: classify(answer)}
	}
	if strings.HasPrefix(answer, "Unknown command") {
		return answer, &CommandError{Endpoint: c.String(), Command: cmd, Answer: answer, Severity: sev, kind: ErrUnknownCommand}
	}
	return answer, nil
}

// Dump sends several dump commands (show ...) on one connection and returns
// their answers in order. HAProxy ends every dump with an empty line and
// never prints one inside a dump, which is what splits the answers; action
// commands do not keep that promise and must go through Raw.
func (c *Client) Dump(ctx context.Context, cmds ...string) ([]string, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	for _, cmd := range cmds {
		if err := validCommand(cmd); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(cmd, "show ") {
			return nil, fmt.Errorf("runtime API dump %q: only show commands can be batched", cmd)
		}
	}
	what := strings.Join(cmds, "; ")
	raw, err := c.call(ctx, severityPrefix+what, what)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(raw, "\n") {
		return nil, c.notRuntimeAPI(what, raw)
	}
	parts, err := splitDump(raw, len(cmds))
	if err != nil {
		return nil, &CommandError{Endpoint: c.String(), Command: what, Answer: truncate(raw), Severity: -1, kind: err}
	}
	out := make([]string, len(cmds))
	for i, cmd := range cmds {
		answer, err := c.checkAnswer(cmd, parts[i])
		if err != nil {
			return nil, err
		}
		out[i] = answer
	}
	return out, nil
}

// splitDump splits the answer to n batched dump commands (after the empty
// line of "set severity-output") into n answers, each ending with a
// newline. An answer cut anywhere (a connection reset, a crash of the
// worker) has fewer than n empty-line ends and is an error wrapping
// ErrUnexpectedAnswer: a partial reading is never taken for a whole one.
func splitDump(raw string, n int) ([]string, error) {
	parts := strings.Split(strings.TrimPrefix(raw, "\n"), "\n\n")
	if len(parts) != n+1 || parts[n] != "" {
		return nil, fmt.Errorf("%w: %d answers for %d commands", ErrUnexpectedAnswer, len(parts)-1, n)
	}
	for i := range parts[:n] {
		// Restore the newline the split removed: parsers see whole lines.
		parts[i] += "\n"
	}
	return parts[:n], nil
}

// splitSeverity strips the empty answer of "set severity-output" and the
// "[N]: " prefix of the command's answer; sev is -1 without a prefix.
func splitSeverity(raw string) (answer string, sev int) {
	raw = strings.TrimPrefix(raw, "\n")
	if len(raw) >= 5 && raw[0] == '[' && raw[2] == ']' && raw[3] == ':' && raw[4] == ' ' && raw[1] >= '0' && raw[1] <= '7' {
		return raw[5:], int(raw[1] - '0')
	}
	return raw, -1
}

// validName accepts the characters HAProxy allows in proxy and server names
// (letters, digits, '-', '_', '.', ':').
func validName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", what)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' || ch == ':' {
			continue
		}
		return fmt.Errorf("%s name %q: character %q at offset %d is not allowed (letters, digits, '-', '_', '.', ':')", what, name, ch, i)
	}
	return nil
}

func serverRef(backend, server string) (string, error) {
	if err := validName("backend", backend); err != nil {
		return "", err
	}
	if err := validName("server", server); err != nil {
		return "", err
	}
	return backend + "/" + server, nil
}

// ServerOptions are the `add server` keywords zerodrop sets. Zero values
// leave HAProxy's defaults; note that `add server` does not inherit the
// backend's default-server line, so checks must be set here.
type ServerOptions struct {
	// Check enables health checks (they still need EnableHealth).
	Check bool
	// Inter, FastInter and DownInter are the check intervals (HAProxy's
	// inter, fastinter, downinter), rounded to milliseconds.
	Inter, FastInter, DownInter time.Duration
	// Rise and Fall are the consecutive passes/failures that flip the state.
	Rise, Fall int
	// Weight is the server weight (0..256); 0 leaves HAProxy's default (1).
	Weight int
	// Extra holds further keywords verbatim, e.g. {"maxconn", "100"} or
	// {"check-port", "8081"}; each token is checked for the line protocol.
	Extra []string
}

func ms(d time.Duration) string {
	v := d.Milliseconds()
	if v < 1 {
		v = 1
	}
	return strconv.FormatInt(v, 10)
}

// args renders the options as `add server` keywords.
func (o ServerOptions) args() ([]string, error) {
	var a []string
	if o.Check {
		a = append(a, "check")
	}
	if o.Inter > 0 {
		a = append(a, "inter", ms(o.Inter))
	}
	if o.FastInter > 0 {
		a = append(a, "fastinter", ms(o.FastInter))
	}
	if o.DownInter > 0 {
		a = append(a, "downinter", ms(o.DownInter))
	}
	if o.Rise < 0 || o.Fall < 0 || o.Weight < 0 || o.Weight > 256 {
		return nil, fmt.Errorf("server options: rise %d, fall %d, weight %d: out of range", o.Rise, o.Fall, o.Weight)
	}
	if o.Rise > 0 {
		a = append(a, "rise", strconv.Itoa(o.Rise))
	}
	if o.Fall > 0 {
		a = append(a, "fall", strconv.Itoa(o.Fall))
	}
	if o.Weight > 0 {
		a = append(a, "weight", strconv.Itoa(o.Weight))
	}
	for _, t := range o.Extra {
		if t == "" || strings.ContainsAny(t, " \t;\\\n\r\x00") {
			return nil, fmt.Errorf("server option %q: empty or contains whitespace, ';' or '\\'", t)
		}
		a = append(a, t)
	}
	return a, nil
}

// AddServer runs `add server BACKEND/SERVER ADDR options...`. HAProxy creates
// a dynamic server in maintenance, with health checks (if any) disabled.
// The backend must use a dynamic balance algorithm (roundrobin, leastconn,
// first, random).
func (c *Client) AddServer(ctx context.Context, backend, server, addr string, opts ServerOptions) error {
	a, err := addServerAction(backend, server, addr, opts)
	if err != nil {
		return err
	}
	return c.run(ctx, a)
}

func addServerAction(backend, server, addr string, opts ServerOptions) (action, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return action{}, err
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return action{}, fmt.Errorf("add server %s: address %q: %w", ref, addr, err)
	}
	args, err := opts.args()
	if err != nil {
		return action{}, fmt.Errorf("add server %s: %w", ref, err)
	}
	cmd := strings.Join(append([]string{"add server", ref, addr}, args...), " ")
	return action{cmd, expectAnswer("New server registered.")}, nil
}

// EnableHealth runs `enable health BACKEND/SERVER`: HAProxy starts sending
// the server health checks.
func (c *Client) EnableHealth(ctx context.Context, backend, server string) error {
	a, err := enableHealthAction(backend, server)
	if err != nil {
		return err
	}
	return c.run(ctx, a)
}

func enableHealthAction(backend, server string) (action, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return action{}, err
	}
	return action{"enable health " + ref, expectAnswer("")}, nil
}

// AdminState is a server's administrative state as `set server ... state`
// sets it.
type AdminState string

// Administrative states.
const (
	// StateReady: normal load balancing.
	StateReady AdminState = "ready"
	// StateDrain: no new balanced traffic; existing connections continue and
	// health checks still run.
	StateDrain AdminState = "drain"
	// StateMaint: no traffic at all.
	StateMaint AdminState = "maint"
)

// SetServerState runs `set server BACKEND/SERVER state ready|drain|maint`.
func (c *Client) SetServerState(ctx context.Context, backend, server string, state AdminState) error {
	a, err := serverStateAction(backend, server, state)
	if err != nil {
		return err
	}
	return c.run(ctx, a)
}

func serverStateAction(backend, server string, state AdminState) (action, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return action{}, err
	}
	switch state {
	case StateReady, StateDrain, StateMaint:
	default:
		return action{}, fmt.Errorf("set server %s state: %q is not ready, drain or maint", ref, state)
	}
	return action{"set server " + ref + " state " + string(state), expectAnswer("")}, nil
}

// OperState is the health a `set server ... health` forces.
type OperState string

// Forced health states.
const (
	HealthUp       OperState = "up"
	HealthStopping OperState = "stopping"
	HealthDown     OperState = "down"
)

// SetServerHealth runs `set server BACKEND/SERVER health up|stopping|down`.
// "down" resets the check counter to zero, so the server needs `rise`
// consecutive passed checks before HAProxy marks it UP again.
func (c *Client) SetServerHealth(ctx context.Context, backend, server string, h OperState) error {
	a, err := serverHealthAction(backend, server, h)
	if err != nil {
		return err
	}
	return c.run(ctx, a)
}

func serverHealthAction(backend, server string, h OperState) (action, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return action{}, err
	}
	switch h {
	case HealthUp, HealthStopping, HealthDown:
	default:
		return action{}, fmt.Errorf("set server %s health: %q is not up, stopping or down", ref, h)
	}
	return action{"set server " + ref + " health " + string(h), expectAnswer("")}, nil
}

// SetServerAddr runs `set server BACKEND/SERVER addr IP port PORT`: the
// server's address changes at once (open connections stay where they are).
// HAProxy 2.6 answers at severity 4 (warning) even on success, "IP changed
// from 'A' to 'B', port changed from 'P' to 'Q' by 'stats socket command'",
// and wraps a port above 65535 silently, so the port is checked here.
func (c *Client) SetServerAddr(ctx context.Context, backend, server, ip string, port int) error {
	a, err := serverAddrAction(backend, server, ip, port)
	if err != nil {
		return err
	}
	return c.run(ctx, a)
}

func serverAddrAction(backend, server, ip string, port int) (action, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return action{}, err
	}
	if net.ParseIP(ip) == nil {
		return action{}, fmt.Errorf("set server %s addr: %q is not an IP address", ref, ip)
	}
	if port < 1 || port > 65535 {
		return action{}, fmt.Errorf("set server %s addr: port %d out of range", ref, port)
	}
	return action{fmt.Sprintf("set server %s addr %s port %d", ref, ip, port), addrChanged}, nil
}

// addrChanged checks the answer of `set server ... addr`, a warning on
// success.
func addrChanged(c *Client, cmd, raw string) error {
	answer, sev := splitSeverity(raw)
	a := strings.TrimSpace(answer)
	if sev >= 0 && sev <= 3 || !(strings.Contains(a, "changed") || strings.Contains(a, "no need to change")) {
		return &CommandError{Endpoint: c.String(), Command: cmd, Answer: answer, Severity: sev, kind: classify(answer)}
	}
	return nil
}

// SetServerCheckPort runs `set server BACKEND/SERVER check-port PORT`: health
// checks go to that port instead of the server's.
func (c *Client) SetServerCheckPort(ctx context.Context, backend, server string, port int) error {
	a, err := checkPortAction(backend, server, port)
	if err != nil {
		return err
	}
	return c.run(ctx, a)
}

func checkPortAction(backend, server string, port int) (action, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return action{}, err
	}
	if port < 1 || port > 65535 {
		return action{}, fmt.Errorf("set server %s check-port: port %d out of range", ref, port)
	}
	return action{fmt.Sprintf("set server %s check-port %d", ref, port), expectAnswer("", "health check port updated.")}, nil
}

// DelServer runs `del server BACKEND/SERVER`. HAProxy refuses unless the
// server is in maintenance (ErrNotInMaintenance) and has no connection left,
// active or idle, and no queue (ErrServerBusy): retry later.
func (c *Client) DelServer(ctx context.Context, backend, server string) error {
	ref, err := serverRef(backend, server)
	if err != nil {
		return err
	}
	return c.run(ctx, action{"del server " + ref, expectAnswer("Server deleted.")})
}

// ShowStat runs `show stat` for one backend (all proxies when backend is
// empty) and returns every row: frontends, backends and servers.
func (c *Client) ShowStat(ctx context.Context, backend string) ([]Stat, error) {
	cmd := "show stat"
	if backend != "" {
		if err := validName("backend", backend); err != nil {
			return nil, err
		}
		// -1 types (all), -1 servers: the backend row is needed to tell an
		// empty backend from a missing one.
		cmd = "show stat " + backend + " -1 -1"
	}
	answer, err := c.Raw(ctx, cmd)
	if err != nil {
		return nil, err
	}
	rows, err := ParseStat([]byte(answer))
	if err != nil {
		return nil, &CommandError{Endpoint: c.String(), Command: cmd, Answer: truncate(answer), Severity: -1, kind: fmt.Errorf("%w: %w", ErrUnexpectedAnswer, err)}
	}
	return rows, nil
}

// ShowServerStat runs `show stat BACKEND 4 ID`: the `show stat` row of the
// one server with that numeric id (srv_id), a constant size whatever the
// size of the backend. found is false when the backend has no such server.
func (c *Client) ShowServerStat(ctx context.Context, backend string, id int) (st Stat, found bool, err error) {
	if id <= 0 {
		return Stat{}, false, fmt.Errorf("show stat %s: server id %d is not positive", backend, id)
	}
	if err := validName("backend", backend); err != nil {
		return Stat{}, false, err
	}
	cmd := fmt.Sprintf("show stat %s 4 %d", backend, id)
	answer, err := c.Raw(ctx, cmd)
	if err != nil {
		return Stat{}, false, err
	}
	rows, err := ParseStat([]byte(answer))
	if err != nil {
		return Stat{}, false, &CommandError{Endpoint: c.String(), Command: cmd, Answer: truncate(answer), Severity: -1, kind: fmt.Errorf("%w: %w", ErrUnexpectedAnswer, err)}
	}
	for _, r := range rows {
		if r.Type == TypeServer && r.ServerID == id {
			return r, true, nil
		}
	}
	return Stat{}, false, nil
}

// ShowServersState runs `show servers state [BACKEND]`.
func (c *Client) ShowServersState(ctx context.Context, backend string) ([]ServerState, error) {
	cmd := "show servers state"
	if backend != "" {
		if err := validName("backend", backend); err != nil {
			return nil, err
		}
		cmd += " " + backend
	}
	answer, err := c.Raw(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(answer, "Can't find backend") {
		return nil, &CommandError{Endpoint: c.String(), Command: cmd, Answer: answer, Severity: -1, kind: ErrNoSuchBackend}
	}
	states, err := ParseServersState([]byte(answer))
	if err != nil {
		return nil, &CommandError{Endpoint: c.String(), Command: cmd, Answer: truncate(answer), Severity: -1, kind: fmt.Errorf("%w: %w", ErrUnexpectedAnswer, err)}
	}
	return states, nil
}

// ShowInfo runs `show info`.
func (c *Client) ShowInfo(ctx context.Context) (Info, error) {
	answer, err := c.Raw(ctx, "show info")
	if err != nil {
		return Info{}, err
	}
	info, err := ParseInfo([]byte(answer))
	if err != nil {
		return Info{}, &CommandError{Endpoint: c.String(), Command: "show info", Answer: truncate(answer), Severity: -1, kind: fmt.Errorf("%w: %w", ErrUnexpectedAnswer, err)}
	}
	return info, nil
}

// ShowBackends runs `show backend` and returns the backend names.
func (c *Client) ShowBackends(ctx context.Context) ([]string, error) {
	answer, err := c.Raw(ctx, "show backend")
	if err != nil {
		return nil, err
	}
	names, err := ParseBackends([]byte(answer))
	if err != nil {
		return nil, &CommandError{Endpoint: c.String(), Command: "show backend", Answer: truncate(answer), Severity: -1, kind: fmt.Errorf("%w: %w", ErrUnexpectedAnswer, err)}
	}
	return names, nil
}

func truncate(s string) string {
	if len(s) > 512 {
		return s[:512] + "..."
	}
	return s
}

// firstLine returns the first line of b without its newline.
func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// Snapshot is one backend's state on one HAProxy process, read with a single
// Runtime API call (`show info; show servers state B; show stat B -1 -1`).
type Snapshot struct {
	Info Info
	// Servers is `show servers state`: administrative flags, check result.
	Servers []ServerState
	// Stats is `show stat` for the backend: its BACKEND row and one row per
	// server (status, check status, sessions, lbtot).
	Stats []Stat
}

// Snapshot reads the process info and one backend's servers in one call.
func (c *Client) Snapshot(ctx context.Context, backend string) (Snapshot, error) {
	if err := validName("backend", backend); err != nil {
		return Snapshot{}, err
	}
	cmds := []string{"show info", "show servers state " + backend, "show stat " + backend + " -1 -1"}
	answers, err := c.Dump(ctx, cmds...)
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && strings.HasPrefix(ce.Answer, "Can't find backend") {
			ce.kind = ErrNoSuchBackend
		}
		return Snapshot{}, err
	}
	var snap Snapshot
	if snap.Info, err = ParseInfo([]byte(answers[0])); err != nil {
		return Snapshot{}, &CommandError{Endpoint: c.String(), Command: cmds[0], Answer: truncate(answers[0]), Severity: -1, kind: fmt.Errorf("%w: %w", ErrUnexpectedAnswer, err)}
	}
	if strings.HasPrefix(answers[1], "Can't find backend") {
		return Snapshot{}, &CommandError{Endpoint: c.String(), Command: cmds[1], Answer: answers[1], Severity: -1, kind: ErrNoSuchBackend}
	}
	if snap.Servers, err = ParseServersState([]byte(answers[1])); err != nil {
		return Snapshot{}, &CommandError{Endpoint: c.String(), Command: cmds[1], Answer: truncate(answers[1]), Severity: -1, kind: fmt.Errorf("%w: %w", ErrUnexpectedAnswer, err)}
	}
	if snap.Stats, err = ParseStat([]byte(answers[2])); err != nil {
		return Snapshot{}, &CommandError{Endpoint: c.String(), Command: cmds[2], Answer: truncate(answers[2]), Severity: -1, kind: fmt.Errorf("%w: %w", ErrUnexpectedAnswer, err)}
	}
	return snap, nil
}
