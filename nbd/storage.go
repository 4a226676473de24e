package nbd

// storageErrno maps the storage layer's sentinel errors that errnoOf does not
// know by itself; it learns lun's once that package is wired in.
func storageErrno(error) (Errno, bool) { return 0, false }

// isNoBase reports whether err says a ChangeTracker has no base image.
func isNoBase(error) bool { return false }
