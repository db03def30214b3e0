package haproxy

// Batches: several state-changing commands on one Runtime API line.
//
// HAProxy 2.6 runs the ';'-separated commands of a line one after the
// other, and runs every one of them whatever the previous ones answered
// (checked against the real 2.6: `set server b/nosuch state drain` between
// two good commands fails alone). So a batch holds only commands whose
// every subset leaves the server safe: a caller puts a command that must
// not run after a failure (`set server ... state ready` after `health
// down`) in the next batch, sent once this one's answers are all good.
// The line is read in prompt mode, which ends each command's answer with
// "\n> ": each answer is checked on its own, whatever its text.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// action is one state-changing command and the check of its answer (the
// answer without the empty one of "set severity-output" before it).
type action struct {
	cmd   string
	check func(c *Client, cmd, answer string) error
}

// expectAnswer accepts the answers HAProxy prints on success ("" for the
// silent commands).
func expectAnswer(ok ...string) func(c *Client, cmd, answer string) error {
	return func(c *Client, cmd, raw string) error {
		answer, err := c.checkAnswer(cmd, raw)
		if err != nil {
			return err
		}
		got := strings.TrimSpace(answer)
		for _, want := range ok {
			if got == want {
				return nil
			}
		}
		return &CommandError{Endpoint: c.String(), Command: cmd, Answer: answer, Severity: -1, kind: classify(answer)}
	}
}

// run sends one action on its own line (non-interactive mode on a unix
// socket or plain TCP).
func (c *Client) run(ctx context.Context, a action) error {
	if err := validCommand(a.cmd); err != nil {
		return err
	}
	raw, err := c.call(ctx, severityPrefix+a.cmd, a.cmd)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(raw, "\n") {
		return c.notRuntimeAPI(a.cmd, raw)
	}
	return a.check(c, a.cmd, strings.TrimPrefix(raw, "\n"))
}

// Batch collects state-changing commands for one Runtime API line (see
// Client.Run). The zero value is an empty batch; an invalid argument is
// kept and returned by Run, which then sends nothing.
type Batch struct {
	acts []action
	err  error
}

func (b *Batch) add(a action, err error) {
	if err != nil {
		if b.err == nil {
			b.err = err
		}
		return
	}
	b.acts = append(b.acts, a)
}

// Len is the number of commands in the batch.
func (b *Batch) Len() int { return len(b.acts) }

// AddServer adds `add server` (see Client.AddServer).
func (b *Batch) AddServer(backend, server, addr string, opts ServerOptions) {
	b.add(addServerAction(backend, server, addr, opts))
}

// EnableHealth adds `enable health` (see Client.EnableHealth).
func (b *Batch) EnableHealth(backend, server string) { b.add(enableHealthAction(backend, server)) }

// SetServerState adds `set server ... state` (see Client.SetServerState).
func (b *Batch) SetServerState(backend, server string, state AdminState) {
	b.add(serverStateAction(backend, server, state))
}

// SetServerHealth adds `set server ... health` (see Client.SetServerHealth).
func (b *Batch) SetServerHealth(backend, server string, h OperState) {
	b.add(serverHealthAction(backend, server, h))
}

// SetServerAddr adds `set server ... addr` (see Client.SetServerAddr).
func (b *Batch) SetServerAddr(backend, server, ip string, port int) {
	b.add(serverAddrAction(backend, server, ip, port))
}

// SetServerCheckPort adds `set server ... check-port` (see
// Client.SetServerCheckPort).
func (b *Batch) SetServerCheckPort(backend, server string, port int) {
	b.add(checkPortAction(backend, server, port))
}

// Run sends the batch's commands on one line, in order, and checks each
// answer. ok is how many commands, from the first, HAProxy accepted before
// the first it refused; err joins the refusals (HAProxy ran the commands
// after a refused one too). On a transport failure ok is 0 and the
// commands may or may not have run. A batch of one command costs what the
// Client's single-command method does.
func (c *Client) Run(ctx context.Context, b *Batch) (ok int, err error) {
	if b.err != nil {
		return 0, b.err
	}
	switch len(b.acts) {
	case 0:
		return 0, nil
	case 1:
		if err := c.run(ctx, b.acts[0]); err != nil {
			return 0, err
		}
		return 1, nil
	}
	cmds := make([]string, len(b.acts))
	for i, a := range b.acts {
		if err := validCommand(a.cmd); err != nil {
			return 0, err
		}
		cmds[i] = a.cmd
	}
	what := strings.Join(cmds, "; ")
	parts, err := c.callParts(ctx, severityPrefix+what, what)
	if err != nil {
		return 0, err
	}
	if len(parts) != len(cmds)+1 || parts[0] != "" {
		return 0, c.notRuntimeAPI(what, strings.Join(parts, promptEnd))
	}
	ok = -1
	var errs []error
	for i, a := range b.acts {
		if err := a.check(c, a.cmd, parts[i+1]); err != nil {
			errs = append(errs, err)
			if ok < 0 {
				ok = i
			}
		}
	}
	if ok < 0 {
		ok = len(b.acts)
	}
	return ok, errors.Join(errs...)
}

// callParts is exchangeParts behind the Client's circuit breaker.
func (c *Client) callParts(ctx context.Context, line, what string) ([]string, error) {
	var parts []string
	err := c.guarded(ctx, what, func() (err error) {
		parts, err = c.exchangeParts(ctx, line, what)
		return err
	})
	return parts, err
}

// exchangeParts sends one line in prompt mode and returns the answer of
// each of its commands: over a pooled connection for a TLS instance
// (pool.go), else over a connection of its own, closed after.
func (c *Client) exchangeParts(ctx context.Context, line, what string) ([]string, error) {
	deadline := c.deadline(ctx)
	var parts []string
	var err error
	if c.TLS != nil && c.network == "tcp" {
		parts, err = c.exchangePooledParts(ctx, line, what, deadline)
	} else {
		var conn net.Conn
		if conn, err = c.dial(ctx, deadline); err != nil {
			return nil, fmt.Errorf("haproxy %s: %q: %w", c, what, err)
		}
		defer conn.Close()
		parts, err = c.promptLine(ctx, conn, line, what, deadline)
	}
	var ec *closedUnprompted
	if errors.As(err, &ec) {
		return nil, c.notRuntimeAPI(what, ec.got)
	}
	return parts, err
}
