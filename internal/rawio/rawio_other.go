//go:build !linux

package rawio

import "syscall"

// Supported reports whether ReadStep and WriteStep may be used.
const Supported = false

// ReadStep must not be called where Supported is false.
func ReadStep(fd uintptr, p []byte) (int, syscall.Errno, bool) { panic("rawio: not supported") }

// WriteStep must not be called where Supported is false.
func WriteStep(fd uintptr, p []byte) (int, syscall.Errno, bool) { panic("rawio: not supported") }
