//go:build !linux

package proxy

import "net"

// idleConnAlive reports whether an idle upstream connection can still carry
// a request. Without a portable non-blocking peek it assumes so; a request
// that may be sent twice is resent on a fresh connection when a reused one
// turns out closed.
func idleConnAlive(net.Conn) bool { return true }
