package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

// progressAfter is how long snapshot create waits before it says what
// the set waits on, and then how often it says it again.
var progressAfter = 2 * time.Second

// watchProgress prints on w what the set being created waits on, every
// interval once one has passed, until the returned stop is called.
func watchProgress(ctx context.Context, c *daemon.Client, w io.Writer, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if p, err := c.Progress(ctx); err == nil {
				_ = p.WriteText(w)
			}
		}
	}()
	return func() { cancel(); <-done }
}

func newSnapshotCreateCmd(f *apiFlags) *cobra.Command {
	var req daemon.CreateSetRequest
	var writers []string
	cmd := &cobra.Command{
		Use:   "create [--writer exec:CMD|fsfreeze:MOUNTPOINT]... [--context CTX] LUN-OR-VOLUME...",
		Short: "Run a full VSS backup sequence in the daemon and print the snapshot set",
		Long: `Create one snapshot set of the LUNs and volumes named, as a VSS requester
does (vss-spec.md A): the daemon's writers and every attached writer take
part, plus each --writer given here, which runs in this process for this
set only: exec:CMD runs CMD (split at spaces, no shell) with the event's
name appended and the event in SHADOWBENCH_EVENT and the other
SHADOWBENCH_* variables; exit 0 is ok, a last stdout line "veto HRESULT"
or "fail HRESULT" decides otherwise. fsfreeze:MOUNTPOINT freezes a file
system from Freeze to Thaw.

Prints the set ID, each snapshot with its NBD exports, the writers'
status and the timeline. Contexts: backup (the default), file-share-backup,
app-rollback, nas-rollback, or any VSS_CTX name with |ATTRIBUTES. The
snapshots of auto-release contexts (backup, file-share-backup) live until
"snapshot delete --set" or the daemon stops.`,
		Example: "  shadowbench snapshot create lun0 lun1\n" +
			"  shadowbench snapshot create --context app-rollback --writer exec:./flush-db.sh data",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: f.completeTargets(),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Targets = args
			var local []daemon.LocalWriter
			defer func() {
				for _, lw := range local {
					if lw.Close != nil {
						_ = lw.Close()
					}
				}
			}()
			for _, spec := range writers {
				lw, err := daemon.ParseLocalWriter(spec, nil)
				if err != nil {
					return err
				}
				local = append(local, lw)
			}
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				if !f.json {
					defer watchProgress(ctx, c, cmd.ErrOrStderr(), progressAfter)()
				}
				return c.CreateSetWith(ctx, req, local, func(r daemon.EventRecord) { _ = r.WriteText(cmd.ErrOrStderr()) })
			})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&writers, "writer", nil, "a writer run here for this set: exec:CMD or fsfreeze:MOUNTPOINT (repeatable)")
	fl.StringVar(&req.Context, "context", "backup", "snapshot context: backup, file-share-backup, app-rollback, nas-rollback... with |ATTRIBUTES")
	fl.StringVar(&req.BackupType, "backup-type", "full", "backup type: full, incremental, differential, log, copy, other")
	fl.StringVar(&req.Provider, "provider", "", "provider to use (default: the service chooses)")
	fl.StringVarP(&req.Name, "name", "n", "", "name the set, as lvcreate -s -n does: the snapshot commands take NAME (or NAME/VOLUME) for its ID")
	return cmd
}
