package xattr

import (
	"fmt"
	"syscall"
	"testing"

	"agfs/btree"
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
}

func newBlockAlloc(start, n uint64) *blockAlloc {
	return &blockAlloc{start: start, used: make([]bool, n), busy: make(map[uint64]bool)}
}

// errNoSpace is what the AG allocator returns: ENOSPC.
var errNoSpace = fmt.Errorf("blockAlloc: no free block: %w", syscall.ENOSPC)

func (a *blockAlloc) AllocBlock(tx *wal.Tx, goal uint64) (uint64, error) {
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
}

func newEnv(t testing.TB, bs int, dataBlocks, logBlocks uint64) *env {
	t.Helper()
	e := &env{t: t, bs: bs, seed: layout.SeedFromUUID([16]byte{7, 7, 7}),
		dev: disk.NewMem(int64(dataBlocks+logBlocks) * int64(bs)),
		r:   wal.Region{BlockSize: bs, Start: dataBlocks, Blocks: logBlocks}}
	if err := wal.Format(e.dev, e.r, e.seed); err != nil {
		t.Fatal(err)
	}
	e.alloc = newBlockAlloc(1, dataBlocks-1)
	e.open()
	t.Cleanup(func() {
		if e.log != nil {
			e.log.Close()
		}
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	l, _, err := wal.Open(e.dev, e.r, e.seed, wal.Options{CacheBlocks: 4096})
	if err != nil {
		e.t.Fatal(err)
	}
	e.log = l
}

// reopen closes the log (checkpointing everything home) and opens it
// again with an empty cache, so every node is read from the device and
// verified.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.log.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.log = nil
	e.open()
}

func (e *env) cfg(owner uint64) btree.Config {
	return btree.Config{Owner: owner, Seed: e.seed, BlockSize: e.bs, Alloc: e.alloc, Goal: 1}
}

func (e *env) commit(tx *wal.Tx) {
	e.t.Helper()
	if _, err := tx.Commit(); err != nil {
		e.t.Fatal(err)
	}
}

// inode is what the filesystem would keep in the inode: the inline area
// (its size is the room), the root and the block count.
type inode struct {
	e      *env
	owner  uint64
	area   []byte
	root   uint64
	blocks int64
}

func (e *env) newInode(owner uint64, room int) *inode {
	return &inode{e: e, owner: owner, area: make([]byte, room)}
}

func (in *inode) open(tx *wal.Tx) *Set {
	in.e.t.Helper()
	s, err := Open(tx, in.area, in.root, in.e.cfg(in.owner))
	if err != nil {
		in.e.t.Fatal(err)
	}
	return s
}

// persist stores what s reports, as the fs does before committing.
func (in *inode) persist(s *Set) {
	in.area = make([]byte, s.Room())
	copy(in.area, s.Inline())
	in.root = s.Root()
	in.blocks += s.BlockDelta()
}

// do runs fn in a transaction on the inode's attributes and commits.
func (in *inode) do(fn func(s *Set)) {
	in.e.t.Helper()
	tx := in.e.log.Begin()
	s := in.open(tx)
	fn(s)
	in.persist(s)
	in.e.commit(tx)
}

// treeBlocks counts the tree's blocks with Walk, checking that each is
// allocated and reached once.
func treeBlocks(t testing.TB, s *Set, a *blockAlloc) int {
	t.Helper()
	seen := map[uint64]bool{}
	err := s.Walk(func(blk uint64) error {
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
