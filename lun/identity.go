package lun

import (
	"encoding/hex"
	"strings"

	"github.com/google/uuid"
)

// Identity is a LUN's SCSI identity: the inquiry strings and the page-83
// device identifier a VSS provider reports in VDS_LUN_INFORMATION.
type Identity struct {
	Vendor   string // T10 vendor, at most 8 characters
	Product  string // at most 16 characters
	Revision string // at most 4 characters
	Serial   string // page 80
	// NAA is the page-83 designator: NAA type 6 (IEEE registered
	// extended), 16 bytes, association 0 (the LUN). It is unique per LUN,
	// snapshot LUNs included (vss-spec.md F.6).
	NAA [16]byte
}

// Default inquiry strings.
const (
	DefaultVendor   = "SHADOWBN"
	ProductLUN      = "SOFTWARE LUN"
	ProductSnapshot = "SNAPSHOT LUN"
	DefaultRevision = "0001"
)

// NewIdentity returns an identity with a fresh uuid-derived serial and NAA
// designator.
func NewIdentity(product string) Identity {
	u := uuid.New()
	id := Identity{Vendor: DefaultVendor, Product: product, Revision: DefaultRevision}
	copy(id.NAA[:], u[:])
	// NAA 6 in the top nibble; the rest stays random, standing in for the
	// company id and vendor-specific extension.
	id.NAA[0] = 0x60 | id.NAA[0]&0x0f
	id.Serial = strings.ToUpper(hex.EncodeToString(u[:8]))
	return id
}

// NAAString formats the designator as Linux shows it (naa.6...).
func (id Identity) NAAString() string { return "naa." + hex.EncodeToString(id.NAA[:]) }

// String is a one-line description.
func (id Identity) String() string {
	return id.Vendor + " " + id.Product + " " + id.Revision + " serial " + id.Serial + " " + id.NAAString()
}
