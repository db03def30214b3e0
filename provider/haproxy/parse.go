package haproxy

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// StatType is the kind of object a `show stat` row describes.
type StatType int

// Row types, as HAProxy numbers them in the "type" column.
const (
	TypeFrontend StatType = 0
	TypeBackend  StatType = 1
	TypeServer   StatType = 2
	TypeListener StatType = 3
)

// Stat is one row of `show stat` (HAProxy's CSV statistics), with the
// columns zerodrop reads. Numeric columns HAProxy leaves empty are zero.
type Stat struct {
	Proxy string   // pxname: the frontend or backend
	Name  string   // svname: FRONTEND, BACKEND, or the server/listener name
	Type  StatType // type
	// Status is verbatim: "UP", "DOWN", "DOWN 1/3" (going up), "UP 1/2"
	// (going down), "MAINT", "MAINT (via b/s)", "DRAIN", "NOLB", "no check".
	Status string
	// CheckStatus is the last health check's result ("L7OK", "L4CON",
	// "INI", ...) without the "* " HAProxy puts in front while a check runs.
	CheckStatus  string
	CheckRunning bool   // a check was in progress (the "* " prefix)
	CheckCode    int    // check_code: HTTP status of the last L7 check
	CheckDesc    string // check_desc: "Layer7 check passed", ...
	LastCheck    string // last_chk: the check's own words
	CheckHealth  int    // check_health: 0 .. rise+fall-1; >= rise means UP
	CheckRise    int    // check_rise
	CheckFall    int    // check_fall
	QueueCurrent int64  // qcur
	Sessions     int64  // scur: current sessions
	SessionsTot  int64  // stot: cumulative sessions
	Selected     int64  // lbtot: times the load balancer picked this server
	ConnErrors   int64  // econ
	RespErrors   int64  // eresp
	Retries      int64  // wretr
	Redispatches int64  // wredis
	HTTP5xx      int64  // hrsp_5xx
	Weight       int    // weight: effective weight
	LastChange   int64  // lastchg: seconds since the last UP/DOWN transition
	ProxyID      int    // iid
	ServerID     int    // sid
	Addr         string // addr: "ip:port" for servers
}

// Maint reports whether the status is one of the maintenance states.
func (s Stat) Maint() bool { return strings.HasPrefix(s.Status, "MAINT") }

// statCol indexes the `show stat` columns zerodrop reads; the first four
// are required.
type statCol int

const (
	cPxname statCol = iota
	cSvname
	cStatus
	cType
	cCheckStatus
	cCheckCode
	cCheckDesc
	cLastChk
	cCheckHealth
	cCheckRise
	cCheckFall
	cQcur
	cScur
	cStot
	cLbtot
	cEcon
	cEresp
	cWretr
	cWredis
	cHrsp5xx
	cWeight
	cLastchg
	cIid
	cSid
	cAddr
	numStatCols
)

var statColNames = [numStatCols]string{"pxname", "svname", "status", "type", "check_status", "check_code",
	"check_desc", "last_chk", "check_health", "check_rise", "check_fall", "qcur", "scur", "stot", "lbtot",
	"econ", "eresp", "wretr", "wredis", "hrsp_5xx", "weight", "lastchg", "iid", "sid", "addr"}

