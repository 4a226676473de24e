//go:build !linux

package coordinator

import "os/exec"

// runInGroup runs cmd. Outside Linux only the command itself is killed when
// its context ends; what it started may outlive it.
func runInGroup(cmd *exec.Cmd) error { return cmd.Run() }
