package vss

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnknownName is returned, wrapped, by every Parse function of this package when a name
// or number does not denote a value of the type being parsed.
var ErrUnknownName = errors.New("vss: unknown name")

// entry is one named value of an enumeration.
type entry[T ~uint32 | ~uint64] struct {
	v    T
	name string
}

// table is the single name table of one enumeration or flag set: String, Parse and the
// listing functions all derive from it, so a name is written once beside its constant.
// A linear scan is fast enough for tables of a few dozen entries; maps were rejected as a
// second copy of the same data that could drift.
type table[T ~uint32 | ~uint64] struct {
	typeName string // Windows type name, used to print values without a name: "VSS_WRITER_STATE(17)"
	prefix   string // common prefix that Parse lets scenario files omit: "VSS_WS_"
	entries  []entry[T]
}

// dense returns a table whose names belong to the values first, first+1, ...
func dense[T ~uint32 | ~uint64](typeName, prefix string, first T, names ...string) *table[T] {
	t := &table[T]{typeName: typeName, prefix: prefix}
	for i, n := range names {
		t.entries = append(t.entries, entry[T]{first + T(i), prefix + n})
	}
	return t
}

// name returns the name of v, if it has one.
func (t *table[T]) name(v T) (string, bool) {
	for _, e := range t.entries {
		if e.v == v {
			return e.name, true
		}
	}
	return "", false
}

// format returns the name of v, or "TYPE(n)" for a value without one.
func (t *table[T]) format(v T) string {
	if n, ok := t.name(v); ok {
		return n
	}
	return fmt.Sprintf("%s(%d)", t.typeName, uint64(v))
}

// lookup finds a value by its full name or by its name without the table's prefix.
func (t *table[T]) lookup(s string) (T, bool) {
	for _, e := range t.entries {
		if e.name == s || (t.prefix != "" && e.name == t.prefix+s) {
			return e.v, true
		}
	}
	return 0, false
}

// parse is lookup with an error that names the type.
func (t *table[T]) parse(s string) (T, error) {
	if v, ok := t.lookup(s); ok {
		return v, nil
	}
	return 0, fmt.Errorf("%w: %s %q", ErrUnknownName, t.typeName, s)
}

// values lists the table's values in table order.
func (t *table[T]) values() []T {
	vs := make([]T, len(t.entries))
	for i, e := range t.entries {
		vs[i] = e.v
	}
	return vs
}

// formatFlags joins the names of the bits set in v with "|", in table order; bits without a
// name are printed last as one hexadecimal number. Zero prints as "0".
func (t *table[T]) formatFlags(v T) string {
	if v == 0 {
		return "0"
	}
	var parts []string
	rest := v
	for _, e := range t.entries {
		if e.v != 0 && v&e.v == e.v {
			parts = append(parts, e.name)
			rest &^= e.v
		}
	}
	if rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint64(rest)))
	}
	return strings.Join(parts, "|")
}

// parseFlags is the inverse of formatFlags: each "|"-separated element is a full name, a name
// without the prefix, or a number in Go syntax (0x20, 32).
func (t *table[T]) parseFlags(s string) (T, error) {
	var v T
	for _, p := range strings.Split(s, "|") {
		b, err := t.parseFlag(strings.TrimSpace(p))
		if err != nil {
			return 0, err
		}
		v |= b
	}
	return v, nil
}

// parseFlag parses one element of a flag set.
func (t *table[T]) parseFlag(s string) (T, error) {
	if v, ok := t.lookup(s); ok {
		return v, nil
	}
	var zero T
	bits := 32
	if uint64(^zero) > 0xFFFFFFFF {
		bits = 64
	}
	if n, err := strconv.ParseUint(s, 0, bits); err == nil {
		return T(n), nil
	}
	return 0, fmt.Errorf("%w: %s %q", ErrUnknownName, t.typeName, s)
}
