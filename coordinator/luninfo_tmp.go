package coordinator

import (
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
)

// lunInfoOf builds VDS_LUN_INFORMATION from a LUN's identity.
func lunInfoOf(l *lun.LUN) provider.LunInfo {
	id := l.Identity()
	return provider.LunInfo{
		Version: 1, BusType: provider.BusTypeVirtual,
		VendorID: id.Vendor, ProductID: id.Product, ProductRevision: id.Revision, SerialNumber: id.Serial,
		DeviceIDDescriptor: []provider.Identifier{{CodeSet: provider.CodeSetBinary, Type: provider.IDTypeNAA, Value: id.NAA[:]}},
	}
}
