// Package nginxproc reads an NGINX master process and its workers from
// /proc: which pid the pid file names, whether that pid is an NGINX master,
// its worker processes, when each started and whether it is an old worker
// finishing its connections after a reload ("worker process is shutting
// down"). The NGINX provider and the lab both need it; NGINX open source
// has no API that tells any of this.
//
// Times are on the boot clock (CLOCK_BOOTTIME, the clock /proc/<pid>/stat
// counts process start times on), so that a wall-clock step cannot reorder a
// configuration write and a worker start.
package nginxproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Tick is the resolution of a process start time in /proc/<pid>/stat
// (USER_HZ, 100 on every Linux architecture): a start time read from there
// is up to one Tick earlier than the real one.
const Tick = 10 * time.Millisecond

// Worker is one worker process of a master.
type Worker struct {
	PID int
	// Started is when the process started, on the boot clock (truncated to
	// Tick).
	Started time.Duration
	// ShuttingDown is true for an old worker: after a reload (or a graceful
	// stop) it accepts no new connection and exits once the requests it
	// holds are done, or at worker_shutdown_timeout.
	ShuttingDown bool
}

// Master is an NGINX master process and its workers.
type Master struct {
	PID int
	// Workers are sorted by start time, oldest first (an upgrading old
	// master's come last). Cache manager and
	// cache loader processes are not workers and are left out.
	Workers []Worker
	// Upgrading is the pid of the old master of a binary upgrade, whose
	// workers are in Workers too; 0 otherwise.
	Upgrading int
}

// ErrNoMaster is wrapped by Read when the pid file is missing or empty, or
// names a process that is gone or is not an NGINX master.
var ErrNoMaster = errors.New("no nginx master running")

// Now returns the boot clock.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// CLOCK_BOOTTIME exists since Linux 2.6.39; never reached.
		panic(fmt.Sprintf("clock_gettime(CLOCK_BOOTTIME): %v", err))
	}
	return time.Duration(ts.Nano())
}

// Wall converts a boot-clock time to wall-clock time (to the precision of the
// two clock reads).
func Wall(boot time.Duration) time.Time {
	now, b := time.Now(), Now()
	return now.Add(boot - b)
}

// BootID returns the kernel's boot id: a boot-clock time written before the
// last boot means nothing after it.
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ReadPIDFile returns the pid written in an NGINX pid file.
func ReadPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w: %w", path, ErrNoMaster, err)
	}
	s := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %w: content %q is not a pid", path, ErrNoMaster, s)
	}
	return pid, nil
}

// Read reads the master named by the pid file and its workers. During a
// binary upgrade (SIGUSR2) the old master's pid file is renamed to
// <pid file>.oldbin and both masters' workers accept connections: the old
// master's workers are then listed too, after the new one's, and count as
// workers that loaded nothing written since they started.
func Read(pidFile string) (Master, error) {
	pid, err := ReadPIDFile(pidFile)
	if err != nil {
		return Master{}, err
	}
	m, err := ReadPID(pid)
	if err != nil {
		return Master{}, err
	}
	if old, err := ReadPIDFile(pidFile + ".oldbin"); err == nil && old != pid {
		if om, err := ReadPID(old); err == nil {
			m.Workers = append(m.Workers, om.Workers...)
			m.Upgrading = old
		}
	}
	return m, nil
}

// ReadPID reads the master pid and its workers. It fails with ErrNoMaster
// when pid is gone, a zombie, or not an NGINX master (a reused pid).
func ReadPID(pid int) (Master, error) {
	st, err := readStat(pid)
	if err != nil {
		return Master{}, fmt.Errorf("pid %d: %w: %w", pid, ErrNoMaster, err)
	}
	if st.state == 'Z' {
		return Master{}, fmt.Errorf("pid %d: %w: the process is a zombie", pid, ErrNoMaster)
	}
	if !isMaster(pid) {
		return Master{}, fmt.Errorf("pid %d: %w: the process is not an nginx master (command %q)", pid, ErrNoMaster, cmdline(pid))
	}
	m := Master{PID: pid}
	for _, c := range children(pid) {
		cs, err := readStat(c)
		if err != nil || cs.state == 'Z' || cs.ppid != pid {
			continue // exited meanwhile, or not ours any more
		}
		title := cmdline(c)
		// Titled children other than workers: cache manager and loader,
		// and the new master of a binary upgrade (a child of the old one).
		if strings.HasPrefix(title, "nginx: ") && !strings.Contains(title, "worker process") {
			continue
		}
		m.Workers = append(m.Workers, Worker{
			PID:     c,
			Started: time.Duration(cs.startTicks) * Tick,
			// Without a title (an NGINX built without setproctitle) a
			// worker counts as current: that only makes Healthy later.
			ShuttingDown: strings.Contains(title, "shutting down"),
		})
	}
	sort.Slice(m.Workers, func(i, j int) bool {
		if m.Workers[i].Started != m.Workers[j].Started {
			return m.Workers[i].Started < m.Workers[j].Started
		}
		return m.Workers[i].PID < m.Workers[j].PID
	})
	return m, nil
}

