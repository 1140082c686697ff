// Command mkfs.agfs formats a block device or an image file with agfs.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"agfs/cmd/internal/cli"
	"agfs/cmd/internal/device"
	"agfs/disk"
	"agfs/layout"
	"agfs/mkfs"
)

const help = `NAME
    mkfs.agfs - make an agfs filesystem

SYNOPSIS
    mkfs.agfs [options] DEVICE

DESCRIPTION
    mkfs.agfs formats DEVICE, a block device or an image file, with agfs. It
    prints the geometry it chose. Only a few blocks per allocation group are
    written: inode tables and free-space bitmaps are initialised lazily, so
    formatting takes well under a second whatever the size.

    It refuses a device that already holds agfs, ext2/3/4, XFS, btrfs or a
    partition table unless -f is given. Sizes take K, M, G or T suffixes
    (powers of 1024).

EXIT STATUS
    0 success, 1 the filesystem could not be made (the message says why),
    16 usage error.
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		cli.Exit("mkfs.agfs", err, 1, 16)
	}
}

func run(args []string, out io.Writer) error {
	fs := cli.NewFlagSet("mkfs.agfs", help)
	blockSize := fs.StringP("block-size", "b", "4096", "block size in bytes, a power of two from 4K to 64K")
	agCount := fs.Uint32P("ag-count", "a", 0, "number of allocation groups (default: 4 for devices up to 4 GiB, else AGs of at least 1 GiB, at most 64)")
	agSize := fs.String("ag-size", "", "size of each allocation group (instead of --ag-count)")
	bpi := fs.StringP("bytes-per-inode", "i", "16K", "one inode for every this many bytes of space")
	label := fs.StringP("label", "L", "", "filesystem label, at most 63 bytes")
	uuid := fs.StringP("uuid", "U", "", "filesystem UUID (default: random)")
	logSize := fs.StringP("log-size", "l", "", "size of the write-ahead log (default: 1% of the device, 16 MiB to 1 GiB, at most half of AG 0)")
	size := fs.StringP("size", "s", "", "create the image file, or grow it, to this size first")
	force := fs.BoolP("force", "f", false, "overwrite an existing filesystem or partition table")
	dryRun := fs.BoolP("dry-run", "n", false, "print the geometry but write nothing")
	quiet := fs.BoolP("quiet", "q", false, "print nothing but errors")
	if done, err := cli.Parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cli.Usagef("expected one DEVICE, got %d arguments", fs.NArg())
	}
	path := fs.Arg(0)

	var o mkfs.Options
	var err error
	if o.BlockSize, err = parseBlockSize(*blockSize); err != nil {
		return err
	}
	o.AGCount = *agCount
	if fs.Changed("ag-count") && o.AGCount == 0 {
		return errors.New("AG count must be at least 1")
	}
	if *agSize != "" {
		if o.AGBytes, err = cli.ParseSize(*agSize); err != nil {
			return fmt.Errorf("--ag-size: %w", err)
		}
		if o.AGBytes == 0 {
			return errors.New("--ag-size: AG size must not be zero")
		}
	}
	if o.BytesPerInode, err = cli.ParseSize(*bpi); err != nil {
		return fmt.Errorf("--bytes-per-inode: %w", err)
	}
	if *logSize != "" {
		if o.LogBytes, err = cli.ParseSize(*logSize); err != nil {
			return fmt.Errorf("--log-size: %w", err)
		}
		if o.LogBytes == 0 {
			return errors.New("--log-size: the log must not be empty")
		}
	}
	o.Label = *label
	if *uuid != "" {
		if o.UUID, err = mkfs.ParseUUID(*uuid); err != nil {
			return err
		}
		if o.UUID == ([16]byte{}) {
			return errors.New("the nil UUID cannot identify a filesystem")
		}
	}
	if *size != "" {
		n, err := cli.ParseSize(*size)
		if err != nil {
			return fmt.Errorf("--size: %w", err)
		}
		if !*dryRun {
			if err := disk.CreateImage(path, n); err != nil {
				return err
			}
		}
	}

	dev, err := device.Open(path, disk.Options{ReadOnly: *dryRun}, nil, nil) // waits for an agfs daemon closing it
	if err != nil {
		return err
	}
	defer dev.Close()

	head := make([]byte, min(layout.IdentifyBytes, dev.Size()))
	if _, err := dev.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: read: %w", path, err)
	}
	if what := layout.Identify(head); what != "" && !*force && !*dryRun {
		return fmt.Errorf("%s contains %s; use -f to overwrite it", path, what)
	}

	sb, err := mkfs.Plan(dev.Size(), o)
	if err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprint(out, mkfs.Describe(sb, path))
	}
	if *dryRun {
		return nil
	}
	if err := mkfs.Format(dev, sb); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return dev.Close()
}

func parseBlockSize(s string) (uint32, error) {
	n, err := cli.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("--block-size: %w", err)
	}
	if n < layout.MinFSBlockSize || n > layout.MaxBlockSize || n&(n-1) != 0 {
		return 0, fmt.Errorf("block size %d is invalid: it must be a power of two from %d to %d", n, layout.MinFSBlockSize, layout.MaxBlockSize)
	}
	return uint32(n), nil
}
