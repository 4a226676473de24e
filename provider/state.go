package provider

import (
	"github.com/shadowbench/shadowbench/vss"
)

// transition is one row of the state machine: method called in state from
// puts the set in during while it runs and in to when it succeeds. A call
// that fails leaves the set in during, the processing state that names the
// failed step, from which only AbortSnapshots (or an out-of-sequence
// BeginPrepareSnapshot with a new set ID) leads on. A row whose during and to
// equal from is a call that is legal there and changes nothing.
type transition struct {
	method   vss.ProviderMethod
	from     vss.SnapshotState
	during   vss.SnapshotState
	to       vss.SnapshotState
	signaled bool // AbortSnapshots: the new state is set before any work, to stop running calls at once
}

// abortable lists the states AbortSnapshots is legal in: every state of a
// set that is neither created nor aborted, except PREPARING (vss-spec.md
// B.7: never before EndPrepareSnapshots has been called).
var abortable = []vss.SnapshotState{
	vss.VSS_SS_PROCESSING_PREPARE, vss.VSS_SS_PREPARED,
	vss.VSS_SS_PROCESSING_PRECOMMIT, vss.VSS_SS_PRECOMMITTED,
	vss.VSS_SS_PROCESSING_COMMIT, vss.VSS_SS_COMMITTED,
	vss.VSS_SS_PROCESSING_POSTCOMMIT, vss.VSS_SS_POSTCOMMITTED,
	vss.VSS_SS_PROCESSING_PREFINALCOMMIT, vss.VSS_SS_PREFINALCOMMITTED,
	vss.VSS_SS_PROCESSING_POSTFINALCOMMIT,
}

// transitions is the one transition table of a snapshot set (method × state →
// next state). VSS_SS_UNKNOWN is the state of a set ID the provider has not
// seen. Methods without a set (AreLunsSupported, LocateLuns, FillInLunInfo,
// OnLunEmpty and the Ex methods) are not in it; GetTargetLuns is, for the
// provider's current set, because its answer exists only once the set is
// committed. A BeginPrepareSnapshot with a set ID other than the current
// live set's is not a transition of that set: it discards it (B.8) and
// starts the new one from VSS_SS_UNKNOWN.
var transitions = func() []transition {
	t := []transition{
		{method: vss.MethodBeginPrepareSnapshot, from: vss.VSS_SS_UNKNOWN, during: vss.VSS_SS_PREPARING, to: vss.VSS_SS_PREPARING},
		{method: vss.MethodBeginPrepareSnapshot, from: vss.VSS_SS_PREPARING, during: vss.VSS_SS_PREPARING, to: vss.VSS_SS_PREPARING},
		{method: vss.MethodEndPrepareSnapshots, from: vss.VSS_SS_PREPARING, during: vss.VSS_SS_PROCESSING_PREPARE, to: vss.VSS_SS_PREPARED},
		{method: vss.MethodPreCommitSnapshots, from: vss.VSS_SS_PREPARED, during: vss.VSS_SS_PROCESSING_PRECOMMIT, to: vss.VSS_SS_PRECOMMITTED},
		{method: vss.MethodCommitSnapshots, from: vss.VSS_SS_PRECOMMITTED, during: vss.VSS_SS_PROCESSING_COMMIT, to: vss.VSS_SS_COMMITTED},
		{method: vss.MethodPostCommitSnapshots, from: vss.VSS_SS_COMMITTED, during: vss.VSS_SS_PROCESSING_POSTCOMMIT, to: vss.VSS_SS_POSTCOMMITTED},
		{method: vss.MethodGetTargetLuns, from: vss.VSS_SS_POSTCOMMITTED, during: vss.VSS_SS_POSTCOMMITTED, to: vss.VSS_SS_POSTCOMMITTED},
		{method: vss.MethodGetTargetLuns, from: vss.VSS_SS_PREFINALCOMMITTED, during: vss.VSS_SS_PREFINALCOMMITTED, to: vss.VSS_SS_PREFINALCOMMITTED},
		{method: vss.MethodGetTargetLuns, from: vss.VSS_SS_CREATED, during: vss.VSS_SS_CREATED, to: vss.VSS_SS_CREATED},
		{method: vss.MethodPreFinalCommitSnapshots, from: vss.VSS_SS_POSTCOMMITTED, during: vss.VSS_SS_PROCESSING_PREFINALCOMMIT, to: vss.VSS_SS_PREFINALCOMMITTED},
		{method: vss.MethodPostFinalCommitSnapshots, from: vss.VSS_SS_PREFINALCOMMITTED, during: vss.VSS_SS_PROCESSING_POSTFINALCOMMIT, to: vss.VSS_SS_CREATED},
		// A second AbortSnapshots is harmless: VSS ignores its result.
		{method: vss.MethodAbortSnapshots, from: vss.VSS_SS_ABORTED, during: vss.VSS_SS_ABORTED, to: vss.VSS_SS_ABORTED, signaled: true},
	}
	for _, s := range abortable {
		t = append(t, transition{method: vss.MethodAbortSnapshots, from: s, during: vss.VSS_SS_ABORTED, to: vss.VSS_SS_ABORTED, signaled: true})
	}
	return t
}()

// lookupTransition returns the row for method in state from.
func lookupTransition(m vss.ProviderMethod, from vss.SnapshotState) (transition, bool) {
	for _, t := range transitions {
		if t.method == m && t.from == from {
			return t, true
		}
	}
	return transition{}, false
}

// terminal reports whether a set in state s is finished: it holds no
// preparation, and a new set may begin without discarding it.
func terminal(s vss.SnapshotState) bool {
	return s == vss.VSS_SS_CREATED || s == vss.VSS_SS_ABORTED
}
