//go:build !linux

package nbd

import "syscall"

// waitReadable is not available off Linux: an idle connection waits in
// its read buffer.
func waitReadable(syscall.RawConn) error { return errNoLeanWait }
