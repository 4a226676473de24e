package vss

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// HRESULT is a Windows status code, and an error like syscall.Errno. The high bit marks a
// failure; a code without it (S_OK, S_FALSE, VSS_S_*) is a success and never travels as an
// error (see Err). The values are those of winerror.h and vss.h.
type HRESULT uint32

// The generic COM codes. S_FALSE, E_ABORT and E_FAIL are named by vss-spec.md C without a
// value; these are the winerror.h values.
const (
	S_OK           HRESULT = 0x00000000
	S_FALSE        HRESULT = 0x00000001
	E_ABORT        HRESULT = 0x80004004
	E_FAIL         HRESULT = 0x80004005
	E_UNEXPECTED   HRESULT = 0x8000FFFF // Returned by SetContext before Windows 7 (E).
	E_ACCESSDENIED HRESULT = 0x80070005
	E_OUTOFMEMORY  HRESULT = 0x8007000E
	E_INVALIDARG   HRESULT = 0x80070057
)

// The VSS success codes.
const (
	VSS_S_ASYNC_PENDING               HRESULT = 0x00042309
	VSS_S_ASYNC_FINISHED              HRESULT = 0x0004230A
	VSS_S_ASYNC_CANCELLED             HRESULT = 0x0004230B
	VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED HRESULT = 0x00042321 // Import found some LUNs missing or mismatched (B6).
)

// The VSS failure codes of the requester, provider and service sides (vss-spec.md B, C, E).
const (
	VSS_E_BAD_STATE                           HRESULT = 0x80042301 // An illegal transition of any state machine.
	VSS_E_UNEXPECTED                          HRESULT = 0x80042302
	VSS_E_PROVIDER_NOT_REGISTERED             HRESULT = 0x80042304
	VSS_E_PROVIDER_VETO                       HRESULT = 0x80042306
	VSS_E_OBJECT_NOT_FOUND                    HRESULT = 0x80042308
	VSS_E_VOLUME_NOT_SUPPORTED                HRESULT = 0x8004230C
	VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER    HRESULT = 0x8004230E
	VSS_E_UNEXPECTED_PROVIDER_ERROR           HRESULT = 0x8004230F // What the requester sees for an illegal provider code (C).
	VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED   HRESULT = 0x80042312 // More than 64 volumes in a set.
	VSS_E_FLUSH_WRITES_TIMEOUT                HRESULT = 0x80042313
	VSS_E_HOLD_WRITES_TIMEOUT                 HRESULT = 0x80042314 // The 10 s flush & hold window expired (B2).
	VSS_E_UNEXPECTED_WRITER_ERROR             HRESULT = 0x80042315
	VSS_E_SNAPSHOT_SET_IN_PROGRESS            HRESULT = 0x80042316 // Another set is being created (B1).
	VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED HRESULT = 0x80042317
	VSS_E_WRITER_INFRASTRUCTURE               HRESULT = 0x80042318
	VSS_E_WRITER_NOT_RESPONDING               HRESULT = 0x80042319
	VSS_E_UNSUPPORTED_CONTEXT                 HRESULT = 0x8004231B
	VSS_E_INSUFFICIENT_STORAGE                HRESULT = 0x8004231F
	VSS_E_NO_SNAPSHOTS_IMPORTED               HRESULT = 0x80042320
	VSS_E_REBOOT_REQUIRED                     HRESULT = 0x80042327
	VSS_E_TRANSACTION_FREEZE_TIMEOUT          HRESULT = 0x80042328
	VSS_E_TRANSACTION_THAW_TIMEOUT            HRESULT = 0x80042329
	VSS_E_NESTED_VOLUME_LIMIT                 HRESULT = 0x8004232C
	VSS_E_WRITER_STATUS_NOT_AVAILABLE         HRESULT = 0x80042409
	VSS_E_BREAK_REVERT_ID_FAILED              HRESULT = 0x800423F6
	VSS_E_CANNOT_REVERT_DISKID                HRESULT = 0x800423FE
)

