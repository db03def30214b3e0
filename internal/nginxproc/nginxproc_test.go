package nginxproc

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command with spaces and a ')' in it: fields count from the last ')'.
	s := "1234 (nginx: worker) x) S 1200 1234 1234 0 -1 4194624 10 0 0 0 0 0 0 0 20 0 1 0 987654 12345 100 18446744073709551615"
	st, err := parseStat(s)
	if err != nil {
		t.Fatal(err)
	}
	if st.state != 'S' || st.ppid != 1200 || st.startTicks != 987654 {
		t.Fatalf("got %+v", st)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 2", "1 (x) S p 1 1 0 -1 4 1 0 0 0 0 0 0 0 20 0 1 0 9 1"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestReadOwnProcess(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// This process started before now on the boot clock.
	if started := time.Duration(st.startTicks) * Tick; started <= 0 || started > Now() {
		t.Fatalf("start %v, now %v", started, Now())
	}
	// Not an NGINX master.
	if _, err := ReadPID(os.Getpid()); err == nil || !strings.Contains(err.Error(), "not an nginx master") {
		t.Fatalf("ReadPID(self): %v", err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add("1234 (nginx) S 1200 1234 1234 0 -1 4194624 10 0 0 0 0 0 0 0 20 0 1 0 987654 12345")
	f.Add("1 ())) R 0")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseStat(s) // never panics
	})
}

func TestSignalPending(t *testing.T) {
	st := "Name:\tnginx\nSigQ:\t0/1\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000001\nSigBlk:\t0000000000000001\n"
	if !signalPending(st, 1) {
		t.Fatal("SIGHUP in ShdPnd: not pending")
	}
	if signalPending(st, 2) || signalPending(st, 0) || signalPending("ShdPnd: zz\n", 1) {
		t.Fatal("pending without its bit")
	}
	if SignalPending(os.Getpid(), 1) {
		t.Fatal("this process has a SIGHUP pending")
	}
}

// A master is idle while it waits in sigsuspend: SIGHUP not blocked. During
// a reload (parse, fork) it blocks SIGHUP; an unreadable status is not idle.
func TestIdleFromSignalMask(t *testing.T) {
	for _, c := range []struct {
		status string
		want   bool
	}{
		{"Name:\tnginx\nSigPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigCgt:\t0000000018016a07\n", true},
		// A SIGHUP pending does not matter: the reload it starts parses later.
		{"Name:\tnginx\nShdPnd:\t0000000000000001\nSigBlk:\t0000000000000000\n", true},
		// Reloading: SIGHUP (bit 0) blocked, with the rest of NGINX's set.
		{"Name:\tnginx\nSigBlk:\t0000000018016a07\n", false},
		{"Name:\tnginx\nSigBlk:\t0000000000000001\n", false},
		{"Name:\tnginx\n", false},
		{"Name:\tnginx\nSigBlk:\tzz\n", false},
	} {
		if got := idle(c.status); got != c.want {
			t.Errorf("idle(%q) = %v, want %v", c.status, got, c.want)
		}
	}
	if Idle(-1) {
		t.Error("Idle(-1): a process that cannot be read is idle")
	}
}

// Children exiting while the list is read (old workers after a reload) must
// not hide a child that lives through the read (the old worker holding a
// request): the kernel's children file alone skips one now and then.
func TestChildrenFindsTheLongLivedOneWhileOthersExit(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep binary")
	}
	var short []*exec.Cmd
	for range 30 {
		c := exec.Command("sleep", "0.3")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		short = append(short, c)
	}
	long := exec.Command("sleep", "60")
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		long.Process.Kill()
		long.Wait()
	}()
	done := make(chan struct{})
	go func() {
		for _, c := range short {
			c.Wait()
		}
		close(done)
	}()
	reads := 0
	for running := true; running; reads++ {
		select {
		case <-done:
			running = false
		default:
		}
		if !slices.Contains(children(os.Getpid()), long.Process.Pid) {
			t.Fatalf("read %d: the long-lived child %d is missing while others exit", reads, long.Process.Pid)
		}
	}
	t.Logf("%d reads while 30 children exited", reads)
}

// Children lists a child whatever its title, and not once it is reaped.
func TestChildrenWhateverTheTitle(t *testing.T) {
	c := exec.Command("sleep", "30")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(Children(os.Getpid()), c.Process.Pid) {
		t.Errorf("child %d not in %v", c.Process.Pid, Children(os.Getpid()))
	}
	c.Process.Kill()
	c.Wait()
	if slices.Contains(Children(os.Getpid()), c.Process.Pid) {
		t.Errorf("reaped child %d still listed", c.Process.Pid)
	}
}
