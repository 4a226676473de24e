package vss

import "slices"

// ProviderMethod names a method of the provider interfaces of vss-spec.md C, so that traces,
// firmware profiles and fault injection can refer to a call by name.
type ProviderMethod uint32

// The provider methods, in the order of vsprov.h. The zero value names no method.
const (
	MethodAreLunsSupported ProviderMethod = iota + 1
	MethodBeginPrepareSnapshot
	MethodGetTargetLuns
	MethodLocateLuns
	MethodFillInLunInfo
	MethodOnLunEmpty
	MethodGetProviderCapabilities
	MethodOnLunStateChange
	MethodResyncLuns
	MethodOnReuseLuns
	MethodEndPrepareSnapshots
	MethodPreCommitSnapshots
	MethodCommitSnapshots
	MethodPostCommitSnapshots
	MethodPreFinalCommitSnapshots
	MethodPostFinalCommitSnapshots
	MethodAbortSnapshots
	MethodOnLoad
	MethodOnUnload
)

// providerMethods holds, per method, its name and the codes its row of vss-spec.md C
// documents. The reserved methods and OnLoad/OnUnload document nothing beyond std.
// untranslated marks the methods whose result VSS does not pass through the legal-code rule:
// AbortSnapshots and OnUnload are exempt, and the result of FillInLunInfo is ignored.
var providerMethods = [...]struct {
	name         string
	codes        codeSet
	untranslated bool
}{
	MethodAreLunsSupported: {name: "AreLunsSupported", codes: providerStd},
	MethodBeginPrepareSnapshot: {name: "BeginPrepareSnapshot", codes: stdPlus(
		VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED, VSS_E_NESTED_VOLUME_LIMIT,
		VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, VSS_E_UNSUPPORTED_CONTEXT)},
	MethodGetTargetLuns:           {name: "GetTargetLuns", codes: providerStd},
	MethodLocateLuns:              {name: "LocateLuns", codes: providerStd},
	MethodFillInLunInfo:           {name: "FillInLunInfo", untranslated: true},
	MethodOnLunEmpty:              {name: "OnLunEmpty", codes: providerStd},
	MethodGetProviderCapabilities: {name: "GetProviderCapabilities", codes: providerStd},
	MethodOnLunStateChange:        {name: "OnLunStateChange", codes: providerStd},
	MethodResyncLuns: {name: "ResyncLuns", codes: codeSet{
		S_OK, E_OUTOFMEMORY, VSS_E_PROVIDER_VETO, VSS_E_INSUFFICIENT_STORAGE}},
	MethodOnReuseLuns:              {name: "OnReuseLuns", codes: providerStd},
	MethodEndPrepareSnapshots:      {name: "EndPrepareSnapshots", codes: stdPlus(VSS_E_OBJECT_NOT_FOUND, VSS_E_INSUFFICIENT_STORAGE)},
	MethodPreCommitSnapshots:       {name: "PreCommitSnapshots", codes: stdPlus(VSS_E_OBJECT_NOT_FOUND)},
	MethodCommitSnapshots:          {name: "CommitSnapshots", codes: stdPlus(VSS_E_OBJECT_NOT_FOUND)},
	MethodPostCommitSnapshots:      {name: "PostCommitSnapshots", codes: stdPlus(VSS_E_OBJECT_NOT_FOUND)},
	MethodPreFinalCommitSnapshots:  {name: "PreFinalCommitSnapshots", codes: providerStd},
	MethodPostFinalCommitSnapshots: {name: "PostFinalCommitSnapshots", codes: providerStd},
	MethodAbortSnapshots:           {name: "AbortSnapshots", codes: stdPlus(VSS_E_OBJECT_NOT_FOUND), untranslated: true},
	MethodOnLoad:                   {name: "OnLoad", codes: providerStd},
	MethodOnUnload:                 {name: "OnUnload", codes: providerStd, untranslated: true},
}

// stdPlus returns the std codes followed by extra.
func stdPlus(extra ...HRESULT) codeSet { return append(slices.Clip(providerStd), extra...) }

// providerMethodNames is the name table derived from providerMethods.
var providerMethodNames = func() *table[ProviderMethod] {
	t := &table[ProviderMethod]{typeName: "ProviderMethod"}
	for m, info := range providerMethods {
		if info.name != "" {
			t.entries = append(t.entries, entry[ProviderMethod]{ProviderMethod(m), info.name})
		}
	}
	return t
}()

// String returns the method's vsprov.h name, "CommitSnapshots".
func (m ProviderMethod) String() string { return providerMethodNames.format(m) }

