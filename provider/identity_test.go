package provider_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// TestTargetLunIdentity checks F.6 (P5): every target LUN has its own
// page-83 NAA designator (type 3, association 0), unlike every source's,
// version 1 and a null disk signature.
func TestTargetLunIdentity(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{}, nil, 5)
	seen := map[string]string{}
	for i, info := range b.infos {
		seen[string(info.NAA())] = b.devices[i]
	}
	for range 3 {
		set := vss.NewID()
		b.run(set, 5)
		out, err := b.p.GetTargetLuns(ctx, b.devices, b.infos)
		require.NoError(t, err)
		require.Len(t, out, len(b.devices))
		for i, info := range out {
			require.EqualValues(t, 1, info.Version)
			require.Equal(t, vss.GUID_NULL, info.DiskSignature)
			require.Len(t, info.DeviceIDDescriptor, 1)
			id := info.DeviceIDDescriptor[0]
			require.EqualValues(t, provider.IDTypeNAA, id.Type)
			require.EqualValues(t, 0, id.Association)
			require.EqualValues(t, provider.CodeSetBinary, id.CodeSet)
			require.Len(t, id.Value, 16)
			require.Equal(t, lun.ProductSnapshot, info.ProductID)
			naa := string(info.NAA())
			require.NotContains(t, seen, naa, "NAA of the target of %s is not unique", b.devices[i])
			seen[naa] = b.devices[i]
			target, err := b.a.Get(provider.TargetName(b.devices[i], set))
			require.NoError(t, err)
			naaOfTarget := target.Identity().NAA
			require.Equal(t, naaOfTarget[:], info.NAA())
			require.Equal(t, target.Identity().Serial, info.SerialNumber)
		}
		require.NoError(t, b.call(ctx, vss.MethodPreFinalCommitSnapshots, set))
		require.NoError(t, b.call(ctx, vss.MethodPostFinalCommitSnapshots, set))
	}
}

// TestFillInLunInfoMatchesGetTargetLuns checks F.6 (P5): FillInLunInfo
// reproduces GetTargetLuns' output for each target, fills a source's
// information, and answers false with no error for an unknown device.
func TestFillInLunInfoMatchesGetTargetLuns(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{}, nil, 3)
	set := vss.NewID()
	b.run(set, 5)
	out, err := b.p.GetTargetLuns(ctx, b.devices, b.infos)
	require.NoError(t, err)
	for i, dev := range b.devices {
		var info provider.LunInfo
		ok, err := b.p.FillInLunInfo(ctx, provider.TargetName(dev, set), &info)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, out[i], info)

		var src provider.LunInfo
		ok, err = b.p.FillInLunInfo(ctx, dev, &src)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, b.infos[i], src)
	}
	// The answer is a copy: changing it changes nothing in the provider.
	out[0].DeviceIDDescriptor[0].Value[0] ^= 0xff
	again, err := b.p.GetTargetLuns(ctx, b.devices[:1], b.infos[:1])
	require.NoError(t, err)
	require.NotEqual(t, out[0].NAA(), again[0].NAA())

	for _, dev := range []string{"no-such-lun", "", provider.TargetName("lun0", vss.NewID())} {
		info := provider.LunInfo{VendorID: "keep"}
		ok, err := b.p.FillInLunInfo(ctx, dev, &info)
		require.NoError(t, err)
		require.False(t, ok)
		require.Equal(t, "keep", info.VendorID, "an unknown device's information is left alone")
	}
	_, err = b.p.FillInLunInfo(ctx, "lun0", nil)
	requireCode(t, vss.E_INVALIDARG, err)
}

// TestGetTargetLunsReadsNothing checks F.6 (P5): GetTargetLuns and
// FillInLunInfo issue no I/O to sources or targets.
func TestGetTargetLunsReadsNothing(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{}, nil, 3)
	set := vss.NewID()
	b.run(set, 5)
	all := append([]*lun.LUN{}, b.luns...)
	for _, dev := range b.devices {
		l, err := b.a.Get(provider.TargetName(dev, set))
		require.NoError(t, err)
		all = append(all, l)
	}
	before := ioCounts(all...)
	_, err := b.p.GetTargetLuns(ctx, b.devices, b.infos)
	require.NoError(t, err)
	for _, l := range all {
		var info provider.LunInfo
		_, err := b.p.FillInLunInfo(ctx, l.Name(), &info)
		require.NoError(t, err)
	}
	require.Equal(t, before, ioCounts(all...))
}

