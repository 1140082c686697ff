package btree

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"agfs/layout"
	"agfs/wal"
)

// Allocator hands out and takes back node blocks inside a transaction.
// agfs passes the AG allocator, with goals near the inode.
type Allocator interface {
	AllocBlock(tx *wal.Tx, goal uint64) (uint64, error)
	FreeBlock(tx *wal.Tx, blk uint64) error
}

// Config describes a tree: what its nodes say they are and how to
// allocate them.
type Config struct {
	Magic     uint32 // node magic: layout.MagicExtentNode, MagicDirNode, MagicXattrNode
	Owner     uint64 // owner field of every node: the inode number
	Seed      uint64 // checksum seed (layout.SeedFromUUID)
	BlockSize int    // the log's block size
	Alloc     Allocator
	// Goal is the allocation goal of the first node (Create); later nodes
	// are allocated near the node they split from. Optional.
	Goal uint64
}

func (c *Config) validate() error {
	bs := c.BlockSize
	if bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("btree: block size %d is not a power of two in [%d, %d]", bs, minBlockSize, maxBlockSize)
	}
	if c.Magic == 0 {
		return errors.New("btree: config has no node magic")
	}
	if c.Alloc == nil {
		return errors.New("btree: config has no allocator")
	}
	return nil
}

// Stats count a tree's work since Open or Create.
type Stats struct {
	Reads      uint64 // node reads (transaction or cache or device)
	Writes     uint64 // changed ranges logged with tx.Write
	WriteBytes uint64 // bytes passed to tx.Write
	Inits      uint64 // new nodes logged whole with tx.Init
	Splits     uint64
	Merges     uint64
	Frees      uint64 // nodes freed (emptied, merged away, collapsed roots)
}

// Tree is an open B+tree.
type Tree struct {
	// Root is the root node's block. It changes when the root splits or
	// collapses (and is 0 after Destroy); the caller persists it.
	Root uint64

	cfg   Config
	lim   Limits
	tx    *wal.Tx
	vfy   wal.Verifier
	base  uint64 // Root when opened, created or bound to the current tx
	stats Stats

	// The current operation's nodes: every node it reads or changes is
	// read once into op, changed there, and written to the transaction
	// when the operation succeeds.
	op      []*node
	freed   []uint64
	newRoot uint64
	path    []frame
	runBuf  []span
}

type frame struct {
	n   *node
	idx int // interior: child followed; leaf: entry position
}

func newTree(tx *wal.Tx, cfg Config) (*Tree, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &Tree{cfg: cfg, lim: LimitsFor(cfg.BlockSize), tx: tx}
	t.vfy = func(blk uint64, b []byte) error {
		return VerifyNode(b, t.cfg.Seed, t.cfg.Magic, blk, t.cfg.Owner)
	}
	return t, nil
}

// Open opens the tree rooted at root within tx, reading and checking the
// root.
func Open(tx *wal.Tx, cfg Config, root uint64) (*Tree, error) {
	t, err := newTree(tx, cfg)
	if err != nil {
		return nil, err
	}
	if root == 0 {
		return nil, fmt.Errorf("btree: open: owner %d: root block 0", cfg.Owner)
	}
	if _, err := t.read(root, -1); err != nil {
		return nil, err
	}
	t.Root, t.base = root, root
	return t, nil
}

// Create allocates an empty tree (one empty leaf) within tx.
func Create(tx *wal.Tx, cfg Config) (*Tree, error) {
	t, err := newTree(tx, cfg)
	if err != nil {
		return nil, err
	}
	n, err := t.alloc(cfg.Goal, 0)
	if err != nil {
		return nil, t.finish(err)
	}
	t.newRoot = n.blk
	if err := t.finish(nil); err != nil {
		return nil, err
	}
	t.Root, t.base = n.blk, n.blk
	return t, nil
}

// SetTx binds the tree to another transaction (after the previous one
// committed). The root must be what that transaction last left.
func (t *Tree) SetTx(tx *wal.Tx) {
	t.tx = tx
	t.base = t.Root
}

