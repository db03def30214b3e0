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
// command: HAProxy has neither closed it nor sent anything unasked.
func reusable(conn net.Conn) bool {
	if err := conn.SetReadDeadline(time.Now()); err != nil {
		return false
	}
	var b [1]byte
	n, err := conn.Read(b[:])
	var ne net.Error
	return n == 0 && errors.As(err, &ne) && ne.Timeout()
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

// exchangePooled is exchange for TLS instances: the line goes over an idle
// prompt-mode connection when there is one, else over a new one that is
// switched to prompt mode in the same write. A read-only line that fails on
// a reused connection is sent once more on a new one; any other failure is
// returned (a state-changing command may have been applied).
func (c *Client) exchangePooled(ctx context.Context, line, what string, deadline time.Time) (string, error) {
	cfg, err := c.tlsConfig(ctx)
	if err != nil {
		return "", fmt.Errorf("haproxy %s: %q: %w", c, what, err)
	}
	key := keyOf(cfg)
	if conn := c.pool.get(key); conn != nil {
		if reusable(conn) {
			answer, err := c.promptRoundTrip(ctx, conn, false, line, what, deadline, key)
			if err == nil || !readOnly(line) || ctx.Err() != nil || time.Now().After(deadline) {
				return answer, err
			}
		} else {
			conn.Close()
		}
	}
	conn, err := c.dialTLS(ctx, cfg, deadline)
	if err != nil {
		return "", fmt.Errorf("haproxy %s: %q: %w", c, what, err)
	}
	return c.promptRoundTrip(ctx, conn, true, line, what, deadline, key)
}

// promptRoundTrip writes line (preceded by "prompt" on a fresh connection)
// and reads its answer up to the last terminator. conn goes back to the
// pool only after a clean answer; it is closed on every error.
func (c *Client) promptRoundTrip(ctx context.Context, conn net.Conn, fresh bool, line, what string, deadline time.Time, key tlsKey) (answer string, err error) {
	keep := false
	defer func() {
		if keep {
			c.pool.put(conn, key, c.idleTimeout())
		} else {
			conn.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := conn.SetDeadline(deadline); err != nil {
		return "", fmt.Errorf("haproxy %s: %q: %w", c, what, err)
	}
	if tc, ok := conn.(*tls.Conn); ok && fresh {
		if err := tc.HandshakeContext(ctx); err != nil {
			return "", fmt.Errorf("haproxy %s: %q: TLS handshake: %w", c, what, err)
		}
	}
	want := strings.Count(line, ";") + 1 // validCommand keeps ';' out of commands
	out := line + "\n"
	if fresh {
		out = "prompt\n" + out
		want++
	}
	if _, err := io.WriteString(conn, out); err != nil {
		return "", fmt.Errorf("haproxy %s: %q: write: %w", c, what, err)
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
				return "", fmt.Errorf("haproxy %s: %q: answer larger than %d bytes", c, what, maxAnswer)
			}
			if seen >= want && strings.HasSuffix(string(buf[len(buf)-len(promptEnd):]), promptEnd) {
				break
			}
		}
		if rerr != nil {
			if ctx.Err() != nil {
				rerr = ctx.Err()
			}
			if rerr == io.EOF && !fresh {
				rerr = io.ErrUnexpectedEOF
			}
			if rerr == io.EOF {
				// HAProxy (or what answered) closed without the prompt:
				// hand the bytes to the caller's checks, as exchange does.
				return string(buf), nil
			}
			return "", fmt.Errorf("haproxy %s: %q: read: %w", c, what, rerr)
		}
	}
	parts := strings.Split(string(buf), promptEnd)
	if len(parts) != want+1 || parts[want] != "" {
		return "", &CommandError{Endpoint: c.String(), Command: what, Answer: truncate(string(buf)), Severity: -1,
			kind: fmt.Errorf("%w: %d prompt-mode answers for %d commands", ErrUnexpectedAnswer, len(parts)-1, want)}
	}
	if fresh {
		if parts[0] != "" {
			return "", c.notRuntimeAPI(what, string(buf))
		}
		parts = parts[1:]
	}
	parts = parts[:len(parts)-1]
	if err := conn.SetDeadline(time.Time{}); err == nil {
		keep = true
	}
	return strings.Join(parts, "\n") + "\n", nil
}

func (c *Client) idleTimeout() time.Duration {
	if c.IdleTimeout > 0 {
		return c.IdleTimeout
	}
	return DefaultIdleTimeout
}
