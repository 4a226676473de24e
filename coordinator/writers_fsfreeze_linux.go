package coordinator

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/shadowbench/shadowbench/vss"
)

// fifreeze and fithaw are FIFREEZE and FITHAW of linux/fs.h, _IOWR('X', 119,
// int) and _IOWR('X', 120, int), which golang.org/x/sys/unix does not
// define. The encoding is the same on every Linux architecture.
const (
	fifreeze = 0xC0045877
	fithaw   = 0xC0045878
)

// checkMountPoint returns nil if path is a directory at the root of a mount.
// It asks statx for STATX_ATTR_MOUNT_ROOT, which also sees bind mounts, and
// falls back to comparing the device of path and of its parent on kernels
// without it (before 5.8).
func checkMountPoint(path string) error {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_TYPE|unix.STATX_INO, &stx); err != nil {
		return &fs.PathError{Op: "statx", Path: path, Err: err}
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%w: %s is not a directory", ErrNotMountPoint, path)
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		if stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
			return fmt.Errorf("%w: %s", ErrNotMountPoint, path)
		}
		return nil
	}
	var self, parent unix.Stat_t
	if err := unix.Stat(path, &self); err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	up := filepath.Join(path, "..")
	if err := unix.Stat(up, &parent); err != nil {
		return &fs.PathError{Op: "stat", Path: up, Err: err}
	}
	if self.Dev == parent.Dev && self.Ino != parent.Ino {
		return fmt.Errorf("%w: %s", ErrNotMountPoint, path)
	}
	return nil
}

// fsFreeze opens path and freezes its file system, and returns the
// descriptor, which fsThaw needs.
func fsFreeze(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.IoctlSetInt(fd, fifreeze, 0); err != nil {
		_ = unix.Close(fd)
		return -1, &fs.PathError{Op: "FIFREEZE", Path: path, Err: err}
	}
	return fd, nil
}

// fsThaw thaws the file system of fd. EINVAL, which means it is not frozen
// (someone ran "fsfreeze -u"), counts as success.
func fsThaw(fd int) error {
	if err := unix.IoctlSetInt(fd, fithaw, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("FITHAW: %w", err)
	}
	return nil
}

// closeFD closes a descriptor fsFreeze returned.
func closeFD(fd int) { _ = unix.Close(fd) }

// freezeFailure is the writer failure for a FIFREEZE error: RETRYABLE if
// the file system is frozen already, by someone else (EBUSY); NONRETRYABLE
// otherwise, which covers EOPNOTSUPP (no freeze support) and EPERM (no
// CAP_SYS_ADMIN).
func freezeFailure(err error) vss.HRESULT {
	if errors.Is(err, unix.EBUSY) {
		return vss.VSS_E_WRITERERROR_RETRYABLE
	}
	return vss.VSS_E_WRITERERROR_NONRETRYABLE
}
