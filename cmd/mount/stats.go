package main

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"agfs/fs/fusefs"
)

// printStats prints the counters of the agfs mounted at mnt: the value of
// its root's virtual attribute (fusefs.StatsXattr).
func printStats(out io.Writer, mnt string) error {
	buf := make([]byte, 64<<10) // far more than the counters take
	n, err := unix.Getxattr(mnt, fusefs.StatsXattr, buf)
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTSUP):
		return fmt.Errorf("%s: not the root of an agfs mount (no %s attribute)", mnt, fusefs.StatsXattr)
	case err != nil:
		return fmt.Errorf("%s: reading %s: %w", mnt, fusefs.StatsXattr, err)
	}
	_, err = out.Write(buf[:n])
	return err
}
