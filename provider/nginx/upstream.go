package nginx

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// File is the upstream include file the provider owns: one `upstream` block
// per pool. The file on disk is the provider's whole state: ParseFile reads
// what Render wrote, and each server line carries, in a trailing comment,
// the target's ID and when (on the boot clock) the line last changed, so a
// provider that starts fresh tells which NGINX workers loaded it.
type File struct {
	// Boot is the kernel boot id the Since times were taken in; after a
	// reboot they mean nothing and every line counts as loaded long ago.
	Boot  string
	Pools []Upstream
}

// Upstream is one `upstream NAME { ... }` block.
type Upstream struct {
	Name string
	// Directives are the block's other lines (least_conn;, keepalive 16;,
	// zone ...;), kept verbatim without their trailing comments.
	Directives []string
	Servers    []Server
}

// Server is one `server ADDR [params];` line.
type Server struct {
	// Addr is the address as written; for an IP and port it is the
	// canonical "ip:port" (IPv6 in brackets).
	Addr string
	// Params are the line's parameters other than `down`, verbatim
	// (weight=2, max_fails=0, ...).
	Params []string
	// Down marks a server NGINX must not send requests to: a draining
	// target.
	Down bool
	// ID is the target's ID when zerodrop wrote the line ("" otherwise).
	ID string
	// Since is when the line was last written with its present Down, on the
	// boot clock; zero for a line zerodrop did not write (loaded long ago).
	Since time.Duration
	// Placeholder marks the down server zerodrop writes into an empty pool:
	// NGINX refuses an upstream without servers.
	Placeholder bool
}

// placeholderAddr is the address of an empty pool's placeholder (the
// discard port on loopback; it is down, so NGINX never connects).
const placeholderAddr = "127.0.0.1:9"

// maxFileSize bounds the file ParseFile accepts.
const maxFileSize = 16 << 20

// Pool returns the named block, or nil.
func (f *File) Pool(name string) *Upstream {
	for i := range f.Pools {
		if f.Pools[i].Name == name {
			return &f.Pools[i]
		}
	}
	return nil
}

// Server returns the pool's server with that address (canonical form), or
// nil.
func (u *Upstream) Server(addr string) *Server {
	for i := range u.Servers {
		if !u.Servers[i].Placeholder && u.Servers[i].Addr == addr {
			return &u.Servers[i]
		}
	}
	return nil
}

// Remove drops the server with that address; it reports whether it was
// there.
func (u *Upstream) Remove(addr string) bool {
	for i := range u.Servers {
		if !u.Servers[i].Placeholder && u.Servers[i].Addr == addr {
			u.Servers = append(u.Servers[:i], u.Servers[i+1:]...)
			return true
		}
	}
	return false
}

// ParseFile parses an upstream include file. It accepts what Render writes
// and hand edits in the same shape: one directive per line, `#` comments,
// `upstream NAME {` ... `}` blocks with `server` lines and other one-line
// directives. Anything else is an error naming the line.
func ParseFile(name string, data []byte) (*File, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d this provider reads", name, len(data), maxFileSize)
	}
	f := &File{}
	var cur *Upstream
	open := 0
	for n, raw := range strings.Split(string(data), "\n") {
		ln := n + 1
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if v, ok := strings.CutPrefix(line, "# zerodrop boot="); ok && cur == nil {
				f.Boot = strings.TrimSpace(v)
			}
			continue
		}
		if cur == nil {
			fields := strings.Fields(line)
			if len(fields) != 3 || fields[0] != "upstream" || fields[2] != "{" {
				return nil, fmt.Errorf("%s:%d: expected `upstream NAME {`, found %q", name, ln, line)
			}
			if !validName(fields[1]) {
				return nil, fmt.Errorf("%s:%d: upstream name %q: use letters, digits, '-', '_', '.'", name, ln, fields[1])
			}
			if f.Pool(fields[1]) != nil {
				return nil, fmt.Errorf("%s:%d: upstream %q defined twice", name, ln, fields[1])
			}
			f.Pools = append(f.Pools, Upstream{Name: fields[1]})
			cur = &f.Pools[len(f.Pools)-1]
			open = ln
			continue
		}
		if line == "}" {
			cur = nil
			continue
		}
		stmt, comment, _ := strings.Cut(line, "#")
		stmt = strings.TrimSpace(stmt)
		if !strings.HasSuffix(stmt, ";") {
			return nil, fmt.Errorf("%s:%d: upstream %q: expected a directive ending in ';' or '}', found %q", name, ln, cur.Name, line)
		}
		body := strings.TrimSpace(strings.TrimSuffix(stmt, ";"))
		if strings.ContainsAny(body, "{};\"'\\") {
			return nil, fmt.Errorf("%s:%d: upstream %q: %q: quotes, braces, backslashes and a second ';' are not supported", name, ln, cur.Name, line)
		}
		fields := strings.Fields(body)
		if len(fields) == 0 {
			return nil, fmt.Errorf("%s:%d: upstream %q: empty directive", name, ln, cur.Name)
		}
		if fields[0] != "server" {
			cur.Directives = append(cur.Directives, strings.Join(fields, " ")+";")
			continue
		}
		s, err := parseServer(fields[1:], comment)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: upstream %q: %w", name, ln, cur.Name, err)
		}
		if !s.Placeholder && cur.Server(s.Addr) != nil {
			return nil, fmt.Errorf("%s:%d: upstream %q: server %s listed twice", name, ln, cur.Name, s.Addr)
		}
		cur.Servers = append(cur.Servers, s)
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: upstream %q is not closed with '}'", name, open, cur.Name)
	}
	return f, nil
}

