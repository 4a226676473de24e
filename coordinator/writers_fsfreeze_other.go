//go:build !linux

package coordinator

import "github.com/shadowbench/shadowbench/vss"

// checkMountPoint refuses every path: only Linux has FIFREEZE.
func checkMountPoint(string) error { return ErrFsfreezeUnsupported }

// fsFreeze fails: only Linux has FIFREEZE.
func fsFreeze(string) (int, error) { return -1, ErrFsfreezeUnsupported }

// fsThaw fails: only Linux has FITHAW.
func fsThaw(int) error { return ErrFsfreezeUnsupported }

// closeFD does nothing: fsFreeze opens nothing here.
func closeFD(int) {}

// freezeFailure is never reached here: no freeze gets that far.
func freezeFailure(error) vss.HRESULT { return vss.VSS_E_WRITERERROR_NONRETRYABLE }
