package haproxy

// Connection reuse for TLS instances, in HAProxy's interactive ("prompt")
// mode. Over TLS a new connection per command costs a handshake (tens of
// milliseconds against a loaded HAProxy); a connection kept in prompt mode
// costs one round trip per command.
//
// HAProxy 2.6, once `prompt` is sent on a CLI session, keeps the session
// open and follows the answer of every command of a line (each
// ';'-separated one) with "\n> " where non-interactive mode prints "\n"
// and closes. A line of K commands therefore ends after exactly K such
// terminators; the answer is those K parts joined as non-interactive mode
// would print them, so Raw and Dump parse it unchanged. Answers never
// contain "\n> " (CSV, key: value lines, "# " headers, messages), and a
// connection is reused only when its previous answer ended exactly on its
// K-th terminator and nothing is left unread: any doubt closes it.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultIdleTimeout is how long an idle Runtime API connection is kept for
// the next command: well below HAProxy's `stats timeout` (10 s by default)
// and the `timeout client` of a TLS frontend, so that HAProxy never closes
// a connection the Client is about to use.
const DefaultIdleTimeout = 4 * time.Second

// maxIdle bounds the idle connections a Client keeps.
const maxIdle = 2

const promptEnd = "\n> "

// tlsKey identifies the TLS material a connection was made with: a rotated
// certificate or CA (new pointers) retires the connections made before.
type tlsKey struct {
	roots      *x509.CertPool
	cert       *tls.Certificate
	serverName string
}

func keyOf(cfg *tls.Config) tlsKey {
	k := tlsKey{roots: cfg.RootCAs, serverName: cfg.ServerName}
	if len(cfg.Certificates) > 0 {
		k.cert = &cfg.Certificates[0]
	}
	return k
}

type pooledConn struct {
	conn  net.Conn
	key   tlsKey
	timer *time.Timer // closes it when idle too long
}

type connPool struct {
	mu     sync.Mutex
	idle   []*pooledConn
	closed bool
}

// get returns an idle connection made with key, or nil. Connections made
// with another key are closed.
func (p *connPool) get(key tlsKey) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		pc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !pc.timer.Stop() {
			continue // the idle timer closed it
		}
		if pc.key != key {
			pc.conn.Close()
			continue
		}
		return pc.conn
	}
	return nil
}

// put keeps conn for the next command, or closes it.
func (p *connPool) put(conn net.Conn, key tlsKey, idle time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= maxIdle {
		conn.Close()
		return
	}
	pc := &pooledConn{conn: conn, key: key}
	pc.timer = time.AfterFunc(idle, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for i, x := range p.idle {
			if x == pc {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				break
			}
		}
		conn.Close()
	})
	p.idle = append(p.idle, pc)
}

func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, pc := range p.idle {
		pc.timer.Stop()
		pc.conn.Close()
	}
	p.idle = nil
}

// Close closes the Client's idle connections; later commands still work
// but open a connection each.
func (c *Client) Close() error {
	c.pool.close()
	return nil
}

// reusable reports whether conn, idle in the pool, is still fit for a
// command: HAProxy has neither closed it nor sent anything unasked (a TLS
// close_notify, a stray byte). It peeks at the socket without blocking.
func reusable(conn net.Conn) bool {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return false
	}
	sc, ok := tc.NetConn().(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	return peekIdle(raw)
}

// readOnly reports whether line may be sent again after a failure: only
// dumps (every command a "show"), whose repetition changes nothing.
func readOnly(line string) bool {
	for _, cmd := range strings.Split(line, ";") {
		cmd = strings.TrimSpace(cmd)
		if cmd != "set severity-output number" && !strings.HasPrefix(cmd, "show ") {
			return false
		}
	}
	return true
}

// errClosed is a prompt-mode read that met the end of the connection; the
// bytes read so far come with it.
type errClosed struct{ got string }

func (e *errClosed) Error() string { return "connection closed before the prompt" }