func parseServer(fields []string, comment string) (Server, error) {
	if len(fields) == 0 {
		return Server{}, fmt.Errorf("server without an address")
	}
	s := Server{Addr: canonicalAddr(fields[0])}
	for _, p := range fields[1:] {
		if p == "down" {
			s.Down = true
			continue
		}
		s.Params = append(s.Params, p)
	}
	c := strings.Fields(comment)
	if len(c) == 0 || c[0] != "zerodrop" {
		return s, nil
	}
	for _, kv := range c[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "id":
			if v == "" {
				return Server{}, fmt.Errorf("server %s: empty id", s.Addr)
			}
			s.ID = v
		case "since":
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ns < 0 {
				return Server{}, fmt.Errorf("server %s: since=%q: want nanoseconds on the boot clock", s.Addr, v)
			}
			s.Since = time.Duration(ns)
		case "placeholder":
			s.Placeholder = true
		default:
			return Server{}, fmt.Errorf("server %s: unknown zerodrop field %q", s.Addr, k)
		}
	}
	return s, nil
}

// canonicalAddr writes an "ip:port" address the way Target.Addr does, so
// that "[::1]:80" and "[0:0::1]:80" are one server; other addresses (host
// names, unix:) stay as written.
func canonicalAddr(a string) string {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return a
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return a
	}
	return net.JoinHostPort(ip.String(), p)
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// validID reports whether a target ID can go into the trailing comment.
func validID(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r > '~' || r == '#' || r == '=' || r == ';' || r == '{' || r == '}' || r == '"' || r == '\'' || r == '\\' {
			return false
		}
	}
	return true
}

// Render writes the file. A pool without servers gets a down placeholder
// server, since NGINX refuses an empty upstream.
func (f *File) Render() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by zerodrop's NGINX provider, which rewrites it on every change:\n")
	b.WriteString("# keep one directive per line. Each server's trailing comment is its state.\n")
	if f.Boot != "" {
		fmt.Fprintf(&b, "# zerodrop boot=%s\n", f.Boot)
	}
	for _, u := range f.Pools {
		fmt.Fprintf(&b, "\nupstream %s {\n", u.Name)
		for _, d := range u.Directives {
			fmt.Fprintf(&b, "    %s\n", d)
		}
		real := 0
		for _, s := range u.Servers {
			if s.Placeholder {
				continue
			}
			real++
			b.WriteString("    server " + s.Addr)
			for _, p := range s.Params {
				b.WriteString(" " + p)
			}
			if s.Down {
				b.WriteString(" down")
			}
			b.WriteString(";")
			if s.ID != "" || s.Since != 0 {
				b.WriteString(" # zerodrop")
				if s.ID != "" {
					b.WriteString(" id=" + s.ID)
				}
				fmt.Fprintf(&b, " since=%d", int64(s.Since))
			}
			b.WriteString("\n")
		}
		if real == 0 {
			fmt.Fprintf(&b, "    server %s down; # zerodrop placeholder\n", placeholderAddr)
		}
		b.WriteString("}\n")
	}
	return b.Bytes()
}
