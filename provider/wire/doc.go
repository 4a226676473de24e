// Package wire carries the VSS provider interfaces over the network: a gRPC
// protocol (provider.proto, the contract a vendor implements in any
// language), a Server that serves an in-process provider.Provider over it,
// and a Client that implements the provider interfaces by calling a remote
// one, so the coordinator registers it like any other provider.
//
// # Design
//
// The protocol follows vsprov.h one for one (vss-spec.md C): one service per
// COM interface, one method per COM method, every argument a field, every
// result an HRESULT in the response. Optional interfaces are optional
// services, as QueryInterface finds them. gRPC statuses are kept for the
// transport alone, so a provider in another language never has to map its
// failures onto gRPC codes, and the client can tell "the provider said
// VSS_E_PROVIDER_VETO" from "the provider could not be reached". The
// alternative of one HRESULT in a gRPC status detail was rejected: every
// vendor would need the status-details machinery of its gRPC library to
// report the commonest answer.
//
// A call that fails in transport answers the HRESULT a COM call gets from
// RPC when an out-of-process provider dies or hangs (RPC_S_SERVER_UNAVAILABLE,
// ERROR_TIMEOUT, RPC_S_CALL_FAILED): none is legal for a provider, so the
// coordinator reports VSS_E_UNEXPECTED_PROVIDER_ERROR and logs event 12293,
// as VSS does. These errors never wrap a context error, which the
// coordinator reads as its own cancellation.
//
// KernelSupport is the protocol's extension for LUNs that live on the
// remote array: their descriptions, the rescan, and flush & hold (the I/O
// gate of a LUN lives with the array that serves it). A hold made over it
// carries its window, and the remote array's gates release themselves when
// the window passes, whatever becomes of the coordinator or the network.
//
// # Invariants
//
// Tests name the invariant they check.
//
//   - W1 Every provider method and argument crosses the wire unchanged:
//     a provider served remotely behaves as the same provider in-process,
//     result codes included.
//   - W2 Every call carries the caller's deadline and is cancelled with its
//     context; the server's provider sees both.
//   - W3 A call that misses its deadline, or whose connection is down or
//     breaks, returns a provider failure within its deadline: never a hang.
//     The client reconnects by itself, so a provider that comes back is
//     used again.
//   - W4 No panic of a served provider reaches the client or stops the
//     server: the call fails as RPC_S_CALL_FAILED, and the next is served.
//   - W5 Bad input answers a clear error: an undecodable request
//     E_INVALIDARG, an undecodable answer a provider failure.
//   - W6 A hold made over KernelSupport ends at ReleaseWrites, at its window
//     (ReleaseWrites then answers VSS_E_HOLD_WRITES_TIMEOUT), or when the
//     server stops; a failed FlushAndHold leaves no gate closed.
//   - W7 Every goroutine is owned: Server.Stop and Client.Close leave none.
//
// # Regenerating
//
// The generated code in wirepb is committed, so building needs no protoc;
// make proto regenerates it (and the Python sample's module) from
// provider.proto, and a test checks the committed files against it.
package wire