// TestGetTargetLunsArguments checks what GetTargetLuns refuses.
func TestGetTargetLunsArguments(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{}, nil, 2)
	extra, err := b.a.Create("outside", lun.Options{Size: mib})
	require.NoError(t, err)
	set := vss.NewID()
	b.run(set, 5)
	for _, c := range []struct {
		name    string
		devices []string
		infos   []provider.LunInfo
	}{
		{"empty", nil, nil},
		{"mismatched", b.devices, b.infos[:1]},
		{"device not in the set", []string{"outside"}, []provider.LunInfo{provider.LunInfoOf(extra)}},
		{"source of another device", []string{"lun0"}, b.infos[1:]},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := b.p.GetTargetLuns(ctx, c.devices, c.infos)
			requireCode(t, vss.E_INVALIDARG, err)
		})
	}
}

// TestAreLunsSupported checks F.2: contexts the profile cannot honour,
// unknown devices, LUNs the array does not own and transient shortages are
// refused up front with false and no error, and Interconnects are never
// touched.
func TestAreLunsSupported(t *testing.T) {
	ctx := context.Background()
	with := func(base vss.SnapshotContext, attrs vss.VolSnapAttr) vss.SnapshotContext {
		return base | vss.SnapshotContext(attrs)
	}
	prof := provider.DefaultProfile()
	prof.Capabilities = provider.Capabilities{Transportable: true, Differential: true, MaxSnapshotsPerLUN: 2}
	b := newBench(t, lun.Config{}, prof, 3)
	for i := range b.infos {
		b.infos[i].Interconnects = []provider.Interconnect{{AddressType: 1, Port: []byte("port"), Address: []byte("nbd://127.0.0.1/" + b.devices[i])}}
	}
	pristine := make([]provider.LunInfo, len(b.infos))
	for i, info := range b.infos {
		pristine[i] = info.Clone()
	}
	snap, err := b.a.Snapshot("lun2", "")
	require.NoError(t, err)
	wrongNAA := b.infos[1].Clone()
	wrongNAA.DeviceIDDescriptor[0].Value[15] ^= 1

	for _, c := range []struct {
		name    string
		snapCtx vss.SnapshotContext
		devices []string
		infos   []provider.LunInfo
		want    bool
	}{
		{"backup", vss.VSS_CTX_BACKUP, b.devices[:2], b.infos[:2], true},
		{"qemu's context", with(vss.VSS_CTX_APP_ROLLBACK, vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE|vss.VSS_VOLSNAP_ATTR_NO_AUTORECOVERY|vss.VSS_VOLSNAP_ATTR_TXF_RECOVERY), b.devices, b.infos, true},
		{"differential", with(vss.VSS_CTX_BACKUP, vss.VSS_VOLSNAP_ATTR_DIFFERENTIAL), b.devices, b.infos, true},
		{"plex unsupported", with(vss.VSS_CTX_BACKUP, vss.VSS_VOLSNAP_ATTR_PLEX), b.devices, b.infos, false},
		{"client accessible", vss.VSS_CTX_CLIENT_ACCESSIBLE, b.devices, b.infos, false},
		{"all", vss.VSS_CTX_ALL, b.devices, b.infos, false},
		{"invalid context", vss.SnapshotContext(vss.VSS_VOLSNAP_ATTR_PERSISTENT), b.devices, b.infos, false},
		{"unknown device", vss.VSS_CTX_BACKUP, []string{"lun0", "nope"}, b.infos[:2], false},
		{"not owned", vss.VSS_CTX_BACKUP, []string{"lun0", "lun1"}, []provider.LunInfo{b.infos[0], wrongNAA}, false},
		{"no NAA", vss.VSS_CTX_BACKUP, []string{"lun0"}, []provider.LunInfo{{}}, false},
		{"snapshot LUN", vss.VSS_CTX_BACKUP, []string{snap.Name()}, []provider.LunInfo{provider.LunInfoOf(snap)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, err := b.p.AreLunsSupported(ctx, c.snapCtx, c.devices, c.infos)
			require.NoError(t, err)
			require.Equal(t, c.want, ok)
		})
	}
	require.Equal(t, pristine, b.infos, "AreLunsSupported changed its LUN information")

	_, err = b.p.AreLunsSupported(ctx, vss.VSS_CTX_BACKUP, b.devices, b.infos[:1])
	requireCode(t, vss.E_INVALIDARG, err)
	_, err = b.p.AreLunsSupported(ctx, vss.VSS_CTX_BACKUP, []string{"lun0", "lun0"}, b.infos[:2])
	requireCode(t, vss.E_INVALIDARG, err)

	// lun2 reaches the profile's limit of two snapshots: still supported
	// (it is no shortage to send the volume elsewhere for);
	// BeginPrepareSnapshot reports the limit (F.9).
	_, err = b.a.Snapshot("lun2", "")
	require.NoError(t, err)
	ok, err := b.p.AreLunsSupported(ctx, vss.VSS_CTX_BACKUP, b.devices, b.infos)
	require.NoError(t, err)
	require.True(t, ok)
	err = b.p.BeginPrepareSnapshot(ctx, vss.NewID(), vss.NewID(), vss.VSS_CTX_BACKUP, b.devices, b.infos)
	requireCode(t, vss.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED, err)
}

