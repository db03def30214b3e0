package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// Scenario: a kernel with transparent huge pages, and a 16 MiB block
// marked. Expectation: the mapping that holds the block's middle has the
// huge-page flag ("hg" in /proc/self/smaps's VmFlags).
func TestMarkHugePages_FlagsTheMapping(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skip("kernel without transparent huge pages")
	}
	b := make([]byte, 16<<20)
	if !markHugePages(b) {
		t.Fatal("markHugePages = false: madvise(MADV_HUGEPAGE) was refused")
	}
	mid := uintptr(unsafe.Pointer(&b[len(b)/2]))
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false // in the mapping that holds mid
	for _, l := range strings.Split(string(smaps), "\n") {
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(l, "%x-%x", &lo, &hi); n == 2 {
			in = lo <= mid && mid < hi
			continue
		}
		if in && strings.HasPrefix(l, "VmFlags:") {
			if !strings.Contains(l+" ", " hg ") {
				t.Errorf("the block's mapping is not marked for huge pages: %s", l)
			}
			return
		}
	}
	t.Errorf("no mapping holds the block at %#x", mid)
}

// Scenario: GODEBUG=disablethp=1, which turns huge pages off for Go's own
// heap. Expectation: hugePageHeap leaves the heap alone too.
func TestHugePageHeap_RespectsDisableTHP(t *testing.T) {
	t.Setenv("GODEBUG", "disablethp=1")
	if hugePageHeap(16 << 20) {
		t.Error("hugePageHeap = true with GODEBUG=disablethp=1")
	}
}
