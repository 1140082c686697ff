// Command fsck.agfs checks an agfs filesystem offline.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"agfs/cmd/internal/cli"
	"agfs/disk"
	"agfs/fsck"
	"agfs/layout"
	"agfs/mkfs"
)

const help = `NAME
    fsck.agfs - check an agfs filesystem

SYNOPSIS
    fsck.agfs [-n] [-f] [-v] [--json] DEVICE

DESCRIPTION
    fsck.agfs checks the agfs filesystem on DEVICE, which must not be
    mounted. It verifies the superblock and its copies in every allocation
    group, the write-ahead log, and each AG's header, block and inode
    bitmaps (every checksum) and free counters. Then every inode in use:
    its slot against the inode bitmap and the orphan list, its file type,
    link count, size and data format, its extents, and its extent,
    directory and extended-attribute B+trees (every node, every entry).
    Last it walks the directory tree from the root: every entry must name
    an inode in use of its type, every directory's ".." the directory that
    names it, every link count the names found, and every inode must be
    reachable unless it is on an orphan list. AGs are checked in parallel.

    A log left dirty by a crash is replayed in memory first, so the check
    sees the filesystem as the next mount will; the device is never
    written. Every problem is reported on one line naming the AG and block.

    This version checks only: it never modifies DEVICE, with or without -n.

EXIT STATUS
    0 no problems, 4 problems found (left uncorrected), 8 operational error
    (the device could not be read, or holds no agfs), 16 usage error.
`

// fsck(8) exit codes.
const (
	exitClean       = 0
	exitUncorrected = 4
	exitOperational = 8
	exitUsage       = 16
)

func main() {
	code, err := run(os.Args[1:], os.Stdout)
	if err != nil {
		cli.Exit("fsck.agfs", err, exitOperational, exitUsage)
	}
	os.Exit(code)
}

func run(args []string, out io.Writer) (int, error) {
	fs := cli.NewFlagSet("fsck.agfs", help)
	fs.BoolP("no-change", "n", false, "check only, never write (the only mode of this version)")
	fs.BoolP("force", "f", false, "check even if the filesystem seems clean (always done)")
	verbose := fs.BoolP("verbose", "v", false, "describe the filesystem and what was checked")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if done, err := cli.Parse(fs, args); done || err != nil {
		return exitClean, err
	}
	if fs.NArg() != 1 {
		return 0, cli.Usagef("expected one DEVICE, got %d arguments", fs.NArg())
	}
	path := fs.Arg(0)
	dev, err := disk.Open(path, disk.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer dev.Close()

	rep, err := fsck.Check(dev)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	code := exitClean
	if !rep.Clean() {
		code = exitUncorrected
	}
	if *asJSON {
		return code, writeJSON(out, path, rep)
	}
	if *verbose {
		fmt.Fprint(out, mkfs.Describe(rep.Super, path))
	}
	if *verbose {
		st := rep.Inodes
		fmt.Fprintf(out, "%s: %d inodes in use: %d directories (%d entries), %d files, %d symlinks, %d special, %d orphans\n",
			path, st.Used, st.Dirs, st.Entries, st.Files, st.Symlinks, st.Special, st.Orphans)
	}
	if rep.Log != nil && rep.Log.Replayed > 0 {
		fmt.Fprintf(out, "%s: log: %d transactions replayed in memory (not unmounted cleanly)\n", path, rep.Log.Replayed)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(out, "%s: %s\n", path, p)
	}
	bs := int64(rep.Super.BlockSize)
	fmt.Fprintf(out, "%s: %s, %d problems; %d of %d blocks free (%s), %d inodes free\n",
		path, map[bool]string{true: "clean", false: "DAMAGED"}[rep.Clean()], len(rep.Problems),
		rep.FreeBlocks, rep.Super.BlockCount, layout.Bytes(int64(rep.FreeBlocks)*bs), rep.FreeInodes)
	return code, nil
}

func writeJSON(out io.Writer, path string, rep *fsck.Report) error {
	type problem struct {
		AG      int    `json:"ag"`
		Message string `json:"message"`
	}
	v := struct {
		Device      string    `json:"device"`
		UUID        string    `json:"uuid"`
		Clean       bool      `json:"clean"`
		SuperFrom   uint32    `json:"superblock_from_ag"`
		LogReplayed int       `json:"log_transactions_replayed"`
		Blocks      uint64    `json:"blocks"`
		FreeBlocks  uint64    `json:"free_blocks"`
		FreeInodes  uint64    `json:"free_inodes"`
		UsedInodes  uint64    `json:"used_inodes"`
		Directories uint64    `json:"directories"`
		Orphans     uint64    `json:"orphans"`
		Problems    []problem `json:"problems"`
	}{
		Device: path, UUID: mkfs.FormatUUID(rep.Super.UUID), Clean: rep.Clean(), SuperFrom: rep.SuperFrom,
		Blocks: rep.Super.BlockCount, FreeBlocks: rep.FreeBlocks, FreeInodes: rep.FreeInodes,
		UsedInodes: rep.Inodes.Used, Directories: rep.Inodes.Dirs, Orphans: rep.Inodes.Orphans,
		Problems: []problem{},
	}
	if rep.Log != nil {
		v.LogReplayed = rep.Log.Replayed
	}
	for _, p := range rep.Problems {
		v.Problems = append(v.Problems, problem{AG: p.AG, Message: p.Err.Error()})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
