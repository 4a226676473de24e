package provider

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The project's YAML files (firmware profiles, scenario files, the daemon's
// configuration) share their outer shape and the form of their errors. The
// helpers live here, in the lowest package that reads YAML, so the three
// decoders keep one copy.

// DocumentError is a file that is not exactly one YAML document: empty, or
// with a second document. Line is where the problem is (1 for an empty
// file).
type DocumentError struct {
	Line int
	Msg  string
}

func (e *DocumentError) Error() string { return e.Msg }

// DecodeOneDocument decodes data as exactly one YAML document. A syntax
// error comes back as the YAML library gives it; an empty file or a second
// document as a *DocumentError in the words of what ("empty profile", "a
// profile file holds one YAML document").
func DecodeOneDocument(data []byte, what string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &DocumentError{Line: 1, Msg: "empty " + what}
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, &DocumentError{Line: extra.Line, Msg: "a " + what + " file holds one YAML document"}
	}
	return &doc, nil
}

// FormatPlace formats a problem at a place of a file as
// "file:line:col: path: problem", the form editors jump to; a zero line or
// column and an empty path are left out.
func FormatPlace(file string, line, col int, path string, err error) string {
	var b strings.Builder
	b.WriteString(file)
	if line > 0 {
		fmt.Fprintf(&b, ":%d", line)
		if col > 0 {
			fmt.Fprintf(&b, ":%d", col)
		}
	}
	b.WriteString(": ")
	if path != "" {
		b.WriteString(path + ": ")
	}
	b.WriteString(err.Error())
	return b.String()
}
