// Package haproxycfg reads the parts of an HAProxy configuration file that
// decide a rollout's timing and what zerodrop's controller can learn from
// HAProxy: per backend, the health checks of its servers (check, inter,
// fastinter, downinter, rise, fall), its timeouts (server, client,
// connect, check, tunnel, ...), its balance algorithm, whether it checks
// over HTTP (option httpchk), its mode, options and log targets; per
// frontend, which backends it routes to; the ring sections and the global
// log targets. Settings from defaults sections are inherited as HAProxy
// does. Errors name file:line, and so does every setting it reports.
//
// It is not a full HAProxy parser: keywords it does not need are skipped.
package haproxycfg

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// HAProxy's built-in defaults for server health checks.
const (
	DefaultInter = 2 * time.Second
	DefaultRise  = 2
	DefaultFall  = 3
)

// Config is a parsed HAProxy configuration.
type Config struct {
	File string
	// Backends holds every backend and listen section, in file order.
	Backends []*Backend
	// Frontends holds every frontend and listen section (a listen section
	// is both: it is in Backends too), in file order.
	Frontends []*Frontend
	// Rings holds the ring sections, in file order.
	Rings []*Ring
	// GlobalLogs are the log lines of the global section, which "log
	// global" in a proxy section refers to.
	GlobalLogs []Log
}

