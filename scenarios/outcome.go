package scenarios

import (
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/shadowbench/shadowbench/vss"
)

// outcomeClass is what a step's expect accepts besides exact codes.
type outcomeClass uint8

const (
	outcomeCodes     outcomeClass = iota // one of codes
	outcomeFailed                        // any failure code (the high bit set)
	outcomeSucceeded                     // any success code, S_OK and the VSS_S_* codes
	outcomeAny                           // whatever comes
)

var outcomeClassNames = map[string]outcomeClass{"failed": outcomeFailed, "succeeded": outcomeSucceeded, "any": outcomeAny}

// outcome is the HRESULT a step must end with: one code, a list of codes,
// or a class (failed, succeeded, any). A file that knows only that a call
// must fail says failed rather than guess the code. The zero value accepts
// S_OK alone, a step's default.
type outcome struct {
	class outcomeClass
	codes []vss.HRESULT
}

// accepts reports whether hr is a result the outcome allows.
func (o outcome) accepts(hr vss.HRESULT) bool {
	switch o.class {
	case outcomeFailed:
		return hr.Failed()
	case outcomeSucceeded:
		return !hr.Failed()
	case outcomeAny:
		return true
	}
	if len(o.codes) == 0 {
		return hr == vss.S_OK
	}
	return slices.Contains(o.codes, hr)
}

// String says what the outcome accepts, as mismatches print it: "S_OK",
// "one of E_FAIL, VSS_E_BAD_STATE", "a failure code".
func (o outcome) String() string {
	switch o.class {
	case outcomeFailed:
		return "a failure code"
	case outcomeSucceeded:
		return "a success code"
	case outcomeAny:
		return "any result"
	}
	switch len(o.codes) {
	case 0:
		return vss.S_OK.Name()
	case 1:
		return o.codes[0].Name()
	}
	names := make([]string, len(o.codes))
	for i, c := range o.codes {
		names[i] = c.Name()
	}
	return "one of " + strings.Join(names, ", ")
}

// outcome decodes an expect value: an HRESULT name or 0x value, failed,
// succeeded, any, or a list of HRESULTs.
func (d *decoder) outcome(n *yaml.Node, path string, out *outcome) error {
	if n.Kind == yaml.SequenceNode {
		o := outcome{}
		err := d.list(n, path, func(i int, v *yaml.Node, p string) error {
			var hr vss.HRESULT
			if err := d.hresult(v, p, &hr); err != nil {
				return err
			}
			if slices.Contains(o.codes, hr) {
				return d.errf(v, p, "%s given twice", hr.Name())
			}
			o.codes = append(o.codes, hr)
			return nil
		})
		if err != nil {
			return err
		}
		if len(o.codes) == 0 {
			return d.errf(n, path, "a list of accepted codes holds at least one")
		}
		*out = o
		return nil
	}
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	if c, ok := outcomeClassNames[s]; ok {
		*out = outcome{class: c}
		return nil
	}
	hr, err := vss.ParseHRESULT(s)
	if err != nil {
		return d.errf(n, path, "%q is not an HRESULT name or 0x value, nor failed, succeeded or any", s)
	}
	*out = outcome{codes: []vss.HRESULT{hr}}
	return nil
}
