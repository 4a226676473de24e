package provider

import (
	"bytes"
	"encoding/hex"
	"hash/fnv"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/vss"
)

// LunInfoOf returns the VDS_LUN_INFORMATION of a LUN of the array, built
// from its identity alone (no I/O): version 1, a SCSI disk on a virtual bus,
// the inquiry strings, a null disk signature, and one page-83 descriptor,
// the NAA designator (type 3, association 0, binary). The coordinator uses
// it for the sources of AddToSnapshotSet; GetTargetLuns gives the same shape
// for snapshot LUNs.
func LunInfoOf(l *lun.LUN) LunInfo { return lunInfoOfIdentity(l.Identity()) }

func lunInfoOfIdentity(id lun.Identity) LunInfo {
	naa := id.NAA // a copy: the descriptor must not alias the LUN's identity
	return LunInfo{
		Version:         1,
		DeviceType:      0, // direct-access block device
		CommandQueueing: true,
		BusType:         BusTypeVirtual,
		VendorID:        id.Vendor,
		ProductID:       id.Product,
		ProductRevision: id.Revision,
		SerialNumber:    id.Serial,
		DiskSignature:   vss.GUID_NULL,
		DeviceIDDescriptor: []Identifier{{
			CodeSet:     CodeSetBinary,
			Type:        IDTypeNAA,
			Association: 0,
			Value:       naa[:],
		}},
	}
}

// Clone returns a deep copy of info: the descriptors' and interconnects'
// byte slices are copied, so the copy can be changed freely.
func (info LunInfo) Clone() LunInfo {
	out := info
	if info.DeviceIDDescriptor != nil {
		out.DeviceIDDescriptor = make([]Identifier, len(info.DeviceIDDescriptor))
		for i, id := range info.DeviceIDDescriptor {
			id.Value = bytes.Clone(id.Value)
			out.DeviceIDDescriptor[i] = id
		}
	}
	if info.Interconnects != nil {
		out.Interconnects = make([]Interconnect, len(info.Interconnects))
		for i, ic := range info.Interconnects {
			ic.Port = bytes.Clone(ic.Port)
			ic.Address = bytes.Clone(ic.Address)
			out.Interconnects[i] = ic
		}
	}
	return out
}

// naaKey returns info's NAA designator as a map key; ok is false when info
// has none of the length lun identities have.
func naaKey(info LunInfo) (k [16]byte, ok bool) {
	v := info.NAA()
	if len(v) != len(k) {
		return k, false
	}
	copy(k[:], v)
	return k, true
}

// maxLUNName is the longest LUN name the array accepts.
const maxLUNName = 255

// TargetName returns the name of the snapshot LUN of source in set: source
// followed by ".snap-" and the set ID in hexadecimal, or, when that would be
// too long for a LUN name, "snap-", the set ID and a hash of source. A LUN
// appears once per set, so the name is unique in the array; it is also the
// snapshot LUN's NBD export name.
func TargetName(source string, set vss.ID) string {
	id := hex.EncodeToString(set[:])
	if name := source + ".snap-" + id; len(name) <= maxLUNName {
		return name
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(source))
	return "snap-" + id + "-" + hex.EncodeToString(h.Sum(nil))
}
