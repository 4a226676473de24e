package scenarios

import (
	"errors"
	"fmt"
	"strings"
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
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns ErrBadScenario and the cause.
func (e *Error) Unwrap() []error { return []error{ErrBadScenario, e.Err} }
