//go:build linux

// Package rawio reads and writes non-blocking sockets without telling the
// Go scheduler that a system call is under way.
//
// A system call made with syscall.Read or syscall.Write hands its P to the
// scheduler: if the call lasts longer than sysmon's 20 us tick, sysmon takes
// the P away and wakes another thread to run it, and the returning thread
// must find a P again. On loopback a write does the receiving side's TCP
// work too and often lasts that long, so a busy proxy paid thread wake-ups,
// futex calls and a sysmon that never slept for calls that cannot block: on
// a non-blocking socket read and write return at once (EAGAIN when they
// would block). Made raw, they keep the P for their few microseconds.
//
// Only for file descriptors in non-blocking mode, such as those of a
// net.Conn reached through syscall.RawConn. Elsewhere than Linux,
// Supported is false and callers keep the ordinary calls.
package rawio

import (
	"syscall"
	"unsafe"
)

// Supported reports whether ReadStep and WriteStep may be used.
const Supported = true

// read is read(2) on a non-blocking descriptor.
func read(fd uintptr, p []byte) (int, syscall.Errno) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(ptr), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// write is write(2) on a non-blocking descriptor.
func write(fd uintptr, p []byte) (int, syscall.Errno) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(ptr), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// ReadStep is one turn of a poller read callback (syscall.RawConn.Read): it
// reads into p, again after EINTR, and reports wait when the socket has
// nothing yet (EAGAIN), for the callback to return false.
func ReadStep(fd uintptr, p []byte) (n int, errno syscall.Errno, wait bool) {
	for {
		n, errno = read(fd, p)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, 0, true
		}
		return n, errno, false
	}
}

// WriteStep is one turn of a poller write callback: it writes as much of p
// as the socket takes, again after EINTR, and reports full when the socket
// would block with bytes of p left.
func WriteStep(fd uintptr, p []byte) (n int, errno syscall.Errno, full bool) {
	for n < len(p) {
		m, e := write(fd, p[n:])
		n += m
		switch e {
		case 0, syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return n, 0, true
		}
		return n, e, false
	}
	return n, 0, false
}