// RootChanged reports whether Root moved since Open, Create or SetTx:
// the caller must then persist the new Root in this transaction.
func (t *Tree) RootChanged() bool { return t.Root != t.base }

// Limits returns the tree's key and value size limits.
func (t *Tree) Limits() Limits { return t.lim }

// Stats returns the tree's counters.
func (t *Tree) Stats() Stats { return t.stats }

// Depth returns the number of levels (1 for a lone leaf).
func (t *Tree) Depth() (int, error) {
	b, err := t.read(t.Root, -1)
	if err != nil {
		return 0, err
	}
	return le16(b[offLevel:]) + 1, nil
}

// read returns the transaction's view of blk (wal.Tx.View: shared, not to
// be changed; node.prep copies it before a change), checked: fully by the
// verifier when it comes from the device, and cheaply (identity, level,
// slot bounds) always. level −1 accepts any level.
func (t *Tree) read(blk uint64, level int) ([]byte, error) {
	t.stats.Reads++
	if t.tx == nil {
		return nil, errors.New("btree: no transaction")
	}
	if blk == 0 {
		return nil, corrupt(blk, t.cfg.Owner, "reference to block 0")
	}
	b, err := t.tx.View(blk, t.vfy)
	if err != nil {
		if errors.Is(err, layout.ErrCorrupt) {
			return nil, err // the verifier named the node and owner
		}
		return nil, fmt.Errorf("btree: node %d (owner %d): %w", blk, t.cfg.Owner, err)
	}
	if err := checkHeader(b, t.cfg.BlockSize, t.cfg.Magic, blk, t.cfg.Owner, level); err != nil {
		return nil, err
	}
	return b, nil
}

// load returns the operation's node for blk.
func (t *Tree) load(blk uint64, level int) (*node, error) {
	for _, n := range t.op {
		if n.blk == blk {
			if n.freed {
				return nil, corrupt(blk, t.cfg.Owner, "node referenced after it was freed")
			}
			if level >= 0 && n.level() != level {
				return nil, corrupt(blk, t.cfg.Owner, "level %d, want %d", n.level(), level)
			}
			return n, nil
		}
	}
	b, err := t.read(blk, level)
	if err != nil {
		return nil, err
	}
	n := &node{blk: blk, b: b}
	t.op = append(t.op, n)
	return n, nil
}

// alloc makes a new empty node near goal.
func (t *Tree) alloc(goal uint64, level int) (*node, error) {
	if t.tx == nil {
		return nil, errors.New("btree: no transaction")
	}
	blk, err := t.cfg.Alloc.AllocBlock(t.tx, goal)
	if err != nil {
		return nil, fmt.Errorf("btree: owner %d: allocating a node: %w", t.cfg.Owner, err)
	}
	if blk == 0 {
		return nil, fmt.Errorf("btree: owner %d: allocator returned block 0", t.cfg.Owner)
	}
	for _, n := range t.op {
		if n.blk == blk {
			return nil, fmt.Errorf("btree: owner %d: allocator returned block %d, in use by the tree", t.cfg.Owner, blk)
		}
	}
	n := &node{blk: blk, b: make([]byte, t.cfg.BlockSize), fresh: true}
	initNode(n.b, t.cfg.Magic, blk, t.cfg.Owner, level)
	t.op = append(t.op, n)
	return n, nil
}

// release frees n at the end of the operation.
func (t *Tree) release(n *node) {
	n.freed = true
	t.freed = append(t.freed, n.blk)
}

// begin starts an operation.
func (t *Tree) begin() error {
	if t.Root == 0 {
		return errors.New("btree: tree destroyed")
	}
	t.newRoot = t.Root
	return nil
}

