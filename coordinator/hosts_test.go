package coordinator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// fakeHost is a LunHost whose answers a test sets.
type fakeHost struct {
	describe error
	hold     error
	release  error
	held     []string
}

func (h *fakeHost) DescribeLuns(_ context.Context, devices []string) ([]provider.LunInfo, error) {
	if h.describe != nil {
		return nil, h.describe
	}
	out := make([]provider.LunInfo, len(devices))
	for i, d := range devices {
		out[i] = provider.LunInfo{Version: 1, SerialNumber: d}
	}
	return out, nil
}

func (h *fakeHost) FlushAndHold(_ context.Context, _ vss.ID, devices []string, window time.Duration) error {
	if window <= 0 {
		return errors.New("no window left")
	}
	h.held = append(h.held, devices...)
	return h.hold
}

func (h *fakeHost) ReleaseWrites(context.Context, vss.ID) error { return h.release }

func (h *fakeHost) Rescan(_ context.Context, naas [][]byte) ([]string, error) {
	return make([]string, len(naas)), nil
}

// registerHost registers the bench's fake provider a second time, as
// "host", with h for its array, and a volume "far" on it.
func registerHost(t *testing.T, b *bench, h *fakeHost) {
	t.Helper()
	require.NoError(t, b.s.RegisterProvider(context.Background(), Registration{Name: "host", Priority: 10, Provider: b.prov, Host: h}))
	require.NoError(t, b.s.AddVolumeOn("far", "host", "r0", "r1"))
}

// B.2 across arrays: the LUNs of a volume on another array are described
// and held through its host, never looked up in the service's array; a
// host that cannot describe them fails AddToSnapshotSet, one that cannot
// hold them fails the set before CommitSnapshots, and one whose release
// fails fails it with VSS_E_HOLD_WRITES_TIMEOUT.
func TestLunHostHook(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, Config{}, "lun0")
	require.ErrorIs(t, b.s.AddVolumeOn("x", "fake", "r0"), ErrNoSuchLUN, "a provider without a host")
	require.ErrorIs(t, b.s.AddVolumeOn("x", "nobody", "r0"), ErrNoSuchLUN)
	require.ErrorIs(t, b.s.AddVolumeOn("", "fake", "r0"), ErrBadVolume)

	h := &fakeHost{describe: vss.VSS_E_OBJECT_NOT_FOUND}
	registerHost(t, b, h)
	bc := b.s.NewBackupComponents()
	defer bc.Close(ctx)
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetBackupState(true, false, vss.VSS_BT_FULL, false))
	require.NoError(t, bc.GatherWriterMetadata(ctx))
	_, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	_, err = bc.AddToSnapshotSet(ctx, "far", vss.GUID_NULL)
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)
	h.describe = errors.New("connection refused")
	_, err = bc.AddToSnapshotSet(ctx, "far", vss.GUID_NULL)
	require.ErrorIs(t, err, vss.VSS_E_UNEXPECTED)

	hold := func(h *fakeHost) error {
		// The fake provider snapshots r0 and r1 in the bench's array; the
		// volume's gates are the host's.
		b := newBench(t, Config{}, "lun0", "r0", "r1")
		registerHost(t, b, h)
		_, a := b.backup(ctx, "far", "lun0")
		return a.Wait(ctx)
	}
	ok := &fakeHost{}
	require.NoError(t, hold(ok))
	require.Equal(t, []string{"r0", "r1"}, ok.held, "the remote LUNs were held through their host")
	require.ErrorIs(t, hold(&fakeHost{hold: vss.VSS_E_FLUSH_WRITES_TIMEOUT}), vss.VSS_E_FLUSH_WRITES_TIMEOUT)
	require.ErrorIs(t, hold(&fakeHost{hold: errors.New("broken pipe")}), vss.VSS_E_UNEXPECTED)
	require.ErrorIs(t, hold(&fakeHost{release: errors.New("no answer")}), vss.VSS_E_HOLD_WRITES_TIMEOUT)
}
