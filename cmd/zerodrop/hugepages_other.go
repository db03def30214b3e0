//go:build !linux

package main

// hugePageHeap does nothing outside Linux.
func hugePageHeap(size int) bool { return false }
