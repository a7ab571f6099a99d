//go:build !linux

package rawio

import "syscall"

// Supported reports whether Read and Write may be used.
const Supported = false

// Read must not be called where Supported is false.
func Read(fd uintptr, p []byte) (int, syscall.Errno) { panic("rawio: not supported") }

// Write must not be called where Supported is false.
func Write(fd uintptr, p []byte) (int, syscall.Errno) { panic("rawio: not supported") }

// ReadStep must not be called where Supported is false.
func ReadStep(fd uintptr, p []byte) (int, syscall.Errno, bool) { panic("rawio: not supported") }

// WriteStep must not be called where Supported is false.
func WriteStep(fd uintptr, p []byte) (int, syscall.Errno, bool) { panic("rawio: not supported") }