// The writer failure codes that writers report through SetWriterFailure(Ex) and requesters
// read from GetWriterStatus (vss-spec.md D).
const (
	VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT HRESULT = 0x800423F0 // Retry after adding volumes.
	VSS_E_WRITERERROR_OUTOFRESOURCES       HRESULT = 0x800423F1 // Retry after 10 min, up to 3 times.
	VSS_E_WRITERERROR_TIMEOUT              HRESULT = 0x800423F2 // Retry after 10 min, up to 3 times.
	VSS_E_WRITERERROR_RETRYABLE            HRESULT = 0x800423F3 // Retry after 10 min, up to 3 times.
	VSS_E_WRITERERROR_NONRETRYABLE         HRESULT = 0x800423F4 // Do not retry.
	VSS_E_WRITERERROR_RECOVERY_FAILED      HRESULT = 0x800423F5
	VSS_E_WRITERERROR_PARTIAL_FAILURE      HRESULT = 0x80042336 // SetWriterFailureEx only.
)

// hresults is the name table of every HRESULT this package knows.
var hresults = &table[HRESULT]{typeName: "HRESULT", entries: []entry[HRESULT]{
	{S_OK, "S_OK"},
	{S_FALSE, "S_FALSE"},
	{E_ABORT, "E_ABORT"},
	{E_FAIL, "E_FAIL"},
	{E_UNEXPECTED, "E_UNEXPECTED"},
	{E_ACCESSDENIED, "E_ACCESSDENIED"},
	{E_OUTOFMEMORY, "E_OUTOFMEMORY"},
	{E_INVALIDARG, "E_INVALIDARG"},

	{VSS_S_ASYNC_PENDING, "VSS_S_ASYNC_PENDING"},
	{VSS_S_ASYNC_FINISHED, "VSS_S_ASYNC_FINISHED"},
	{VSS_S_ASYNC_CANCELLED, "VSS_S_ASYNC_CANCELLED"},
	{VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED, "VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED"},

	{VSS_E_BAD_STATE, "VSS_E_BAD_STATE"},
	{VSS_E_UNEXPECTED, "VSS_E_UNEXPECTED"},
	{VSS_E_PROVIDER_NOT_REGISTERED, "VSS_E_PROVIDER_NOT_REGISTERED"},
	{VSS_E_PROVIDER_VETO, "VSS_E_PROVIDER_VETO"},
	{VSS_E_OBJECT_NOT_FOUND, "VSS_E_OBJECT_NOT_FOUND"},
	{VSS_E_VOLUME_NOT_SUPPORTED, "VSS_E_VOLUME_NOT_SUPPORTED"},
	{VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, "VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER"},
	{VSS_E_UNEXPECTED_PROVIDER_ERROR, "VSS_E_UNEXPECTED_PROVIDER_ERROR"},
	{VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED, "VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED"},
	{VSS_E_FLUSH_WRITES_TIMEOUT, "VSS_E_FLUSH_WRITES_TIMEOUT"},
	{VSS_E_HOLD_WRITES_TIMEOUT, "VSS_E_HOLD_WRITES_TIMEOUT"},
	{VSS_E_UNEXPECTED_WRITER_ERROR, "VSS_E_UNEXPECTED_WRITER_ERROR"},
	{VSS_E_SNAPSHOT_SET_IN_PROGRESS, "VSS_E_SNAPSHOT_SET_IN_PROGRESS"},
	{VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED, "VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED"},
	{VSS_E_WRITER_INFRASTRUCTURE, "VSS_E_WRITER_INFRASTRUCTURE"},
	{VSS_E_WRITER_NOT_RESPONDING, "VSS_E_WRITER_NOT_RESPONDING"},
	{VSS_E_UNSUPPORTED_CONTEXT, "VSS_E_UNSUPPORTED_CONTEXT"},
	{VSS_E_INSUFFICIENT_STORAGE, "VSS_E_INSUFFICIENT_STORAGE"},
	{VSS_E_NO_SNAPSHOTS_IMPORTED, "VSS_E_NO_SNAPSHOTS_IMPORTED"},
	{VSS_E_REBOOT_REQUIRED, "VSS_E_REBOOT_REQUIRED"},
	{VSS_E_TRANSACTION_FREEZE_TIMEOUT, "VSS_E_TRANSACTION_FREEZE_TIMEOUT"},
	{VSS_E_TRANSACTION_THAW_TIMEOUT, "VSS_E_TRANSACTION_THAW_TIMEOUT"},
	{VSS_E_NESTED_VOLUME_LIMIT, "VSS_E_NESTED_VOLUME_LIMIT"},
	{VSS_E_WRITER_STATUS_NOT_AVAILABLE, "VSS_E_WRITER_STATUS_NOT_AVAILABLE"},
	{VSS_E_BREAK_REVERT_ID_FAILED, "VSS_E_BREAK_REVERT_ID_FAILED"},
	{VSS_E_CANNOT_REVERT_DISKID, "VSS_E_CANNOT_REVERT_DISKID"},

	{VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT"},
	{VSS_E_WRITERERROR_OUTOFRESOURCES, "VSS_E_WRITERERROR_OUTOFRESOURCES"},
	{VSS_E_WRITERERROR_TIMEOUT, "VSS_E_WRITERERROR_TIMEOUT"},
	{VSS_E_WRITERERROR_RETRYABLE, "VSS_E_WRITERERROR_RETRYABLE"},
	{VSS_E_WRITERERROR_NONRETRYABLE, "VSS_E_WRITERERROR_NONRETRYABLE"},
	{VSS_E_WRITERERROR_RECOVERY_FAILED, "VSS_E_WRITERERROR_RECOVERY_FAILED"},
	{VSS_E_WRITERERROR_PARTIAL_FAILURE, "VSS_E_WRITERERROR_PARTIAL_FAILURE"},
}}

// Failed reports whether hr is a failure code (severity bit set), like the FAILED macro.
func (hr HRESULT) Failed() bool { return hr&0x80000000 != 0 }

// Succeeded reports whether hr is a success code, like the SUCCEEDED macro.
func (hr HRESULT) Succeeded() bool { return !hr.Failed() }

// Name returns the symbolic name of hr, or "0x" and eight hexadecimal digits for a code this
// package does not name. ParseHRESULT(hr.Name()) == hr for every hr.
func (hr HRESULT) Name() string {
	if n, ok := hresults.name(hr); ok {
		return n
	}
	return fmt.Sprintf("0x%08X", uint32(hr))
}

// Error returns the symbolic name and the value, "VSS_E_OBJECT_NOT_FOUND (0x80042308)", or
// "HRESULT(0x80041234)" for a code without a name.
func (hr HRESULT) Error() string {
	if n, ok := hresults.name(hr); ok {
		return fmt.Sprintf("%s (0x%08X)", n, uint32(hr))
	}
	return fmt.Sprintf("HRESULT(0x%08X)", uint32(hr))
}

// Is reports whether hr matches target: the same code, or, like syscall.Errno, a standard
// library counterpart. E_ACCESSDENIED is fs.ErrPermission and VSS_E_OBJECT_NOT_FOUND is
// fs.ErrNotExist, so generic code need not know VSS to handle them. errors.Is calls it for
// every HRESULT in a chain of wrapped errors.
func (hr HRESULT) Is(target error) bool {
	switch target {
	case fs.ErrPermission:
		return hr == E_ACCESSDENIED
	case fs.ErrNotExist:
		return hr == VSS_E_OBJECT_NOT_FOUND
	}
	t, ok := target.(HRESULT)
	return ok && t == hr
}

// Err returns hr as an error: nil for every success code (S_OK, S_FALSE, VSS_S_*), hr itself
// for a failure. A caller that must tell success codes apart, such as an import that returns
// VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED, returns the HRESULT as a value beside a nil error.
func (hr HRESULT) Err() error {
	if hr.Succeeded() {
		return nil
	}
	return hr
}

// FromError returns the HRESULT that err stands for:
//   - nil is S_OK;
//   - an HRESULT found with errors.As is that code, unless it is a success code, which
//     breaks the rule that success codes never travel as errors and becomes E_UNEXPECTED;
//   - context.Canceled and context.DeadlineExceeded are E_ABORT; code that knows which
//     timer expired returns the specific code (VSS_E_HOLD_WRITES_TIMEOUT...) itself;
//   - anything else is E_FAIL, "unspecified error". E_UNEXPECTED, "catastrophic failure",
//     was rejected for ordinary Go errors: it would hide real protocol violations.
func FromError(err error) HRESULT {
	if err == nil {
		return S_OK
	}
	var hr HRESULT
	if errors.As(err, &hr) {
		if hr.Succeeded() {
			return E_UNEXPECTED
		}
		return hr
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return E_ABORT
	}
	return E_FAIL
}

// ParseHRESULT returns the code named s: an exact symbolic name ("VSS_E_PROVIDER_VETO") or a
// hexadecimal value with a 0x prefix ("0x80042306"), as scenario files and firmware profiles
// write them. Names are case-sensitive; a short form without "VSS_E_" is not accepted
// because it would be ambiguous (E_UNEXPECTED, VSS_E_UNEXPECTED).
func ParseHRESULT(s string) (HRESULT, error) {
	if hr, ok := hresults.lookup(s); ok {
		return hr, nil
	}
	if hex, ok := strings.CutPrefix(s, "0x"); ok {
		if n, err := strconv.ParseUint(hex, 16, 32); err == nil {
			return HRESULT(n), nil
		}
	}
	return 0, fmt.Errorf("%w: HRESULT %q", ErrUnknownName, s)
}

// AllHRESULTs lists every code this package names, in ascending order of value.
func AllHRESULTs() []HRESULT {
	all := hresults.values()
	slices.Sort(all)
	return all
}

// codeSet is a small, fixed set of codes.
type codeSet []HRESULT

func (s codeSet) has(hr HRESULT) bool { return slices.Contains(s, hr) }

var (
	// providerStd is "std" of vss-spec.md C.
	providerStd = codeSet{S_OK, E_OUTOFMEMORY, E_INVALIDARG, VSS_E_PROVIDER_VETO}
	// providerLegal is the full legal set of [EH]: std, OBJECT_NOT_FOUND and the rest.
	providerLegal = append(slices.Clip(providerStd),
		VSS_E_OBJECT_NOT_FOUND, E_ACCESSDENIED, VSS_E_BAD_STATE, VSS_E_INSUFFICIENT_STORAGE,
		VSS_E_VOLUME_NOT_SUPPORTED, VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER,
		VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED, VSS_E_CANNOT_REVERT_DISKID)
	writerFailure = codeSet{
		VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, VSS_E_WRITERERROR_NONRETRYABLE,
		VSS_E_WRITERERROR_OUTOFRESOURCES, VSS_E_WRITERERROR_RETRYABLE, VSS_E_WRITERERROR_TIMEOUT}
	writerFailureEx = append(slices.Clip(writerFailure), S_OK, VSS_E_WRITERERROR_PARTIAL_FAILURE)
)

// ProviderStd reports whether hr is one of the "std" provider codes of vss-spec.md C: S_OK,
// E_OUTOFMEMORY, E_INVALIDARG and VSS_E_PROVIDER_VETO.
func ProviderStd(hr HRESULT) bool { return providerStd.has(hr) }

// ProviderMayReturn reports whether hr is in the full legal set of provider codes [EH]: the
// std codes, VSS_E_OBJECT_NOT_FOUND, E_ACCESSDENIED, VSS_E_BAD_STATE,
// VSS_E_INSUFFICIENT_STORAGE, VSS_E_VOLUME_NOT_SUPPORTED(_BY_PROVIDER),
// VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED and VSS_E_CANNOT_REVERT_DISKID. VSS replaces any
// other code with VSS_E_UNEXPECTED_PROVIDER_ERROR; ProviderMethod.Translate applies the rule
// together with each method's own documented codes.
func ProviderMayReturn(hr HRESULT) bool { return providerLegal.has(hr) }

// WriterFailureAllowed reports whether SetWriterFailure accepts hr: only
// VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, _NONRETRYABLE, _OUTOFRESOURCES, _RETRYABLE and
// _TIMEOUT (vss-spec.md D).
func WriterFailureAllowed(hr HRESULT) bool { return writerFailure.has(hr) }

// WriterFailureExAllowed reports whether SetWriterFailureEx accepts hr as hrWriter: the codes
// SetWriterFailure accepts, S_OK and VSS_E_WRITERERROR_PARTIAL_FAILURE.
func WriterFailureExAllowed(hr HRESULT) bool { return writerFailureEx.has(hr) }
