package fsck

import (
	"errors"
	"fmt"

	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

// Repair, in the manner of e2fsck and xfs_repair: phases with one purpose
// each, run over the whole filesystem, then a check of the result.
//
//  1. superblock (super: the primary, or the first good copy; plan.go
//     rewrites the damaged ones);
//  2. the log (logPhase): recovered for real, or reset when it cannot be;
//  3. inodes and extents: the check's inode phase with collect
//     (inodes.go, collect.go), then the inode decisions and the block
//     claims (plan.go, claims.go);
//  4. directory tree: entries, one name per directory, reachability and
//     /lost+found, link counts (reconnect.go);
//  5. bitmaps and counters rebuilt from what is referenced (bitmaps.go);
//  6. orphans: unlinked inodes are reclaimed while planning phase 4, so
//     that phase 5 counts their space as free.
//
// Phases 3 to 6 decide first and write after (apply.go), all through the
// log. Repair then checks the device again; if that check still finds
// something (a repair that exposed damage hidden behind other damage), it
// runs again, up to maxPasses times.
//
// The check is always a full one: a "clean" superblock says the log is
// empty, not that the metadata is sound, and a full check of a 1 TiB
// filesystem reads only its initialised metadata. -f is accepted for
// fsck(8) compatibility.

// Mode says what Repair may change.
type Mode int

const (
	// NoChange checks only and never writes (fsck -n).
	NoChange Mode = iota
	// Preen makes only the repairs that lose nothing (fsck -p): counters,
	// bitmaps, link counts, orphans, sizes, superblock copies. Anything
	// else leaves the device untouched and is reported for -y.
	Preen
	// Yes makes every repair (fsck -y).
	Yes
)

const maxPasses = 3

// Progress is what Repair tells its Options.Progress as it goes.
type Progress struct {
	Pass  int
	Phase int    // 1..6
	Name  string // what the phase does
}

// Options tune Repair.
type Options struct {
	Mode     Mode
	Progress func(Progress)
}

// Result is what Repair found and did.
type Result struct {
	// Before is the check of the device as found.
	Before *Report
	// Fixes lists the changes made, pass after pass; when Refused, those
	// that preen mode would not make.
	Fixes []Fix
	// After is the check after the last pass; nil when nothing was
	// written.
	After *Report
	// LogReplayed is the number of transactions a dirty log held that
	// recovery wrote home; LogReset says the log could not be recovered
	// and was emptied.
	LogReplayed int
	LogReset    bool
	Passes      int
	// Refused: preen mode found fixes that lose data and wrote nothing
	// (beyond recovering the log, which a mount would do too).
	Refused bool
}

// fsck(8) exit codes.
const (
	ExitClean       = 0
	ExitCorrected   = 1
	ExitUncorrected = 4
	ExitOperational = 8
	ExitUsage       = 16
)

// Code is the fsck(8) exit code of the result.
func (r *Result) Code() int {
	switch {
	case r.After != nil && r.After.Clean():
		return ExitCorrected
	case r.After != nil || r.Refused || !r.Before.Clean():
		return ExitUncorrected
	}
	return ExitClean
}

// Remaining is what is still wrong: the last check's problems.
func (r *Result) Remaining() []Problem {
	if r.After != nil {
		return r.After.Problems
	}
	if r.Before.Clean() {
		return nil
	}
	return r.Before.Problems
}

// Repair checks the filesystem on dev and, unless o.Mode is NoChange,
// repairs it. The error is for failures to check or to write at all (no
// superblock, an I/O error); everything found is in the Result.
func Repair(dev disk.Device, o Options) (*Result, error) {
	progress := func(pass, phase int, name string) {
		if o.Progress != nil {
			o.Progress(Progress{Pass: pass, Phase: phase, Name: name})
		}
	}
	progress(0, 1, "check")
	before, err := Check(dev)
	res := &Result{Before: before}
	if err != nil || o.Mode == NoChange {
		return res, err
	}
	if before.Clean() {
		// Nothing to repair; a dirty log is written home, as the next
		// mount would, so that the device is left clean.
		if before.Log != nil && before.Log.Replayed > 0 {
			progress(0, 2, "log")
			return res, logPhase(dev, before.Super, o.Mode, res)
		}
		return res, nil
	}
	for pass := 1; pass <= maxPasses; pass++ {
		res.Passes = pass
		n := len(res.Fixes)
		if err := repairPass(dev, o.Mode, res, func(phase int, name string) { progress(pass, phase, name) }); err != nil {
			return res, err
		}
		if res.Refused {
			return res, nil
		}
		progress(pass, 0, "check")
		after, err := Check(dev)
		res.After = after
		if err != nil {
			return res, fmt.Errorf("check after repair: %w", err)
		}
		if after.Clean() || len(res.Fixes) == n {
			return res, nil
		}
	}
	return res, nil
}

// repairPass runs the phases once.
func repairPass(dev disk.Device, mode Mode, res *Result, progress func(phase int, name string)) error {
	progress(1, "superblock")
	sc := &Report{}
	sb, from, err := findSuperblock(dev, sc)
	if err != nil {
		return err
	}
	progress(2, "log")
	if err := logPhase(dev, sb, mode, res); err != nil || res.Refused {
		return err
	}
	progress(3, "inodes and extents")
	_, scan, err := check(dev, true)
	if err != nil {
		return err
	}
	if scan == nil {
		return errors.New("repair: the inodes cannot be read: the log cannot be opened")
	}
	// Phases 4 to 6 are planned together (newPlan), written by apply.
	progress(4, "directory tree")
	p, err := newPlan(dev, scan, from)
	if err != nil {
		return err
	}
	if mode == Preen {
		var unsafe []Fix
		for _, f := range p.fixes {
			if !f.Safe {
				unsafe = append(unsafe, f)
			}
		}
		if len(unsafe) > 0 {
			res.Fixes, res.Refused = append(res.Fixes, unsafe...), true
			return nil
		}
	}
	progress(5, "bitmaps and counters")
	err = p.apply()
	res.Fixes = append(res.Fixes, p.fixes...)
	progress(6, "orphans")
	return err
}

// logPhase recovers the log for real: committed transactions are written
// home and the log left empty and clean. A log that cannot be recovered
// is reset (formatted empty): its transactions are lost, and the later
// phases repair what that leaves. A log superblock copy that does not
// verify is rewritten by the same reset, which loses nothing once
// recovery has emptied the log.
func logPhase(dev disk.Device, sb *layout.Superblock, mode Mode, res *Result) error {
	region := wal.Region{BlockSize: int(sb.BlockSize), Start: sb.LogStart, Blocks: sb.LogBlocks}
	seed := sb.Seed()
	bad := wal.VerifySuperblocks(dev, region, seed)
	rep, rerr := wal.Recover(dev, region, seed)
	if rerr == nil {
		res.LogReplayed += rep.Replayed
		if len(bad) == 0 {
			return nil
		}
	} else if mode == Preen {
		res.Fixes = append(res.Fixes, Fix{AG: 0, What: fmt.Sprintf("log: cannot be recovered (%v): resetting it loses its transactions", rerr)})
		res.Refused = true
		return nil
	}
	if err := wal.Format(dev, region, seed); err != nil {
		return fmt.Errorf("reset the log: %w", err)
	}
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("reset the log: flush: %w", err)
	}
	if rerr != nil {
		res.LogReset = true
		res.Fixes = append(res.Fixes, Fix{AG: 0, What: fmt.Sprintf("log: cannot be recovered (%v): reset, its transactions are lost", rerr)})
	} else {
		res.Fixes = append(res.Fixes, Fix{AG: 0, What: fmt.Sprintf("log: %v: both log superblocks rewritten", bad[0]), Safe: true})
	}
	return nil
}
