package main

// The heap of a large check on huge pages.
//
// A check of the bench's 10,000 objects (5.7 MB) grows its heap to about
// 60 MB, and with 4 KiB pages every page's first touch is a fault: about
// 12,000 of them, a quarter of the process's CPU time on the bench's
// virtual machine, wherever the heap grows. Go's runtime does not ask
// Linux for transparent huge pages, and in THP's "madvise" mode (a common
// default) its heap gets none. hugePageHeap asks: it allocates a block of
// about the heap the input will need, marks its pages MADV_HUGEPAGE and
// frees it. The heap's later allocations reuse those addresses (Go's page
// allocator takes the lowest free ones first), and the kernel backs every
// 2 MiB of them with one page and one fault. Only pages touched count as
// resident, as before; the heap's last huge page may be partly used.

// heapPerInputByte is how much heap a check needs per byte of YAML: the
// bench's 5.7 MB grew the heap to 58 to 67 MB.
const heapPerInputByte = 11

// maxHugePageHeap bounds the block hugePageHeap marks (and its input size
// walk): beyond it the heap grows on ordinary pages, as without it.
const maxHugePageHeap = 1 << 30

// hugePageHeapBytes is the size of the block to mark for inputs of n bytes,
// 0 when n is small enough that the heap stays a few MB (smallInputBytes).
func hugePageHeapBytes(n int64) int {
	if n <= smallInputBytes {
		return 0
	}
	return int(min(n*heapPerInputByte, maxHugePageHeap))
}

// hugePageHeapFor marks the heap a check of paths will need for huge pages
// (see hugePageHeap) when paths add up to more than smallInputBytes; it
// reports whether it did.
func hugePageHeapFor(paths []string) bool {
	n, ok := inputBytes(paths, maxHugePageHeap/heapPerInputByte)
	if !ok {
		return false
	}
	size := hugePageHeapBytes(n)
	return size > 0 && hugePageHeap(size)
}
