package btree

import (
	"testing"

	"agfs/internal/treetest"
	"agfs/wal"
)

// The shared allocator must do for a tree.
var _ Allocator = (*treetest.Alloc)(nil)

// env is a Mem device with a log at its end and an allocator over the
// blocks before it.
type env struct {
	*treetest.Env
}

func newEnv(t testing.TB, bs int, dataBlocks, logBlocks uint64, opt wal.Options) *env {
	t.Helper()
	e := makeEnv(t, bs, dataBlocks, logBlocks, opt)
	t.Cleanup(e.Close)
	return e
}

// makeEnv is newEnv without closing the log at the end of the test.
func makeEnv(t testing.TB, bs int, dataBlocks, logBlocks uint64, opt wal.Options) *env {
	t.Helper()
	return &env{treetest.New(t, bs, dataBlocks, logBlocks, [16]byte{1, 2, 3}, opt)}
}

func (e *env) cfg(magic uint32, owner uint64) Config {
	return Config{Magic: magic, Owner: owner, Seed: e.Seed, BlockSize: e.BS, Alloc: e.Alloc}
}

// countNodes counts the tree's nodes with Walk, failing on a block seen
// twice or not allocated.
func countNodes(t testing.TB, tr *Tree, a *treetest.Alloc) int {
	t.Helper()
	visit, seen := a.Walker()
	if err := tr.Walk(func(blk uint64, _ int) error { return visit(blk) }); err != nil {
		t.Fatal(err)
	}
	return len(seen)
}
