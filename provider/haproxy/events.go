package haproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// Verdict events (provider.Watcher) come from a `ring` that the pools'
// backends log to, read with the Runtime API's `show events <ring> -w`
// (docs/haproxy.md, "Event-driven verdicts"):
//
//	ring zerodrop
//	    format timed
//	    size 1048576
//	backend app
//	    option log-health-checks
//	    log ring@zerodrop local0
//
// HAProxy writes "Server app/s1 is UP" into the ring when its checks change
// the verdict, and a `-w` reader gets the line within a millisecond. Two
// things make it look late when read the way commands are read: the answer
// never ends (a command reader waits for the close), and HAProxy closes an
// idle `-w` session after `stats timeout` (10 s by default), so a reader
// that waits for the end sees the lines only then. The watcher reads line
// by line and reconnects after the idle close; with `format timed` (or
// iso, rfc5424) it reconnects without `-n`, skips the replayed lines up to
// the last one it had, and so loses nothing across the reconnect.

// DefaultEventRing is the ring a Provider reads verdict events from when
// Config.EventRing is empty.
const DefaultEventRing = "zerodrop"

// ErrNoEventRing: the instance has no ring of the configured name (no
// `ring` section, or another name): its verdicts are polled.
var ErrNoEventRing = errors.New("no such event ring")

// Backoff of the reconnection of a lost event stream.
const (
	watchMinBackoff = 100 * time.Millisecond
	watchMaxBackoff = 30 * time.Second
)

// maxEventLine bounds one ring line (a ring's maxlen is at most its size;
// health-check lines are about 200 bytes).
const maxEventLine = 64 << 10

// serverLine matches HAProxy 2.6's server state and health-check log lines
// (src/server.c srv_update_status, src/check.c).
var (
	serverLine = regexp.MustCompile(`(?:Backup )?Server ([A-Za-z0-9_.:-]+)/([A-Za-z0-9_.:-]+) (is UP|is DOWN|is stopping|is going DOWN for maintenance|was DOWN and now enters maintenance|enters drain state|is UP/READY|is DOWN \(leaving|is going)`)
	// stopLine: the process's soft stop after a reload (the old worker
	// logs it for every proxy); its CLI sessions, this stream included,
	// stay with it until they end.
	stopLine  = regexp.MustCompile(`(?:^|[> ])(?:Proxy [A-Za-z0-9_.:-]+ stopped|Stopping (?:backend|frontend|proxy) )`)
	checkLine = regexp.MustCompile(`(?:Health|Agent) check for (?:backup )?server ([A-Za-z0-9_.:-]+)/([A-Za-z0-9_.:-]+) (succeeded|failed|conditionally succeeded)`)
	// checkTurn: the counter a check line ends with. "succeeded ...
	// status: 2/2 UP" (full rise) and "failed ... status: 0/3 DOWN" (full
	// fall) are the checks that change the verdict: HAProxy writes the
	// "Server ... is UP/DOWN" line right after them.
	checkTurn = regexp.MustCompile(`status: (\d+)/(\d+) (UP|DOWN)\.?$`)
)

// turnsVerdict reports whether a check line is one after which HAProxy
// writes a verdict line for the same server.
func turnsVerdict(line string) bool {
	m := checkLine.FindStringSubmatch(line)
	t := checkTurn.FindStringSubmatch(line)
	if m == nil || t == nil {
		return false
	}
	switch {
	case m[3] == "succeeded" && t[3] == "UP":
		return t[1] == t[2]
	case m[3] == "failed" && t[3] == "DOWN":
		return t[1] == "0"
	}
	return false
}

