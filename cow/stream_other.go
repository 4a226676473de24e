//go:build !amd64 || race || purego

package cow

func streamCopy(dst, src []byte) bool { return false }

func storeFence() {}

func streamAvailable() bool { return false }
