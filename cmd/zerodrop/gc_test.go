package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// Scenario: the inputs check is given. Expectation: files and directories
// up to 1 MiB in all are small; more, standard input, a missing path or no
// path are not.
func TestSmallInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(size)
		f.Close()
		return p
	}
	small := write("small.yaml", 30<<10)
	half := write("half.yaml", smallInputBytes/2)
	big := write("big.yaml", smallInputBytes+1)
	write("tree/a.yaml", 100<<10)
	write("tree/sub/b.yaml", 100<<10)
	for _, tc := range []struct {
		name  string
		paths []string
		want  bool
	}{
		{"one small file", []string{small}, true},
		{"a directory of 200 KiB", []string{filepath.Join(dir, "tree")}, true},
		{"two halves and more", []string{half, half, small}, false},
		{"a file over 1 MiB", []string{big}, false},
		{"standard input", []string{small, "-"}, false},
		{"a missing path", []string{filepath.Join(dir, "nope.yaml")}, false},
		{"no path", nil, false},
	} {
		if got := smallInput(tc.paths); got != tc.want {
			t.Errorf("%s: smallInput = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Scenario: a large input with its heap on huge pages, with and without
// GOGC in the environment. Expectation: the target becomes
// hugePageGCPercent, except when GOGC is set, which always wins.
func TestGCForHugePageHeap(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)

	t.Setenv("GOGC", "")
	if !gcForHugePageHeap() {
		t.Error("gcForHugePageHeap = false without GOGC in the environment")
	}
	if got := debug.SetGCPercent(100); got != hugePageGCPercent {
		t.Errorf("GC percent = %d, want %d", got, hugePageGCPercent)
	}

	t.Setenv("GOGC", "100")
	if gcForHugePageHeap() {
		t.Error("gcForHugePageHeap = true with GOGC=100 in the environment")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent = %d with GOGC=100 in the environment, want 100", got)
	}
}
