// Command fsck.agfs checks and repairs an agfs filesystem offline.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"agfs/cmd/internal/cli"
	"agfs/cmd/internal/device"
	"agfs/disk"
	"agfs/fsck"
	"agfs/internal/mountinfo"
	"agfs/layout"
	"agfs/mkfs"
)

const help = `NAME
    fsck.agfs - check and repair an agfs filesystem

SYNOPSIS
    fsck.agfs [-n|-y|-p] [-f] [-v] [-C FD] [--json] DEVICE

DESCRIPTION
    fsck.agfs checks the agfs filesystem on DEVICE, which must not be
    mounted (it refuses a device that /proc/self/mountinfo shows mounted,
    or that another program holds open; an agfs daemon still writing its
    last checkpoint after an unmount is waited for, up to a minute), and
    with -y or -p repairs it.

    The check verifies the superblock and its copies in every allocation
    group, the write-ahead log, and each AG's header, block and inode
    bitmaps (every checksum) and free counters. Then every inode in use:
    its slot against the inode bitmap and the orphan list, its file type,
    link count, size and data format, its extents, and its extent,
    directory and extended-attribute B+trees (every node, every entry).
    Last it walks the directory tree from the root: every entry must name
    an inode in use of its type, every directory's ".." the directory that
    names it, every link count the names found, and every inode must be
    reachable unless it is on an orphan list. AGs are checked in parallel.
    A log left dirty by a crash is replayed in memory for the check. Every
    problem is reported on one line naming the AG, the block or inode, and
    what is wrong. The check is always complete: a superblock marked clean
    only says the log is empty, so -f changes nothing.

    Repair runs in phases: (1) the superblock, rebuilt from a copy in
    another AG when the primary is damaged, and damaged copies rewritten;
    (2) the log, recovered for real, or reset when it cannot be (its
    transactions are then lost); (3) inodes and extents: an inode that
    cannot be used is cleared, a damaged extent tree or directory index is
    rebuilt from what can still be read, damaged extended attributes are
    dropped, and a block claimed twice goes to the newer claim (by the LSN
    of the metadata holding it); (4) the directory tree: entries naming
    free inodes are removed, a directory keeps one name, what the root
    cannot reach is linked into /lost+found as "#INODE", link counts and
    parent pointers are set from the entries; (5) block and inode bitmaps
    and the AG counters are rebuilt from what is referenced; (6) orphans
    (unlinked inodes) are reclaimed. All repairs are written through the
    log. The device is then checked again; a repair that uncovers more
    damage runs again, up to three times.

    Modes: with neither -y nor -p (or with -n) fsck.agfs only checks and
    never writes. -y makes every repair it can. -p (preen) makes only the
    repairs that lose no data: counters, bitmaps, link counts, sizes,
    orphans, superblock copies, a dirty log; if anything else is wrong it
    changes nothing, says so, and exits 4: run fsck.agfs -y then.

    Progress (-C FD): one line per phase and pass to file descriptor FD;
    0 means standard output (as with e2fsck -C 0).

EXIT STATUS
    0 no problems, 1 problems found and all corrected, 4 problems left
    uncorrected (with -n, or -p refusing, or damage repair could not
    fix), 8 operational error (the device could not be read or written,
    holds no agfs, or is mounted), 16 usage error.
`

func main() {
	code, err := run(os.Args[1:], os.Stdout)
	if err != nil {
		cli.Exit("fsck.agfs", err, fsck.ExitOperational, fsck.ExitUsage)
	}
	os.Exit(code)
}

