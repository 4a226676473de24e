package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/shadowbench/shadowbench/daemon"
)

func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "Write the man pages of every command into DIR (section 1)",
		Long: `Write a man page for shadowbench and each of its commands into DIR
(shadowbench.1, shadowbench-serve.1, shadowbench-snapshot-create.1...),
made from the same text as --help. Read one with man -l DIR/shadowbench.1,
or install them under /usr/local/share/man/man1.`,
		Example: "  shadowbench man ./man && man -l ./man/shadowbench-serve.1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // pages that do not change from build to build
			if err := doc.GenManTree(root, &doc.GenManHeader{Section: "1", Source: "shadowbench " + daemon.BuildVersion()}, dir); err != nil {
				return fmt.Errorf("man pages in %s: %w", dir, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "man pages written to %s\n", dir)
			return nil
		},
	}
}
