package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

// completionTimeout bounds the API call behind a completion: a shell
// waits on it at every TAB.
const completionTimeout = 2 * time.Second

// complete returns a ValidArgsFunction that offers what list gives, from
// the daemon the command's --api names, for the first max arguments (0
// for any number); an unreachable daemon offers nothing.
func (f *apiFlags) complete(max int, list func(ctx context.Context, c *daemon.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if max > 0 && len(args) >= max {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := f.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		all, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, s := range all {
			if strings.HasPrefix(s, toComplete) {
				out = append(out, s)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeLUNs offers the LUNs' names.
func (f *apiFlags) completeLUNs(max int) cobra.CompletionFunc {
	return f.complete(max, func(ctx context.Context, c *daemon.Client) ([]string, error) {
		luns, err := c.LUNs(ctx)
		var out []string
		for _, l := range luns {
			out = append(out, l.Name)
		}
		return out, err
	})
}

// completeSnapshots offers the snapshots: the names of named sets (with
// NAME/VOLUME for each of their snapshots), then every snapshot's ID.
func (f *apiFlags) completeSnapshots(max int) cobra.CompletionFunc {
	return f.complete(max, func(ctx context.Context, c *daemon.Client) ([]string, error) {
		snaps, err := c.Snapshots(ctx)
		var names, ids []string
		seen := map[string]bool{}
		for _, s := range snaps {
			if s.Name != "" {
				if !seen[s.Name] {
					names = append(names, s.Name)
					seen[s.Name] = true
				}
				names = append(names, s.Name+"/"+s.Volume)
			}
			ids = append(ids, s.ID.String())
		}
		return append(names, ids...), err
	})
}

// completeSets offers the snapshot sets' names, then their IDs.
func (f *apiFlags) completeSets(max int) cobra.CompletionFunc {
	return f.complete(max, func(ctx context.Context, c *daemon.Client) ([]string, error) {
		sets, err := c.Sets(ctx)
		var names, ids []string
		for _, s := range sets {
			if s.Name != "" {
				names = append(names, s.Name)
			}
			ids = append(ids, s.ID.String())
		}
		return append(names, ids...), err
	})
}

// completeTargets offers what a set can be made of: LUNs and volumes.
func (f *apiFlags) completeTargets() cobra.CompletionFunc {
	return f.complete(0, func(ctx context.Context, c *daemon.Client) ([]string, error) {
		st, err := c.Status(ctx)
		if err != nil {
			return nil, err
		}
		var out []string
		for v := range st.Volumes {
			out = append(out, v)
		}
		luns, err := c.LUNs(ctx)
		for _, l := range luns {
			if l.Kind == "original" || l.Kind == "clone" {
				out = append(out, l.Name)
			}
		}
		return out, err
	})
}