// finish ends an operation: on success it writes the changed nodes to the
// transaction and frees the released blocks; either way it forgets the
// operation's nodes.
func (t *Tree) finish(err error) error {
	defer func() {
		clear(t.op)
		t.op, t.freed = t.op[:0], t.freed[:0]
		clear(t.path)
		t.path = t.path[:0]
	}()
	if err != nil {
		// Nothing was written; give back the nodes allocated, so the
		// transaction stays consistent (a failed Put for lack of space
		// need not abort it).
		for _, n := range t.op {
			if n.fresh {
				if ferr := t.cfg.Alloc.FreeBlock(t.tx, n.blk); ferr != nil {
					return fmt.Errorf("%w (and freeing new node %d: %v)", err, n.blk, ferr)
				}
			}
		}
		return err
	}
	for _, n := range t.op {
		switch {
		case n.freed || !n.dirty():
		case n.fresh:
			if err := t.tx.Init(n.blk, n.b); err != nil {
				return fmt.Errorf("btree: owner %d: %w", t.cfg.Owner, err)
			}
			t.stats.Inits++
		default:
			t.runBuf = n.runs(t.runBuf[:0])
			for _, r := range t.runBuf {
				if err := t.tx.Write(n.blk, r.lo, n.b[r.lo:r.hi]); err != nil {
					return fmt.Errorf("btree: owner %d: %w", t.cfg.Owner, err)
				}
				t.stats.Writes++
				t.stats.WriteBytes += uint64(r.hi - r.lo)
			}
		}
	}
	for _, blk := range t.freed {
		if err := t.cfg.Alloc.FreeBlock(t.tx, blk); err != nil {
			return fmt.Errorf("btree: owner %d: freeing node %d: %w", t.cfg.Owner, blk, err)
		}
		t.stats.Frees++
	}
	t.Root = t.newRoot
	return nil
}

// descend fills t.path from the root to the leaf whose range holds k.
func (t *Tree) descend(k []byte) error {
	blk, level := t.Root, -1
	for {
		n, err := t.load(blk, level)
		if err != nil {
			return err
		}
		if n.leaf() {
			t.path = append(t.path, frame{n: n})
			return nil
		}
		if n.count() == 0 {
			return corrupt(blk, t.cfg.Owner, "empty interior node")
		}
		i := n.childIndex(k)
		t.path = append(t.path, frame{n: n, idx: i})
		blk, level = n.child(i), n.level()-1
	}
}

// Get returns the value of key; the slice is the caller's.
func (t *Tree) Get(key []byte) ([]byte, bool, error) {
	if t.Root == 0 {
		return nil, false, errors.New("btree: tree destroyed")
	}
	blk, level := t.Root, -1
	for {
		b, err := t.read(blk, level)
		if err != nil {
			return nil, false, err
		}
		n := node{blk: blk, b: b}
		if n.leaf() {
			i, ok := n.search(key)
			if !ok {
				return nil, false, nil
			}
			return slices.Clone(n.val(i)), true, nil
		}
		if n.count() == 0 {
			return nil, false, corrupt(blk, t.cfg.Owner, "empty interior node")
		}
		blk, level = n.child(n.childIndex(key)), n.level()-1
	}
}

func (t *Tree) checkSizes(key, val []byte) error {
	switch {
	case len(key) > t.lim.MaxKey:
		return fmt.Errorf("%w: key of %d bytes, at most %d at %d-byte blocks", ErrTooLarge, len(key), t.lim.MaxKey, t.cfg.BlockSize)
	case len(val) > t.lim.MaxValue:
		return fmt.Errorf("%w: value of %d bytes, at most %d at %d-byte blocks", ErrTooLarge, len(val), t.lim.MaxValue, t.cfg.BlockSize)
	case len(key)+len(val) > t.lim.MaxEntry:
		return fmt.Errorf("%w: key and value of %d bytes together, at most %d at %d-byte blocks", ErrTooLarge, len(key)+len(val), t.lim.MaxEntry, t.cfg.BlockSize)
	}
	return nil
}

// Put inserts key with val, or replaces key's value.
func (t *Tree) Put(key, val []byte) error {
	if err := t.checkSizes(key, val); err != nil {
		return err
	}
	if err := t.begin(); err != nil {
		return err
	}
	return t.finish(t.put(key, val))
}

