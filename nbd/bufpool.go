package nbd

import (
	"math/bits"
	"sync"
)

// bufPool hands out payload buffers in power-of-two size classes from 4 KiB
// to 64 MiB, so a connection holds memory only for requests in flight
// (at most MaxInFlight x MaxPayload) and reuses it across requests. A single
// sync.Pool was rejected: it would hand a 32 MiB buffer to a 4 KiB read and
// keep the large one alive.
var bufPool [bufClasses]sync.Pool

const (
	minBufShift = 12
	maxBufShift = 26
	bufClasses  = maxBufShift - minBufShift + 1
)

// getBuf returns a buffer of length n (n <= 1<<maxBufShift) and the pool
// handle to give back with putBuf; larger buffers are allocated unpooled.
func getBuf(n int) (*[]byte, []byte) {
	c := bufClass(n)
	if c >= bufClasses {
		b := make([]byte, n)
		return &b, b
	}
	if v := bufPool[c].Get(); v != nil {
		bp := v.(*[]byte)
		return bp, (*bp)[:n]
	}
	b := make([]byte, 1<<(c+minBufShift))
	return &b, b[:n]
}

// putBuf returns a buffer taken with getBuf.
func putBuf(bp *[]byte) {
	if bp == nil {
		return
	}
	n := cap(*bp)
	c := bufClass(n)
	if c >= bufClasses || 1<<(c+minBufShift) != n {
		return
	}
	bufPool[c].Put(bp)
}

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}