// parseEventLine reads one ring line: its timestamp when the ring's format
// has one, and the event it reports (ok false for lines of no interest,
// such as "backend app has no server available!" or traffic logs).
func parseEventLine(instance, line string) (ts time.Time, ev provider.Event, ok bool) {
	ts = lineTime(line)
	ev = provider.Event{Instance: instance, At: ts, Message: line}
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	if m := serverLine.FindStringSubmatch(line); m != nil {
		ev.Pool, ev.Entry = m[1], m[2]
		admin := strings.Contains(line, "maintenance") || strings.Contains(line, "drain") ||
			strings.Contains(line, "changed from CLI") || strings.Contains(line, "UP/READY")
		switch {
		case admin:
			ev.Kind = provider.EventAdmin
		case m[3] == "is UP":
			ev.Kind, ev.Health = provider.EventVerdict, provider.HealthHealthy
		case m[3] == "is DOWN", m[3] == "is stopping":
			ev.Kind, ev.Health = provider.EventVerdict, provider.HealthUnhealthy
		default:
			ev.Kind = provider.EventAdmin
		}
		return ts, ev, true
	}
	if m := checkLine.FindStringSubmatch(line); m != nil {
		ev.Kind, ev.Pool, ev.Entry = provider.EventCheck, m[1], m[2]
		return ts, ev, true
	}
	return ts, ev, false
}

// lineTime returns the timestamp of a ring line in format timed or iso
// ("<5>2026-12-06T23:57:39.294888+00:00 ...") or rfc5424 ("<5>1
// 2026-12-06T23:57:39.294888+00:00 host ..."); zero for other formats.
func lineTime(line string) time.Time {
	s := line
	if strings.HasPrefix(s, "<") {
		if i := strings.IndexByte(s, '>'); i > 0 && i < 5 {
			s = s[i+1:]
		}
	}
	s = strings.TrimPrefix(s, "1 ") // rfc5424 version
	i := strings.IndexByte(s, ' ')
	if i < 0 {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s[:i])
	if err != nil {
		return time.Time{}
	}
	return t
}

// ringMark is the last line a watcher received from a ring: on a
// reconnect without -n, HAProxy replays the ring and the watcher skips up
// to the mark. Lines of one microsecond cannot be ordered, so every line
// of the mark's timestamp is kept.
type ringMark struct {
	at    time.Time
	lines map[string]bool
}

func (m *ringMark) set(ts time.Time, line string) {
	if !ts.Equal(m.at) || m.lines == nil {
		m.at, m.lines = ts, map[string]bool{}
	}
	m.lines[line] = true
}

// seen reports whether a replayed line is at or before the mark.
func (m *ringMark) seen(ts time.Time, line string) bool {
	if m.at.IsZero() || ts.IsZero() {
		return false
	}
	return ts.Before(m.at) || ts.Equal(m.at) && m.lines[line]
}

