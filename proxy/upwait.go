package proxy

import (
	"io"
	"os"

	"github.com/coopr-gslb/coopr-gslb/internal/rawio"
)

// Writing a request and waiting for its answer in one poller round.
//
// Go's reads try the socket first and wait for the poller after: right
// after a request is written, the first read of its answer always fails
// with EAGAIN, a wasted system call and scheduler round per request. The
// poller forgets readiness seen before a read starts, so a read may only
// skip that first try when nothing could have arrived earlier. For an
// upstream answer that holds if the request itself is written inside the
// read: the backend cannot answer what it has not received. So the last
// buffer of a request is not written by Flush but kept, and the next read
// of the connection writes it from within the poller's read callback and
// then waits. A write the socket cannot take at once (a large body) leaves
// the callback, and the rest goes the ordinary way.

// deferLast makes the next Write keep its bytes for the next Read instead
// of writing them; Flush the writer right after.
func (pc *upConn) deferLast() {
	if pc.raw != nil {
		pc.deferWrite = true
	}
}

// Read reads the connection for its bufio.Reader, writing a kept request
// first.
func (pc *upConn) Read(p []byte) (int, error) {
	if pc.pending == nil {
		return pc.conn.Read(p)
	}
	pc.rawBuf, pc.rawN, pc.rawErr = p, 0, nil
	err := pc.raw.Read(pc.rawStepFn)
	pc.rawBuf = nil
	switch {
	case err != nil:
		if len(pc.pending) > 0 {
			pc.writeFailed = true // closed before the request went out
		}
		pc.pending = nil
		return 0, err
	case pc.rawErr != nil:
		return 0, pc.rawErr
	case pc.pending != nil:
		// The socket took part of the request: write the rest the
		// ordinary way, then read the ordinary way.
		rest := pc.pending
		pc.pending = nil
		if _, err := pc.Write(rest); err != nil {
			pc.writeFailed = true
			return 0, err
		}
		return pc.conn.Read(p)
	case pc.rawN == 0:
		return 0, io.EOF
	}
	return pc.rawN, nil
}

// rawStep is the poller's read callback: it writes the kept request, then
// asks to wait (false), then reads.
func (pc *upConn) rawStep(fd uintptr) bool {
	if len(pc.pending) > 0 {
		n, errno, full := rawio.WriteStep(fd, pc.pending)
		pc.written += int64(n)
		pc.pending = pc.pending[n:]
		switch {
		case errno != 0:
			pc.pending = nil
			pc.writeFailed = true
			pc.rawErr = os.NewSyscallError("write", errno)
			return true
		case full:
			return true // the caller writes the rest
		}
		pc.pending = nil
		return false // written: wait for the answer
	}
	n, errno, wait := rawio.ReadStep(fd, pc.rawBuf)
	if wait {
		return false
	}
	pc.rawN = n
	if errno != 0 {
		pc.rawErr = os.NewSyscallError("read", errno)
	}
	return true
}
