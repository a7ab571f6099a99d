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

// Supported reports whether Read and Write may be used.
const Supported = true

// Read is read(2) on a non-blocking descriptor.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
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

// Write is write(2) on a non-blocking descriptor.
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
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
