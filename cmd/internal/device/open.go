// Package device opens an agfs device (a block device or an image file)
// for the commands: mount.agfs, fsck.agfs and mkfs.agfs all wait for an
// agfs daemon that is still letting go of it after an unmount, so that
// "umount DIR && fsck.agfs IMAGE" works like it does for ext4.
package device

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"agfs/disk"
)

// BusyWait is how long Open waits for an agfs daemon that still holds the
// device after its unmount (it is writing its last checkpoint).
const BusyWait = 60 * time.Second

// unknownWait is how long a device held by an unknown process is retried.
const unknownWait = 2 * time.Second

// Open opens and locks the device at path with opts. When another process
// holds it, Open waits while that is an agfs daemon finishing an unmount,
// and briefly while the holder cannot be found (it may just have let go,
// or be out of sight: O_EXCL on a block device); any other holder is an
// error that names it. mounted, when not nil, is asked first and after
// each refusal: an error from it (the device is mounted) is returned as
// it is. Errors of the open itself read "PATH: reason". verbosef, when
// not nil, is told about the wait.
func Open(path string, opts disk.Options, mounted func() error, verbosef func(format string, a ...any)) (*disk.File, error) {
	if mounted != nil {
		if err := mounted(); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	for {
		dev, err := disk.Open(path, opts)
		if err == nil {
			return dev, nil
		}
		if !errors.Is(err, disk.ErrBusy) {
			return nil, openError(path, err)
		}
		if mounted != nil {
			if err := mounted(); err != nil {
				return nil, err
			}
		}
		holder, closing := Holder(path)
		waited := time.Since(start)
		switch {
		case closing && waited < BusyWait:
			if verbosef != nil {
				verbosef("waiting for %s to release %s", holder, path)
			}
		case holder == "" && waited < unknownWait:
		case holder != "":
			return nil, fmt.Errorf("%s is in use by %s", path, holder)
		default:
			return nil, fmt.Errorf("%s is in use by another program", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openError says "PATH: reason" for an error of disk.Open, whose own
// "disk: open PATH: " prefix says less; errors.Is still sees the cause.
func openError(path string, err error) error {
	msg := err.Error()
	for _, p := range []string{"disk: open " + path + ": ", "disk: " + path + ": "} {
		if m, ok := strings.CutPrefix(msg, p); ok {
			return pathError{path + ": " + m, err}
		}
	}
	return err
}

type pathError struct {
	msg string
	err error
}

func (e pathError) Error() string { return e.msg }
func (e pathError) Unwrap() error { return e.err }
