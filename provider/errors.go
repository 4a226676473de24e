package provider

import (
	"errors"
	"fmt"

	"github.com/shadowbench/shadowbench/vss"
)

// Errors of the state machine. Each reaches the caller inside an *Error that
// carries the HRESULT in brackets.
var (
	// ErrBadTransition is an illegal call for the set's state (one the
	// transition table has no row for) [VSS_E_BAD_STATE].
	ErrBadTransition = errors.New("provider: illegal call in this state")
	// ErrUnknownSet is a snapshot set the provider does not know
	// [VSS_E_OBJECT_NOT_FOUND].
	ErrUnknownSet = errors.New("provider: unknown snapshot set")
	// ErrAborted is returned by a call that was running when AbortSnapshots
	// arrived for its set [E_ABORT].
	ErrAborted = errors.New("provider: snapshot set aborted")
	// ErrDiscarded is returned by a call that was running when an
	// out-of-sequence BeginPrepareSnapshot discarded its set [E_ABORT].
	ErrDiscarded = errors.New("provider: snapshot set discarded by a newer set")
	// ErrClosed is returned once the provider is closed [E_ABORT].
	ErrClosed = errors.New("provider: closed")
)

// Errors of arguments [E_INVALIDARG].
var (
	// ErrBadArgs is a nil or empty slice, slices of different lengths, a
	// duplicate device or GUID_NULL where an ID is needed.
	ErrBadArgs = errors.New("provider: bad arguments")
	// ErrUnknownDevice is a device name the array does not hold, or a LUN
	// information that matches no LUN the provider knows.
	ErrUnknownDevice = errors.New("provider: unknown device")
	// ErrNotOwned is a LUN whose page-83 identifier is not the one of the
	// array's LUN of that name [VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER].
	ErrNotOwned = errors.New("provider: LUN not owned by this array")
)

// Errors of the array's resources and of fault injection.
var (
	// ErrUnsupportedContext is a context the profile cannot honour
	// [VSS_E_UNSUPPORTED_CONTEXT].
	ErrUnsupportedContext = errors.New("provider: context not supported by the firmware profile")
	// ErrNoCapacity is a snapshot the array lacks the free capacity for
	// [VSS_E_INSUFFICIENT_STORAGE].
	ErrNoCapacity = errors.New("provider: array capacity exhausted")
	// ErrTooManyVolumes is a 65th volume in one set
	// [VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED].
	ErrTooManyVolumes = errors.New("provider: more than 64 volumes in the set")
	// ErrInjected is a failure the firmware profile injected; the HRESULT
	// is the profile's.
	ErrInjected = errors.New("provider: failure injected by the firmware profile")
)

// Error is the error every provider method returns: the method, the set (or
// GUID_NULL), the HRESULT VSS would see, and the cause. errors.As(err, &hr)
// finds the HRESULT and errors.Is matches both the HRESULT and the cause,
// as litestream's LTXError wraps its context.
type Error struct {
	Method vss.ProviderMethod
	Set    vss.ID
	Code   vss.HRESULT
	Err    error
}

// Error formats "provider: CommitSnapshots {set}: VSS_E_BAD_STATE (0x80042301): cause".
func (e *Error) Error() string {
	set := ""
	if !e.Set.IsNull() {
		set = " " + e.Set.String()
	}
	if e.Err == nil {
		return fmt.Sprintf("provider: %v%s: %v", e.Method, set, e.Code)
	}
	return fmt.Sprintf("provider: %v%s: %v: %v", e.Method, set, e.Code, e.Err)
}

// Unwrap returns the HRESULT and the cause, so errors.Is and errors.As see
// both.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Code}
	}
	return []error{e.Code, e.Err}
}

// newError wraps cause as method's failure with code.
func newError(m vss.ProviderMethod, set vss.ID, code vss.HRESULT, cause error) *Error {
	return &Error{Method: m, Set: set, Code: code, Err: cause}
}

// badArgs is an E_INVALIDARG error with the reason formatted after
// ErrBadArgs.
func badArgs(m vss.ProviderMethod, set vss.ID, format string, args ...any) *Error {
	return newError(m, set, vss.E_INVALIDARG, fmt.Errorf("%w: "+format, append([]any{ErrBadArgs}, args...)...))
}
