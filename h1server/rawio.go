package h1server

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/coopr-gslb/coopr-gslb/internal/rawio"
)

// rawIO reads and writes a client connection with raw system calls through
// the poller (see package rawio for why): the same waits, deadlines and
// close semantics as net.Conn's Read and Write, without handing the P to
// the scheduler for calls that cannot block.
type rawIO struct {
	conn net.Conn
	raw  syscall.RawConn // nil: the ordinary calls

	// Each direction has its own state: a hijacked connection (a
	// WebSocket) is read and written at the same time.
	readFn, writeFn func(fd uintptr) bool
	rbuf, wbuf      []byte
	rn, wn          int
	rerrno, werrno  syscall.Errno
}

func (r *rawIO) init(c net.Conn) {
	r.conn = c
	if !rawio.Supported {
		return
	}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			r.raw = raw
			r.readFn, r.writeFn = r.readStep, r.writeStep
		}
	}
}

func (r *rawIO) read(p []byte) (int, error) {
	if r.raw == nil || len(p) == 0 {
		return r.conn.Read(p)
	}
	r.rbuf, r.rn, r.rerrno = p, 0, 0
	err := r.raw.Read(r.readFn)
	r.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case r.rerrno != 0:
		return 0, os.NewSyscallError("read", r.rerrno)
	case r.rn == 0:
		return 0, io.EOF
	}
	return r.rn, nil
}

func (r *rawIO) readStep(fd uintptr) bool {
	n, errno, wait := rawio.ReadStep(fd, r.rbuf)
	if wait {
		return false
	}
	r.rn, r.rerrno = n, errno
	return true
}

// Write writes all of p, waiting for the poller while the socket is full.
func (r *rawIO) Write(p []byte) (int, error) {
	if r.raw == nil {
		return r.conn.Write(p)
	}
	r.wbuf, r.wn, r.werrno = p, 0, 0
	err := r.raw.Write(r.writeFn)
	n := r.wn
	r.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case r.werrno != 0:
		return n, os.NewSyscallError("write", r.werrno)
	}
	return n, nil
}

func (r *rawIO) writeStep(fd uintptr) bool {
	n, errno, full := rawio.WriteStep(fd, r.wbuf[r.wn:])
	r.wn += n
	if full {
		return false
	}
	r.werrno = errno
	return true
}
