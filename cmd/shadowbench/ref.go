package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/vss"
)

// refKind says what an argument may name.
type refKind int

const (
	refSnapshot refKind = iota // one snapshot
	refSet                     // a snapshot set
	refEither                  // a snapshot, else a set (snapshot show)
)

// resolveRef reads a snapshot or set argument: a GUID, or a name given at
// snapshot create --name. A name is the set's; as a snapshot it is the
// set's only one, or NAME/VOLUME for one of several.
func resolveRef(ctx context.Context, c *daemon.Client, arg string, kind refKind) (vss.ID, error) {
	if id, err := vss.ParseID(arg); err == nil {
		return id, nil
	}
	name, volume, byVolume := strings.Cut(arg, "/")
	snaps, err := c.Snapshots(ctx)
	if err != nil {
		return vss.ID{}, err
	}
	var match []daemon.SnapshotInfo
	var set vss.ID
	for _, s := range snaps {
		if s.Name == name {
			set = s.SetID
			if !byVolume || s.Volume == volume {
				match = append(match, s)
			}
		}
	}
	if set.IsNull() {
		sets, err := c.Sets(ctx)
		if err != nil {
			return vss.ID{}, err
		}
		for _, s := range sets {
			if s.Name == name {
				set = s.ID
			}
		}
	}
	switch {
	case set.IsNull():
		return vss.ID{}, fmt.Errorf("%q is neither an ID nor the name of a snapshot set (snapshot list shows both)", arg)
	case kind == refSet && byVolume:
		return vss.ID{}, fmt.Errorf("%q names a snapshot; give the set's name, %s", arg, name)
	case kind == refSet || (kind == refEither && !byVolume && len(match) != 1):
		return set, nil
	case len(match) == 1:
		return match[0].ID, nil
	case byVolume:
		return vss.ID{}, fmt.Errorf("snapshot set %s has no snapshot of volume %s", name, volume)
	case len(match) == 0:
		return vss.ID{}, fmt.Errorf("snapshot set %s holds no snapshot", name)
	}
	var vols []string
	for _, s := range match {
		vols = append(vols, s.Volume)
	}
	slices.Sort(vols)
	return vss.ID{}, fmt.Errorf("snapshot set %s holds %d snapshots (volumes %s): name one as %s/VOLUME",
		name, len(match), strings.Join(vols, ", "), name)
}
