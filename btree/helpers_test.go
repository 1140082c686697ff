package btree

import (
	"errors"
	"fmt"
	"testing"

	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

// blockAlloc is a real, simple block allocator over the region [start,
// start+n): an in-memory bitmap, first fit from the goal, wrapping. It is
// transactional like the AG allocator: an allocation is undone if its
// transaction aborts, a free takes effect when its transaction commits
// (so a block freed in a transaction is not handed out again in it), and
// freeing a free block, a block freed already in the transaction or a
// block outside the region fails.
type blockAlloc struct {
	start uint64
	used  []bool
	busy  map[uint64]bool // freed by an open transaction
	n     int             // blocks in use
	fail  int             // fail the fail-th allocation from now (test hook); 0 = never
}

func newBlockAlloc(start, n uint64) *blockAlloc {
	return &blockAlloc{start: start, used: make([]bool, n), busy: make(map[uint64]bool)}
}

var errNoSpace = errors.New("blockAlloc: no free block")

func (a *blockAlloc) AllocBlock(tx *wal.Tx, goal uint64) (uint64, error) {
	if a.fail > 0 {
		a.fail--
		if a.fail == 0 {
			return 0, errNoSpace
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
			blk := a.start + j
			tx.Defer(func(committed bool) {
				if !committed {
					a.used[j] = false
					a.n--
				}
			})
			return blk, nil
		}
	}
	return 0, errNoSpace
}

func (a *blockAlloc) FreeBlock(tx *wal.Tx, blk uint64) error {
	if blk < a.start || blk-a.start >= uint64(len(a.used)) {
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

// inUse is the number of allocated blocks.
func (a *blockAlloc) inUse() int { return a.n }

// env is a Mem device with a log at its end and an allocator over the
// blocks before it.
type env struct {
	t     testing.TB
	bs    int
	dev   *disk.Mem
	r     wal.Region
	seed  uint64
	log   *wal.Log
	alloc *blockAlloc
	opt   wal.Options
}

func newEnv(t testing.TB, bs int, dataBlocks, logBlocks uint64, opt wal.Options) *env {
	t.Helper()
	e := makeEnv(t, bs, dataBlocks, logBlocks, opt)
	t.Cleanup(func() {
		if e.log != nil {
			e.log.Close()
		}
	})
	return e
}

// makeEnv is newEnv without closing the log at the end of the test.
func makeEnv(t testing.TB, bs int, dataBlocks, logBlocks uint64, opt wal.Options) *env {
	t.Helper()
	e := &env{t: t, bs: bs, seed: layout.SeedFromUUID([16]byte{1, 2, 3}), opt: opt,
		dev: disk.NewMem(int64(dataBlocks+logBlocks) * int64(bs)),
		r:   wal.Region{BlockSize: bs, Start: dataBlocks, Blocks: logBlocks}}
	if err := wal.Format(e.dev, e.r, e.seed); err != nil {
		t.Fatal(err)
	}
	e.alloc = newBlockAlloc(1, dataBlocks-1)
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	l, _, err := wal.Open(e.dev, e.r, e.seed, e.opt)
	if err != nil {
		e.t.Fatal(err)
	}
	e.log = l
}

// reopen closes the log and opens it again: an empty cache, so every
// node is read from the device and verified.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.log.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.log = nil
	e.open()
}

func (e *env) cfg(magic uint32, owner uint64) Config {
	return Config{Magic: magic, Owner: owner, Seed: e.seed, BlockSize: e.bs, Alloc: e.alloc}
}

func (e *env) commit(tx *wal.Tx) {
	e.t.Helper()
	if _, err := tx.Commit(); err != nil {
		e.t.Fatal(err)
	}
}

// countNodes counts the tree's nodes with Walk, failing on a block seen
// twice or not allocated.
func countNodes(t testing.TB, tr *Tree, a *blockAlloc) int {
	t.Helper()
	seen := map[uint64]bool{}
	err := tr.Walk(func(blk uint64, level int) error {
		if seen[blk] {
			return fmt.Errorf("block %d twice", blk)
		}
		seen[blk] = true
		if !a.used[blk-a.start] {
			return fmt.Errorf("block %d in the tree is not allocated", blk)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(seen)
}