// ShowEvents returns the lines the ring holds now (`show events <ring>`).
// A ring HAProxy does not have is an error wrapping ErrNoEventRing.
func (c *Client) ShowEvents(ctx context.Context, ring string) ([]string, error) {
	if err := validName("ring", ring); err != nil {
		return nil, err
	}
	// Raw, not Dump: an empty ring answers nothing at all, not even the
	// empty line that ends other dumps.
	out, err := c.Raw(ctx, "show events "+ring)
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && strings.Contains(ce.Answer, "No such event sink") {
			return nil, fmt.Errorf("haproxy %s: ring %q: %w", c, ring, ErrNoEventRing)
		}
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// StreamEvents sends `show events <ring> -w` and calls fn with every line
// until the connection ends, ctx is done or fn returns false: first the
// ring's history, unless onlyNew (-n), then every new line as HAProxy
// writes it. It returns nil when HAProxy closed the stream (idle `stats
// timeout`, reload), ctx.Err() when ctx ended, and the error otherwise.
// A line fn receives has no trailing newline.
func (c *Client) StreamEvents(ctx context.Context, ring string, onlyNew bool, fn func(line string) (more bool)) error {
	if err := validName("ring", ring); err != nil {
		return err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cmd := "show events " + ring + " -w"
	if onlyNew {
		cmd += " -n"
	}
	conn, err := c.dial(ctx, time.Now().Add(timeout))
	if err != nil {
		return fmt.Errorf("haproxy %s: %q: %w", c, cmd, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// The connect and the command have the command timeout; the stream
	// then has none (HAProxy's stats timeout ends an idle one).
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, severityPrefix+cmd+"\n"); err != nil {
		return fmt.Errorf("haproxy %s: %q: write: %w", c, cmd, err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	// The empty answer of "set severity-output", then either the stream or
	// an error ("[3]: No such event sink").
	first, err := br.ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("haproxy %s: %q: %w", c, cmd, err)
	}
	if first != "\n" {
		return c.notRuntimeAPI(cmd, first)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return err
	}
	if ctx.Err() != nil { // cancelled before the deadline was cleared
		return ctx.Err()
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	firstLine := true
	for sc.Scan() {
		line := sc.Text()
		if firstLine {
			firstLine = false
			if a, sev := splitSeverity(line); sev >= 0 && sev <= 4 {
				if strings.Contains(a, "No such event sink") {
					return fmt.Errorf("haproxy %s: ring %q: %w", c, ring, ErrNoEventRing)
				}
				return &CommandError{Endpoint: c.String(), Command: cmd, Answer: a, Severity: sev, kind: classify(a)}
			}
		}
		if line != "" && !fn(line) {
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("haproxy %s: %q: read: %w", c, cmd, err)
	}
	return nil
}

// Watch implements provider.Watcher: it streams every instance's event
// ring (Config.EventRing) and reports server verdict, check and admin
// lines as events, until ctx ends. See provider.Watcher for the contract:
// each instance reports EventStreamUp once its stream is established
// (again after a loss) and EventStreamDown when it cannot be, e.g.
// because the instance has no such ring (ErrNoEventRing); it then retries
// with a backoff from 100 ms to 30 s. The idle close after HAProxy's
// `stats timeout` is no loss: the watcher reconnects and, with a
// timestamped ring format, skips what it already had.
func (p *Provider) Watch(ctx context.Context, fn func(provider.Event)) error {
	var wg sync.WaitGroup
	for i := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.watchInstance(ctx, p.instances[i], p.clients[i], fn)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// catchUpAfter: how long the watcher waits for the verdict line a
// deciding check line announces before it reads the ring itself.
const catchUpAfter = 20 * time.Millisecond

// ringReader is one instance's watch state: the mark, and the verdict
// line a deciding check announced. HAProxy 2.6 sometimes does not wake a
// `-w` reader for the last line of a burst (measured: the "Server is UP"
// line written 0.3 ms after its check line reached the stream only with
// the next line, seconds later); the check line announces it, so when it
// has not come within catchUpAfter the reader dumps the ring once (`show
// events`, without -w) and delivers what the stream held back. Lines the
// stream then delivers late are skipped by the mark.
type ringReader struct {
	instance string
	fn       func(provider.Event)

	mu      sync.Mutex
	mark    ringMark // the last timestamped line received, kept across reconnects
	awaited string   // "pool/entry" whose verdict line a check announced
}

// handle takes one line of the stream (or, fromDump, of a catch-up
// dump); false ends the stream (a reload: see watchInstance).
func (r *ringReader) handle(line string, fromDump bool) (more bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ts, ev, ok := parseEventLine(r.instance, line)
	if stopLine.MatchString(line) {
		if fromDump {
			// The stream must meet it itself to reconnect; a dump
			// right after a reload is the new worker's anyway.
			return false
		}
		// A reload: this stream is the old worker's, which checks
		// nothing any more (and the session would keep it alive).
		// Reconnect to the new worker, whose ring starts empty, and
		// report the gap: the controller reads every pool and sees the
		// new epoch at once.
		r.mark, r.awaited = ringMark{}, ""
		return false
	}
	if r.mark.seen(ts, line) {
		return true // replayed, or caught up before the stream had it
	}
	if !ts.IsZero() {
		r.mark.set(ts, line)
	}
	if !ok {
		return true
	}
	switch {
	case ev.Kind == provider.EventCheck && turnsVerdict(line):
		r.awaited = ev.Pool + "/" + ev.Entry
	case ev.Kind == provider.EventVerdict && r.awaited == ev.Pool+"/"+ev.Entry:
		r.awaited = ""
	}
	r.fn(ev)
	return true
}

// awaiting reports whether a verdict line is announced and not yet
// received, and whether the ring is timestamped (a dump of an untimed
// ring cannot be told from what the stream already delivered).
func (r *ringReader) awaiting() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.awaited != "" && !r.mark.at.IsZero()
}

// catchUp reads the ring once and delivers the lines after the mark.
func (r *ringReader) catchUp(ctx context.Context, c *Client, ring string, log *slog.Logger) {
	if !r.awaiting() {
		return
	}
	lines, err := c.ShowEvents(ctx, ring)
	if err != nil {
		log.Debug("haproxy: event catch-up failed", "instance", r.instance, "err", err)
		return
	}
	for _, l := range lines {
		if !r.handle(l, true) {
			break
		}
	}
	r.mu.Lock()
	r.awaited = "" // delivered now, or never written (a server in maintenance)
	r.mu.Unlock()
}

// watchInstance keeps one instance's stream up until ctx ends.
func (p *Provider) watchInstance(ctx context.Context, in Instance, c *Client, fn func(provider.Event)) {
	r := &ringReader{instance: in.Name, fn: fn}
	kick := make(chan struct{}, 1)
	caught := make(chan struct{})
	go func() { // the catch-up of announced verdicts the stream holds back
		defer close(caught)
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			t := time.NewTimer(catchUpAfter)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			r.catchUp(ctx, c, p.ring, p.log)
		}
	}()
	defer func() { <-caught }()
	backoff := watchMinBackoff
	up := false  // EventStreamUp reported, no EventStreamDown since
	gap := false // events may have been missed since the last EventStreamUp
	for ctx.Err() == nil {
		var err error
		onlyNew := false
		r.mu.Lock()
		resume := !r.mark.at.IsZero()
		r.mu.Unlock()
		if !resume {
			// Nothing to resume from: the ring's last line is the mark, so
			// the stream (which replays the ring) loses nothing between
			// the two commands. Without timestamps nothing can be skipped:
			// ask for new lines only (-n), and report the gap.
			var hist []string
			if hist, err = c.ShowEvents(ctx, p.ring); err == nil {
				r.mu.Lock()
				for _, l := range hist {
					if ts := lineTime(l); !ts.IsZero() {
						r.mark.set(ts, l)
					}
				}
				onlyNew = len(hist) > 0 && r.mark.at.IsZero()
				r.mu.Unlock()
			}
		}
		if err == nil {
			if !up || onlyNew || gap {
				up, gap = true, false
				fn(provider.Event{Kind: provider.EventStreamUp, Instance: in.Name, At: time.Now()})
			}
			err = c.StreamEvents(ctx, p.ring, onlyNew, func(line string) bool {
				more := r.handle(line, false)
				if !more {
					gap = true
				} else if r.awaiting() {
					select {
					case kick <- struct{}{}:
					default:
					}
				}
				return more
			})
			if err == nil {
				// Closed by HAProxy (idle stats timeout) or left after a
				// reload: resume at once from the mark.
				backoff = watchMinBackoff
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		up = false
		fn(provider.Event{Kind: provider.EventStreamDown, Instance: in.Name, At: time.Now(), Err: err})
		if !errors.Is(err, ErrNoEventRing) {
			p.log.Warn("haproxy: event stream lost; polling meanwhile", "instance", in.Name, "ring", p.ring, "retry", backoff, "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}
