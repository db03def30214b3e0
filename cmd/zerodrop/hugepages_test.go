package main

import "testing"

// Scenario: inputs of several sizes. Expectation: none below the small-input
// bound (their heap stays small and GOGC=400 serves them), eleven times the
// input above it, never more than maxHugePageHeap.
func TestHugePageHeapBytes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input int64
		want  int
	}{
		{"an empty input", 0, 0},
		{"the small-input bound", smallInputBytes, 0},
		{"the bench's 10,000 objects", 5_887_086, 5_887_086 * heapPerInputByte},
		{"an input of 1 GiB", 1 << 30, maxHugePageHeap},
	} {
		if got := hugePageHeapBytes(tc.input); got != tc.want {
			t.Errorf("%s: hugePageHeapBytes(%d) = %d, want %d", tc.name, tc.input, got, tc.want)
		}
	}
}