// exchangePooled is exchange for TLS instances: the line goes over an idle
// prompt-mode connection when there is one, else over a new one that is
// switched to prompt mode in the same write.
//
// After a reload the old worker keeps serving the connections it accepted
// (until hard-stop-after), so a reused connection is asked `show info` in
// the same line as the commands: one whose worker is stopping is closed. A
// read-only line carries the question first (one round trip) and is sent
// once more on a new connection if anything goes wrong. A state-changing
// line carries it last: its answer then vouches for the worker that ran
// every command of the line, including one that began stopping while the
// line was on its way (a question asked before the line, in a round trip
// of its own, left that gap and cost a round trip per line). When that
// worker is stopping the line went to a process that no longer counts, and
// is sent once more on a new connection, to the current worker, which never
// saw it; any other failure after it was sent is returned, never retried
// (the commands may have been applied).
func (c *Client) exchangePooled(ctx context.Context, line, what string, deadline time.Time) (string, error) {
	parts, err := c.exchangePooledParts(ctx, line, what, deadline)
	if err != nil {
		var ec *closedUnprompted
		if errors.As(err, &ec) {
			// Closed without the prompt: hand what came to the caller's
			// checks in non-interactive form, as exchange does.
			return strings.TrimPrefix(strings.ReplaceAll(ec.got, promptEnd, "\n"), "\n"), nil
		}
		return "", err
	}
	return join(parts), nil
}

// closedUnprompted is a new connection that HAProxy (or whatever answered)
// closed before the prompt of `prompt`: got is what came.
type closedUnprompted struct{ got string }

func (e *closedUnprompted) Error() string { return "connection closed before the prompt" }

// exchangePooledParts is exchangePooled returning the answer of each
// command of the line. A new connection closed before the prompts is a
// *closedUnprompted.
func (c *Client) exchangePooledParts(ctx context.Context, line, what string, deadline time.Time) ([]string, error) {
	cfg, err := c.tlsConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("haproxy %s: %q: %w", c, what, err)
	}
	key := keyOf(cfg)
	want := strings.Count(line, ";") + 1 // validCommand keeps ';' out of commands
	if conn := c.pool.get(key); conn != nil {
		parts, done, err := c.reuse(ctx, conn, line, what, want, deadline, key)
		if done {
			return parts, err
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			return nil, fmt.Errorf("haproxy %s: %q: %w", c, what, err)
		}
	}
	conn, err := c.dialTLS(ctx, cfg, deadline)
	if err != nil {
		return nil, fmt.Errorf("haproxy %s: %q: %w", c, what, err)
	}
	parts, err := c.promptLine(ctx, conn, line, what, deadline)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.pool.put(conn, key, c.idleTimeout())
	return parts, nil
}

// promptLine sends line over a new connection in prompt mode (`prompt` in
// the same write, after the TLS handshake if any) and returns the answer
// of each command of the line. A connection closed before the prompts is
// a *closedUnprompted; the caller closes conn on any error.
func (c *Client) promptLine(ctx context.Context, conn net.Conn, line, what string, deadline time.Time) ([]string, error) {
	if tc, ok := conn.(*tls.Conn); ok {
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
		conn.SetDeadline(deadline)
		err := tc.HandshakeContext(ctx)
		stop()
		if err != nil {
			return nil, fmt.Errorf("haproxy %s: %q: TLS handshake: %w", c, what, err)
		}
	}
	want := strings.Count(line, ";") + 1 // validCommand keeps ';' out of commands
	parts, err := c.roundTrip(ctx, conn, "prompt\n"+line+"\n", want+1, deadline)
	var ec *errClosed
	if errors.As(err, &ec) {
		return nil, &closedUnprompted{got: ec.got}
	}
	if err != nil {
		return nil, c.wrap(what, err)
	}
	if parts[0] != "" {
		return nil, c.notRuntimeAPI(what, strings.Join(parts, promptEnd))
	}
	return parts[1:], nil
}