// ParseStat parses the CSV answer of `show stat`: a header line starting
// with "# " naming the columns, then one row per object. Columns are found
// by name, so fields HAProxy adds in later versions do not matter.
func ParseStat(b []byte) ([]Stat, error) {
	b = bytes.TrimLeft(b, "\n")
	if !bytes.HasPrefix(b, []byte("# ")) {
		return nil, fmt.Errorf("show stat: line 1: want a header starting with \"# \", got %q", truncate(firstLine(b)))
	}
	r := csv.NewReader(bytes.NewReader(b[2:]))
	r.FieldsPerRecord = -1 // rows end with a trailing comma; counts are checked below
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("show stat: header: %w", err)
	}
	// Resolve the columns once; rows are then read by index.
	var idx [numStatCols]int
	for c := range idx {
		idx[c] = -1
	}
	for i, h := range head {
		for c, name := range statColNames {
			if h == name && idx[c] < 0 {
				idx[c] = i
			}
		}
	}
	for c := statCol(0); c <= cType; c++ { // the required ones
		if idx[c] < 0 {
			return nil, fmt.Errorf("show stat: header: column %q missing", statColNames[c])
		}
	}
	var out []Stat
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("show stat: %w", err)
		}
		line, _ := r.FieldPos(0)
		p := statRow{rec: rec, idx: &idx, line: line}
		s := Stat{
			Proxy:  p.str(cPxname),
			Name:   p.str(cSvname),
			Status: p.str(cStatus),
			Type:   StatType(p.int(cType)),
		}
		s.CheckStatus = p.str(cCheckStatus)
		if rest, ok := strings.CutPrefix(s.CheckStatus, "* "); ok {
			s.CheckStatus, s.CheckRunning = rest, true
		}
		s.CheckCode = p.int(cCheckCode)
		s.CheckDesc = p.str(cCheckDesc)
		s.LastCheck = p.str(cLastChk)
		s.CheckHealth = p.int(cCheckHealth)
		s.CheckRise = p.int(cCheckRise)
		s.CheckFall = p.int(cCheckFall)
		s.QueueCurrent = p.int64(cQcur)
		s.Sessions = p.int64(cScur)
		s.SessionsTot = p.int64(cStot)
		s.Selected = p.int64(cLbtot)
		s.ConnErrors = p.int64(cEcon)
		s.RespErrors = p.int64(cEresp)
		s.Retries = p.int64(cWretr)
		s.Redispatches = p.int64(cWredis)
		s.HTTP5xx = p.int64(cHrsp5xx)
		s.Weight = p.int(cWeight)
		s.LastChange = p.int64(cLastchg)
		s.ProxyID = p.int(cIid)
		s.ServerID = p.int(cSid)
		s.Addr = p.str(cAddr)
		if p.err != nil {
			return nil, p.err
		}
		if s.Proxy == "" || s.Name == "" {
			return nil, fmt.Errorf("show stat: line %d: empty pxname or svname", line)
		}
		if s.Type < TypeFrontend || s.Type > TypeListener {
			return nil, fmt.Errorf("show stat: line %d: column \"type\": %d is not 0..3", line, s.Type)
		}
		out = append(out, s)
	}
}

// statRow reads columns of one record and keeps the first error.
type statRow struct {
	rec  []string
	idx  *[numStatCols]int
	line int
	err  error
}

func (p *statRow) str(c statCol) string {
	i := p.idx[c]
	if i < 0 || i >= len(p.rec) {
		return ""
	}
	return p.rec[i]
}

func (p *statRow) int64(c statCol) int64 {
	v := p.str(c)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("show stat: line %d: column %q: %q is not an integer", p.line, statColNames[c], v)
	}
	return n
}

func (p *statRow) int(c statCol) int {
	n := p.int64(c)
	if int64(int(n)) != n && p.err == nil {
		p.err = fmt.Errorf("show stat: line %d: column %q: %d out of range", p.line, statColNames[c], n)
	}
	return int(n)
}

// AdminFlags is a server's administrative state mask (srv_admin_state of
// `show servers state`).
type AdminFlags int

// Administrative flags (HAProxy's SRV_ADMF_*).
const (
	AdminForcedMaint    AdminFlags = 0x01 // set server state maint / disable server
	AdminInheritedMaint AdminFlags = 0x02 // tracks a server in maintenance
	AdminConfigMaint    AdminFlags = 0x04 // "disabled" in the configuration
	AdminForcedDrain    AdminFlags = 0x08 // set server state drain
	AdminInheritedDrain AdminFlags = 0x10 // tracks a draining server
	AdminResolveMaint   AdminFlags = 0x20 // address resolution failed
	AdminHostnameMaint  AdminFlags = 0x40 // FQDN set from the CLI
)

