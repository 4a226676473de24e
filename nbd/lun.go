package nbd

import (
	"errors"
	"fmt"

	"github.com/shadowbench/shadowbench/lun"
)

// A LUN is an export as it is: no wrapper sits on the data path.
var (
	_ Backend       = (*lun.LUN)(nil)
	_ ChangeTracker = (*lun.LUN)(nil)
	_ HoleReader    = (*lun.LUN)(nil)
	_ VecReader     = (*lun.LUN)(nil)
	_ Catalog       = arrayCatalog{}
)

// ArrayCatalog exports the LUNs of a, looked up when a client asks. Masked
// LUNs (snapshot targets not yet located) are neither listed nor served.
func ArrayCatalog(a *lun.Array) Catalog { return arrayCatalog{a} }

type arrayCatalog struct{ a *lun.Array }

func (c arrayCatalog) Lookup(name string) (Backend, error) {
	l, err := c.a.Get(name)
	if err != nil {
		return nil, err
	}
	if l.Masked() {
		return nil, fmt.Errorf("%w: %s is masked", lun.ErrNotFound, name)
	}
	return l, nil
}

func (c arrayCatalog) List() []ExportInfo {
	luns := c.a.List()
	out := make([]ExportInfo, 0, len(luns))
	for _, l := range luns {
		if !l.Masked() {
			out = append(out, ExportInfo{Name: l.Name(), Description: l.Description()})
		}
	}
	return out
}

// storageErrno maps lun's sentinels: a deleted LUN answers EIO (the device
// is gone; the connection stays up so the client can leave cleanly), a
// read-only one EPERM.
func storageErrno(err error) (Errno, bool) {
	switch {
	case errors.Is(err, lun.ErrReadOnly):
		return EPERM, true
	case errors.Is(err, lun.ErrDeleted):
		return EIO, true
	}
	return 0, false
}

// isNoBase reports whether err says a ChangeTracker has no base image.
func isNoBase(err error) bool { return errors.Is(err, lun.ErrNoBase) }
