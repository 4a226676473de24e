// Command shadowbench runs a software storage array: LUNs with
// copy-on-write snapshots served over NBD. Each subcommand lives in its own
// file and only binds flags to the packages that do the work.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		writeError(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// run executes the command line in args; SIGINT and SIGTERM cancel its
// context, which every subcommand treats as a request to stop cleanly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

// app carries what the root command sets up for its subcommands.
type app struct {
	log *slog.Logger
}

func newRoot(stderr io.Writer) *cobra.Command {
	a := &app{log: slog.New(slog.NewTextHandler(stderr, nil))}
	var level, format string
	root := &cobra.Command{
		Use:           "shadowbench",
		Short:         "A software storage array with copy-on-write snapshots, served over NBD",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			l, err := newLogger(stderr, level, format)
			if err != nil {
				return err
			}
			a.log = l
			slog.SetDefault(l)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&format, "log-format", "text", "log format: text or json")
	root.AddCommand(newServeCmd(a))
	root.AddCommand(newBenchCmd())
	root.AddCommand(newLUNCmd())
	root.AddCommand(newSnapshotCmd())
	root.AddCommand(newWriterCmd())
	root.AddCommand(newStatusCmd())
	root.AddCommand(newDemoCmd(a))
	root.AddCommand(newScenarioCmd())
	root.AddCommand(newCheckCmd())
	root.AddCommand(newVersionCmd())
	root.AddCommand(newManCmd())
	root.AddCommand(newCrashTestCmd())
	root.Version = versionText()
	root.SetVersionTemplate("{{.Version}}")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	groupCommands(root)
	return root
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