// ParseProviderMethod returns the method with the given vsprov.h name.
func ParseProviderMethod(s string) (ProviderMethod, error) { return providerMethodNames.parse(s) }

// ProviderMethods lists every provider method in vsprov.h order.
func ProviderMethods() []ProviderMethod { return providerMethodNames.values() }

// Documents reports whether the method's row in vss-spec.md C lists hr: the std codes plus
// the method's own, such as VSS_E_NESTED_VOLUME_LIMIT for BeginPrepareSnapshot. ResyncLuns
// lists only S_OK, E_OUTOFMEMORY, VSS_E_PROVIDER_VETO and VSS_E_INSUFFICIENT_STORAGE, and
// FillInLunInfo nothing, since VSS ignores its result.
func (m ProviderMethod) Documents(hr HRESULT) bool {
	return int(m) < len(providerMethods) && providerMethods[m].codes.has(hr)
}

// Translated reports whether VSS applies the legal-code rule to the method's result. It does
// not for AbortSnapshots and OnUnload, which are exempt, nor for FillInLunInfo, whose result
// VSS ignores (its answer is pbIsSupported). A value that names no method is translated.
func (m ProviderMethod) Translated() bool {
	return int(m) >= len(providerMethods) || !providerMethods[m].untranslated
}

// Translate returns the code VSS hands on when the method returns hr: hr itself when the
// method is not translated, when hr is in the full legal set (ProviderMayReturn) or when the
// method documents it; VSS_E_UNEXPECTED_PROVIDER_ERROR otherwise (vss-spec.md C, F5).
func (m ProviderMethod) Translate(hr HRESULT) HRESULT {
	if !m.Translated() || ProviderMayReturn(hr) || m.Documents(hr) {
		return hr
	}
	return VSS_E_UNEXPECTED_PROVIDER_ERROR
}

// ProviderType is VSS_PROVIDER_TYPE, the kind of a registered provider.
type ProviderType uint32

// The VSS_PROVIDER_TYPE values. Provider selection prefers HARDWARE, then SOFTWARE, then
// SYSTEM (vss-spec.md A5).
const (
	VSS_PROV_UNKNOWN ProviderType = iota
	VSS_PROV_SYSTEM
	VSS_PROV_SOFTWARE
	VSS_PROV_HARDWARE
	VSS_PROV_FILESHARE
)

var providerTypes = dense[ProviderType]("VSS_PROVIDER_TYPE", "VSS_PROV_", 0,
	"UNKNOWN", "SYSTEM", "SOFTWARE", "HARDWARE", "FILESHARE")

// String returns the Windows name, "VSS_PROV_HARDWARE".
func (t ProviderType) String() string { return providerTypes.format(t) }

// ParseProviderType accepts "VSS_PROV_HARDWARE" or "HARDWARE".
func ParseProviderType(s string) (ProviderType, error) { return providerTypes.parse(s) }

// ProviderCapability is the VSS_PROVIDER_CAPABILITIES mask that
// IVssHardwareSnapshotProviderEx::GetProviderCapabilities returns (a ULONGLONG; the method is
// reserved, but the bits are defined).
type ProviderCapability uint64

// The VSS_PROVIDER_CAPABILITIES bits.
const (
	VSS_PRV_CAPABILITY_LEGACY           ProviderCapability = 0x1
	VSS_PRV_CAPABILITY_COMPLIANT        ProviderCapability = 0x2
	VSS_PRV_CAPABILITY_LUN_REPOINT      ProviderCapability = 0x4
	VSS_PRV_CAPABILITY_LUN_RESYNC       ProviderCapability = 0x8
	VSS_PRV_CAPABILITY_OFFLINE_CREATION ProviderCapability = 0x10
	VSS_PRV_CAPABILITY_MULTIPLE_IMPORT  ProviderCapability = 0x20
	VSS_PRV_CAPABILITY_RECYCLING        ProviderCapability = 0x40
	VSS_PRV_CAPABILITY_PLEX             ProviderCapability = 0x80
	VSS_PRV_CAPABILITY_DIFFERENTIAL     ProviderCapability = 0x100
	VSS_PRV_CAPABILITY_CLUSTERED        ProviderCapability = 0x200
)

