//go:build !unix

package haproxy

import "syscall"

// peekIdle cannot peek here: idle connections are not reused.
func peekIdle(syscall.RawConn) bool { return false }
