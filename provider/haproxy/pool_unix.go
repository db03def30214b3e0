//go:build unix

package haproxy

import "syscall"

// peekIdle reports whether nothing is waiting on the socket and its peer has
// not closed it, without blocking or consuming a byte.
func peekIdle(raw syscall.RawConn) bool {
	idle := false
	err := raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n
		idle = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && idle
}