// Ring returns the ring section called name, or nil.
func (c *Config) Ring(name string) *Ring {
	for _, r := range c.Rings {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Backend returns the backend or listen section called name, or nil.
func (c *Config) Backend(name string) *Backend {
	for _, b := range c.Backends {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// Backend is one backend or listen section with its effective settings:
// what it sets itself over what its defaults section set.
type Backend struct {
	Name    string
	Section string // "backend" or "listen"
	Line    int    // line of the section header
	// Mode is "tcp" (HAProxy's default), "http" or what "mode" said.
	Mode string
	// Options holds every "option X" and "no option X", by X.
	Options map[string]Option
	// Logs are the effective log targets: the defaults section's, then
	// the section's own ("no log" drops those before it, "log global"
	// adds the global section's).
	Logs []Log
	// Balance is the load-balancing algorithm ("roundrobin" when unset, as
	// in HAProxy).
	Balance string
	// HTTPCheck is true with "option httpchk": checks are HTTP requests.
	HTTPCheck bool
	// Timeouts by name ("server", "client", "connect", "check", "tunnel",
	// "queue", "http-request", "http-keep-alive", ...).
	Timeouts map[string]Setting
	// DefaultServer is the effective default-server line.
	DefaultServer ServerParams
	// Servers in file order, with default-server applied.
	Servers []Server
}

// Option is the state of one "option X": On after "option X", off after
// "no option X"; Line is the line that said so (0 when nothing did).
type Option struct {
	On   bool
	Line int
}

// Log is one log target of a section: "log <target> [len <n>] [format
// <f>] [sample <r>:<s>] <facility> [<level> [<minlevel>]]".
type Log struct {
	Target   string // "ring@zerodrop", "/dev/log", "127.0.0.1:514", "stdout", ...
	Facility string
	Level    string // "" when unset: every message is sent
	// Line is the line that names the target; Via the line of the "log
	// global" that brought a global target into a section (0 otherwise).
	Line, Via int
}

// RingName returns the ring a "ring@<name>" target writes to, "" for other
// targets.
func (l Log) RingName() string {
	if name, ok := strings.CutPrefix(l.Target, "ring@"); ok {
		return name
	}
	return ""
}

// syslogLevels are the levels of a log line, most severe first.
var syslogLevels = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// Sends reports whether a message of the given severity ("notice", ...)
// reaches the target: without a level every message does, with one only
// messages at least as severe.
func (l Log) Sends(severity string) bool {
	if l.Level == "" {
		return true
	}
	lv, sv := slices.Index(syslogLevels, l.Level), slices.Index(syslogLevels, severity)
	return lv < 0 || sv < 0 || sv <= lv
}

// Ring is one ring section: a buffer that log lines can be sent to and
// that the Runtime API reads with "show events <ring>".
type Ring struct {
	Name string
	Line int // line of the section header
	// Format is how lines are stored: "raw" (HAProxy's default when the
	// section has no format line), "timed", "iso", "rfc5424", "rfc3164",
	// "local", "short" or "priority". FormatLine is 0 when unset.
	Format     string
	FormatLine int
}

// Timestamped reports whether the ring's lines start with a timestamp of
// microseconds (formats timed, iso and rfc5424; rfc3164 and local have one
// of seconds without a year).
func (r *Ring) Timestamped() bool {
	switch r.Format {
	case "timed", "iso", "rfc5424":
		return true
	}
	return false
}

// Frontend is one frontend or listen section: where clients connect, and
// which backends it sends them to.
type Frontend struct {
	Name    string
	Section string // "frontend" or "listen"
	Line    int    // line of the section header
	// Mode is "tcp" (HAProxy's default), "http" or what "mode" said.
	Mode string
	// Options holds every "option X" and "no option X", by X.
	Options map[string]Option
	Logs    []Log
	// DefaultBackend is its default_backend (or its defaults section's);
	// Name is "" when none.
	DefaultBackend BackendRef
	// UseBackends are its use_backend rules, in file order.
	UseBackends []BackendRef
}

// BackendRef is a backend named by a default_backend or use_backend line.
type BackendRef struct {
	Name string
	Line int
	// Dynamic is true when the name is built at run time ("%[...]"): it
	// may be any backend.
	Dynamic bool
}

// Routes reports whether the frontend may send requests to the backend
// called name, and the line that says so: its default_backend, a
// use_backend, a use_backend whose name is built at run time, or, for a
// listen section, the section itself.
func (f *Frontend) Routes(name string) (BackendRef, bool) {
	if f.Section == "listen" && f.Name == name {
		return BackendRef{Name: name, Line: f.Line}, true
	}
	if f.DefaultBackend.Name == name {
		return f.DefaultBackend, true
	}
	var dynamic *BackendRef
	for i, u := range f.UseBackends {
		if u.Name == name {
			return u, true
		}
		if u.Dynamic && dynamic == nil {
			dynamic = &f.UseBackends[i]
		}
	}
	if f.DefaultBackend.Dynamic {
		return f.DefaultBackend, true
	}
	if dynamic != nil {
		return *dynamic, true
	}
	return BackendRef{}, false
}

// Setting is one time value and the line that set it.
type Setting struct {
	Value time.Duration
	Line  int
}

// Timeout returns the named timeout, if set.
func (b *Backend) Timeout(name string) (time.Duration, bool) {
	s, ok := b.Timeouts[name]
	return s.Value, ok
}

// ServerParams are the health-check parameters of a server or default-server
// line. Set reports which were given, so default-server lines overlay.
type ServerParams struct {
	Check     bool
	Inter     time.Duration
	FastInter time.Duration
	DownInter time.Duration
	Rise      int
	Fall      int
	// Line is the line of the last server/default-server line that set any
	// of these parameters (0 when none).
	Line int
	set  map[string]bool
}

func (p *ServerParams) mark(k string) {
	if p.set == nil {
		p.set = map[string]bool{}
	}
	p.set[k] = true
}

// IsSet reports whether the parameter (check, inter, fastinter, downinter,
// rise, fall) was given explicitly.
func (p ServerParams) IsSet(k string) bool { return p.set[k] }

// overlay returns p with every parameter q sets replaced by q's.
func (p ServerParams) overlay(q ServerParams) ServerParams {
	r := p
	r.set = map[string]bool{}
	for k := range p.set {
		r.set[k] = true
	}
	for k := range q.set {
		r.set[k] = true
		switch k {
		case "check":
			r.Check = q.Check
		case "inter":
			r.Inter = q.Inter
		case "fastinter":
			r.FastInter = q.FastInter
		case "downinter":
			r.DownInter = q.DownInter
		case "rise":
			r.Rise = q.Rise
		case "fall":
			r.Fall = q.Fall
		}
	}
	if q.Line > 0 {
		r.Line = q.Line
	}
	return r
}

// Effective fills HAProxy's defaults for what is unset: inter 2 s, rise 2,
// fall 3, fastinter and downinter = inter.
func (p ServerParams) Effective() ServerParams {
	r := p
	if !p.IsSet("inter") {
		r.Inter = DefaultInter
	}
	if !p.IsSet("rise") {
		r.Rise = DefaultRise
	}
	if !p.IsSet("fall") {
		r.Fall = DefaultFall
	}
	if !p.IsSet("fastinter") {
		r.FastInter = r.Inter
	}
	if !p.IsSet("downinter") {
		r.DownInter = r.Inter
	}
	return r
}

// Server is one server line, with default-server applied.
type Server struct {
	Name   string
	Addr   string
	Line   int
	Params ServerParams // effective (HAProxy defaults filled)
}

// Health returns the backend's effective health checking: the slowest of
// its servers (the longest time to become healthy, inter x rise), or the
// default-server line when the backend has no static servers (servers added
// at runtime take default-server's parameters).
func (b *Backend) Health() ServerParams {
	if len(b.Servers) == 0 {
		return b.DefaultServer.Effective()
	}
	best := b.Servers[0].Params
	for _, s := range b.Servers[1:] {
		if !best.Check && s.Params.Check ||
			s.Params.Check == best.Check && s.Params.Inter*time.Duration(s.Params.Rise) > best.Inter*time.Duration(best.Rise) {
			best = s.Params
		}
	}
	return best
}

// Error is a problem at one line of the file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ParseFile reads and parses an HAProxy configuration file.
func ParseFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("haproxy config: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// section is the state of a defaults/frontend/backend/listen section while
// parsing.
type section struct {
	kind, name     string
	line           int
	balance        string
	httpchk        bool
	mode           string
	options        map[string]Option
	logs           []Log
	defaultBackend BackendRef
	useBackends    []BackendRef
	timeouts       map[string]Setting
	defaultServer  ServerParams
	servers        []Server
}

func newSection() *section {
	return &section{timeouts: map[string]Setting{}, options: map[string]Option{}}
}

// clone starts a section that inherits s (a defaults section): what a
// defaults section can set. use_backend and servers are not inherited.
func (s *section) clone(kind, name string, line int) *section {
	c := &section{kind: kind, name: name, line: line, balance: s.balance, httpchk: s.httpchk, mode: s.mode,
		options: maps.Clone(s.options), logs: slices.Clone(s.logs), defaultBackend: s.defaultBackend,
		timeouts: maps.Clone(s.timeouts), defaultServer: s.defaultServer.overlay(ServerParams{})}
	return c
}

// maxLine bounds a configuration line, as HAProxy does (it refuses lines
// longer than its buffer).
const maxLine = 64 * 1024

// Parse parses an HAProxy configuration read from r; file names it in
// errors.
func Parse(r io.Reader, file string) (*Config, error) {
	cfg := &Config{File: file}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	named := map[string]*section{}
	lastDefaults := newSection()
	var cur *section  // the proxy section being read; nil elsewhere
	var ring *Ring    // the ring section being read
	inGlobal := false // in the global section
	flush := func() {
		if cur == nil {
			return
		}
		if cur.kind == "backend" || cur.kind == "listen" {
			cfg.Backends = append(cfg.Backends, cur.backend())
		}
		if cur.kind == "frontend" || cur.kind == "listen" {
			cfg.Frontends = append(cfg.Frontends, cur.frontend())
		}
	}
	n := 0
	for sc.Scan() {
		n++
		fail := func(format string, a ...any) error {
			return &Error{File: file, Line: n, Msg: fmt.Sprintf(format, a...)}
		}
		words, err := split(sc.Text())
		if err != nil {
			return nil, fail("%v", err)
		}
		if len(words) == 0 {
			continue
		}
		kw := words[0]
		switch kw {
		case "global", "peers", "resolvers", "userlist", "mailers", "program",
			"http-errors", "ring", "cache", "fcgi-app", "crt-store", "traces", "log-forward":
			flush()
			cur, ring, inGlobal = nil, nil, kw == "global"
			if kw == "ring" {
				if len(words) < 2 || words[1] == "" {
					return nil, fail("ring section without a name")
				}
				ring = &Ring{Name: words[1], Line: n, Format: "raw"}
				cfg.Rings = append(cfg.Rings, ring)
			}
			continue
		case "defaults", "frontend", "backend", "listen":
			flush()
			ring, inGlobal = nil, false
			name := ""
			if len(words) > 1 && words[1] != "from" {
				name = words[1]
			}
			if kw != "defaults" && name == "" {
				return nil, fail("%s section without a name", kw)
			}
			// A defaults section starts again from HAProxy's built-in values
			// ("reset by the next defaults section"); other sections take the
			// last defaults section, or the one named after "from".
			parent := lastDefaults
			if kw == "defaults" {
				parent = newSection()
			}
			for i := 1; i < len(words); i++ {
				if words[i] == "from" {
					if i+1 >= len(words) {
						return nil, fail("%s %s: \"from\" without a defaults section name", kw, name)
					}
					p, ok := named[words[i+1]]
					if !ok {
						return nil, fail("%s %s: defaults section %q not found (it must come before)", kw, name, words[i+1])
					}
					parent = p
				}
			}
			cur = parent.clone(kw, name, n)
			switch kw {
			case "defaults":
				lastDefaults = cur
				if name != "" {
					named[name] = cur
				}
			case "backend", "listen":
				for _, b := range cfg.Backends {
					if b.Name == name {
						return nil, fail("%s %s: a backend or listen section with this name already exists at line %d", kw, name, b.Line)
					}
				}
			}
			continue
		}
		switch {
		case cur != nil:
			if err := cur.keyword(words, n, cfg.GlobalLogs); err != nil {
				return nil, fail("%v", err)
			}
		case ring != nil:
			if kw == "format" {
				if len(words) < 2 || words[1] == "" {
					return nil, fail("ring %s: format: missing format", ring.Name)
				}
				ring.Format, ring.FormatLine = words[1], n
			}
		case inGlobal:
			if kw == "log" && len(words) >= 2 && words[1] != "" && words[1] != "global" {
				cfg.GlobalLogs = append(cfg.GlobalLogs, parseLog(words, n))
			}
		}
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return nil, &Error{File: file, Line: n + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		return nil, fmt.Errorf("haproxy config %s: %w", file, err)
	}
	flush()
	return cfg, nil
}

func (s *section) backend() *Backend {
	b := &Backend{Name: s.name, Section: s.kind, Line: s.line, Balance: s.balance, HTTPCheck: s.httpchk,
		Mode: s.effectiveMode(), Options: s.options, Logs: s.logs,
		Timeouts: s.timeouts, DefaultServer: s.defaultServer, Servers: s.servers}
	if b.Balance == "" {
		b.Balance = "roundrobin"
	}
	return b
}

func (s *section) frontend() *Frontend {
	return &Frontend{Name: s.name, Section: s.kind, Line: s.line, Mode: s.effectiveMode(),
		Options: maps.Clone(s.options), Logs: slices.Clone(s.logs), DefaultBackend: s.defaultBackend, UseBackends: s.useBackends}
}

func (s *section) effectiveMode() string {
	if s.mode == "" {
		return "tcp"
	}
	return s.mode
}

// parseLog reads a log line (at least "log <target>").
func parseLog(w []string, line int) Log {
	l := Log{Target: w[1], Line: line}
	i := 2
	for i+1 < len(w) && (w[i] == "len" || w[i] == "format" || w[i] == "sample") {
		i += 2
	}
	if i < len(w) {
		l.Facility = w[i]
		i++
	}
	if i < len(w) {
		l.Level = w[i]
	}
	return l
}

// keyword applies one line of a defaults/frontend/backend/listen section;
// global holds the global section's log targets read so far (what "log
// global" copies, as HAProxy does when it reads the line).
func (s *section) keyword(w []string, line int, global []Log) error {
	switch w[0] {
	case "timeout":
		if len(w) < 3 {
			return fmt.Errorf("timeout: want \"timeout <name> <time>\"")
		}
		d, err := ParseTime(w[2])
		if err != nil {
			return fmt.Errorf("timeout %s: %v", w[1], err)
		}
		s.timeouts[w[1]] = Setting{Value: d, Line: line}
	case "contimeout", "srvtimeout", "clitimeout":
		// Pre-1.5 spellings, still found in old configs.
		if len(w) < 2 {
			return fmt.Errorf("%s: missing time", w[0])
		}
		d, err := ParseTime(w[1])
		if err != nil {
			return fmt.Errorf("%s: %v", w[0], err)
		}
		name := map[string]string{"contimeout": "connect", "srvtimeout": "server", "clitimeout": "client"}[w[0]]
		s.timeouts[name] = Setting{Value: d, Line: line}
	case "balance":
		if len(w) < 2 {
			return fmt.Errorf("balance: missing algorithm")
		}
		s.balance = w[1]
	case "mode":
		if len(w) < 2 {
			return fmt.Errorf("mode: missing mode")
		}
		s.mode = w[1]
	case "option":
		if len(w) >= 2 {
			s.options[w[1]] = Option{On: true, Line: line}
			if w[1] == "httpchk" {
				s.httpchk = true
			}
		}
	case "no":
		switch {
		case len(w) >= 3 && w[1] == "option":
			s.options[w[2]] = Option{On: false, Line: line}
			if w[2] == "httpchk" {
				s.httpchk = false
			}
		case len(w) == 2 && w[1] == "log":
			s.logs = nil
		}
	case "log":
		if len(w) < 2 || w[1] == "" {
			return fmt.Errorf("log: missing target")
		}
		if w[1] == "global" {
			// A second "log global" adds the same targets again; keeping
			// one copy bounds a section's targets by the file's log lines.
			for _, g := range global {
				if !slices.ContainsFunc(s.logs, func(l Log) bool { return l.Via > 0 && l.Line == g.Line }) {
					g.Via = line
					s.logs = append(s.logs, g)
				}
			}
			break
		}
		s.logs = append(s.logs, parseLog(w, line))
	case "default_backend", "use_backend":
		if len(w) < 2 || w[1] == "" {
			return fmt.Errorf("%s: missing backend name", w[0])
		}
		ref := BackendRef{Name: w[1], Line: line, Dynamic: strings.Contains(w[1], "%[")}
		if w[0] == "default_backend" {
			s.defaultBackend = ref
		} else {
			s.useBackends = append(s.useBackends, ref)
		}
	case "default-server":
		p, err := serverParams(w[1:], line)
		if err != nil {
			return fmt.Errorf("default-server: %v", err)
		}
		s.defaultServer = s.defaultServer.overlay(p)
	case "server", "server-template":
		if s.kind == "defaults" || s.kind == "frontend" {
			return fmt.Errorf("%s is not allowed in a %s section", w[0], s.kind)
		}
		args := 2 // server <name> <addr>
		if w[0] == "server-template" {
			args = 3 // server-template <prefix> <num | range> <fqdn>[:<port>]
		}
		if len(w) < args+1 {
			return fmt.Errorf("%s: want \"%s <name> <address> [params]\"", w[0], w[0])
		}
		p, err := serverParams(w[args+1:], line)
		if err != nil {
			return fmt.Errorf("%s %s: %v", w[0], w[1], err)
		}
		eff := s.defaultServer.overlay(p).Effective()
		eff.Line = line
		s.servers = append(s.servers, Server{Name: w[1], Addr: w[args], Line: line, Params: eff})
	}
	return nil
}

// withArg lists server parameters that take one argument, so that their
// argument is not read as a parameter of its own.
var withArg = map[string]bool{
	"addr": true, "agent-addr": true, "agent-inter": true, "agent-port": true, "agent-send": true,
	"alpn": true, "ca-file": true, "check-alpn": true, "check-proto": true, "check-sni": true,
	"ciphers": true, "ciphersuites": true, "cookie": true, "crl-file": true, "crt": true,
	"error-limit": true, "id": true, "init-addr": true, "log-proto": true, "max-reuse": true,
	"maxconn": true, "maxqueue": true, "minconn": true, "namespace": true, "npn": true,
	"on-error": true, "on-marked-down": true, "on-marked-up": true, "observe": true,
	"pool-low-conn": true, "pool-max-conn": true, "pool-purge-delay": true, "port": true,
	"proto": true, "redir": true, "resolve-net": true, "resolve-opts": true, "resolve-prefer": true,
	"resolvers": true, "set-proxy-v2-tls-fields": true, "shard": true, "slowstart": true,
	"sni": true, "socks4": true, "source": true, "ssl-max-ver": true, "ssl-min-ver": true,
	"track": true, "verify": true, "verifyhost": true, "weight": true, "ws": true,
	"proxy-v2-options": true, "tcp-ut": true, "hash-key": true, "guid": true, "curves": true,
	"sigalgs": true, "client-sigalgs": true, "usesrc": true,
}

func serverParams(w []string, line int) (ServerParams, error) {
	p := ServerParams{Line: line}
	for i := 0; i < len(w); i++ {
		k := w[i]
		switch k {
		case "check":
			p.Check = true
			p.mark("check")
		case "no-check":
			p.Check = false
			p.mark("check")
		case "inter", "fastinter", "downinter":
			if i+1 >= len(w) {
				return p, fmt.Errorf("%s: missing time", k)
			}
			d, err := ParseTime(w[i+1])
			if err != nil {
				return p, fmt.Errorf("%s: %v", k, err)
			}
			if d <= 0 {
				return p, fmt.Errorf("%s %s: must be greater than 0", k, w[i+1])
			}
			switch k {
			case "inter":
				p.Inter = d
			case "fastinter":
				p.FastInter = d
			default:
				p.DownInter = d
			}
			p.mark(k)
			i++
		case "rise", "fall":
			if i+1 >= len(w) {
				return p, fmt.Errorf("%s: missing count", k)
			}
			v, err := strconv.Atoi(w[i+1])
			if err != nil || v < 1 || v > 1<<20 {
				return p, fmt.Errorf("%s %q: want a count of at least 1", k, w[i+1])
			}
			if k == "rise" {
				p.Rise = v
			} else {
				p.Fall = v
			}
			p.mark(k)
			i++
		default:
			if withArg[k] {
				i++
			}
		}
	}
	return p, nil
}

// ParseTime parses an HAProxy time: a number with an optional unit us, ms,
// s, m, h or d; without a unit, milliseconds.
func ParseTime(s string) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("bad time %q: want a number with an optional unit (us, ms, s, m, h, d)", s)
	}
	v, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad time %q: %v", s, err)
	}
	unit := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := unit[s[i:]]
	if !ok {
		return 0, fmt.Errorf("bad time %q: unknown unit %q (want us, ms, s, m, h or d)", s, s[i:])
	}
	if v > uint64(math.MaxInt64/int64(u)) {
		return 0, fmt.Errorf("bad time %q: too large", s)
	}
	return time.Duration(v) * u, nil
}

// split cuts a configuration line into words as HAProxy does: blanks
// separate, '#' starts a comment, backslash escapes, single and double
// quotes group.
func split(line string) ([]string, error) {
	var words []string
	var b strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
				continue
			}
			if c == '\\' && quote == '"' && i+1 < len(line) {
				i++
				c = line[i]
			}
			b.WriteByte(c)
		case c == '\\':
			if i+1 < len(line) {
				i++
				b.WriteByte(line[i])
			}
			inWord = true
		case c == '"' || c == '\'':
			quote = c
			inWord = true
		case c == '#':
			i = len(line)
		case c == ' ' || c == '\t' || c == '\r':
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, b.String())
	}
	return words, nil
}

// Names returns the backend names, sorted.
func (c *Config) Names() []string {
	var n []string
	for _, b := range c.Backends {
		n = append(n, b.Name)
	}
	sort.Strings(n)
	return n
}
