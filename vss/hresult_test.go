package vss_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

// specCodes is every code of vss-spec.md B-E, typed by hand from the spec (S_FALSE, E_ABORT
// and E_FAIL, named there without a value, from winerror.h).
var specCodes = []struct {
	name  string
	value uint32
	hr    vss.HRESULT
}{
	{"S_OK", 0x00000000, vss.S_OK},
	{"S_FALSE", 0x00000001, vss.S_FALSE},
	{"E_ABORT", 0x80004004, vss.E_ABORT},
	{"E_FAIL", 0x80004005, vss.E_FAIL},
	{"E_UNEXPECTED", 0x8000FFFF, vss.E_UNEXPECTED},
	{"E_ACCESSDENIED", 0x80070005, vss.E_ACCESSDENIED},
	{"E_OUTOFMEMORY", 0x8007000E, vss.E_OUTOFMEMORY},
	{"E_INVALIDARG", 0x80070057, vss.E_INVALIDARG},
	{"VSS_S_ASYNC_PENDING", 0x00042309, vss.VSS_S_ASYNC_PENDING},
	{"VSS_S_ASYNC_FINISHED", 0x0004230A, vss.VSS_S_ASYNC_FINISHED},
	{"VSS_S_ASYNC_CANCELLED", 0x0004230B, vss.VSS_S_ASYNC_CANCELLED},
	{"VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED", 0x00042321, vss.VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED},
	{"VSS_E_BAD_STATE", 0x80042301, vss.VSS_E_BAD_STATE},
	{"VSS_E_UNEXPECTED", 0x80042302, vss.VSS_E_UNEXPECTED},
	{"VSS_E_PROVIDER_NOT_REGISTERED", 0x80042304, vss.VSS_E_PROVIDER_NOT_REGISTERED},
	{"VSS_E_PROVIDER_VETO", 0x80042306, vss.VSS_E_PROVIDER_VETO},
	{"VSS_E_OBJECT_NOT_FOUND", 0x80042308, vss.VSS_E_OBJECT_NOT_FOUND},
	{"VSS_E_VOLUME_NOT_SUPPORTED", 0x8004230C, vss.VSS_E_VOLUME_NOT_SUPPORTED},
	{"VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER", 0x8004230E, vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER},
	{"VSS_E_UNEXPECTED_PROVIDER_ERROR", 0x8004230F, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR},
	{"VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED", 0x80042312, vss.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED},
	{"VSS_E_FLUSH_WRITES_TIMEOUT", 0x80042313, vss.VSS_E_FLUSH_WRITES_TIMEOUT},
	{"VSS_E_HOLD_WRITES_TIMEOUT", 0x80042314, vss.VSS_E_HOLD_WRITES_TIMEOUT},
	{"VSS_E_UNEXPECTED_WRITER_ERROR", 0x80042315, vss.VSS_E_UNEXPECTED_WRITER_ERROR},
	{"VSS_E_SNAPSHOT_SET_IN_PROGRESS", 0x80042316, vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS},
	{"VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED", 0x80042317, vss.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED},
	{"VSS_E_WRITER_INFRASTRUCTURE", 0x80042318, vss.VSS_E_WRITER_INFRASTRUCTURE},
	{"VSS_E_WRITER_NOT_RESPONDING", 0x80042319, vss.VSS_E_WRITER_NOT_RESPONDING},
	{"VSS_E_UNSUPPORTED_CONTEXT", 0x8004231B, vss.VSS_E_UNSUPPORTED_CONTEXT},
	{"VSS_E_INSUFFICIENT_STORAGE", 0x8004231F, vss.VSS_E_INSUFFICIENT_STORAGE},
	{"VSS_E_NO_SNAPSHOTS_IMPORTED", 0x80042320, vss.VSS_E_NO_SNAPSHOTS_IMPORTED},
	{"VSS_E_REBOOT_REQUIRED", 0x80042327, vss.VSS_E_REBOOT_REQUIRED},
	{"VSS_E_TRANSACTION_FREEZE_TIMEOUT", 0x80042328, vss.VSS_E_TRANSACTION_FREEZE_TIMEOUT},
	{"VSS_E_TRANSACTION_THAW_TIMEOUT", 0x80042329, vss.VSS_E_TRANSACTION_THAW_TIMEOUT},
	{"VSS_E_NESTED_VOLUME_LIMIT", 0x8004232C, vss.VSS_E_NESTED_VOLUME_LIMIT},
	{"VSS_E_WRITERERROR_PARTIAL_FAILURE", 0x80042336, vss.VSS_E_WRITERERROR_PARTIAL_FAILURE},
	{"VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT", 0x800423F0, vss.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT},
	{"VSS_E_WRITERERROR_OUTOFRESOURCES", 0x800423F1, vss.VSS_E_WRITERERROR_OUTOFRESOURCES},
	{"VSS_E_WRITERERROR_TIMEOUT", 0x800423F2, vss.VSS_E_WRITERERROR_TIMEOUT},
	{"VSS_E_WRITERERROR_RETRYABLE", 0x800423F3, vss.VSS_E_WRITERERROR_RETRYABLE},
	{"VSS_E_WRITERERROR_NONRETRYABLE", 0x800423F4, vss.VSS_E_WRITERERROR_NONRETRYABLE},
	{"VSS_E_WRITERERROR_RECOVERY_FAILED", 0x800423F5, vss.VSS_E_WRITERERROR_RECOVERY_FAILED},
	{"VSS_E_BREAK_REVERT_ID_FAILED", 0x800423F6, vss.VSS_E_BREAK_REVERT_ID_FAILED},
	{"VSS_E_CANNOT_REVERT_DISKID", 0x800423FE, vss.VSS_E_CANNOT_REVERT_DISKID},
	{"VSS_E_WRITER_STATUS_NOT_AVAILABLE", 0x80042409, vss.VSS_E_WRITER_STATUS_NOT_AVAILABLE},
}

