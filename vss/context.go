package vss

import (
	"fmt"
	"strings"
)

// VolSnapAttr is VSS_VOLSNAP_ATTR, the attribute bits of a snapshot. The VSS_CTX contexts
// are themselves combinations of the low bits, and a context may carry more bits OR'd in.
type VolSnapAttr uint32

// The VSS_VOLSNAP_ATTR bits (vss-spec.md E).
const (
	VSS_VOLSNAP_ATTR_PERSISTENT           VolSnapAttr = 0x1
	VSS_VOLSNAP_ATTR_NO_AUTORECOVERY      VolSnapAttr = 0x2
	VSS_VOLSNAP_ATTR_CLIENT_ACCESSIBLE    VolSnapAttr = 0x4
	VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE      VolSnapAttr = 0x8
	VSS_VOLSNAP_ATTR_NO_WRITERS           VolSnapAttr = 0x10
	VSS_VOLSNAP_ATTR_TRANSPORTABLE        VolSnapAttr = 0x20
	VSS_VOLSNAP_ATTR_NOT_SURFACED         VolSnapAttr = 0x40
	VSS_VOLSNAP_ATTR_NOT_TRANSACTED       VolSnapAttr = 0x80
	VSS_VOLSNAP_ATTR_HARDWARE_ASSISTED    VolSnapAttr = 0x10000
	VSS_VOLSNAP_ATTR_DIFFERENTIAL         VolSnapAttr = 0x20000
	VSS_VOLSNAP_ATTR_PLEX                 VolSnapAttr = 0x40000
	VSS_VOLSNAP_ATTR_IMPORTED             VolSnapAttr = 0x80000
	VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY      VolSnapAttr = 0x100000
	VSS_VOLSNAP_ATTR_EXPOSED_REMOTELY     VolSnapAttr = 0x200000
	VSS_VOLSNAP_ATTR_AUTORECOVER          VolSnapAttr = 0x400000
	VSS_VOLSNAP_ATTR_ROLLBACK_RECOVERY    VolSnapAttr = 0x800000
	VSS_VOLSNAP_ATTR_DELAYED_POSTSNAPSHOT VolSnapAttr = 0x1000000
	VSS_VOLSNAP_ATTR_TXF_RECOVERY         VolSnapAttr = 0x2000000
	VSS_VOLSNAP_ATTR_FILE_SHARE           VolSnapAttr = 0x4000000
)

var volSnapAttrs = &table[VolSnapAttr]{typeName: "VSS_VOLSNAP_ATTR", prefix: "VSS_VOLSNAP_ATTR_", entries: []entry[VolSnapAttr]{
	{VSS_VOLSNAP_ATTR_PERSISTENT, "VSS_VOLSNAP_ATTR_PERSISTENT"},
	{VSS_VOLSNAP_ATTR_NO_AUTORECOVERY, "VSS_VOLSNAP_ATTR_NO_AUTORECOVERY"},
	{VSS_VOLSNAP_ATTR_CLIENT_ACCESSIBLE, "VSS_VOLSNAP_ATTR_CLIENT_ACCESSIBLE"},
	{VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE, "VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE"},
	{VSS_VOLSNAP_ATTR_NO_WRITERS, "VSS_VOLSNAP_ATTR_NO_WRITERS"},
	{VSS_VOLSNAP_ATTR_TRANSPORTABLE, "VSS_VOLSNAP_ATTR_TRANSPORTABLE"},
	{VSS_VOLSNAP_ATTR_NOT_SURFACED, "VSS_VOLSNAP_ATTR_NOT_SURFACED"},
	{VSS_VOLSNAP_ATTR_NOT_TRANSACTED, "VSS_VOLSNAP_ATTR_NOT_TRANSACTED"},
	{VSS_VOLSNAP_ATTR_HARDWARE_ASSISTED, "VSS_VOLSNAP_ATTR_HARDWARE_ASSISTED"},
	{VSS_VOLSNAP_ATTR_DIFFERENTIAL, "VSS_VOLSNAP_ATTR_DIFFERENTIAL"},
	{VSS_VOLSNAP_ATTR_PLEX, "VSS_VOLSNAP_ATTR_PLEX"},
	{VSS_VOLSNAP_ATTR_IMPORTED, "VSS_VOLSNAP_ATTR_IMPORTED"},
	{VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY, "VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY"},
	{VSS_VOLSNAP_ATTR_EXPOSED_REMOTELY, "VSS_VOLSNAP_ATTR_EXPOSED_REMOTELY"},
	{VSS_VOLSNAP_ATTR_AUTORECOVER, "VSS_VOLSNAP_ATTR_AUTORECOVER"},
	{VSS_VOLSNAP_ATTR_ROLLBACK_RECOVERY, "VSS_VOLSNAP_ATTR_ROLLBACK_RECOVERY"},
	{VSS_VOLSNAP_ATTR_DELAYED_POSTSNAPSHOT, "VSS_VOLSNAP_ATTR_DELAYED_POSTSNAPSHOT"},
	{VSS_VOLSNAP_ATTR_TXF_RECOVERY, "VSS_VOLSNAP_ATTR_TXF_RECOVERY"},
	{VSS_VOLSNAP_ATTR_FILE_SHARE, "VSS_VOLSNAP_ATTR_FILE_SHARE"},
}}

