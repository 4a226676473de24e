package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newCheckCmd() *cobra.Command {
	var repair, asJSON bool
	cmd := &cobra.Command{
		Use:   "check DIR",
		Short: "Check a durable array's data directory offline",
		Long: `Check reads the data directory of a durable array (serve --data-dir DIR)
and reports every contradiction it finds: a block named by two maps, a map
entry past its tree's end or naming a block past the data file's end, a
tree whose parent is missing, a LUN record without its tree or a tree
without its record, a snapshot record naming a LUN that is gone. It also
reports how much of the data file is free space still allocated (a crash
leaves some; the next start punches it out).

The directory must not be in use: stop the daemon first. Without --repair
nothing is written. --repair removes leftovers (records nothing can reach)
and punches the free blocks out of the data file; it changes nothing when
the check found a problem, because freeing blocks by contradictory records
could destroy data.

The exit status is 0 when the directory is consistent, 1 otherwise.`,
		Example: `  shadowbench check /var/lib/shadowbench
  shadowbench check --repair /var/lib/shadowbench`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := daemon.Check(args[0], repair)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if err := rep.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			return rep.Err()
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "remove leftovers and punch free blocks out of the data file (never when a problem is found)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
