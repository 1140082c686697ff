package xattr

import (
	"testing"

	"agfs/btree"
	"agfs/internal/treetest"
	"agfs/wal"
)

// env is a Mem device with a log at its end and an allocator over the
// blocks before it.
type env struct {
	*treetest.Env
}

func newEnv(t testing.TB, bs int, dataBlocks, logBlocks uint64) *env {
	t.Helper()
	e := &env{treetest.New(t, bs, dataBlocks, logBlocks, [16]byte{7, 7, 7}, wal.Options{CacheBlocks: 4096})}
	t.Cleanup(e.Close)
	return e
}

func (e *env) cfg(owner uint64) btree.Config {
	return btree.Config{Owner: owner, Seed: e.Seed, BlockSize: e.BS, Alloc: e.Alloc, Goal: 1}
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
	in.e.T.Helper()
	s, err := Open(tx, in.area, in.root, in.e.cfg(in.owner))
	if err != nil {
		in.e.T.Fatal(err)
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
	in.e.T.Helper()
	tx := in.e.Log.Begin()
	s := in.open(tx)
	fn(s)
	in.persist(s)
	in.e.Commit(tx)
}

// treeBlocks counts the tree's blocks with Walk, checking that each is
// allocated and reached once.
func treeBlocks(t testing.TB, s *Set, a *treetest.Alloc) int {
	t.Helper()
	visit, seen := a.Walker()
	if err := s.Walk(visit); err != nil {
		t.Fatal(err)
	}
	return len(seen)
}
