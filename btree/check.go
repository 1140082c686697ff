package btree

import (
	"bytes"
	"errors"

	"agfs/wal"
)

// Check verifies the whole tree rooted at root within tx: every node
// (fully, even when cached), levels one less than the parent's, each
// node's keys inside the range its parent gives it, no empty node but a
// leaf root, no block reached twice, and the leaves' sibling chain in key
// order ending in 0. Problems are errors wrapping layout.ErrCorrupt.
func Check(tx *wal.Tx, cfg Config, root uint64) error {
	t, err := newTree(tx, cfg)
	if err != nil {
		return err
	}
	t.Root = root
	return t.Check()
}

// Check verifies the tree (see the package function Check).
func (t *Tree) Check() error {
	if t.Root == 0 {
		return errors.New("btree: tree destroyed")
	}
	c := checker{t: t, seen: make(map[uint64]bool)}
	if err := c.node(t.Root, -1, nil, nil, true); err != nil {
		return err
	}
	if c.havePrev && c.prevRight != 0 {
		return corrupt(c.prevLeaf, t.cfg.Owner, "last leaf has right sibling %d", c.prevRight)
	}
	return nil
}

type checker struct {
	t         *Tree
	seen      map[uint64]bool
	havePrev  bool
	prevLeaf  uint64
	prevRight uint64
}

// node checks the subtree at blk whose keys must lie in [lo, hi) (hi nil:
// no upper bound).
func (c *checker) node(blk uint64, level int, lo, hi []byte, root bool) error {
	t := c.t
	owner := t.cfg.Owner
	if c.seen[blk] {
		return corrupt(blk, owner, "node reached twice")
	}
	c.seen[blk] = true
	b, err := t.read(blk, level)
	if err != nil {
		return err
	}
	if err := checkNode(b, blk, owner); err != nil {
		return err
	}
	n := &node{blk: blk, b: b}
	cnt := n.count()
	if cnt == 0 && !(root && n.leaf()) {
		return corrupt(blk, owner, "empty node")
	}
	if n.leaf() {
		for i := range cnt {
			if k := n.key(i); bytes.Compare(k, lo) < 0 || hi != nil && bytes.Compare(k, hi) >= 0 {
				return corrupt(blk, owner, "key %x of entry %d outside the node's range [%x, %x)", k, i, lo, hi)
			}
		}
		if c.havePrev && c.prevRight != blk {
			return corrupt(c.prevLeaf, owner, "right sibling is %d, next leaf is %d", c.prevRight, blk)
		}
		c.havePrev, c.prevLeaf, c.prevRight = true, blk, n.right()
		return nil
	}
	if cnt > 1 && bytes.Compare(n.key(1), lo) <= 0 {
		return corrupt(blk, owner, "separator %x not above the node's lower bound %x", n.key(1), lo)
	}
	if hi != nil && bytes.Compare(n.key(cnt-1), hi) >= 0 {
		return corrupt(blk, owner, "separator %x not below the node's upper bound %x", n.key(cnt-1), hi)
	}
	for i := range cnt {
		clo, chi := lo, hi
		if i > 0 {
			clo = n.key(i)
		}
		if i+1 < cnt {
			chi = n.key(i + 1)
		}
		if err := c.node(n.child(i), n.level()-1, clo, chi, false); err != nil {
			return err
		}
	}
	return nil
}

// Walk calls fn for every node of the tree, parents before children, in
// key order (fsck block accounting). It reads the interior nodes only:
// leaves are reported from their parent's pointer.
func (t *Tree) Walk(fn func(blk uint64, level int) error) error {
	if t.Root == 0 {
		return errors.New("btree: tree destroyed")
	}
	b, err := t.read(t.Root, -1)
	if err != nil {
		return err
	}
	return t.walk(t.Root, le16(b[offLevel:]), b, fn)
}

// walk visits blk at level; b is its content if already read.
func (t *Tree) walk(blk uint64, level int, b []byte, fn func(uint64, int) error) error {
	if err := fn(blk, level); err != nil {
		return err
	}
	if level == 0 {
		return nil
	}
	if b == nil {
		var err error
		if b, err = t.read(blk, level); err != nil {
			return err
		}
	}
	n := node{blk: blk, b: b}
	if n.count() == 0 {
		return corrupt(blk, t.cfg.Owner, "empty interior node")
	}
	for i := range n.count() {
		if err := t.walk(n.child(i), level-1, nil, fn); err != nil {
			return err
		}
	}
	return nil
}

// Destroy frees every node of the tree (reading only the interior ones)
// and sets Root to 0; the tree cannot be used afterwards.
func (t *Tree) Destroy() error {
	var blks []uint64
	if err := t.Walk(func(blk uint64, _ int) error {
		blks = append(blks, blk)
		return nil
	}); err != nil {
		return err
	}
	for _, blk := range blks {
		if err := t.cfg.Alloc.FreeBlock(t.tx, blk); err != nil {
			return err
		}
		t.stats.Frees++
	}
	t.Root = 0
	return nil
}
