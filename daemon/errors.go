package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/vss"
)

// Errors of configuration and assembly.
var (
	// ErrBadConfig is wrapped by every error about a configuration's
	// content (*ConfigError).
	ErrBadConfig = errors.New("daemon: bad configuration")
	// ErrNotLoopback is an API address that is not on loopback: the API
	// creates and deletes LUNs and takes part in snapshot sets, so it is
	// never offered to the network (D1).
	ErrNotLoopback = errors.New("daemon: the API listens on loopback only (127.0.0.1, ::1 or localhost); use a unix socket for other access control")
	// ErrNothingToServe is a configuration with neither an NBD address nor
	// an NBD socket.
	ErrNothingToServe = errors.New("daemon: nothing to serve NBD on: give --listen or --socket (nbd.listen or nbd.socket in the configuration)")
)

// Errors of the API.
var (
	// ErrBadRequest is a request the API cannot read: malformed JSON,
	// unknown fields, a missing or bad value [E_INVALIDARG].
	ErrBadRequest = errors.New("daemon: bad request")
	// ErrNoSuchLUN is a LUN name the array does not hold
	// [VSS_E_OBJECT_NOT_FOUND].
	ErrNoSuchLUN = errors.New("daemon: no such LUN")
	// ErrNoSuchWriter is a writer ID the daemon does not know, or one it
	// dropped [VSS_E_OBJECT_NOT_FOUND].
	ErrNoSuchWriter = errors.New("daemon: no such writer")
	// ErrNoSuchObject is a snapshot or snapshot set ID the daemon does not
	// know [VSS_E_OBJECT_NOT_FOUND].
	ErrNoSuchObject = errors.New("daemon: no such snapshot or snapshot set")
	// ErrEventOver is an answer to a writer event whose window has passed,
	// or that was answered already.
	ErrEventOver = errors.New("daemon: the event is over (its window passed or it was answered)")
	// ErrBadWriterName is a writer name that breaks the rule of LUN
	// names [E_INVALIDARG].
	ErrBadWriterName = errors.New("daemon: writer names are 1-255 characters of [A-Za-z0-9._:-], other than . and ..")
	// ErrWriterInUse is an ephemeral writer named by two snapshot requests,
	// or by one that is already subscribed.
	ErrWriterInUse = errors.New("daemon: writer already takes part in a snapshot set")
	// ErrNameInUse is a snapshot set name another set has.
	ErrNameInUse = errors.New("daemon: name in use")

	// ErrLUNInUse: a LUN to delete has snapshots, clones or NBD clients,
	// or is a snapshot set's; --force deletes it all the same.
	ErrLUNInUse = errors.New("daemon: LUN in use")
	// ErrStopping is a request that arrives while the daemon shuts down
	// [E_ABORT].
	ErrStopping = errors.New("daemon: shutting down")
	// ErrUnauthorized is a request over TCP without the daemon's bearer
	// token.
	ErrUnauthorized = errors.New("daemon: the TCP API needs the bearer token the daemon writes at start (the shadowbench CLI reads it by itself: --api-token-file, $" + EnvAPITokenFile + ")")
	// ErrRequestTimeout is a request whose body did not arrive within the
	// read timeout (api.read-timeout).
	ErrRequestTimeout = errors.New("daemon: the request's body did not arrive within the read timeout (api.read-timeout)")
)

// Errors of the client.
var (
	// ErrUnreachable is returned by the Client when no daemon answers at
	// its address.
	ErrUnreachable = errors.New("daemon: cannot reach the shadowbench daemon (is `shadowbench serve` running?)")
	// ErrBadAPIAddress is an API address the Client cannot use.
	ErrBadAPIAddress = errors.New("daemon: bad API address: want http://HOST:PORT, HOST:PORT or unix:/PATH")
	// ErrWriterDropped is returned by AttachWriter when the daemon no
	// longer knows the writer: it dropped it after a silence, or it
	// restarted.
	ErrWriterDropped = errors.New("daemon: the daemon dropped the writer")
)

// ErrorBody is the JSON body of every failed API request. HRESULT and Code
// are set when the failure carries an HRESULT; Set is the report of a
// snapshot set that was started and then failed.
type ErrorBody struct {
	Error   string     `json:"error"`
	HRESULT string     `json:"hresult,omitempty"`
	Code    string     `json:"code,omitempty"`
	Set     *SetReport `json:"set,omitempty"`
}

// APIError is a failed API request as the Client sees it: the HTTP status,
// the daemon's message and, when there is one, the HRESULT, so that
// errors.Is(err, vss.VSS_E_OBJECT_NOT_FOUND) works across the API.
type APIError struct {
	Status  int
	Message string
	HRESULT vss.HRESULT
	// Set is the report of a snapshot set that failed, when the request
	// started one.
	Set *SetReport
}

// Error returns the daemon's message, with the HRESULT when the message
// does not name it.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = fmt.Sprintf("daemon: HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.HRESULT != 0 && !strings.Contains(msg, e.HRESULT.Name()) {
		msg += fmt.Sprintf(" [%s 0x%08X]", e.HRESULT.Name(), uint32(e.HRESULT))
	}
	return msg
}