func (t *Tree) put(key, val []byte) error {
	if err := t.descend(key); err != nil {
		return err
	}
	leaf := t.path[len(t.path)-1].n
	i, found := leaf.search(key)
	if found {
		old := leaf.val(i)
		if len(old) == len(val) {
			if !bytes.Equal(old, val) {
				leaf.setVal(i, val)
			}
			return nil
		}
		leaf.removeAt(i)
	}
	k, v := key, val
	var child [childSize]byte
	for lvl := len(t.path) - 1; ; lvl-- {
		n := t.path[lvl].n
		if n.free() >= cost(len(k), len(v)) {
			n.insertAt(i, k, v)
			return nil
		}
		appendMode := i == n.count() && t.rightmost(lvl)
		sep, r, err := t.split(n, i, k, v, appendMode)
		if err != nil {
			return err
		}
		if lvl == 0 {
			if n.level()+1 >= MaxDepth {
				return fmt.Errorf("btree: owner %d: tree would exceed %d levels", t.cfg.Owner, MaxDepth)
			}
			root, err := t.alloc(n.blk, n.level()+1)
			if err != nil {
				return err
			}
			put64(child[:], n.blk)
			root.appendEntry(nil, child[:])
			put64(child[:], r.blk)
			root.appendEntry(sep, child[:])
			t.newRoot = root.blk
			return nil
		}
		put64(child[:], r.blk)
		k, v = sep, child[:]
		i = t.path[lvl-1].idx + 1
	}
}

// rightmost reports whether the path's node at lvl is the last of its
// level.
func (t *Tree) rightmost(lvl int) bool {
	for _, f := range t.path[:lvl] {
		if f.idx != f.n.count()-1 {
			return false
		}
	}
	return true
}

// split makes room for (k, v) at index i of the full node n: it moves the
// upper part of the entries, the new one included, to a new right
// sibling and returns the separator for the parent. The split point
// balances bytes; in append mode the new entry alone starts the new node.
func (t *Tree) split(n *node, i int, k, v []byte, appendMode bool) ([]byte, *node, error) {
	cnt := n.count()
	total := cnt + 1
	// Virtual entry j of the node with (k, v) inserted at i.
	ent := func(j int) ([]byte, []byte) {
		switch {
		case j < i:
			return n.entry(j)
		case j == i:
			return k, v
		default:
			return n.entry(j - 1)
		}
	}
	m := cnt // entries kept on the left
	if !appendMode {
		sizes := make([]int, total)
		sum := 0
		for j := range total {
			kk, vv := ent(j)
			sizes[j] = cost(len(kk), len(vv))
			sum += sizes[j]
		}
		best, left := -1, 0
		for j := 1; j < total; j++ {
			left += sizes[j-1]
			if d := max(left, sum-left); best < 0 || d < best {
				best, m = d, j
			}
		}
	}
	r, err := t.alloc(n.blk, n.level())
	if err != nil {
		return nil, nil, err
	}
	t.stats.Splits++
	var sep []byte
	if n.leaf() {
		lk, _ := ent(m - 1)
		rk, _ := ent(m)
		sep = slices.Clone(shortSep(lk, rk))
		for j := m; j < total; j++ {
			r.appendEntry(ent(j))
		}
		r.setRight(n.right())
	} else {
		kk, vv := ent(m)
		sep = slices.Clone(kk)
		r.appendEntry(nil, vv)
		for j := m + 1; j < total; j++ {
			r.appendEntry(ent(j))
		}
	}
	if i < m {
		n.truncate(m - 1)
		n.insertAt(i, k, v)
	} else {
		n.truncate(m)
	}
	if n.leaf() {
		n.setRight(r.blk)
	}
	return sep, r, nil
}

// shortSep returns the shortest prefix of hi greater than lo (lo < hi).
func shortSep(lo, hi []byte) []byte {
	p := 0
	for p < len(lo) && p < len(hi) && lo[p] == hi[p] {
		p++
	}
	return hi[:p+1]
}

// Delete removes key, reporting whether it was there.
func (t *Tree) Delete(key []byte) (bool, error) {
	if err := t.begin(); err != nil {
		return false, err
	}
	found, err := t.delete(key)
	return found, t.finish(err)
}

