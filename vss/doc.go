// Package vss is shadowbench's vocabulary of the Windows Volume Shadow Copy Service: HRESULT
// codes as an error type, VSS_ID, snapshot contexts and attributes, snapshot and writer
// states, and the other enumerations of vss-spec.md. It holds names, values and pure lookups
// only; the behaviour (providers, the coordinator, writers) lives in the packages that import
// it, and it imports nothing from the project.
//
// # Design
//
// Constants keep their Windows names (VSS_E_OBJECT_NOT_FOUND, VSS_CTX_APP_ROLLBACK,
// VSS_WS_FAILED_AT_FREEZE) because the spec, the Microsoft documentation, scenario files and
// logs all speak in them, and one spelling greps across all of them. Go-style aliases such
// as ErrObjectNotFound were rejected: they would give every code a second name to learn and
// to keep in step. Types get Go names (HRESULT, SnapshotContext, WriterState) because they
// appear in signatures. The only names Windows does not define are the writer events
// (EventFreeze) and the provider methods (MethodCommitSnapshots).
//
// HRESULT is an error type like syscall.Errno. A failure is returned as the bare code or
// wrapped with fmt.Errorf("...: %w", hr); errors.Is(err, VSS_E_PROVIDER_VETO) and
// errors.As(err, &hr) see through the wrapping, and FromError recovers the code to hand
// across an API boundary.
//
// Each enumeration has one name table, written beside its constants, from which String,
// its Parse function and its listing function derive. Parse functions accept the names
// String prints, so scenario files and firmware profiles can name any value; a name that
// denotes nothing is an error wrapping ErrUnknownName.
//
// # Invariants
//
//   - V1 Values are the Windows values (winerror.h, vss.h, vsprov.h) that vss-spec.md quotes;
//     a code the spec names without a value carries its winerror.h value.
//   - V2 Success codes never travel as errors: HRESULT.Err is nil for S_OK, S_FALSE and
//     VSS_S_*, and FromError never answers a success code for a non-nil error. A call whose
//     success code matters (VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED) returns it as a value.
//   - V3 Every printed name parses back to the same value: ParseHRESULT(hr.Name()) == hr for
//     every hr, and each Parse function inverts its String for every named value.
//   - V4 A provider's result reaches the requester only if it is legal for the method
//     (ProviderMethod.Translate); any other code becomes VSS_E_UNEXPECTED_PROVIDER_ERROR.
//   - V5 Nothing here blocks or holds mutable state: the tables are built at package
//     initialisation and never modified, and listing functions return fresh slices.
package vss