// Current returns the workers that accept new connections.
func (m Master) Current() []Worker {
	var out []Worker
	for _, w := range m.Workers {
		if !w.ShuttingDown {
			out = append(out, w)
		}
	}
	return out
}

// Alive reports whether pid is still a running (not zombie) process.
func Alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z'
}

func isMaster(pid int) bool {
	c := cmdline(pid)
	if strings.HasPrefix(c, "nginx: master process") {
		return true
	}
	// An NGINX without process titles: the executable's name, and not a
	// worker's title.
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == "nginx" && !strings.HasPrefix(c, "nginx: ")
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

type stat struct {
	state      byte
	ppid       int
	startTicks uint64
}

// readStat parses /proc/<pid>/stat: the command is in parentheses and may
// hold spaces and parentheses, so fields are counted after the last ')'.
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	return parseStat(string(b))
}

func parseStat(s string) (stat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("stat %q: no command", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 4 is ppid, field 22 starttime.
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("stat %q: too few fields", s)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return stat{}, fmt.Errorf("stat: ppid %q: %w", f[1], err)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("stat: starttime %q: %w", f[19], err)
	}
	return stat{state: f[0][0], ppid: ppid, startTicks: start}, nil
}

// Children lists the live child processes of pid, whatever their title: a
// worker forked a moment ago still carries its master's title until it has
// initialized, so Read does not count it yet, but it holds the master's
// listeners already.
func Children(pid int) []int {
	var out []int
	for _, c := range children(pid) {
		if st, err := readStat(c); err == nil && st.state != 'Z' && st.ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// children lists the child pids of pid. /proc/<pid>/task/*/children alone
// is not enough: the kernel walks the parent's list of children by position
// between two reads of it, so when one child exits during the walk the next
// one is skipped ("it was never promised to be accurate", fs/proc/array.c).
// After a reload the old workers exit one by one, so that skip can hide an
// old worker that still holds a request, or every current one. A scan of
// /proc, which walks pids in numeric order, lists every process that lives
// through the scan; a worker forked during it may be missed there, so the
// children files are read too and the two lists are merged. Every pid found
// is checked against its stat's ppid by the caller.
func children(pid int) []int {
	seen := map[int]bool{}
	var out []int
	add := func(c int) {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				add(c)
			}
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil || seen[c] {
			continue
		}
		if st, err := readStat(c); err == nil && st.ppid == pid {
			add(c)
		}
	}
	return out
}

// SignalPending reports whether sig is pending for the process: sent, and
// not yet taken by its handler (/proc/<pid>/status, ShdPnd and SigPnd).
func SignalPending(pid int, sig unix.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	return signalPending(string(b), sig)
}

func signalPending(status string, sig unix.Signal) bool {
	return inMask(status, sig, "ShdPnd", "SigPnd")
}

// Idle reports whether the master waits for a signal: an NGINX master
// blocks its signals except inside sigsuspend, so SIGHUP missing from its
// blocked set (/proc/<pid>/status, SigBlk) means it is there, not in the
// middle of a reload. Whatever it starts after this moment, a reload's
// parse included, reads the files as they are now. A process that cannot be
// read is not idle.
func Idle(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	return idle(string(b))
}

func idle(status string) bool {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "SigBlk:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(unix.SIGHUP)-1)) == 0
		}
	}
	return false
}

// inMask reports whether sig is set in any of the named hexadecimal signal
// masks of a /proc/<pid>/status text.
func inMask(status string, sig unix.Signal, keys ...string) bool {
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !slices.Contains(keys, k) {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err == nil && sig >= 1 && sig <= 64 && mask&(1<<(uint(sig)-1)) != 0 {
			return true
		}
	}
	return false
}