func (t *Tree) delete(key []byte) (bool, error) {
	if err := t.descend(key); err != nil {
		return false, err
	}
	leaf := t.path[len(t.path)-1].n
	i, found := leaf.search(key)
	if !found {
		return false, nil
	}
	leaf.removeAt(i)
	return true, t.rebalance()
}

// rebalance walks up the path after a removal: it frees emptied nodes,
// merges a node at most half full with a sibling when both fit in three
// quarters of a node, and collapses the root.
func (t *Tree) rebalance() error {
	limit := (t.cfg.BlockSize - NodeHeaderSize) * 3 / 4
	for lvl := len(t.path) - 1; lvl > 0; lvl-- {
		n := t.path[lvl].n
		p, pi := t.path[lvl-1].n, t.path[lvl-1].idx
		if n.count() == 0 {
			if n.leaf() {
				left, err := t.leftLeaf(lvl)
				if err != nil {
					return err
				}
				if left == n {
					return corrupt(n.blk, t.cfg.Owner, "leaf reached twice")
				}
				if left != nil {
					left.setRight(n.right())
				}
			}
			t.release(n)
			if pi == 0 && p.count() > 1 {
				p.setChild(0, p.child(1))
				p.removeAt(1)
			} else {
				p.removeAt(pi)
			}
			continue
		}
		if n.used() > n.capacity()/2 {
			break
		}
		merged := false
		if pi > 0 {
			l, err := t.load(p.child(pi-1), n.level())
			if err != nil {
				return err
			}
			if l == n {
				return corrupt(p.blk, t.cfg.Owner, "child %d appears twice", n.blk)
			}
			if t.fits(l, n, p.key(pi), limit) {
				t.merge(l, n, p.key(pi))
				p.removeAt(pi)
				merged = true
			}
		}
		if !merged && pi+1 < p.count() {
			r, err := t.load(p.child(pi+1), n.level())
			if err != nil {
				return err
			}
			if r == n {
				return corrupt(p.blk, t.cfg.Owner, "child %d appears twice", n.blk)
			}
			if t.fits(n, r, p.key(pi+1), limit) {
				t.merge(n, r, p.key(pi+1))
				p.removeAt(pi + 1)
				merged = true
			}
		}
		if !merged {
			break
		}
	}
	root := t.path[0].n
	if !root.leaf() && root.count() == 0 {
		root.resetLeaf()
	}
	for !root.leaf() && root.count() == 1 {
		c, err := t.load(root.child(0), root.level()-1)
		if err != nil {
			return err
		}
		t.release(root)
		root = c
		t.newRoot = c.blk
	}
	return nil
}

// fits reports whether r's entries fit into l within limit bytes; sep is
// r's separator in the parent, which an interior r's first entry takes.
func (t *Tree) fits(l, r *node, sep []byte, limit int) bool {
	u := l.used() + r.used()
	if !l.leaf() {
		u += len(sep)
	}
	return u <= limit
}

// merge moves r's entries to the end of l and releases r.
func (t *Tree) merge(l, r *node, sep []byte) {
	for j := range r.count() {
		k, v := r.entry(j)
		if j == 0 && !r.leaf() {
			k = sep
		}
		l.appendEntry(k, v)
	}
	if l.leaf() {
		l.setRight(r.right())
	}
	t.release(r)
	t.stats.Merges++
}

// leftLeaf returns the leaf before the path's leaf (at path index lvl),
// or nil if it is the first.
func (t *Tree) leftLeaf(lvl int) (*node, error) {
	j := lvl - 1
	for j >= 0 && t.path[j].idx == 0 {
		j--
	}
	if j < 0 {
		return nil, nil
	}
	p := t.path[j].n
	blk := p.child(t.path[j].idx - 1)
	for level := p.level() - 1; ; level-- {
		n, err := t.load(blk, level)
		if err != nil {
			return nil, err
		}
		if level == 0 {
			return n, nil
		}
		if n.count() == 0 {
			return nil, corrupt(blk, t.cfg.Owner, "empty interior node")
		}
		blk = n.child(n.count() - 1)
	}
}