// Unwrap returns the HRESULT, if any.
func (e *APIError) Unwrap() error {
	if e.HRESULT == 0 {
		return nil
	}
	return e.HRESULT
}

// ErrorBodyOf is the API's error body for err, as the CLI prints it
// under --json: the daemon's own body for an *APIError, else one built
// from err.
func ErrorBodyOf(err error) ErrorBody {
	var ae *APIError
	if errors.As(err, &ae) {
		b := ErrorBody{Error: cmp.Or(ae.Message, ae.Error()), Set: ae.Set}
		if ae.HRESULT != 0 {
			b.HRESULT, b.Code = ae.HRESULT.Name(), fmt.Sprintf("0x%08X", uint32(ae.HRESULT))
		}
		return b
	}
	return errorBody(err)
}

// errorBody builds the body of a failed request.
func errorBody(err error) ErrorBody {
	b := ErrorBody{Error: strings.TrimPrefix(err.Error(), "daemon: ")}
	var hr vss.HRESULT
	if errors.As(err, &hr) && hr.Failed() {
		b.HRESULT, b.Code = hr.Name(), fmt.Sprintf("0x%08X", uint32(hr))
	}
	return b
}

// statusOf maps an error to an HTTP status: 4xx for what the caller can
// fix, 5xx for what went wrong in the daemon, the array or a writer.
func statusOf(err error) int {
	is := func(targets ...error) bool {
		for _, t := range targets {
			if errors.Is(err, t) {
				return true
			}
		}
		return false
	}
	switch {
	case is(ErrStopping):
		return http.StatusServiceUnavailable
	case is(ErrUnauthorized):
		return http.StatusUnauthorized
	case is(ErrRequestTimeout):
		return http.StatusRequestTimeout
	case is(ErrEventOver, ErrWriterDropped):
		return http.StatusGone
	case is(ErrNoSuchLUN, ErrNoSuchWriter, ErrNoSuchObject, lun.ErrNotFound, lun.ErrNoCrashPoint, vss.VSS_E_OBJECT_NOT_FOUND):
		return http.StatusNotFound
	case is(ErrBadRequest, ErrBadConfig, vss.E_INVALIDARG, lun.ErrBadName, lun.ErrBadGeometry, ErrBadWriterName,
		lun.ErrNotFamily, lun.ErrNotSnapshot, lun.ErrCacheMode):
		return http.StatusBadRequest
	case is(vss.E_ACCESSDENIED, lun.ErrReadOnly):
		return http.StatusForbidden
	case is(lun.ErrExists, coordinator.ErrDuplicate, ErrWriterInUse, ErrNameInUse, lun.ErrNoCache, lun.ErrCacheDurable, ErrLUNInUse, vss.VSS_E_BAD_STATE,
		vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS, vss.VSS_E_BREAK_REVERT_ID_FAILED):
		return http.StatusConflict
	case is(vss.VSS_E_UNSUPPORTED_CONTEXT, vss.VSS_E_VOLUME_NOT_SUPPORTED, vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER,
		vss.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED, vss.VSS_E_NESTED_VOLUME_LIMIT, vss.VSS_E_PROVIDER_NOT_REGISTERED):
		return http.StatusUnprocessableEntity
	case is(lun.ErrCapacity, vss.VSS_E_INSUFFICIENT_STORAGE, vss.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED):
		return http.StatusInsufficientStorage
	case is(vss.VSS_E_HOLD_WRITES_TIMEOUT, vss.VSS_E_FLUSH_WRITES_TIMEOUT, vss.VSS_E_WRITER_NOT_RESPONDING,
		vss.VSS_E_TRANSACTION_FREEZE_TIMEOUT, vss.VSS_E_TRANSACTION_THAW_TIMEOUT):
		return http.StatusGatewayTimeout
	case is(vss.VSS_E_PROVIDER_VETO, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR, vss.VSS_E_UNEXPECTED_WRITER_ERROR,
		vss.VSS_E_WRITER_INFRASTRUCTURE):
		return http.StatusBadGateway
	case is(vss.E_ABORT):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// codedError is a daemon error that also carries an HRESULT, without
// printing it: the API's JSON gives the HRESULT in its own fields.
type codedError struct {
	msg  string
	errs []error
}

func (e *codedError) Error() string   { return e.msg }
func (e *codedError) Unwrap() []error { return e.errs }

// notFound wraps a daemon sentinel with VSS_E_OBJECT_NOT_FOUND, so that the
// API answers it with the HRESULT and clients match either.
func notFound(sentinel error, what string) error {
	return &codedError{msg: sentinel.Error() + ": " + what, errs: []error{sentinel, vss.VSS_E_OBJECT_NOT_FOUND}}
}

// badRequest wraps ErrBadRequest with E_INVALIDARG and a description.
func badRequest(format string, args ...any) error {
	return &codedError{msg: ErrBadRequest.Error() + ": " + fmt.Sprintf(format, args...),
		errs: []error{ErrBadRequest, vss.E_INVALIDARG}}
}
