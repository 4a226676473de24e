package provider_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const mib = int64(1) << 20

// bench is an array with LUNs and a provider over it.
type bench struct {
	t       testing.TB
	a       *lun.Array
	p       *provider.ArrayProvider
	luns    []*lun.LUN
	devices []string
	infos   []provider.LunInfo
}

// newBench returns an array with n LUNs of 1 MiB and a provider with prof
// (nil for the default), closed at the end of the test.
func newBench(t testing.TB, cfg lun.Config, prof *provider.Profile, n int) *bench {
	t.Helper()
	a, err := lun.NewArray(cfg)
	require.NoError(t, err)
	p, err := provider.NewArray(a, prof)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	b := &bench{t: t, a: a, p: p}
	for i := range n {
		l, err := a.Create(fmt.Sprintf("lun%d", i), lun.Options{Size: mib})
		require.NoError(t, err)
		b.luns = append(b.luns, l)
		b.devices = append(b.devices, l.Name())
		b.infos = append(b.infos, provider.LunInfoOf(l))
	}
	return b
}

// failing returns a default profile whose method m always fails with code.
func failing(m vss.ProviderMethod, code vss.HRESULT) *provider.Profile {
	p := provider.DefaultProfile()
	p.Methods = map[vss.ProviderMethod]provider.MethodBehavior{m: {Failures: []provider.Failure{provider.Always(code)}}}
	return p
}

// steps is the success path of a set, in order.
var steps = []vss.ProviderMethod{
	vss.MethodBeginPrepareSnapshot, vss.MethodEndPrepareSnapshots, vss.MethodPreCommitSnapshots,
	vss.MethodCommitSnapshots, vss.MethodPostCommitSnapshots, vss.MethodPreFinalCommitSnapshots,
	vss.MethodPostFinalCommitSnapshots,
}

// call runs method m for set with the bench's LUNs as one volume.
func (b *bench) call(ctx context.Context, m vss.ProviderMethod, set vss.ID) error {
	p := b.p
	switch m {
	case vss.MethodBeginPrepareSnapshot:
		return p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, b.devices, b.infos)
	case vss.MethodEndPrepareSnapshots:
		return p.EndPrepareSnapshots(ctx, set)
	case vss.MethodPreCommitSnapshots:
		return p.PreCommitSnapshots(ctx, set)
	case vss.MethodCommitSnapshots:
		return p.CommitSnapshots(ctx, set)
	case vss.MethodPostCommitSnapshots:
		return p.PostCommitSnapshots(ctx, set, 1)
	case vss.MethodGetTargetLuns:
		_, err := p.GetTargetLuns(ctx, b.devices, b.infos)
		return err
	case vss.MethodPreFinalCommitSnapshots:
		return p.PreFinalCommitSnapshots(ctx, set)
	case vss.MethodPostFinalCommitSnapshots:
		return p.PostFinalCommitSnapshots(ctx, set)
	case vss.MethodAbortSnapshots:
		return p.AbortSnapshots(ctx, set)
	}
	b.t.Fatalf("no call for %v", m)
	return nil
}

// run calls the first n steps of the success path for set, each of which
// must succeed.
func (b *bench) run(set vss.ID, n int) {
	b.t.Helper()
	for _, m := range steps[:n] {
		require.NoError(b.t, b.call(context.Background(), m, set), "%v", m)
	}
}

// create runs a set through to VSS_SS_CREATED and returns it.
func (b *bench) create() vss.ID {
	b.t.Helper()
	set := vss.NewID()
	b.run(set, len(steps))
	return set
}

// snapshotLUNs returns the array's visible snapshot LUNs.
func (b *bench) snapshotLUNs() []*lun.LUN {
	var out []*lun.LUN
	for _, l := range b.a.List() {
		if l.Kind() == lun.Snapshot {
			out = append(out, l)
		}
	}
	return out
}

// requireNothingLeft checks that set left no LUN, name or snapshot count
// behind: no snapshot LUN is visible, each target name can be created, and
// each source can take lun.Config.MaxSnapshots new snapshots.
func (b *bench) requireNothingLeft(set vss.ID) {
	b.t.Helper()
	require.Empty(b.t, b.snapshotLUNs(), "snapshot LUNs left")
	for _, dev := range b.devices {
		name := provider.TargetName(dev, set)
		_, err := b.a.Create(name, lun.Options{Size: mib})
		require.NoError(b.t, err, "name %s still reserved", name)
		require.NoError(b.t, b.a.Delete(name))
	}
	for _, dev := range b.devices {
		var snaps []string
		for range b.a.Config().MaxSnapshots {
			l, err := b.a.Snapshot(dev, "")
			require.NoError(b.t, err, "snapshot count of %s not freed", dev)
			snaps = append(snaps, l.Name())
		}
		for _, s := range snaps {
			require.NoError(b.t, b.a.Delete(s))
		}
	}
}

// waitState waits until set is in state want.
func (b *bench) waitState(set vss.ID, want vss.SnapshotState) {
	b.t.Helper()
	require.Eventually(b.t, func() bool {
		s, _ := b.p.State(set)
		return s == want
	}, 5*time.Second, time.Millisecond, "set never reached %v", want)
}

// requireCode checks that err carries HRESULT want.
func requireCode(t testing.TB, want vss.HRESULT, err error) {
	t.Helper()
	if want == vss.S_OK {
		require.NoError(t, err)
		return
	}
	require.Error(t, err)
	require.Equal(t, want, vss.FromError(err), "%v", err)
	require.ErrorIs(t, err, want)
}
