package main

import "github.com/spf13/cobra"

func newSnapshotCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Create snapshot sets through the daemon's VSS coordinator, and manage them",
		Long: `Run complete VSS backup sequences in the daemon (shadowbench serve) and
manage what they create: list, show, diff, delete, expose over NBD, revert
a volume, break a set into ordinary LUNs. A SNAPSHOT or SET argument is a
GUID, with or without braces, or the name given at snapshot create --name;
NAME/VOLUME is one snapshot of a named set that has several.`,
		Args: cobra.NoArgs,
	}
	f.bind(cmd)
	cmd.AddCommand(newSnapshotCreateCmd(&f), newSnapshotListCmd(&f), newSnapshotShowCmd(&f), newSnapshotDiffCmd(&f), newSnapshotDeleteCmd(&f),
		newSnapshotExposeCmd(&f), newSnapshotRevertCmd(&f), newSnapshotBreakCmd(&f))
	return cmd
}
