package nbd

import (
	"context"
	"errors"
	"strconv"
	"syscall"

	"github.com/shadowbench/shadowbench/cow"
)

// Errors of the server's lifecycle.
var (
	// ErrServerClosed is returned by Serve after Shutdown or Close.
	ErrServerClosed = errors.New("nbd: server closed")
)

// Errors of the client's handshake.
var (
	// ErrUnknownExport is returned by Dial when the server has no export of
	// the requested name.
	ErrUnknownExport = errors.New("nbd: unknown export")
	// ErrUnsupported is returned when the server lacks a feature the client
	// requires (fixed newstyle, structured replies for block status).
	ErrUnsupported = errors.New("nbd: unsupported by the server")
	// ErrProtocol is returned when the peer violates the protocol; the
	// connection is closed.
	ErrProtocol = errors.New("nbd: protocol violation")
)

// Errors of the client's transmission phase.
var (
	// ErrClosed is returned for requests on a closed or broken client.
	ErrClosed = errors.New("nbd: client closed")
	// ErrTooLarge is returned for a request whose length does not fit the
	// protocol's 32-bit length field.
	ErrTooLarge = errors.New("nbd: request too large")
)

// Errno is an error value of the transmission phase, as carried by simple and
// structured replies. Its values are the protocol's, which equal Linux errno
// values, so errors.Is(err, syscall.EINVAL) holds for EINVAL.
type Errno uint32

// The error values the protocol defines.
const (
	EPERM     Errno = 1
	EIO       Errno = 5
	ENOMEM    Errno = 12
	EINVAL    Errno = 22
	ENOSPC    Errno = 28
	EOVERFLOW Errno = 75
	ENOTSUP   Errno = 95
	ESHUTDOWN Errno = 108
)

func (e Errno) name() string {
	switch e {
	case EPERM:
		return "EPERM"
	case EIO:
		return "EIO"
	case ENOMEM:
		return "ENOMEM"
	case EINVAL:
		return "EINVAL"
	case ENOSPC:
		return "ENOSPC"
	case EOVERFLOW:
		return "EOVERFLOW"
	case ENOTSUP:
		return "ENOTSUP"
	case ESHUTDOWN:
		return "ESHUTDOWN"
	}
	return "errno " + strconv.FormatUint(uint64(e), 10)
}

func (e Errno) Error() string { return "nbd: " + e.name() }

// Is reports whether target is the syscall.Errno of the same value.
func (e Errno) Is(target error) bool {
	t, ok := target.(syscall.Errno)
	return ok && uint32(t) == uint32(e)
}

// ReplyError is an error reply that came with a message from the server.
type ReplyError struct {
	Errno   Errno
	Message string
}

func (e *ReplyError) Error() string { return e.Errno.Error() + ": " + e.Message }

// Unwrap returns the Errno.
func (e *ReplyError) Unwrap() error { return e.Errno }

// OptionError is an error reply of the handshake.
type OptionError struct {
	Option  uint32
	Reply   uint32
	Message string
}

func (e *OptionError) Error() string {
	s := "nbd: option " + strconv.FormatUint(uint64(e.Option), 10) + " refused: " + repName(e.Reply)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes errors.Is(err, ErrUnknownExport) and ErrUnsupported hold for the
// matching replies.
func (e *OptionError) Is(target error) bool {
	switch target {
	case ErrUnknownExport:
		return e.Reply == repErrUnknown
	case ErrUnsupported:
		return e.Reply == repErrUnsup || e.Reply == repErrPolicy
	}
	return false
}

func repName(r uint32) string {
	switch r {
	case repErrUnsup:
		return "NBD_REP_ERR_UNSUP"
	case repErrPolicy:
		return "NBD_REP_ERR_POLICY"
	case repErrInvalid:
		return "NBD_REP_ERR_INVALID"
	case repErrPlatform:
		return "NBD_REP_ERR_PLATFORM"
	case repErrTLSReqd:
		return "NBD_REP_ERR_TLS_REQD"
	case repErrUnknown:
		return "NBD_REP_ERR_UNKNOWN"
	case repErrShutdown:
		return "NBD_REP_ERR_SHUTDOWN"
	case repErrBlockSize:
		return "NBD_REP_ERR_BLOCK_SIZE_REQD"
	case repErrTooBig:
		return "NBD_REP_ERR_TOO_BIG"
	}
	return "reply 0x" + strconv.FormatUint(uint64(r), 16)
}

// errnoOf maps a backend error to the protocol's error values: an Errno or a
// syscall.Errno (fault injection) keeps its value where the protocol defines
// it, storage sentinels map by meaning, and anything else is EIO.
func errnoOf(err error) Errno {
	var e Errno
	if errors.As(err, &e) {
		return protocolErrno(e)
	}
	var se syscall.Errno
	if errors.As(err, &se) {
		switch se {
		case syscall.EDQUOT, syscall.EFBIG:
			return ENOSPC
		case syscall.EROFS:
			return EPERM
		}
		return protocolErrno(Errno(se))
	}
	switch {
	case errors.Is(err, cow.ErrOutOfRange):
		return EINVAL
	case errors.Is(err, cow.ErrNoSpace):
		return ENOSPC
	case errors.Is(err, cow.ErrReadOnly):
		return EPERM
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ESHUTDOWN
	}
	if e, ok := storageErrno(err); ok {
		return e
	}
	return EIO
}

// protocolErrno restricts e to the values the protocol defines.
func protocolErrno(e Errno) Errno {
	switch e {
	case EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN:
		return e
	}
	return EIO
}
