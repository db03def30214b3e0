package haproxy

import (
	"bytes"
	"encoding/csv"
	"os"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// The testdata files are verbatim answers of haproxy 2.6.12 (Debian 12) for a
// backend "be" with a static server UP (static1), a dynamic server set to
// drain whose port is closed (pod-a: DOWN, L4CON) and one just added
// (pod-b: MAINT).
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStatReadsHAProxy26Answer(t *testing.T) {
	rows, err := ParseStat(readTestdata(t, "show_stat.txt"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Stat{}
	for _, r := range rows {
		byName[r.Proxy+"/"+r.Name] = r
	}
	if len(rows) != 5 {
		t.Fatalf("%d rows, want 5 (frontend, 3 servers, backend)", len(rows))
	}
	fe := byName["fe/FRONTEND"]
	if fe.Type != TypeFrontend || fe.Status != "OPEN" {
		t.Errorf("frontend row %+v", fe)
	}
	s := byName["be/static1"]
	if s.Type != TypeServer || s.Status != "UP" || s.CheckStatus != "L7OK" || s.CheckCode != 200 ||
		s.CheckRise != 3 || s.Addr != "127.0.0.1:18081" || s.ServerID != 1 {
		t.Errorf("static1 row %+v", s)
	}
	a := byName["be/pod-a"]
	if a.Status != "DOWN" || a.CheckStatus != "L4CON" || a.CheckHealth != 0 || a.CheckRise != 3 || a.CheckFall != 2 {
		t.Errorf("pod-a row %+v", a)
	}
	if b := byName["be/pod-b"]; !b.Maint() {
		t.Errorf("pod-b row %+v, want MAINT", b)
	}
	if be := byName["be/BACKEND"]; be.Type != TypeBackend {
		t.Errorf("backend row %+v", be)
	}
}

func TestParseStatHandlesQuotingAndRunningChecks(t *testing.T) {
	in := "# pxname,svname,scur,status,type,check_status,last_chk,lbtot,\n" +
		"be,s1,4,UP 1/2,2,* L7OK,\"HTTP status check returned code <200>, \"\"OK\"\"\",17,\n"
	rows, err := ParseStat([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{Proxy: "be", Name: "s1", Sessions: 4, Status: "UP 1/2", Type: TypeServer, CheckStatus: "L7OK",
		CheckRunning: true, LastCheck: `HTTP status check returned code <200>, "OK"`, Selected: 17}
	if len(rows) != 1 || rows[0] != want {
		t.Fatalf("got %+v\nwant %+v", rows, want)
	}
}

func TestParseStatRejectsBadInputNamingTheLine(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"no header", "be,s1,UP\n", "line 1"},
		{"missing column", "# pxname,svname,status\nbe,s1,UP\n", `column "type" missing`},
		{"not a number", "# pxname,svname,status,type,scur\nbe,s1,UP,2,many\n", `line 2: column "scur": "many"`},
		{"type out of range", "# pxname,svname,status,type\nbe,s1,UP,9\n", `column "type": 9`},
		{"bare quote", "# pxname,svname,status,type\nbe,s\"1,UP,2\n", "line 2"},
		{"error text instead of CSV", "No such proxy.\n", "line 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseStat([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseServersStateReadsHAProxy26Answer(t *testing.T) {
	states, err := ParseServersState(readTestdata(t, "show_servers_state.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 3 {
		t.Fatalf("%d servers, want 3", len(states))
	}
	s, a, b := states[0], states[1], states[2]
	if s.Name != "static1" || !s.Up() || s.Admin != 0 || s.CheckResult != CheckPassed || s.Port != 18081 || s.Backend != "be" {
		t.Errorf("static1 %+v", s)
	}
	if a.Name != "pod-a" || a.Up() || !a.Admin.Drain() || a.Admin.Maint() || a.CheckResult != CheckFailed || a.CheckState&CheckStateEnabled == 0 {
		t.Errorf("pod-a %+v", a)
	}
	if b.Name != "pod-b" || !b.Admin.Maint() || b.CheckState&CheckStateEnabled != 0 {
		t.Errorf("pod-b %+v", b)
	}
}

func TestParseServersStateRejectsBadInput(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "version line"},
		{"future format", "2\n# be_id\n", `format version "2"`},
		{"no header", "1\n3 be 1 s\n", "line 2"},
		{"short row", "1\n# " + strings.Join(serversStateColumns, " ") + "\n3 be 1\n", "line 3: 3 fields"},
		{"bad number", "1\n# " + strings.Join(serversStateColumns, " ") + "\n3 be x s 1.2.3.4 2 0 1 1 0 3 4 6 80\n", `line 3: column "srv_id": "x"`},
		{"backend missing", "Can't find backend.\n", "version line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseServersState([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseInfoFindsProcessIdentity(t *testing.T) {
	info, err := ParseInfo(readTestdata(t, "show_info.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Pid <= 0 || !strings.HasPrefix(info.Version, "2.6") || info.StartTime.IsZero() || info.Fields["Unstoppable Jobs"] == "" {
		t.Fatalf("info %+v", info)
	}
	other := info
	other.Pid++
	if other.Epoch() == info.Epoch() {
		t.Fatal("a new worker pid must change the epoch")
	}
	restarted := info
	restarted.StartTime = info.StartTime.Add(time.Second)
	if restarted.Epoch() == info.Epoch() {
		t.Fatal("a restart with the same pid (containers) must change the epoch")
	}
	for _, bad := range []string{"", "Pid: 12\n", "Name: HAProxy\nPid: x\n", "Name: HAProxy\nno colon\nPid: 1\n", "Name: HAProxy\nPid: 3\nUptime_sec: -1\n"} {
		if _, err := ParseInfo([]byte(bad)); err == nil {
			t.Errorf("ParseInfo(%q) succeeded", bad)
		}
	}
}

func TestParseBackends(t *testing.T) {
	names, err := ParseBackends(readTestdata(t, "show_backend.txt"))
	if err != nil || len(names) != 1 || names[0] != "be" {
		t.Fatalf("got %v, %v; want [be]", names, err)
	}
	if _, err := ParseBackends([]byte("Unknown command\n")); err == nil {
		t.Fatal("accepted an answer without the header")
	}
	if _, err := ParseBackends([]byte("# name\nbad name\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad name: %v, want an error naming line 2", err)
	}
}

// TestTargetStatusesMapsLBWordsToHealth checks the mapping from what HAProxy
// says to the provider's health states, on the recorded answer.
func TestTargetStatusesMapsLBWordsToHealth(t *testing.T) {
	stats, err := ParseStat(readTestdata(t, "show_stat.txt"))
	if err != nil {
		t.Fatal(err)
	}
	states, err := ParseServersState(readTestdata(t, "show_servers_state.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := TargetStatuses(Snapshot{Stats: stats, Servers: states})
	want := map[provider.TargetID]struct {
		h      provider.Health
		reason string
	}{
		"static1": {provider.HealthHealthy, "L7OK"},
		"pod-a":   {provider.HealthDrained, "DRAIN"}, // drain wins over DOWN: no traffic either way
		"pod-b":   {provider.HealthDrained, "MAINT"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d targets, want %d: %+v", len(got), len(want), got)
	}
	for id, w := range want {
		if got[id].Health != w.h || got[id].Reason != w.reason {
			t.Errorf("%s: %s/%s, want %s/%s", id, got[id].Health, got[id].Reason, w.h, w.reason)
		}
	}
	cases := []struct {
		name   string
		st     Stat
		ss     ServerState
		health provider.Health
	}{
		{"down, last check failed", Stat{Status: "DOWN", CheckStatus: "L4CON"}, ServerState{Oper: OperStopped, CheckResult: CheckFailed}, provider.HealthUnhealthy},
		{"down, passing towards rise", Stat{Status: "DOWN 2/3", CheckStatus: "L7OK", CheckHealth: 2, CheckRise: 3}, ServerState{Oper: OperStopped, CheckResult: CheckPassed}, provider.HealthInitial},
		{"up", Stat{Status: "UP", CheckStatus: "L7OK"}, ServerState{Oper: OperRunning}, provider.HealthHealthy},
		{"up, going down", Stat{Status: "UP 1/2", CheckStatus: "L7STS"}, ServerState{Oper: OperRunning, CheckResult: CheckFailed}, provider.HealthHealthy},
		{"soft-stopping", Stat{Status: "NOLB"}, ServerState{Oper: OperStopping}, provider.HealthUnhealthy},
		{"draining with sessions", Stat{Status: "DRAIN", Sessions: 2}, ServerState{Oper: OperRunning, Admin: AdminForcedDrain}, provider.HealthDraining},
		{"maint with queue", Stat{Status: "MAINT", QueueCurrent: 1}, ServerState{Admin: AdminForcedMaint}, provider.HealthDraining},
	}
	for _, tc := range cases {
		if got := targetStatus(tc.st, tc.ss, true).Health; got != tc.health {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.health)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add(readTestdata(f, "show_stat.txt"))
	f.Add([]byte("# pxname,svname,status,type\nbe,s,\"a,b\",2\n"))
	f.Add([]byte("# pxname,svname,status,type,scur\nbe,s,UP,2,-1\n"))
	f.Add([]byte("\n# pxname,svname,status,type\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := ParseStat(b)
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.Proxy == "" || r.Name == "" || r.Type < TypeFrontend || r.Type > TypeListener {
				t.Fatalf("accepted an invalid row %+v", r)
			}
		}
	})
}

func FuzzParseServersState(f *testing.F) {
	f.Add(readTestdata(f, "show_servers_state.txt"))
	f.Add([]byte("1\n# be_id\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		states, err := ParseServersState(b)
		if err != nil {
			return
		}
		for _, s := range states {
			_ = s.Up() || s.Admin.Maint() || s.Admin.Drain()
		}
	})
}

func FuzzParseInfo(f *testing.F) {
	f.Add(readTestdata(f, "show_info.txt"))
	f.Add([]byte("Name: HAProxy\nPid: 1\nStart_time_sec: 99999999999999\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseInfo(b)
		if err == nil && info.Pid <= 0 {
			t.Fatalf("accepted pid %d", info.Pid)
		}
	})
}

func FuzzSplitSeverity(f *testing.F) {
	for _, s := range []string{"\n[3]: No such server.\n\n", "\n\n", "[6]: New server registered.\n", "[9]: x", "[", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		answer, sev := splitSeverity(s)
		if sev < -1 || sev > 7 || len(answer) > len(s) {
			t.Fatalf("splitSeverity(%q) = %q, %d", s, answer, sev)
		}
	})
}

// BenchmarkParseStat compares ParseStat on a 500-server answer with bare
// encoding/csv reading the same bytes (the floor: no field conversion).
func BenchmarkParseStat(b *testing.B) {
	rec := readTestdata(b, "show_stat.txt")
	lines := bytes.Split(bytes.TrimRight(rec, "\n"), []byte("\n"))
	var buf bytes.Buffer
	buf.Write(lines[0])
	buf.WriteByte('\n')
	for i := 0; i < 500; i++ {
		buf.Write(lines[2]) // the static1 server row
		buf.WriteByte('\n')
	}
	in := buf.Bytes()
	b.Run("ParseStat", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for i := 0; i < b.N; i++ {
			if _, err := ParseStat(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-csv-baseline", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for i := 0; i < b.N; i++ {
			r := csv.NewReader(bytes.NewReader(in[2:]))
			r.FieldsPerRecord = -1
			if _, err := r.ReadAll(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Scenario: names and states of server-template slots as HAProxy 2.6 dumps
// them. Expectation: only SlotPrefix+digits is a slot; a slot the config
// marks `disabled` but that was set ready (admin 0x04 only, UP) is not in
// maintenance; a fresh slot (0x05, 0.0.0.0) is free; a slot in maintenance
// with a pod's address is not free; srv_fqdn is read, "-" as empty.
func TestSlotNamesAndStates(t *testing.T) {
	for name, want := range map[string]bool{"zd-slot1": true, "zd-slot064": true, "zd-slot": false, "zd-slotx": false, "zd-slot1a": false, "zd_ns_b_pod": false, "anchor": false} {
		if IsSlot(name) != want {
			t.Errorf("IsSlot(%q) = %v, want %v", name, !want, want)
		}
	}
	in := "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n" +
		"3 app 1 zd-slot1 127.0.0.1 2 4 1 1 4 15 3 4 6 0 0 0 zd-slot.invalid 19001 - 0 0 - - 0\n" +
		"3 app 2 zd-slot2 0.0.0.0 0 5 1 1 6 1 0 0 14 0 0 0 zd-slot.invalid 1 - 0 0 - - 0\n" +
		"3 app 3 zd-slot3 10.0.0.7 0 5 1 1 6 1 0 0 14 0 0 0 - 8080 - 0 0 - - 0\n"
	states, err := ParseServersState([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if !HasSlots(states) {
		t.Fatal("HasSlots: false")
	}
	if s := states[0]; s.Admin.Maint() || !s.Up() || SlotFree(s) || s.FQDN != "zd-slot.invalid" {
		t.Errorf("ready slot: %+v: want not maint, UP, not free, FQDN zd-slot.invalid", s)
	}
	if s := states[1]; !s.Admin.Maint() || !SlotFree(s) {
		t.Errorf("fresh slot: %+v: want maint and free", s)
	}
	if s := states[2]; !s.Admin.Maint() || SlotFree(s) || s.FQDN != "" {
		t.Errorf("slot in maint with an address: %+v: want maint, not free, no FQDN", s)
	}
}
