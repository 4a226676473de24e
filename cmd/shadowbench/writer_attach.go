package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/daemon"
)

func newWriterAttachCmd(f *apiFlags) *cobra.Command {
	var reg daemon.WriterRegistration
	var freeze, timeout time.Duration
	cmd := &cobra.Command{
		Use:   "attach NAME [--level front-end|back-end|system] [--freeze-timeout D] -- CMD [ARGS...]",
		Short: "Attach CMD as a VSS writer: it runs for each event of every snapshot set",
		Long: `Register a writer called NAME with the daemon and run CMD for each event
it gets (Identify, PrepareForBackup, PrepareForSnapshot, Freeze, Thaw,
PostSnapshot, Abort, BackupComplete, BackupShutdown...), with the event's
name appended to ARGS and in SHADOWBENCH_EVENT, and the set, context,
backup type, volumes and components in SHADOWBENCH_SNAPSHOT_SET_ID,
SHADOWBENCH_CONTEXT, SHADOWBENCH_BACKUP_TYPE, SHADOWBENCH_VOLUMES and
SHADOWBENCH_COMPONENTS. Exit status 0 answers ok; another status fails the
event with VSS_E_WRITERERROR_NONRETRYABLE; a last stdout line "veto
HRESULT" records a veto (the set goes on, the writer's status shows it) and
"fail HRESULT" fails the event. A CMD that outlives the event's window is
killed. Runs until SIGINT or SIGTERM, then detaches; if this process
vanishes, the daemon drops the writer after its remote-writer timeout.`,
		Example: "  shadowbench writer attach db --level back-end -- ./db-hook.sh",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("writer attach: give the NAME, then -- and the command")
			}
			reg.Name, reg.FreezeTimeout = args[0], daemon.Duration(freeze)
			w, err := coordinator.NewExecWriter(coordinator.ExecOptions{Command: args[1:], Timeout: timeout})
			if err != nil {
				return fmt.Errorf("writer %s: %w", args[0], err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			a, err := c.Attach(cmd.Context(), reg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "writer %s attached as %v; waiting for events (Ctrl-C to detach)\n", reg.Name, a.Info().ID)
			return a.Serve(cmd.Context(), w, func(r daemon.EventRecord) {
				if f.json { // one JSON object per line, as the events come
					_ = json.NewEncoder(cmd.OutOrStdout()).Encode(r)
					return
				}
				_ = r.WriteText(cmd.OutOrStdout())
			})
		},
	}
	cmd.Flags().StringVar(&reg.Level, "level", "front-end", "freeze order: front-end, back-end or system")
	cmd.Flags().DurationVar(&freeze, "freeze-timeout", 0, "the writer's freeze window, dwTimeoutFreeze (default: the daemon's, 60s)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "bound each run of CMD, besides the event's window")
	return cmd
}