// reuse sends line over an idle connection. done is false when the line
// was not sent, was read-only and failed, or went to a stopping worker:
// then conn is closed and the caller sends the line on a new connection.
func (c *Client) reuse(ctx context.Context, conn net.Conn, line, what string, want int, deadline time.Time, key tlsKey) (answers []string, done bool, err error) {
	if !reusable(conn) {
		conn.Close()
		return nil, false, errors.New("idle connection closed by HAProxy")
	}
	keep := false
	defer func() {
		if keep {
			c.pool.put(conn, key, c.idleTimeout())
		} else {
			conn.Close()
		}
	}()
	if readOnly(line) {
		parts, err := c.roundTrip(ctx, conn, "show info; "+line+"\n", want+1, deadline)
		if err != nil {
			return nil, false, err
		}
		if err := currentWorker(parts[0]); err != nil {
			return nil, false, err
		}
		keep = true
		return parts[1:], true, nil
	}
	parts, err := c.roundTrip(ctx, conn, line+"; show info\n", want+1, deadline)
	if err != nil {
		return nil, true, c.wrap(what, err)
	}
	if err := currentWorker(parts[want]); err != nil {
		if errors.Is(err, errStopping) {
			return nil, false, err // applied by a worker that no longer counts
		}
		return nil, true, c.wrap(what, err)
	}
	keep = true
	return parts[:want], true, nil
}

// errStopping: the connection's worker is stopping (an old worker after a
// reload).
var errStopping = errors.New("the connection's worker is stopping (reloaded)")

// currentWorker checks a `show info` answer: HAProxy's, from a worker
// that is not stopping (an old worker after a reload).
func currentWorker(info string) error {
	if !strings.HasPrefix(info, "Name: ") || !strings.Contains(info, "\nPid: ") {
		return fmt.Errorf("%w: show info in prompt mode: %q", ErrUnexpectedAnswer, truncate(info))
	}
	if strings.Contains(info, "\nStopping: 1\n") {
		return errStopping
	}
	return nil
}

func (c *Client) wrap(what string, err error) error {
	var ce *CommandError
	if errors.As(err, &ce) {
		ce.Endpoint, ce.Command = c.String(), what
		return ce
	}
	return fmt.Errorf("haproxy %s: %q: %w", c, what, err)
}

// join renders prompt-mode answers as non-interactive mode prints them.
func join(parts []string) string { return strings.Join(parts, "\n") + "\n" }

// roundTrip writes out and reads until the want-th prompt, which must end
// the bytes read. It returns the want answers; the caller closes conn on
// any error.
func (c *Client) roundTrip(ctx context.Context, conn net.Conn, out string, want int, deadline time.Time) ([]string, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	c.lines.Add(1)
	if _, err := io.WriteString(conn, out); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, 0, 4096)
	seen := 0 // terminators in buf
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, rerr := conn.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			from := max(0, len(buf)-len(promptEnd)+1)
			buf = buf[:len(buf)+n]
			seen += strings.Count(string(buf[from:]), promptEnd)
			if len(buf) > maxAnswer {
				return nil, fmt.Errorf("answer larger than %d bytes", maxAnswer)
			}
			if seen >= want && strings.HasSuffix(string(buf), promptEnd) {
				break
			}
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("read: %w", ctx.Err())
			}
			if rerr == io.EOF {
				return nil, &errClosed{got: string(buf)}
			}
			return nil, fmt.Errorf("read: %w", rerr)
		}
	}
	parts := strings.Split(string(buf), promptEnd)
	if len(parts) != want+1 || parts[want] != "" {
		return nil, &CommandError{Answer: truncate(string(buf)), Severity: -1,
			kind: fmt.Errorf("%w: %d prompt-mode answers for %d commands", ErrUnexpectedAnswer, len(parts)-1, want)}
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return parts[:want], nil
}

func (c *Client) idleTimeout() time.Duration {
	if c.IdleTimeout > 0 {
		return c.IdleTimeout
	}
	return DefaultIdleTimeout
}