func TestHRESULTValues(t *testing.T) {
	for _, c := range specCodes {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.value, uint32(c.hr), "constant value")
			require.Equal(t, c.name, c.hr.Name())
			require.Equal(t, fmt.Sprintf("%s (0x%08X)", c.name, c.value), c.hr.Error())
			hr, err := vss.ParseHRESULT(c.name)
			require.NoError(t, err)
			require.Equal(t, c.hr, hr)
			hr, err = vss.ParseHRESULT(fmt.Sprintf("0x%08X", c.value))
			require.NoError(t, err)
			require.Equal(t, c.hr, hr)
		})
	}
}

// TestAllHRESULTs checks that the package names exactly the spec's codes (V1), once each,
// in ascending order.
func TestAllHRESULTs(t *testing.T) {
	want := make([]vss.HRESULT, 0, len(specCodes))
	for _, c := range specCodes {
		want = append(want, vss.HRESULT(c.value))
	}
	slices.Sort(want)
	require.Equal(t, want, vss.AllHRESULTs())
}

func TestHRESULTError(t *testing.T) {
	for _, c := range []struct {
		hr        vss.HRESULT
		err, name string
	}{
		{vss.VSS_E_OBJECT_NOT_FOUND, "VSS_E_OBJECT_NOT_FOUND (0x80042308)", "VSS_E_OBJECT_NOT_FOUND"},
		{vss.S_OK, "S_OK (0x00000000)", "S_OK"},
		{vss.E_UNEXPECTED, "E_UNEXPECTED (0x8000FFFF)", "E_UNEXPECTED"},
		{0x80041234, "HRESULT(0x80041234)", "0x80041234"},
		{0x2, "HRESULT(0x00000002)", "0x00000002"},
	} {
		require.Equal(t, c.err, c.hr.Error())
		require.Equal(t, c.name, c.hr.Name())
		require.Equal(t, c.err, fmt.Sprint(c.hr), "fmt uses Error")
	}
}