// String joins the full names of the set bits with "|", in ascending bit order; bits
// without a name are printed last as a hexadecimal number, and zero as "0".
func (a VolSnapAttr) String() string { return volSnapAttrs.formatFlags(a) }

// ParseVolSnapAttr parses names (with or without "VSS_VOLSNAP_ATTR_") or numbers joined
// with "|": "TRANSPORTABLE|PLEX".
func ParseVolSnapAttr(s string) (VolSnapAttr, error) { return volSnapAttrs.parseFlags(s) }

// SnapshotContext is the lContext of SetContext and of the provider calls: a VSS_CTX value,
// possibly with more VSS_VOLSNAP_ATTR bits OR'd in (TRANSPORTABLE, DIFFERENTIAL, PLEX; qemu
// also adds NO_AUTORECOVERY and TXF_RECOVERY). The name avoids Context, which every
// signature in the project already uses for context.Context.
type SnapshotContext uint32

// The VSS_CTX values. Each is a combination of the four base attributes (contextBase).
const (
	VSS_CTX_BACKUP                    SnapshotContext = 0x0
	VSS_CTX_FILE_SHARE_BACKUP         SnapshotContext = 0x10 // NO_WRITERS
	VSS_CTX_NAS_ROLLBACK              SnapshotContext = 0x19 // PERSISTENT|NO_AUTO_RELEASE|NO_WRITERS
	VSS_CTX_APP_ROLLBACK              SnapshotContext = 0x9  // PERSISTENT|NO_AUTO_RELEASE
	VSS_CTX_CLIENT_ACCESSIBLE         SnapshotContext = 0x1D // PERSISTENT|CLIENT_ACCESSIBLE|NO_AUTO_RELEASE|NO_WRITERS
	VSS_CTX_CLIENT_ACCESSIBLE_WRITERS SnapshotContext = 0xD  // PERSISTENT|CLIENT_ACCESSIBLE|NO_AUTO_RELEASE
	VSS_CTX_ALL                       SnapshotContext = 0xFFFFFFFF
)

// contextBase holds the attribute bits that tell the VSS_CTX values apart.
const contextBase = SnapshotContext(VSS_VOLSNAP_ATTR_PERSISTENT | VSS_VOLSNAP_ATTR_CLIENT_ACCESSIBLE |
	VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE | VSS_VOLSNAP_ATTR_NO_WRITERS)

var contexts = &table[SnapshotContext]{typeName: "VSS_CTX", prefix: "VSS_CTX_", entries: []entry[SnapshotContext]{
	{VSS_CTX_BACKUP, "VSS_CTX_BACKUP"},
	{VSS_CTX_FILE_SHARE_BACKUP, "VSS_CTX_FILE_SHARE_BACKUP"},
	{VSS_CTX_NAS_ROLLBACK, "VSS_CTX_NAS_ROLLBACK"},
	{VSS_CTX_APP_ROLLBACK, "VSS_CTX_APP_ROLLBACK"},
	{VSS_CTX_CLIENT_ACCESSIBLE, "VSS_CTX_CLIENT_ACCESSIBLE"},
	{VSS_CTX_CLIENT_ACCESSIBLE_WRITERS, "VSS_CTX_CLIENT_ACCESSIBLE_WRITERS"},
	{VSS_CTX_ALL, "VSS_CTX_ALL"},
}}