// Maint reports whether the server is in maintenance: forced, inherited or
// for a failed address resolution (HAProxy's SRV_ADMF_MAINT mask, 0x23).
// AdminConfigMaint alone is not maintenance: it records that the
// configuration said `disabled`, and HAProxy 2.6 keeps the bit after `set
// server state ready` while the server is UP and balanced (`disabled`
// itself sets AdminForcedMaint too).
func (f AdminFlags) Maint() bool {
	return f&(AdminForcedMaint|AdminInheritedMaint|AdminResolveMaint) != 0
}

// Drain reports whether a drain flag is set.
func (f AdminFlags) Drain() bool { return f&(AdminForcedDrain|AdminInheritedDrain) != 0 }

// OperationalState is a server's srv_op_state.
type OperationalState int

// Operational states (HAProxy's SRV_ST_*).
const (
	OperStopped  OperationalState = 0 // down
	OperStarting OperationalState = 1 // up, in slowstart
	OperRunning  OperationalState = 2 // up
	OperStopping OperationalState = 3 // up but soft-stopping (NOLB)
)

// CheckResult is srv_check_result: the last check's verdict.
type CheckResult int

// Check results (HAProxy's CHK_RES_*).
const (
	CheckUnknown  CheckResult = 0
	CheckNeutral  CheckResult = 1
	CheckFailed   CheckResult = 2
	CheckPassed   CheckResult = 3
	CheckCondPass CheckResult = 4
)

// CheckStateEnabled is the srv_check_state bit of an enabled health check.
const CheckStateEnabled = 0x04

// ServerState is one server line of `show servers state` (format 1).
type ServerState struct {
	BackendID   int
	Backend     string
	ID          int
	Name        string
	Addr        string // IP address, without port
	Port        int
	Oper        OperationalState
	Admin       AdminFlags
	UserWeight  int
	SinceChange int64 // seconds since the last operational change
	CheckResult CheckResult
	CheckHealth int
	CheckState  int // mask: 0x01 running, 0x02 configured, 0x04 enabled, 0x08 paused
	// FQDN is the host name the configuration gave the server ("" when it
	// gave an IP address, which HAProxy dumps as "-"). Only servers with
	// one get their runtime address back from a server-state file (through
	// `init-addr last`). Empty when the column is missing.
	FQDN string
}

// Up reports whether the server is operationally up (running or starting).
func (s ServerState) Up() bool { return s.Oper == OperRunning || s.Oper == OperStarting }

// serversStateColumns are the format-1 columns read, by header name.
var serversStateColumns = []string{"be_id", "be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state",
	"srv_admin_state", "srv_uweight", "srv_time_since_last_change", "srv_check_result", "srv_check_health",
	"srv_check_state", "srv_port"}

// ParseServersState parses the answer of `show servers state`: a version
// line ("1"), a header line starting with "# ", then space-separated rows.
func ParseServersState(b []byte) ([]ServerState, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("show servers state: want a version line and a header, got %d lines", len(lines))
	}
	if v := strings.TrimSpace(lines[0]); v != "1" {
		return nil, fmt.Errorf("show servers state: line 1: format version %q, want 1", truncate(v))
	}
	hdr, ok := strings.CutPrefix(lines[1], "# ")
	if !ok {
		return nil, fmt.Errorf("show servers state: line 2: want a header starting with \"# \", got %q", truncate(lines[1]))
	}
	col := map[string]int{}
	for i, h := range strings.Fields(hdr) {
		if _, dup := col[h]; !dup {
			col[h] = i
		}
	}
	need := 0 // fields a row must have to reach every column read
	for _, name := range serversStateColumns {
		i, ok := col[name]
		if !ok {
			return nil, fmt.Errorf("show servers state: line 2: column %q missing", name)
		}
		need = max(need, i+1)
	}
	var out []ServerState
	for n, line := range lines[2:] {
		lineNo := n + 3
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < need {
			return nil, fmt.Errorf("show servers state: line %d: %d fields, need %d", lineNo, len(f), need)
		}
		var perr error
		num := func(name string) int {
			v := f[col[name]]
			x, err := strconv.Atoi(v)
			if err != nil && perr == nil {
				perr = fmt.Errorf("show servers state: line %d: column %q: %q is not an integer", lineNo, name, v)
			}
			return x
		}
		s := ServerState{
			BackendID:   num("be_id"),
			Backend:     f[col["be_name"]],
			ID:          num("srv_id"),
			Name:        f[col["srv_name"]],
			Addr:        f[col["srv_addr"]],
			Oper:        OperationalState(num("srv_op_state")),
			Admin:       AdminFlags(num("srv_admin_state")),
			UserWeight:  num("srv_uweight"),
			SinceChange: int64(num("srv_time_since_last_change")),
			CheckResult: CheckResult(num("srv_check_result")),
			CheckHealth: num("srv_check_health"),
			CheckState:  num("srv_check_state"),
			Port:        num("srv_port"),
		}
		if i, ok := col["srv_fqdn"]; ok && i < len(f) && f[i] != "-" {
			s.FQDN = f[i]
		}
		if perr != nil {
			return nil, perr
		}
		out = append(out, s)
	}
	return out, nil
}

