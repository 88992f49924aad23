// Package pindir prepares the bpffs directories the exporter pins maps and
// links in, so that no other user can remove or replace those pins.
//
// bpffs is often mounted world-writable with the sticky bit (mode 1777,
// as .ci/run does): any user may create a directory there first, and as
// its owner later delete what root pinned inside. So a pin directory must
// be this process's own and writable by nobody else.
package pindir

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrUnsafe marks a directory refused because another user could change
// its pins; errors.Is finds it in Prepare's errors.
var ErrUnsafe = errors.New("unsafe pin directory")

// Prepare creates dir (mode 0700, with any missing parents) unless it
// exists, and checks that it is a real directory (not a symlink) owned by
// this process's effective uid and not writable by group or others.
// field is the flag or option that named dir, for the error.
func Prepare(field, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s=%q: creating the pin directory: %w (is bpffs mounted at its parent?)", field, dir, err)
	}
	return Check(field, dir)
}

// Check is Prepare's check alone, for a directory that must exist.
func Check(field, dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", field, dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s=%q: %w: %s is not a directory (mode %v); remove it", field, dir, ErrUnsafe, dir, fi.Mode())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s=%q: cannot read the directory's owner", field, dir)
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("%s=%q: %w: owned by uid %d, not by this process's uid %d, so that user could remove or replace the pins; remove the directory or chown it to uid %d",
			field, dir, ErrUnsafe, st.Uid, euid, euid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s=%q: %w: mode %04o is writable by group or others, who could remove or replace the pins; chmod go-w it",
			field, dir, ErrUnsafe, perm)
	}
	return nil
}
