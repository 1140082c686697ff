// Package treetest holds the test fixtures shared by the on-disk tree
// packages (btree, dir, xattr): a log over an in-memory device and a
// real, simple transactional block allocator over the blocks before it.
//
// It is a normal package so that several packages' tests can share it,
// but only _test.go files should import it. It must not import btree
// (btree's own tests import it); Alloc satisfies btree.Allocator by its
// method set.
package treetest

import (
	"fmt"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

// ErrNoSpace is what Alloc returns when it has no free block. Like the
// AG allocator's, it wraps ENOSPC.
var ErrNoSpace = fmt.Errorf("blockAlloc: no free block: %w", syscall.ENOSPC)

// Alloc is a real, simple block allocator over the region [start,
// start+n): an in-memory bitmap, first fit from the goal, wrapping. It is
// transactional like the AG allocator: an allocation is undone if its
// transaction aborts, a free takes effect when its transaction commits
// (so a block freed in a transaction is not handed out again in it), and
// freeing a free block, a block freed already in the transaction or a
// block outside the region fails. Its errors all mention "blockAlloc".
type Alloc struct {
	// Fail, when positive, makes the Fail-th allocation from now fail
	// with ErrNoSpace (a test hook); 0 means never.
	Fail int

	start uint64
	used  []bool
	busy  map[uint64]bool // freed by an open transaction
	n     int             // blocks in use
}

// NewAlloc returns an allocator with all of [start, start+n) free.
func NewAlloc(start, n uint64) *Alloc {
	return &Alloc{start: start, used: make([]bool, n), busy: make(map[uint64]bool)}
}

// AllocBlock allocates a free block, the first at or after goal if goal
// is in the region, else the first from the region's start.
func (a *Alloc) AllocBlock(tx *wal.Tx, goal uint64) (uint64, error) {
	if a.Fail > 0 {
		a.Fail--
		if a.Fail == 0 {
			return 0, ErrNoSpace
		}
	}
	sz := uint64(len(a.used))
	g := uint64(0)
	if goal >= a.start && goal-a.start < sz {
		g = goal - a.start
	}
	for i := range sz {
		j := (g + i) % sz
		if !a.used[j] && !a.busy[a.start+j] {
			a.used[j] = true
			a.n++
			tx.Defer(func(committed bool) {
				if !committed {
					a.used[j] = false
					a.n--
				}
			})
			return a.start + j, nil
		}
	}
	return 0, ErrNoSpace
}

// FreeBlock frees blk when tx commits.
func (a *Alloc) FreeBlock(tx *wal.Tx, blk uint64) error {
	if !a.inRegion(blk) {
		return fmt.Errorf("blockAlloc: free of block %d outside [%d, %d)", blk, a.start, a.start+uint64(len(a.used)))
	}
	j := blk - a.start
	if !a.used[j] || a.busy[blk] {
		return fmt.Errorf("blockAlloc: double free of block %d", blk)
	}
	a.busy[blk] = true
	tx.Defer(func(committed bool) {
		delete(a.busy, blk)
		if committed {
			a.used[j] = false
			a.n--
		}
	})
	return nil
}

func (a *Alloc) inRegion(blk uint64) bool {
	return blk >= a.start && blk-a.start < uint64(len(a.used))
}

// InUse is the number of allocated blocks.
func (a *Alloc) InUse() int { return a.n }

// Allocated reports whether blk is in the region and allocated.
func (a *Alloc) Allocated(blk uint64) bool {
	return a.inRegion(blk) && a.used[blk-a.start]
}

// Walker returns a visit function for walking a tree's blocks, which
// fails on a block seen twice or not allocated, and the set it fills.
func (a *Alloc) Walker() (visit func(blk uint64) error, seen map[uint64]bool) {
	seen = map[uint64]bool{}
	return func(blk uint64) error {
		if seen[blk] {
			return fmt.Errorf("block %d twice", blk)
		}
		seen[blk] = true
		if !a.Allocated(blk) {
			return fmt.Errorf("block %d in the tree is not allocated", blk)
		}
		return nil
	}, seen
}

// MarkUsed marks blk, which must be in the region, allocated outside any
// transaction (for a tree built on another allocator's device).
func (a *Alloc) MarkUsed(blk uint64) {
	if j := blk - a.start; !a.used[j] {
		a.used[j] = true
		a.n++
	}
}

// Env is a Mem device with a log at its end and an allocator over the
// blocks before it (all but block 0).
type Env struct {
	T     testing.TB
	BS    int
	Dev   *disk.Mem
	R     wal.Region
	Seed  uint64
	Log   *wal.Log // nil while closed
	Alloc *Alloc
	Opt   wal.Options
}

// New formats a device of dataBlocks+logBlocks blocks of bs bytes, the
// log in the last logBlocks with the seed of uuid, and opens the log with
// opt. It does not close the log at the end of the test; see Close.
func New(t testing.TB, bs int, dataBlocks, logBlocks uint64, uuid [16]byte, opt wal.Options) *Env {
	t.Helper()
	e := &Env{T: t, BS: bs, Seed: layout.SeedFromUUID(uuid), Opt: opt,
		Dev: disk.NewMem(int64(dataBlocks+logBlocks) * int64(bs)),
		R:   wal.Region{BlockSize: bs, Start: dataBlocks, Blocks: logBlocks}}
	if err := wal.Format(e.Dev, e.R, e.Seed); err != nil {
		t.Fatal(err)
	}
	e.Alloc = NewAlloc(1, dataBlocks-1)
	e.Open()
	return e
}

// Open opens the log.
func (e *Env) Open() {
	e.T.Helper()
	l, _, err := wal.Open(e.Dev, e.R, e.Seed, e.Opt)
	if err != nil {
		e.T.Fatal(err)
	}
	e.Log = l
}

// Close closes the log if it is open, ignoring the error (for Cleanup).
func (e *Env) Close() {
	if e.Log != nil {
		e.Log.Close()
	}
}

// Reopen closes the log (checkpointing everything home) and opens it
// again with an empty cache, so every node is read from the device and
// verified.
func (e *Env) Reopen() {
	e.T.Helper()
	if err := e.Log.Close(); err != nil {
		e.T.Fatal(err)
	}
	e.Log = nil
	e.Open()
}

// Commit commits tx, failing the test on an error.
func (e *Env) Commit(tx *wal.Tx) {
	e.T.Helper()
	if _, err := tx.Commit(); err != nil {
		e.T.Fatal(err)
	}
}
