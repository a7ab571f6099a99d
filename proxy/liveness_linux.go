package proxy

import (
	"net"
	"syscall"
)

// idleConnAlive reports whether an idle upstream connection can still carry
// a request: the backend has neither closed it nor sent anything on it while
// it sat in the pool. It peeks without blocking, one system call, so that a
// request that must not be sent twice is not written to a connection the
// backend already closed, where its fate would be unknown.
func idleConnAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: nothing to read and not closed. Data, EOF (no error)
		// or another error all mean the connection is done.
		alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && alive
}
