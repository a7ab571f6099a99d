//go:build !(aix || darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package dnsserver

import (
	"errors"
	"syscall"
)

// reusePortSupported is false where SO_REUSEPORT is not available: the
// server then serves UDP on a single socket.
const reusePortSupported = false

func reusePort(_, _ string, _ syscall.RawConn) error { return errors.ErrUnsupported }
