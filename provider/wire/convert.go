package wire

import (
	"bytes"
	"fmt"

	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire/wirepb"
	"github.com/shadowbench/shadowbench/vss"
)

// toPB and fromPB convert VDS_LUN_INFORMATION. The byte slices are copied, so
// neither side aliases the other's buffers.
func toPB(in provider.LunInfo) *wirepb.LunInformation {
	out := &wirepb.LunInformation{
		Version: in.Version, DeviceType: uint32(in.DeviceType), DeviceTypeModifier: uint32(in.DeviceTypeModifier),
		CommandQueueing: in.CommandQueueing, BusType: uint32(in.BusType),
		VendorId: in.VendorID, ProductId: in.ProductID, ProductRevision: in.ProductRevision,
		SerialNumber: in.SerialNumber, DiskSignature: in.DiskSignature.String(),
	}
	for _, id := range in.DeviceIDDescriptor {
		out.DeviceIdDescriptor = append(out.DeviceIdDescriptor, &wirepb.StorageIdentifier{
			CodeSet: uint32(id.CodeSet), Type: uint32(id.Type), Association: uint32(id.Association),
			Value: bytes.Clone(id.Value)})
	}
	for _, ic := range in.Interconnects {
		out.Interconnects = append(out.Interconnects, &wirepb.Interconnect{
			AddressType: ic.AddressType, Port: bytes.Clone(ic.Port), Address: bytes.Clone(ic.Address)})
	}
	return out
}

// fromPB is the inverse of toPB. Fields that do not fit their Go type (a
// device type above 255) and a malformed disk signature are errors, not
// truncations.
func fromPB(in *wirepb.LunInformation) (provider.LunInfo, error) {
	if in == nil {
		return provider.LunInfo{}, fmt.Errorf("%w: missing LUN information", ErrMalformed)
	}
	sig, err := parseID(in.GetDiskSignature())
	if err != nil {
		return provider.LunInfo{}, fmt.Errorf("disk signature: %w", err)
	}
	if in.DeviceType > 0xff || in.DeviceTypeModifier > 0xff {
		return provider.LunInfo{}, fmt.Errorf("%w: device type %d, modifier %d: more than 8 bits", ErrMalformed,
			in.DeviceType, in.DeviceTypeModifier)
	}
	out := provider.LunInfo{
		Version: in.Version, DeviceType: uint8(in.DeviceType), DeviceTypeModifier: uint8(in.DeviceTypeModifier),
		CommandQueueing: in.CommandQueueing, BusType: provider.BusType(in.BusType),
		VendorID: in.VendorId, ProductID: in.ProductId, ProductRevision: in.ProductRevision,
		SerialNumber: in.SerialNumber, DiskSignature: sig,
	}
	for i, id := range in.DeviceIdDescriptor {
		if id.CodeSet > 0xff || id.Type > 0xff || id.Association > 0xff {
			return provider.LunInfo{}, fmt.Errorf("%w: identifier %d: code set, type or association above 255", ErrMalformed, i)
		}
		out.DeviceIDDescriptor = append(out.DeviceIDDescriptor, provider.Identifier{
			CodeSet: uint8(id.CodeSet), Type: uint8(id.Type), Association: uint8(id.Association),
			Value: bytes.Clone(id.Value)})
	}
	for _, ic := range in.Interconnects {
		out.Interconnects = append(out.Interconnects, provider.Interconnect{
			AddressType: ic.AddressType, Port: bytes.Clone(ic.Port), Address: bytes.Clone(ic.Address)})
	}
	return out, nil
}

func toPBs(in []provider.LunInfo) []*wirepb.LunInformation {
	out := make([]*wirepb.LunInformation, len(in))
	for i, l := range in {
		out[i] = toPB(l)
	}
	return out
}

func fromPBs(in []*wirepb.LunInformation) ([]provider.LunInfo, error) {
	if in == nil {
		return nil, nil
	}
	out := make([]provider.LunInfo, len(in))
	for i, l := range in {
		var err error
		if out[i], err = fromPB(l); err != nil {
			return nil, fmt.Errorf("LUN %d: %w", i, err)
		}
	}
	return out, nil
}

// parseID reads a VSS_ID; "" is GUID_NULL.
func parseID(s string) (vss.ID, error) {
	if s == "" {
		return vss.GUID_NULL, nil
	}
	id, err := vss.ParseID(s)
	if err != nil {
		return vss.GUID_NULL, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return id, nil
}

// result is the Result of err: S_OK for nil, else its HRESULT and message.
func result(err error) *wirepb.Result {
	if err == nil {
		return &wirepb.Result{}
	}
	return &wirepb.Result{Hresult: uint32(vss.FromError(err)), Message: err.Error()}
}