func TestFailedSucceeded(t *testing.T) {
	for _, c := range []struct {
		hr     vss.HRESULT
		failed bool
	}{
		{vss.S_OK, false},
		{vss.S_FALSE, false},
		{vss.VSS_S_ASYNC_PENDING, false},
		{vss.VSS_S_ASYNC_FINISHED, false},
		{vss.VSS_S_ASYNC_CANCELLED, false},
		{vss.VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED, false},
		{0x7FFFFFFF, false},
		{0x80000000, true},
		{vss.E_FAIL, true},
		{vss.VSS_E_BAD_STATE, true},
		{vss.VSS_E_WRITERERROR_TIMEOUT, true},
	} {
		require.Equal(t, c.failed, c.hr.Failed(), c.hr.Name())
		require.Equal(t, !c.failed, c.hr.Succeeded(), c.hr.Name())
	}
}

// TestErr checks V2 for every named code: Err is nil exactly for success codes.
func TestErr(t *testing.T) {
	for _, c := range specCodes {
		err := c.hr.Err()
		if c.value&0x80000000 == 0 {
			require.NoError(t, err, c.name)
			continue
		}
		require.Error(t, err, c.name)
		require.Equal(t, error(c.hr), err, c.name)
	}
}

func TestErrorsIsAs(t *testing.T) {
	err := fmt.Errorf("commit lun0: %w", fmt.Errorf("provider: %w", vss.VSS_E_PROVIDER_VETO))

	require.ErrorIs(t, err, vss.VSS_E_PROVIDER_VETO)
	require.NotErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)
	require.Equal(t, "commit lun0: provider: VSS_E_PROVIDER_VETO (0x80042306)", err.Error())

	var hr vss.HRESULT
	require.ErrorAs(t, err, &hr)
	require.Equal(t, vss.VSS_E_PROVIDER_VETO, hr)

	joined := errors.Join(errors.New("other"), fmt.Errorf("x: %w", vss.VSS_E_HOLD_WRITES_TIMEOUT))
	require.ErrorIs(t, joined, vss.VSS_E_HOLD_WRITES_TIMEOUT)

	// Like syscall.Errno, two codes match their standard library counterparts.
	require.ErrorIs(t, fmt.Errorf("w: %w", vss.E_ACCESSDENIED), fs.ErrPermission)
	require.ErrorIs(t, fmt.Errorf("w: %w", vss.VSS_E_OBJECT_NOT_FOUND), fs.ErrNotExist)
	require.NotErrorIs(t, vss.VSS_E_PROVIDER_VETO, fs.ErrPermission)
	require.NotErrorIs(t, vss.VSS_E_PROVIDER_VETO, fs.ErrNotExist)
	require.NotErrorIs(t, vss.E_ACCESSDENIED, fs.ErrNotExist)
}

func TestFromError(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want vss.HRESULT
	}{
		{"nil", nil, vss.S_OK},
		{"bare", vss.VSS_E_BAD_STATE, vss.VSS_E_BAD_STATE},
		{"wrapped", fmt.Errorf("a: %w", fmt.Errorf("b: %w", vss.VSS_E_INSUFFICIENT_STORAGE)), vss.VSS_E_INSUFFICIENT_STORAGE},
		{"unnamed code", fmt.Errorf("a: %w", vss.HRESULT(0x80041234)), 0x80041234},
		{"wrapped success code", fmt.Errorf("a: %w", vss.S_FALSE), vss.E_UNEXPECTED},
		{"canceled", context.Canceled, vss.E_ABORT},
		{"deadline", fmt.Errorf("hold: %w", context.DeadlineExceeded), vss.E_ABORT},
		{"code beats context", errors.Join(context.Canceled, vss.VSS_E_HOLD_WRITES_TIMEOUT), vss.VSS_E_HOLD_WRITES_TIMEOUT},
		{"other", errors.New("disk on fire"), vss.E_FAIL},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := vss.FromError(c.err)
			require.Equal(t, c.want, got)
			require.Equal(t, c.err != nil, got.Failed(), "V2: a non-nil error is a failure")
		})
	}
}