// Info is the answer of `show info`: every field verbatim, plus the ones
// zerodrop uses to recognise a process.
type Info struct {
	Fields  map[string]string
	Version string
	Pid     int
	// Uptime is Uptime_sec.
	Uptime time.Duration
	// StartTime is Start_time_sec when HAProxy reports it (2.5+), else zero.
	StartTime time.Time
}

// Epoch identifies one HAProxy worker process: it changes on every reload
// (new worker) and restart, which is when dynamic servers are lost.
func (i Info) Epoch() string {
	if !i.StartTime.IsZero() {
		return fmt.Sprintf("pid %d started %d", i.Pid, i.StartTime.Unix())
	}
	return fmt.Sprintf("pid %d", i.Pid)
}

// HasUptime reports whether HAProxy reported Uptime_sec (Uptime is zero
// otherwise).
func (i Info) HasUptime() bool { _, ok := i.Fields["Uptime_sec"]; return ok }

// ParseInfo parses the "Name: value" lines of `show info`.
func ParseInfo(b []byte) (Info, error) {
	info := Info{Fields: map[string]string{}}
	for n, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return Info{}, fmt.Errorf("show info: line %d: want \"Name: value\", got %q", n+1, truncate(line))
		}
		info.Fields[k] = strings.TrimSpace(v)
	}
	if info.Fields["Name"] == "" {
		return Info{}, errors.New("show info: field \"Name\" missing: not an HAProxy answer")
	}
	info.Version = info.Fields["Version"]
	pid, err := strconv.Atoi(info.Fields["Pid"])
	if err != nil || pid <= 0 {
		return Info{}, fmt.Errorf("show info: field \"Pid\": %q is not a process id", info.Fields["Pid"])
	}
	info.Pid = pid
	if v, ok := info.Fields["Uptime_sec"]; ok {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil || sec < 0 {
			return Info{}, fmt.Errorf("show info: field \"Uptime_sec\": %q is not a number of seconds", v)
		}
		info.Uptime = time.Duration(sec) * time.Second
	}
	if v, ok := info.Fields["Start_time_sec"]; ok {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil || sec < 0 {
			return Info{}, fmt.Errorf("show info: field \"Start_time_sec\": %q is not a unix time", v)
		}
		info.StartTime = time.Unix(sec, 0)
	}
	return info, nil
}

// ParseBackends parses the answer of `show backend`: "# name" then one
// backend name per line.
func ParseBackends(b []byte) ([]string, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != "# name" {
		return nil, fmt.Errorf("show backend: line 1: want \"# name\", got %q", truncate(firstLine(b)))
	}
	var out []string
	for n, l := range lines[1:] {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if err := validName("backend", l); err != nil {
			return nil, fmt.Errorf("show backend: line %d: %w", n+2, err)
		}
		out = append(out, l)
	}
	return out, nil
}
