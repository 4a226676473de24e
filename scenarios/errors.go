package scenarios

import (
	"errors"

	"github.com/shadowbench/shadowbench/provider"
)

// ErrBadScenario is wrapped by every error about a scenario file's content.
var ErrBadScenario = errors.New("scenarios: bad scenario file")

// Error is a problem at one place of a scenario file: the file, the line
// and column (1-based; 0 when unknown), the key path ("steps[3].args") and
// what is wrong. Errors of an inline firmware profile keep the profile's
// own path, prefixed with the provider's.
type Error struct {
	File   string
	Line   int
	Column int
	Path   string
	Err    error
}

// Error formats "file:line:col: path: problem", the form editors jump to.
func (e *Error) Error() string { return provider.FormatPlace(e.File, e.Line, e.Column, e.Path, e.Err) }

// Unwrap returns ErrBadScenario and the cause.
func (e *Error) Unwrap() []error { return []error{ErrBadScenario, e.Err} }
