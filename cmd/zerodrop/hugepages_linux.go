package main

import (
	"os"
	"runtime"
	"strings"
	"syscall"
	"unsafe"
)

// hugePageSize is the size of Linux's transparent huge pages on amd64 and
// arm64 (4 KiB base pages).
const hugePageSize = 2 << 20

// hugePageHeap allocates size bytes, marks the huge pages inside them
// MADV_HUGEPAGE, and frees them for the heap to reuse. It does nothing with
// GODEBUG=disablethp=1, which turns huge pages off for Go's own heap too;
// it reports whether the kernel took the advice (it refuses when built
// without THP).
func hugePageHeap(size int) bool {
	if strings.Contains(os.Getenv("GODEBUG"), "disablethp=1") {
		return false
	}
	// Fresh from the OS, the block is not zeroed by Go, so not touched:
	// allocating it costs no page.
	b := make([]byte, size)
	ok := markHugePages(b)
	runtime.KeepAlive(b)
	b = nil
	// Free the block now, while the heap holds almost nothing else, so
	// that what the check allocates next lands in it.
	runtime.GC()
	return ok
}

// markHugePages advises the kernel to back the whole huge pages inside b
// with huge pages; false when b holds none or the kernel refused.
func markHugePages(b []byte) bool {
	// madvise wants page-aligned ranges, and only whole huge pages can be
	// backed by one.
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := int((p+hugePageSize-1)&^(hugePageSize-1) - p)
	end := int((p+uintptr(len(b)))&^(hugePageSize-1) - p)
	if start >= end {
		return false
	}
	return syscall.Madvise(b[start:end], syscall.MADV_HUGEPAGE) == nil
}
