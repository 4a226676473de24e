package wire

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire/wirepb"
	"github.com/shadowbench/shadowbench/vss"
)

// W1: VDS_LUN_INFORMATION crosses the wire unchanged, every field.
func TestW1LunInfoRoundTrip(t *testing.T) {
	in := provider.LunInfo{
		Version: 1, DeviceType: 5, DeviceTypeModifier: 7, CommandQueueing: true, BusType: provider.BusTypeIscsi,
		VendorID: "SHADOWB", ProductID: "LUN", ProductRevision: "0001", SerialNumber: "SN-1",
		DiskSignature: vss.NewID(),
		DeviceIDDescriptor: []provider.Identifier{
			{CodeSet: provider.CodeSetBinary, Type: provider.IDTypeNAA, Association: 0, Value: []byte{0x60, 1, 2, 3}},
			{CodeSet: provider.CodeSetASCII, Type: provider.IDTypeSCSIName, Association: 2, Value: []byte("iqn.x")},
		},
		Interconnects: []provider.Interconnect{{AddressType: 3, Port: []byte{1}, Address: []byte("10.0.0.1")}},
	}
	out, err := fromPB(toPB(in))
	require.NoError(t, err)
	require.Equal(t, in, out)

	empty, err := fromPB(toPB(provider.LunInfo{}))
	require.NoError(t, err)
	require.Equal(t, provider.LunInfo{}, empty)
}

// W5: fields that do not fit are errors, never truncated.
func TestW5MalformedLunInfo(t *testing.T) {
	for name, pb := range map[string]*wirepb.LunInformation{
		"nil":         nil,
		"device type": {DeviceType: 256},
		"modifier":    {DeviceTypeModifier: 1 << 20},
		"signature":   {DiskSignature: "{not-a-guid}"},
		"identifier":  {DeviceIdDescriptor: []*wirepb.StorageIdentifier{{Type: 999}}},
	} {
		_, err := fromPB(pb)
		require.ErrorIs(t, err, ErrMalformed, name)
	}
}