func run(args []string, out io.Writer) (int, error) {
	fl := cli.NewFlagSet("fsck.agfs", help)
	no := fl.BoolP("no-change", "n", false, "check only, never write (the default)")
	yes := fl.BoolP("yes", "y", false, "repair everything, without asking")
	preen := fl.BoolP("preen", "p", false, "repair only what loses no data; exit 4 if more is wrong")
	fl.BoolP("force", "f", false, "check even if the filesystem seems clean (always done)")
	verbose := fl.BoolP("verbose", "v", false, "describe the filesystem and what was checked")
	progressFD := fl.IntP("progress", "C", -1, "write progress to file descriptor `FD` (0 = standard output)")
	asJSON := fl.Bool("json", false, "print the report as JSON")
	if done, err := cli.Parse(fl, args); done || err != nil {
		return fsck.ExitClean, err
	}
	if fl.NArg() != 1 {
		return 0, cli.Usagef("expected one DEVICE, got %d arguments", fl.NArg())
	}
	mode := fsck.NoChange
	switch {
	case *no && (*yes || *preen) || *yes && *preen:
		return 0, cli.Usagef("-n, -y and -p exclude each other")
	case *yes:
		mode = fsck.Yes
	case *preen:
		mode = fsck.Preen
	}
	path := fl.Arg(0)
	mounted := func() error {
		ms, err := mountinfo.Read(mountinfo.Self)
		if err != nil {
			return fmt.Errorf("is %s mounted? %w", path, err)
		}
		if at := mountinfo.Of(ms, path); len(at) > 0 {
			return fmt.Errorf("%s is mounted on %s: unmount it first", path, at[0].MountPoint)
		}
		return nil
	}
	// Right after an unmount the agfs daemon may still be closing the
	// device: Open waits for it.
	dev, err := device.Open(path, disk.Options{ReadOnly: mode == fsck.NoChange}, mounted, nil)
	if err != nil {
		return 0, err
	}

	var o fsck.Options
	o.Mode = mode
	if *progressFD >= 0 {
		w, err := progressWriter(*progressFD, out)
		if err != nil {
			dev.Close()
			return 0, err
		}
		o.Progress = func(p fsck.Progress) {
			if p.Phase == 0 {
				fmt.Fprintf(w, "%s: pass %d: check\n", path, p.Pass)
				return
			}
			fmt.Fprintf(w, "%s: pass %d: phase %d/6: %s\n", path, p.Pass, p.Phase, p.Name)
		}
	}
	res, err := fsck.Repair(dev, o)
	if cerr := dev.Close(); err == nil && cerr != nil && mode != fsck.NoChange {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if *asJSON {
		return res.Code(), writeJSON(out, path, mode, res)
	}
	writeText(out, path, *verbose, res)
	return res.Code(), nil
}

// progressWriter is where -C sends progress: fd 0 means standard output.
func progressWriter(fd int, out io.Writer) (io.Writer, error) {
	if fd == 0 {
		return out, nil
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("fd %d", fd))
	if _, err := f.Stat(); err != nil {
		return nil, cli.Usagef("-C %d: %v", fd, err)
	}
	return f, nil
}

func writeText(out io.Writer, path string, verbose bool, res *fsck.Result) {
	rep := res.Before
	if verbose {
		fmt.Fprint(out, mkfs.Describe(rep.Super, path))
		st := rep.Inodes
		fmt.Fprintf(out, "%s: %d inodes in use: %d directories (%d entries), %d files, %d symlinks, %d special, %d orphans\n",
			path, st.Used, st.Dirs, st.Entries, st.Files, st.Symlinks, st.Special, st.Orphans)
	}
	if rep.Log != nil && rep.Log.Replayed > 0 {
		done := "in memory"
		if res.LogReplayed > 0 {
			done = "and written home"
		}
		fmt.Fprintf(out, "%s: log: %d transactions replayed %s (not unmounted cleanly)\n", path, rep.Log.Replayed, done)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(out, "%s: %s\n", path, p)
	}
	verb := "fixed"
	if res.Refused {
		verb = "NOT fixed (needs -y)"
	}
	for _, f := range res.Fixes {
		fmt.Fprintf(out, "%s: %s: %s\n", path, verb, f)
	}
	if res.After != nil {
		for _, p := range res.After.Problems {
			fmt.Fprintf(out, "%s: left: %s\n", path, p)
		}
		rep = res.After
	}
	state := "clean"
	switch res.Code() {
	case fsck.ExitCorrected:
		state = fmt.Sprintf("REPAIRED (%d problems, %d fixes in %d passes), now clean", len(res.Before.Problems), len(res.Fixes), res.Passes)
	case fsck.ExitUncorrected:
		state = "DAMAGED"
		if res.Refused {
			state = "DAMAGED: UNEXPECTED INCONSISTENCY; run fsck.agfs -y"
		}
	}
	bs := int64(rep.Super.BlockSize)
	fmt.Fprintf(out, "%s: %s, %d problems; %d of %d blocks free (%s), %d inodes free\n",
		path, state, len(rep.Problems), rep.FreeBlocks, rep.Super.BlockCount,
		layout.Bytes(int64(rep.FreeBlocks)*bs), rep.FreeInodes)
}

func writeJSON(out io.Writer, path string, mode fsck.Mode, res *fsck.Result) error {
	type problem struct {
		AG      int    `json:"ag"`
		Message string `json:"message"`
	}
	type fix struct {
		AG      int    `json:"ag"`
		Message string `json:"message"`
		Safe    bool   `json:"safe"`
	}
	problems := func(ps []fsck.Problem) []problem {
		out := []problem{}
		for _, p := range ps {
			out = append(out, problem{AG: p.AG, Message: p.Err.Error()})
		}
		return out
	}
	rep := res.Before
	final := rep
	if res.After != nil {
		final = res.After
	}
	v := struct {
		Device      string    `json:"device"`
		UUID        string    `json:"uuid"`
		Mode        string    `json:"mode"`
		ExitCode    int       `json:"exit_code"`
		Clean       bool      `json:"clean"`
		SuperFrom   uint32    `json:"superblock_from_ag"`
		LogReplayed int       `json:"log_transactions_replayed"`
		LogReset    bool      `json:"log_reset"`
		Blocks      uint64    `json:"blocks"`
		FreeBlocks  uint64    `json:"free_blocks"`
		FreeInodes  uint64    `json:"free_inodes"`
		UsedInodes  uint64    `json:"used_inodes"`
		Directories uint64    `json:"directories"`
		Orphans     uint64    `json:"orphans"`
		Problems    []problem `json:"problems"`
		Fixes       []fix     `json:"fixes"`
		Refused     bool      `json:"refused"`
		Passes      int       `json:"passes"`
		Remaining   []problem `json:"remaining"`
	}{
		Device: path, UUID: mkfs.FormatUUID(rep.Super.UUID), Mode: modeName(mode), ExitCode: res.Code(),
		Clean: rep.Clean(), SuperFrom: rep.SuperFrom, LogReset: res.LogReset,
		Blocks: rep.Super.BlockCount, FreeBlocks: final.FreeBlocks, FreeInodes: final.FreeInodes,
		UsedInodes: final.Inodes.Used, Directories: final.Inodes.Dirs, Orphans: final.Inodes.Orphans,
		Problems: problems(rep.Problems), Fixes: []fix{}, Refused: res.Refused, Passes: res.Passes,
		Remaining: problems(res.Remaining()),
	}
	if rep.Log != nil {
		v.LogReplayed = rep.Log.Replayed
	}
	for _, f := range res.Fixes {
		v.Fixes = append(v.Fixes, fix{AG: f.AG, Message: f.What, Safe: f.Safe})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func modeName(m fsck.Mode) string {
	switch m {
	case fsck.Yes:
		return "yes"
	case fsck.Preen:
		return "preen"
	}
	return "check"
}