func TestParseHRESULT(t *testing.T) {
	for _, c := range []struct {
		in   string
		want vss.HRESULT
	}{
		{"0x80042308", vss.VSS_E_OBJECT_NOT_FOUND},
		{"0x4230a", vss.VSS_S_ASYNC_FINISHED},
		{"0x8004230f", vss.VSS_E_UNEXPECTED_PROVIDER_ERROR},
		{"0x0", vss.S_OK},
		{"0x1", vss.S_FALSE},
		{"0x80041234", 0x80041234},
	} {
		got, err := vss.ParseHRESULT(c.in)
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, got, c.in)
	}
	for _, in := range []string{
		"", "0x", "0X80042308", "80042308", "0x1FFFFFFFF", "0xZZ", "-0x1", "0x+1",
		"vss_e_provider_veto", "PROVIDER_VETO", "E_PROVIDER_VETO", " VSS_E_PROVIDER_VETO",
		"VSS_E_PROVIDER_VETO (0x80042306)", "HRESULT(0x80041234)",
	} {
		_, err := vss.ParseHRESULT(in)
		require.ErrorIs(t, err, vss.ErrUnknownName, "%q", in)
		require.Contains(t, err.Error(), fmt.Sprintf("%q", in))
	}
}

func TestProviderCodeSets(t *testing.T) {
	std := []vss.HRESULT{vss.S_OK, vss.E_OUTOFMEMORY, vss.E_INVALIDARG, vss.VSS_E_PROVIDER_VETO}
	legal := append(slices.Clone(std), vss.VSS_E_OBJECT_NOT_FOUND, vss.E_ACCESSDENIED,
		vss.VSS_E_BAD_STATE, vss.VSS_E_INSUFFICIENT_STORAGE, vss.VSS_E_VOLUME_NOT_SUPPORTED,
		vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, vss.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED,
		vss.VSS_E_CANNOT_REVERT_DISKID)
	writer := []vss.HRESULT{vss.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, vss.VSS_E_WRITERERROR_NONRETRYABLE,
		vss.VSS_E_WRITERERROR_OUTOFRESOURCES, vss.VSS_E_WRITERERROR_RETRYABLE, vss.VSS_E_WRITERERROR_TIMEOUT}
	writerEx := append(slices.Clone(writer), vss.S_OK, vss.VSS_E_WRITERERROR_PARTIAL_FAILURE)

	// Every named code and one unnamed code, so that a set holding one code too many fails.
	for _, hr := range append(vss.AllHRESULTs(), 0x80041234) {
		require.Equal(t, slices.Contains(std, hr), vss.ProviderStd(hr), "ProviderStd(%v)", hr)
		require.Equal(t, slices.Contains(legal, hr), vss.ProviderMayReturn(hr), "ProviderMayReturn(%v)", hr)
		require.Equal(t, slices.Contains(writer, hr), vss.WriterFailureAllowed(hr), "WriterFailureAllowed(%v)", hr)
		require.Equal(t, slices.Contains(writerEx, hr), vss.WriterFailureExAllowed(hr), "WriterFailureExAllowed(%v)", hr)
	}
}

// FuzzParseHRESULT checks that ParseHRESULT never panics and that whatever it accepts
// round-trips through Name and Error (V3).
func FuzzParseHRESULT(f *testing.F) {
	for _, c := range specCodes {
		f.Add(c.name)
		f.Add(fmt.Sprintf("0x%08X", c.value))
	}
	for _, s := range []string{"", "0x", "0x80041234", "0xffffffff", "0x100000000", "S_", "VSS_E_", "\x00", "0x-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hr, err := vss.ParseHRESULT(s)
		if err != nil {
			require.ErrorIs(t, err, vss.ErrUnknownName)
			return
		}
		back, err := vss.ParseHRESULT(hr.Name())
		require.NoError(t, err)
		require.Equal(t, hr, back)
		require.Contains(t, hr.Error(), fmt.Sprintf("0x%08X", uint32(hr)))
		if !strings.HasPrefix(s, "0x") {
			require.Equal(t, s, hr.Name(), "a name parses only from itself")
		}
	})
}
