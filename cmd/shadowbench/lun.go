package main

import "github.com/spf13/cobra"

func newLUNCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "lun",
		Short: "Create, list, delete, inject faults into and cut the power of the daemon's LUNs",
		Long: `Manage the LUNs of a running daemon (shadowbench serve) through its API.
Every LUN is an NBD export of the same name.`,
		Args: cobra.NoArgs,
	}
	f.bind(cmd)
	cmd.AddCommand(newLUNCreateCmd(&f), newLUNListCmd(&f), newLUNDeleteCmd(&f), newLUNFaultCmd(&f), newLUNPowercutCmd(&f),
		newLUNMarkCmd(&f), newLUNCrashpointsCmd(&f), newLUNExposeCmd(&f))
	return cmd
}
