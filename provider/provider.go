package provider

import (
	"context"

	"github.com/shadowbench/shadowbench/vss"
)

// HardwareProvider is IVssHardwareSnapshotProvider. Device names are LUN
// names in the array (NBD export names).
type HardwareProvider interface {
	// AreLunsSupported reports whether the provider can snapshot all of
	// the LUNs (of one volume) in the given context: all or nothing. It
	// answers false, not an error, for contexts it cannot honour.
	AreLunsSupported(ctx context.Context, snapCtx vss.SnapshotContext, devices []string, luns []LunInfo) (bool, error)
	// BeginPrepareSnapshot starts preparing snapshot snap of the LUNs in
	// set, asynchronously, and returns at once; EndPrepareSnapshots waits
	// for the preparation. A new set ID while another set is neither
	// created nor aborted, at any point of it, discards the stale set
	// completely: AbortSnapshots is never called for a set abandoned before
	// DoSnapshotSet (vss-spec.md B.8).
	BeginPrepareSnapshot(ctx context.Context, set, snap vss.ID, snapCtx vss.SnapshotContext, devices []string, luns []LunInfo) error
	// GetTargetLuns returns, 1:1 with the sources, the information of the
	// snapshot LUNs, without reading them.
	GetTargetLuns(ctx context.Context, devices []string, sources []LunInfo) ([]LunInfo, error)
	// LocateLuns unmasks the given snapshot LUNs (as GetTargetLuns
	// described them) so hosts can see them. It does not rescan.
	LocateLuns(ctx context.Context, luns []LunInfo) error
	// FillInLunInfo fills info for a device that arrived; it must
	// reproduce GetTargetLuns' output. An unknown device answers false and
	// no error.
	FillInLunInfo(ctx context.Context, device string, info *LunInfo) (bool, error)
	// OnLunEmpty reclaims a snapshot LUN nobody uses any more.
	OnLunEmpty(ctx context.Context, device string, info LunInfo) error
}

// HardwareProviderEx is IVssHardwareSnapshotProviderEx.
type HardwareProviderEx interface {
	HardwareProvider
	GetProviderCapabilities(ctx context.Context) (vss.ProviderCapability, error)
	OnLunStateChange(ctx context.Context, snapshotLuns, originalLuns []LunInfo, flags vss.HardwareOptions) error
	// ResyncLuns copies each target back onto its source, inside the
	// array. The copy runs in the returned Async.
	ResyncLuns(ctx context.Context, sources, targets []LunInfo) (Async, error)
	OnReuseLuns(ctx context.Context, snapshotLuns, originalLuns []LunInfo) error
}

// SnapshotSetCreator is IVssProviderCreateSnapshotSet.
type SnapshotSetCreator interface {
	EndPrepareSnapshots(ctx context.Context, set vss.ID) error
	PreCommitSnapshots(ctx context.Context, set vss.ID) error
	// CommitSnapshots commits every prepared LUN of the set: fast, no I/O,
	// persistent before it returns, all or none.
	CommitSnapshots(ctx context.Context, set vss.ID) error
	PostCommitSnapshots(ctx context.Context, set vss.ID, count int) error
	PreFinalCommitSnapshots(ctx context.Context, set vss.ID) error
	PostFinalCommitSnapshots(ctx context.Context, set vss.ID) error
	// AbortSnapshots is called only after EndPrepareSnapshots (possibly
	// while it still runs) for sets not yet created.
	AbortSnapshots(ctx context.Context, set vss.ID) error
}

// Notifications is IVssProviderNotifications.
type Notifications interface {
	OnLoad(ctx context.Context) error
	OnUnload(ctx context.Context, force bool) error
}

// Provider is a hardware provider that can create snapshot sets: what the
// coordinator registers.
type Provider interface {
	HardwareProvider
	SnapshotSetCreator
}

// Async is an asynchronous provider operation (IVssAsync).
type Async interface {
	// Wait blocks until the operation ends or ctx does.
	Wait(ctx context.Context) error
}

// LunInfo is VDS_LUN_INFORMATION.
type LunInfo struct {
	Version            uint32 // 1 for GetTargetLuns output
	DeviceType         uint8  // SCSI peripheral device type; 0 is a disk
	DeviceTypeModifier uint8
	CommandQueueing    bool
	BusType            BusType
	VendorID           string
	ProductID          string
	ProductRevision    string
	SerialNumber       string
	// DiskSignature is GUID_NULL for GetTargetLuns output.
	DiskSignature vss.ID
	// DeviceIDDescriptor is the page-83 data.
	DeviceIDDescriptor []Identifier
	// Interconnects are the LUN's paths. AreLunsSupported must not touch
	// them (vss-spec.md C).
	Interconnects []Interconnect
}

// BusType is VDS_STORAGE_BUS_TYPE.
type BusType uint32

// Bus types used here (the full enumeration has more).
const (
	BusTypeUnknown BusType = 0
	BusTypeScsi    BusType = 0x1
	BusTypeIscsi   BusType = 0x9
	BusTypeVirtual BusType = 0xe
)

// Identifier is one page-83 designation descriptor (VDS_STORAGE_IDENTIFIER).
type Identifier struct {
	CodeSet     uint8 // 1 binary, 2 ASCII
	Type        uint8 // 1 vendor-specific T10, 2 EUI-64, 3 NAA, 8 SCSI name string
	Association uint8 // 0 the LUN
	Value       []byte
}

// Interconnect is one path to a LUN (VDS_INTERCONNECT).
type Interconnect struct {
	AddressType uint32
	Port        []byte
	Address     []byte
}

// Designator types and code sets of page 83.
const (
	CodeSetBinary  = 1
	CodeSetASCII   = 2
	IDTypeVendor   = 1
	IDTypeEUI64    = 2
	IDTypeNAA      = 3
	IDTypeSCSIName = 8
)

// NAA returns the first NAA designator (type 3, association 0) of info, or
// nil.
func (info LunInfo) NAA() []byte {
	for _, id := range info.DeviceIDDescriptor {
		if id.Type == IDTypeNAA && id.Association == 0 {
			return id.Value
		}
	}
	return nil
}
