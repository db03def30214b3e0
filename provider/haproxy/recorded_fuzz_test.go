package haproxy

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// recordedBatch is what HAProxy 2.6.12 sends for `set severity-output
// number; show stat; show servers state; show info; show backend`: the
// recorded answers of testdata, each ended by its empty line.
func recordedBatch(t testing.TB) [][]string {
	t.Helper()
	var answers [][]string
	for _, name := range []string{"show_stat.txt", "show_servers_state.txt", "show_info.txt", "show_backend.txt"} {
		a := strings.TrimRight(string(readTestdata(t, name)), "\n")
		answers = append(answers, strings.Split(a, "\n"))
	}
	return answers
}

func joinBatch(answers [][]string) string {
	var b strings.Builder
	b.WriteString("\n") // set severity-output's answer
	for _, a := range answers {
		b.WriteString(strings.Join(a, "\n"))
		b.WriteString("\n\n")
	}
	return b.String()
}

// FuzzRecordedAnswers feeds the Runtime API reader real HAProxy answers
// broken the ways a connection breaks them: cut at any byte (a reset, a
// worker that dies mid-dump), and with lines moved from one answer into
// another (interleaving). What must hold: a cut batch is always an error,
// never a partial reading taken for a whole one; and whatever a parser
// accepts from an interleaved batch is what HAProxy said: no server row,
// state, backend or process identity that was not in the recording.
func FuzzRecordedAnswers(f *testing.F) {
	f.Add(uint32(0), uint64(0), uint8(0))
	f.Add(uint32(100), uint64(0), uint8(0))
	f.Add(uint32(0), uint64(7), uint8(3))
	f.Add(uint32(1<<31), uint64(42), uint8(1))
	orig := recordedBatch(f)
	full := joinBatch(orig)
	parts, err := splitDump(full, len(orig))
	if err != nil {
		f.Fatal(err)
	}
	wantStat, err1 := ParseStat([]byte(parts[0]))
	wantState, err2 := ParseServersState([]byte(parts[1]))
	wantInfo, err3 := ParseInfo([]byte(parts[2]))
	wantBackends, err4 := ParseBackends([]byte(parts[3]))
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		f.Fatal(err1, err2, err3, err4)
	}
	f.Fuzz(func(t *testing.T, cut uint32, seed uint64, moves uint8) {
		answers := make([][]string, len(orig))
		for i := range orig {
			answers[i] = slices.Clone(orig[i])
		}
		rng := rand.New(rand.NewPCG(seed, uint64(moves)))
		for range moves % 16 {
			from, to := rng.IntN(len(answers)), rng.IntN(len(answers))
			if len(answers[from]) == 0 {
				continue
			}
			i := rng.IntN(len(answers[from]))
			line := answers[from][i]
			answers[from] = slices.Delete(answers[from], i, i+1)
			j := rng.IntN(len(answers[to]) + 1)
			answers[to] = slices.Insert(answers[to], j, line)
		}
		raw := joinBatch(answers)
		at := int(cut % uint32(len(raw)+1))
		got, err := splitDump(raw[:at], len(answers))
		if at < len(raw) {
			if err == nil {
				t.Fatalf("a batch cut at byte %d of %d was accepted: %q", at, len(raw), got)
			}
			return
		}
		if err != nil {
			// Moving every line out of an answer leaves an empty one,
			// which reads as the end of the batch: refused, rightly.
			return
		}
		if rows, err := ParseStat([]byte(got[0])); err == nil {
			for _, r := range rows {
				if !slices.ContainsFunc(wantStat, func(w Stat) bool { return reflect.DeepEqual(w, r) }) {
					t.Fatalf("show stat accepted a row HAProxy did not send: %+v", r)
				}
			}
		}
		if states, err := ParseServersState([]byte(got[1])); err == nil {
			for _, s := range states {
				if !slices.ContainsFunc(wantState, func(w ServerState) bool { return reflect.DeepEqual(w, s) }) {
					t.Fatalf("show servers state accepted a state HAProxy did not send: %+v", s)
				}
			}
		}
		if info, err := ParseInfo([]byte(got[2])); err == nil {
			if info.Pid != wantInfo.Pid || !info.StartTime.Equal(wantInfo.StartTime) && !info.StartTime.IsZero() {
				t.Fatalf("show info accepted another process: pid %d started %s", info.Pid, info.StartTime)
			}
		}
		if backends, err := ParseBackends([]byte(got[3])); err == nil {
			for _, b := range backends {
				if !slices.Contains(wantBackends, b) {
					t.Fatalf("show backend accepted a backend HAProxy did not name: %q", b)
				}
			}
		}
	})
}
