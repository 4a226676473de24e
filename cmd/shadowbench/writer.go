package main

import "github.com/spf13/cobra"

func newWriterCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "writer",
		Short: "Take part in the daemon's snapshot sets as a VSS writer, or list the writers",
		Args:  cobra.NoArgs,
	}
	f.bind(cmd)
	cmd.AddCommand(newWriterAttachCmd(&f), newWriterListCmd(&f))
	return cmd
}