// TestSurfacingAndReclaim walks a created set through LocateLuns,
// OnLunStateChange, ResyncLuns and OnLunEmpty.
func TestSurfacingAndReclaim(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{}, nil, 2)
	old := bytes.Repeat([]byte("old!"), 1024)
	for _, l := range b.luns {
		require.NoError(t, l.WriteAt(ctx, old, 0, false))
	}
	set := b.create()
	targets, err := b.p.GetTargetLuns(ctx, b.devices, b.infos)
	require.NoError(t, err)
	var tl []*lun.LUN
	for _, dev := range b.devices {
		l, err := b.a.Get(provider.TargetName(dev, set))
		require.NoError(t, err)
		require.True(t, l.Masked())
		tl = append(tl, l)
	}

	// LocateLuns unmasks, read-only.
	require.NoError(t, b.p.LocateLuns(ctx, targets))
	for _, l := range tl {
		require.False(t, l.Masked())
		require.True(t, l.ReadOnly())
	}
	requireCode(t, vss.E_INVALIDARG, b.p.LocateLuns(ctx, b.infos)) // sources are no snapshot LUNs
	requireCode(t, vss.E_INVALIDARG, b.p.LocateLuns(ctx, nil))

	// ResyncLuns copies the target back onto its source, in the array.
	require.NoError(t, b.luns[0].WriteAt(ctx, bytes.Repeat([]byte("new!"), 1024), 0, false))
	async, err := b.p.ResyncLuns(ctx, b.infos[:1], targets[:1])
	require.NoError(t, err)
	require.NoError(t, async.Wait(ctx))
	got := make([]byte, len(old))
	require.NoError(t, b.luns[0].ReadAt(ctx, got, 0))
	require.Equal(t, old, got)
	_, err = b.p.ResyncLuns(ctx, b.infos[1:], targets[:1])
	requireCode(t, vss.E_INVALIDARG, err)

	// OnLunStateChange: read/write, then masked again.
	ex := provider.HardwareProviderEx(b.p)
	require.NoError(t, ex.OnLunStateChange(ctx, targets, b.infos, vss.VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE))
	for _, l := range tl {
		require.False(t, l.ReadOnly())
		require.NoError(t, l.WriteAt(ctx, []byte("signature"), 0, false))
	}
	require.NoError(t, ex.OnLunStateChange(ctx, targets, b.infos, vss.VSS_ONLUNSTATECHANGE_DO_MASK_LUNS|vss.VSS_ONLUNSTATECHANGE_NOTIFY_LUN_POST_RECOVERY))
	for _, l := range tl {
		require.True(t, l.Masked())
	}
	requireCode(t, vss.E_INVALIDARG, ex.OnLunStateChange(ctx, targets, b.infos, vss.VSS_BREAKEX_FLAG_MASK_LUNS))
	requireCode(t, vss.E_INVALIDARG, ex.OnLunStateChange(ctx, targets, b.infos[:1], 0))
	require.NoError(t, ex.OnReuseLuns(ctx, targets, b.infos))

	caps, err := ex.GetProviderCapabilities(ctx)
	require.NoError(t, err)
	require.Equal(t, vss.VSS_PRV_CAPABILITY_COMPLIANT|vss.VSS_PRV_CAPABILITY_LUN_RESYNC|vss.VSS_PRV_CAPABILITY_DIFFERENTIAL|vss.VSS_PRV_CAPABILITY_PLEX, caps)

	// OnLunEmpty reclaims targets, never sources.
	requireCode(t, vss.E_INVALIDARG, b.p.OnLunEmpty(ctx, "lun0", b.infos[0]))
	_, err = b.a.Get("lun0")
	require.NoError(t, err)
	for i, l := range tl {
		var info provider.LunInfo
		ok, err := b.p.FillInLunInfo(ctx, l.Name(), &info) // VSS calls it before OnLunEmpty
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, b.p.OnLunEmpty(ctx, l.Name(), targets[i]))
		require.True(t, l.Deleted())
		ok, err = b.p.FillInLunInfo(ctx, l.Name(), &info)
		require.NoError(t, err)
		require.False(t, ok)
	}
	require.Empty(t, b.snapshotLUNs())
}

