package coordinator

import "testing"

// FuzzParseDocument: a Backup Components Document from another host is
// untrusted input; the parser never panics and what it accepts names a set
// and at least one snapshot.
func FuzzParseDocument(f *testing.F) {
	f.Add([]byte(`{"snapshot_set_id":"{9593A157-44E9-4344-BBEB-44FBF9B06B10}","context":0,"snapshots":[{"snapshot_id":"{5F894E5B-1E39-4778-8E23-9ABAD9F0E08C}"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := parseDocument(data)
		if err != nil {
			return
		}
		if d.SnapshotSetID.IsNull() || len(d.Snapshots) == 0 {
			t.Fatalf("accepted a document with no set or no snapshot: %+v", d)
		}
	})
}
