//go:build !race && !purego

package cow

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The race detector does not see stores made in assembly, so race builds
// use the plain copy (stream_other.go) and keep every data copy checked.

var haveStream = cpu.X86.HasAVX

// streamAvailable reports whether streamCopy can stream on this machine.
func streamAvailable() bool { return haveStream }

//go:noescape
func streamCopyAVX(dst, src *byte, n int)

func storeFenceSSE()

func streamCopy(dst, src []byte) bool {
	n := len(src)
	if !haveStream || n == 0 || n%128 != 0 || len(dst) < n || uintptr(unsafe.Pointer(&dst[0]))%32 != 0 {
		return false
	}
	streamCopyAVX(&dst[0], &src[0], n)
	return true
}

func storeFence() { storeFenceSSE() }