// Base returns the VSS_CTX value without the attribute bits OR'd into c. VSS_CTX_ALL is its
// own base.
func (c SnapshotContext) Base() SnapshotContext {
	if c == VSS_CTX_ALL {
		return c
	}
	return c & contextBase
}

// Attrs returns the attribute bits OR'd into c beyond its base context.
func (c SnapshotContext) Attrs() VolSnapAttr {
	if c == VSS_CTX_ALL {
		return 0
	}
	return VolSnapAttr(c &^ contextBase)
}

// Valid reports whether c is VSS_CTX_ALL or a named VSS_CTX value with any attribute bits
// OR'd in. It does not judge which extra bits a provider accepts: the documentation allows
// only TRANSPORTABLE plus DIFFERENTIAL or PLEX, but qemu's extra bits work on Windows.
func (c SnapshotContext) Valid() bool {
	_, ok := contexts.name(c.Base())
	return ok
}

// Has reports whether every bit of attr is set in c, base or extra.
func (c SnapshotContext) Has(attr VolSnapAttr) bool {
	return VolSnapAttr(c)&attr == attr
}

// HasWriters reports whether writers take part in snapshots of this context: NO_WRITERS is
// clear (VSS_CTX_BACKUP, APP_ROLLBACK, CLIENT_ACCESSIBLE_WRITERS). Writerless contexts skip
// every writer event (vss-spec.md A13).
func (c SnapshotContext) HasWriters() bool { return !c.Has(VSS_VOLSNAP_ATTR_NO_WRITERS) }

// AutoRelease reports whether the snapshots are deleted when the backup components object is
// released: NO_AUTO_RELEASE is clear (VSS_CTX_BACKUP, FILE_SHARE_BACKUP).
func (c SnapshotContext) AutoRelease() bool { return !c.Has(VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE) }

// Persistent reports whether the snapshots survive a reboot and live until an explicit
// delete: PERSISTENT is set (VSS_CTX_APP_ROLLBACK, NAS_ROLLBACK and the client-accessible
// contexts).
func (c SnapshotContext) Persistent() bool { return c.Has(VSS_VOLSNAP_ATTR_PERSISTENT) }

// String writes the base context by its full name and the extra attributes by their short
// names, the notation of vss-spec.md: "VSS_CTX_APP_ROLLBACK|TRANSPORTABLE". A value whose
// base has no name prints as "VSS_CTX(0x…)".
func (c SnapshotContext) String() string {
	base, ok := contexts.name(c.Base())
	if !ok {
		return fmt.Sprintf("VSS_CTX(%#x)", uint32(c))
	}
	if c.Attrs() == 0 {
		return base
	}
	return base + "|" + strings.ReplaceAll(c.Attrs().String(), volSnapAttrs.prefix, "")
}

// ParseSnapshotContext is the inverse of String. The first "|"-separated element is a
// context, with or without "VSS_CTX_"; the rest are attributes (ParseVolSnapAttr). The
// context comes first because short names collide: CLIENT_ACCESSIBLE is 0x1D as a context
// and 0x4 as an attribute. Attributes that would turn the context into another one
// ("BACKUP|NO_WRITERS") are refused.
func ParseSnapshotContext(s string) (SnapshotContext, error) {
	first, rest, hasRest := strings.Cut(s, "|")
	c, err := contexts.parse(strings.TrimSpace(first))
	if err != nil || !hasRest {
		return c, err
	}
	a, err := ParseVolSnapAttr(rest)
	if err != nil {
		return 0, err
	}
	if full := c | SnapshotContext(a); full.Base() == c {
		return full, nil
	}
	return 0, fmt.Errorf("vss: context %q: attributes change the base context %v", s, c)
}

// SnapshotContexts lists the named VSS_CTX values, VSS_CTX_ALL last.
func SnapshotContexts() []SnapshotContext { return contexts.values() }
