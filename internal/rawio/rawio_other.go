//go:build !linux

package rawio

import "syscall"

// Supported reports whether Read and Write may be used.
const Supported = false

// Read must not be called where Supported is false.
func Read(fd uintptr, p []byte) (int, syscall.Errno) { panic("rawio: not supported") }

// Write must not be called where Supported is false.
func Write(fd uintptr, p []byte) (int, syscall.Errno) { panic("rawio: not supported") }
