package wire

import (
	"context"
	"fmt"
	"time"

	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire/wirepb"
	"github.com/shadowbench/shadowbench/vss"
)

// kernelError is the error of a KernelSupport call: its HRESULT, or the
// transport's.
func kernelError(op string, set vss.ID, r *wirepb.Result, err error) error {
	if err != nil {
		code, cause := transportCode(err)
		return fmt.Errorf("wire: %s: %w: %w", op, code, cause)
	}
	if r == nil || r.Hresult == 0 {
		return nil
	}
	if r.Message != "" {
		return fmt.Errorf("wire: %s: %w: %s", op, vss.HRESULT(r.Hresult), r.Message)
	}
	return fmt.Errorf("wire: %s: %w", op, vss.HRESULT(r.Hresult))
}

// DescribeLuns returns the VDS_LUN_INFORMATION of the remote array's LUNs,
// 1:1 with devices.
func (c *Client) DescribeLuns(ctx context.Context, devices []string) ([]provider.LunInfo, error) {
	r, err := c.kernel.DescribeLuns(ctx, &wirepb.DescribeLunsRequest{Devices: devices})
	if err := kernelError("DescribeLuns", vss.GUID_NULL, r.GetResult(), err); err != nil {
		return nil, err
	}
	if len(r.Luns) != len(devices) {
		return nil, fmt.Errorf("wire: DescribeLuns: %w: %d LUNs for %d devices", ErrMalformed, len(r.Luns), len(devices))
	}
	out, err := fromPBs(r.Luns)
	if err != nil {
		return nil, fmt.Errorf("wire: DescribeLuns: %w", err)
	}
	return out, nil
}

// FlushAndHold flushes and holds the remote array's LUNs for set; the
// gates release themselves after window whatever becomes of the
// connection.
func (c *Client) FlushAndHold(ctx context.Context, set vss.ID, devices []string, window time.Duration) error {
	r, err := c.kernel.FlushAndHold(ctx, &wirepb.FlushAndHoldRequest{SnapshotSetId: set.String(), Devices: devices, WindowNs: int64(window)})
	return kernelError("FlushAndHold", set, r.GetResult(), err)
}

// ReleaseWrites releases the hold of set; VSS_E_HOLD_WRITES_TIMEOUT when
// the window had passed first.
func (c *Client) ReleaseWrites(ctx context.Context, set vss.ID) error {
	r, err := c.kernel.ReleaseWrites(ctx, &wirepb.ReleaseWritesRequest{SnapshotSetId: set.String()})
	return kernelError("ReleaseWrites", set, r.GetResult(), err)
}

// Rescan returns the unmasked remote LUNs with the NAA designators, 1:1,
// "" where none has one: one round trip for them all.
func (c *Client) Rescan(ctx context.Context, naas [][]byte) ([]string, error) {
	if len(naas) == 0 {
		return nil, nil
	}
	r, err := c.kernel.Rescan(ctx, &wirepb.RescanRequest{Naas: naas})
	if err := kernelError("Rescan", vss.GUID_NULL, r.GetResult(), err); err != nil {
		return nil, err
	}
	if len(r.Devices) != len(naas) {
		return nil, fmt.Errorf("wire: Rescan: %w: %d devices for %d designators", ErrMalformed, len(r.Devices), len(naas))
	}
	return r.Devices, nil
}
