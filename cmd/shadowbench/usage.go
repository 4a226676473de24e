package main

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

// usageError is a command line that cannot be run as typed: an unknown
// command or flag, or a wrong argument. main exits 2 for it, 1 for a
// command that ran and failed, as shells and scripts expect.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode is the process's exit status for err.
func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return 2
	}
	if ce := new(daemon.CaptiveExit); errors.As(err, &ce) {
		return ce.Code
	}
	return 1
}

// groupCommands makes every command that only groups others (lun,
// snapshot...) refuse an unknown subcommand with exit status 2, where
// cobra would print the help and succeed; alone, they print the help.
func groupCommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		groupCommands(sub)
	}
	if c.HasSubCommands() && c.RunE == nil && c.Run == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())}
			}
			return cmd.Help()
		}
	}
}

// versionText is what version and --version print.
func versionText() string {
	return fmt.Sprintf("shadowbench %s (%s, %s/%s)\n", daemon.BuildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), versionText())
			return err
		},
	}
}