// TestNotifications checks OnLoad and OnUnload: a forced unload discards
// the live set.
func TestNotifications(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{MaxSnapshots: 1}, nil, 2)
	n := provider.Notifications(b.p)
	require.NoError(t, n.OnLoad(ctx))
	set := vss.NewID()
	b.run(set, 2)
	require.NoError(t, n.OnUnload(ctx, false))
	s, _ := b.p.State(set)
	require.Equal(t, vss.VSS_SS_PREPARED, s)
	require.NoError(t, n.OnUnload(ctx, true))
	_, known := b.p.State(set)
	require.False(t, known)
	b.requireNothingLeft(set)
}

// TestInjectedFailuresReplay checks P8: the same seed gives the same
// sequence of failures, another seed another one.
func TestInjectedFailuresReplay(t *testing.T) {
	ctx := context.Background()
	sequence := func(seed uint64) []bool {
		prof := provider.DefaultProfile()
		prof.Seed = seed
		prof.Methods = map[vss.ProviderMethod]provider.MethodBehavior{
			vss.MethodOnLoad: {Failures: []provider.Failure{
				provider.WithProbability(0.3, 0, vss.VSS_E_PROVIDER_VETO),
				provider.OnNth(5, vss.E_OUTOFMEMORY),
			}},
		}
		b := newBench(t, lun.Config{}, prof, 0)
		var out []bool
		for i := range 64 {
			err := b.p.OnLoad(ctx)
			out = append(out, err != nil)
			if i == 4 && err != nil {
				require.Contains(t, []vss.HRESULT{vss.VSS_E_PROVIDER_VETO, vss.E_OUTOFMEMORY}, vss.FromError(err))
			}
		}
		require.True(t, out[4], "the 5th call always fails")
		return out
	}
	require.Equal(t, sequence(7), sequence(7))
	require.NotEqual(t, sequence(7), sequence(8))
}

// TestVetoLoggedAfterFreeze checks P7: a veto inside the freeze window is
// logged only at the next call outside it.
func TestVetoLoggedAfterFreeze(t *testing.T) {
	ctx := context.Background()
	h := &recordingHandler{}
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	l, err := a.Create("lun0", lun.Options{Size: mib})
	require.NoError(t, err)
	p, err := provider.NewArray(a, failing(vss.MethodCommitSnapshots, vss.VSS_E_PROVIDER_VETO), provider.WithLogger(slog.New(h)))
	require.NoError(t, err)
	defer p.Close()
	b := &bench{t: t, a: a, p: p, luns: []*lun.LUN{l}, devices: []string{"lun0"}, infos: []provider.LunInfo{provider.LunInfoOf(l)}}
	set := vss.NewID()
	b.run(set, 3)
	requireCode(t, vss.VSS_E_PROVIDER_VETO, p.CommitSnapshots(ctx, set))
	require.Empty(t, h.messages(), "nothing is logged while volumes are frozen")
	require.NoError(t, p.AbortSnapshots(ctx, set))
	msgs := h.messages()
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0], "CommitSnapshots")
	require.Contains(t, msgs[0], "VSS_E_PROVIDER_VETO")
}

type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}

func (h *recordingHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		s := r.Level.String() + " " + r.Message
		r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
		out = append(out, s)
	}
	return out
}
