package nginxproc

import (
	"os"
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