var providerCapabilities = &table[ProviderCapability]{typeName: "VSS_PROVIDER_CAPABILITIES", prefix: "VSS_PRV_CAPABILITY_",
	entries: []entry[ProviderCapability]{
		{VSS_PRV_CAPABILITY_LEGACY, "VSS_PRV_CAPABILITY_LEGACY"},
		{VSS_PRV_CAPABILITY_COMPLIANT, "VSS_PRV_CAPABILITY_COMPLIANT"},
		{VSS_PRV_CAPABILITY_LUN_REPOINT, "VSS_PRV_CAPABILITY_LUN_REPOINT"},
		{VSS_PRV_CAPABILITY_LUN_RESYNC, "VSS_PRV_CAPABILITY_LUN_RESYNC"},
		{VSS_PRV_CAPABILITY_OFFLINE_CREATION, "VSS_PRV_CAPABILITY_OFFLINE_CREATION"},
		{VSS_PRV_CAPABILITY_MULTIPLE_IMPORT, "VSS_PRV_CAPABILITY_MULTIPLE_IMPORT"},
		{VSS_PRV_CAPABILITY_RECYCLING, "VSS_PRV_CAPABILITY_RECYCLING"},
		{VSS_PRV_CAPABILITY_PLEX, "VSS_PRV_CAPABILITY_PLEX"},
		{VSS_PRV_CAPABILITY_DIFFERENTIAL, "VSS_PRV_CAPABILITY_DIFFERENTIAL"},
		{VSS_PRV_CAPABILITY_CLUSTERED, "VSS_PRV_CAPABILITY_CLUSTERED"},
	}}

// String joins the names of the set bits with "|".
func (c ProviderCapability) String() string { return providerCapabilities.formatFlags(c) }

// ParseProviderCapability parses names (with or without "VSS_PRV_CAPABILITY_") or numbers
// joined with "|".
func ParseProviderCapability(s string) (ProviderCapability, error) {
	return providerCapabilities.parseFlags(s)
}

// HardwareOptions is VSS_HARDWARE_OPTIONS: the flags of BreakSnapshotSetEx (VSS_BREAKEX_*)
// and of OnLunStateChange (VSS_ONLUNSTATECHANGE_*), which Windows defines in one enumeration.
type HardwareOptions uint32

// The VSS_HARDWARE_OPTIONS bits (vss-spec.md C and E).
const (
	VSS_BREAKEX_FLAG_MASK_LUNS                    HardwareOptions = 0x1
	VSS_BREAKEX_FLAG_MAKE_READ_WRITE              HardwareOptions = 0x2
	VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL          HardwareOptions = 0x4
	VSS_BREAKEX_FLAG_REVERT_IDENTITY_NONE         HardwareOptions = 0x8
	VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE        HardwareOptions = 0x100
	VSS_ONLUNSTATECHANGE_NOTIFY_LUN_PRE_RECOVERY  HardwareOptions = 0x200
	VSS_ONLUNSTATECHANGE_NOTIFY_LUN_POST_RECOVERY HardwareOptions = 0x400
	VSS_ONLUNSTATECHANGE_DO_MASK_LUNS             HardwareOptions = 0x800
)

// hardwareOptions has no prefix: the two families share none, and each short name would
// hide which family it belongs to.
var hardwareOptions = &table[HardwareOptions]{typeName: "VSS_HARDWARE_OPTIONS", entries: []entry[HardwareOptions]{
	{VSS_BREAKEX_FLAG_MASK_LUNS, "VSS_BREAKEX_FLAG_MASK_LUNS"},
	{VSS_BREAKEX_FLAG_MAKE_READ_WRITE, "VSS_BREAKEX_FLAG_MAKE_READ_WRITE"},
	{VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL, "VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL"},
	{VSS_BREAKEX_FLAG_REVERT_IDENTITY_NONE, "VSS_BREAKEX_FLAG_REVERT_IDENTITY_NONE"},
	{VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE, "VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE"},
	{VSS_ONLUNSTATECHANGE_NOTIFY_LUN_PRE_RECOVERY, "VSS_ONLUNSTATECHANGE_NOTIFY_LUN_PRE_RECOVERY"},
	{VSS_ONLUNSTATECHANGE_NOTIFY_LUN_POST_RECOVERY, "VSS_ONLUNSTATECHANGE_NOTIFY_LUN_POST_RECOVERY"},
	{VSS_ONLUNSTATECHANGE_DO_MASK_LUNS, "VSS_ONLUNSTATECHANGE_DO_MASK_LUNS"},
}}

// String joins the names of the set bits with "|".
func (o HardwareOptions) String() string { return hardwareOptions.formatFlags(o) }

// ParseHardwareOptions parses full names or numbers joined with "|".
func ParseHardwareOptions(s string) (HardwareOptions, error) { return hardwareOptions.parseFlags(s) }
