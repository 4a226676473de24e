package coordinator

import (
	"errors"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// runInGroup runs cmd in a process group of its own and kills the whole
// group, both when cmd's context ends and when its leader exits, so nothing
// it started outlives it.
//
// The leader's exit is awaited with waitid(WNOWAIT), which leaves it a
// zombie: until cmd.Wait reaps it, its PID cannot be reused, so the group
// kill cannot reach an unrelated group that took the same number. Killing
// after cmd.Wait instead would race with that reuse; killing only the
// leader (exec.Cmd's default) would leave its children running.
func runInGroup(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var mu sync.Mutex
	groupReserved := true // Guarded by mu: false once the leader may be reaped.
	cmd.Cancel = func() error {
		mu.Lock()
		defer mu.Unlock()
		if groupReserved {
			return killGroup(cmd.Process.Pid)
		}
		return cmd.Process.Kill()
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == nil || !errors.Is(err, unix.EINTR) {
			// On success the leader is a zombie, so its group number is still
			// reserved. Any other error is not expected, and cmd.Wait reports
			// the real state.
			mu.Lock()
			if err == nil {
				_ = killGroup(pid)
			}
			groupReserved = false
			mu.Unlock()
			break
		}
	}
	return cmd.Wait()
}

// killGroup sends SIGKILL to process group pgid. An empty group is not an
// error.
func killGroup(pgid int) error {
	if err := unix.Kill(-pgid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}
