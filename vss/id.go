package vss

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// ID is VSS_ID, the GUID that names snapshot sets, snapshots, providers and interfaces. It
// is a defined type rather than an alias of uuid.UUID so that it prints in the Windows form,
// "{9593A157-44E9-4344-BBEB-44FBF9B06B10}", as VSS tools and event logs show it.
type ID uuid.UUID

// GUID_NULL is the zero ID; AddToSnapshotSet takes it to mean "let VSS choose the provider".
// It is never assigned.
var GUID_NULL ID

// The provider interface IIDs (vss-spec.md C, from qemu's provider.cpp).
var (
	IID_IVssHardwareSnapshotProvider  = MustParseID("{9593A157-44E9-4344-BBEB-44FBF9B06B10}")
	IID_IVssProviderCreateSnapshotSet = MustParseID("{5F894E5B-1E39-4778-8E23-9ABAD9F0E08C}")
)

// NewID returns a new random (version 4) ID.
func NewID() ID { return ID(uuid.New()) }

// ParseID accepts an ID in the Windows form with braces, the bare form
// "9593a157-44e9-4344-bbeb-44fbf9b06b10", or the other forms uuid.Parse accepts, in either
// case.
func ParseID(s string) (ID, error) {
	if len(s) == 38 && (s[0] != '{' || s[37] != '}') {
		return GUID_NULL, fmt.Errorf("vss: ID %q: braces expected", s)
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return GUID_NULL, fmt.Errorf("vss: ID %q: %w", s, err)
	}
	return ID(u), nil
}

// MustParseID is ParseID for constants; it panics on a malformed ID.
func MustParseID(s string) ID {
	id, err := ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// String returns the ID in the Windows form: upper case, in braces.
func (id ID) String() string { return "{" + strings.ToUpper(uuid.UUID(id).String()) + "}" }

// IsNull reports whether id is GUID_NULL.
func (id ID) IsNull() bool { return id == GUID_NULL }

// MarshalText writes the Windows form, so IDs read the same in JSON and in logs.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText accepts every form ParseID accepts.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
